"""Body parsers: middleware that turns ``req.raw_body`` into ``req.body`` by Content-Type.

``json()``, ``urlencoded()``, ``text()`` and ``raw()`` follow Express's body-parser (SPEC sections
5 and 8). The server has already read the whole body (bounded by ``max_body_size``), so a parser
only decides whether the request is its business, then inflates, decodes and parses.

Each parser, in order:

1. leaves the request alone when ``req.body`` is already set (another parser ran), when the
   request has no body at all (neither Content-Length nor Transfer-Encoding, as Express 5), or
   when its Content-Type does not match the parser's ``type`` option (``req.body`` stays
   ``None``);
2. checks the charset against a fixed list of text charsets (415 ``unsupported charset
   "..."``), without asking the codec registry about the client's name;
3. inflates ``gzip``/``deflate`` Content-Encoding incrementally, in time linear in the body
   whatever its structure (thousands of concatenated gzip members included), stopping as soon
   as the inflated size passes ``limit`` (413; a zip bomb costs at most ``limit`` bytes of
   work), and answers 415 for any other encoding or for several codings;
4. answers 413 when the (inflated) body is larger than ``limit``;
5. parses: an empty body gives ``{}`` (json, urlencoded), ``""`` (text) or ``b""`` (raw);
   malformed input gives 400 with a short reason. Nothing accepted holds a value a response
   cannot write (a non-finite number, a lone surrogate): JSON with one is a 400.

Failures are ``HTTPError``s passed to ``next(err)``; on success ``req.body`` is set and
``next()`` called.
"""

from __future__ import annotations

import codecs
import encodings.aliases
import re
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from evserve.errors import HTTPError
from evserve.jsontext import MAX_DEPTH, JSONTextDecoder, nesting_exceeds
from evserve.negotiation import is_type, parse_content_type
from evserve.query import parse_query
from evserve.router import announces_body

if TYPE_CHECKING:
    from evserve.request import Request
    from evserve.response import Response

__all__ = ["json", "parse_limit", "raw", "text", "urlencoded"]

Next = Callable[..., None]
Middleware = Callable[["Request", "Response", Next], None]
TypeOption = str | Sequence[str] | Callable[["Request"], Any]
LimitOption = int | str

# JSON nested deeper than this is refused with 400 before json.loads sees it (SPEC section 8).
MAX_JSON_DEPTH = MAX_DEPTH

_LIMIT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?b)?\s*", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "pb": 1 << 50}

_GZIP_WBITS = 16 + zlib.MAX_WBITS
# The first slice of compressed input given to a decompressor; later slices of the same stream
# double. About the size of a small gzip member (20 bytes when empty).
_FIRST_SLICE = 64
_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate"})

_JSON_WHITESPACE = " \t\n\r"

_TOO_LARGE = "request entity too large"


# -- options ----------------------------------------------------------------------------------


def parse_limit(limit: LimitOption) -> int:
    """Return a body size limit in bytes.

    Args:
        limit: an int (bytes), or a string of a number and an optional unit, ``b``, ``kb``,
            ``mb``, ``gb`` (case-insensitive, 1024-based): ``"100kb"``, ``"1mb"``, ``"1.5MB"``.

    Raises:
        TypeError: ``limit`` is neither an int nor a str.
        ValueError: a negative int or a string in another form.
    """
    if isinstance(limit, bool) or not isinstance(limit, (int, str)):
        raise TypeError(f"limit must be an int or a str like '100kb', not {type(limit).__name__}")
    if isinstance(limit, int):
        if limit < 0:
            raise ValueError(f"limit must not be negative: {limit}")
        return limit
    match = _LIMIT.fullmatch(limit)
    if match is None:
        raise ValueError(f"invalid limit {limit!r}: use an int (bytes) or a string like '100kb'")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()])


def _type_matcher(kind: TypeOption) -> Callable[[Request], bool]:
    """Build the Content-Type test for a parser's ``type`` option."""
    if callable(kind):
        test = kind

        def match_callable(req: Request) -> bool:
            return bool(test(req))

        return match_callable
    types = [kind] if isinstance(kind, str) else list(kind)
    if not types or not all(isinstance(t, str) for t in types):
        raise TypeError("type must be a str, a non-empty list of str, or a callable(req) -> bool")

    def match(req: Request) -> bool:
        return is_type(req.headers.get("content-type"), types) is not None

    return match


# The charsets a body may be decoded from, by the name of their module in ``encodings``: text
# codecs whose decoders take any bytes in linear time and, with the "replace" error handler,
# give only Unicode scalar values (never a lone surrogate, which no response could encode):
# - the UTFs (UTF-7 is left out: its decoder turns "+2AA-" into a lone surrogate);
# - US-ASCII, ISO-8859-1 and the rest of ISO-8859, the Windows, KOI8, DOS (866) and Mac code
#   pages a browser may label a form with (the single-byte encodings of the WHATWG Encoding
#   Standard);
# - the Chinese, Japanese and Korean multi-byte encodings of that standard and their Windows
#   variants.
# Everything else Python can "decode" is refused: bytes-to-bytes codecs (base64, zlib, hex,
# rot13, ...), escape decoders that build any code point (unicode_escape, raw_unicode_escape),
# punycode and idna (quadratic in the input), "undefined", and the long tail of rare code pages.
_TEXT_CODEC_MODULES = (
    "utf_8", "utf_8_sig", "utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be",
    "ascii", "latin_1", *(f"iso8859_{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16)),
    *(f"cp125{n}" for n in range(9)), "cp874", "cp866", "koi8_r", "koi8_u", "mac_roman",
    "mac_cyrillic",
    "shift_jis", "cp932", "euc_jp", "iso2022_jp", "euc_kr", "cp949", "gb2312", "gbk", "gb18030",
    "big5", "big5hkscs", "cp950",
)  # fmt: skip
# Module name -> the codec's own name (``latin_1`` -> ``iso8859-1``), and every alias Python
# accepts for those modules. Resolving a client's charset against these tables never asks the
# codec registry, which would import a module for each new name and remember every unknown one
# for the life of the process.
_TEXT_CODECS = {module: codecs.lookup(module).name for module in _TEXT_CODEC_MODULES}
_CODEC_ALIASES = dict(encodings.aliases.aliases)
# Longer than any name of an allowed codec: refused without further work.
_MAX_CHARSET_NAME = 40
_PUNCTUATION = re.compile(r"[^a-z0-9.]+")
_UTF_CODECS = frozenset(
    _TEXT_CODECS[m] for m in ("utf_8", "utf_8_sig", "utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be")
)


def _text_codec(charset: str) -> str | None:
    """Python's name for ``charset`` when it is an allowed text charset, else None.

    ``"UTF8"``, ``"utf-8"`` and ``"utf_8"`` give ``"utf-8"``; ``"latin1"`` and ``"ISO-8859-1"``
    give ``"iso8859-1"``, ``"windows-1252"`` gives ``"cp1252"``. Names are read as
    ``codecs.lookup`` reads them (case and runs of punctuation do not matter), but only the
    charsets listed in this module are known. Linear in the length of ``charset``; never raises.
    """
    if len(charset) > _MAX_CHARSET_NAME or not (charset.isascii() and charset.isprintable()):
        return None
    # encodings.normalize_encoding: punctuation runs become one "_", ends are trimmed; then an
    # alias (tried again with dots as underscores) or else the module's own name.
    name = _PUNCTUATION.sub("_", charset.lower()).strip("_")
    module = _CODEC_ALIASES.get(name) or _CODEC_ALIASES.get(name.replace(".", "_")) or name
    return _TEXT_CODECS.get(module)


def _check_charset(name: str, option: str) -> str:
    codec = _text_codec(name)
    if codec is None:
        raise ValueError(f"unsupported {option} {name!r}: not a text charset this parser decodes")
    return codec


# -- reading the body ---------------------------------------------------------------------------


# type-is ``hasBody``: a body was announced, even an empty one (``Content-Length: 0``). The
# router uses the same test to skip these parsers (``needs_body``) for a request without one.
_has_body = announces_body


def _charset(req: Request) -> str | None:
    """The Content-Type's charset parameter, lowercased, or None."""
    content_type = req.headers.get("content-type")
    if not content_type or ";" not in content_type:
        return None
    return parse_content_type(content_type)[1].get("charset", "").lower() or None


def _unsupported_charset(charset: str) -> HTTPError:
    return HTTPError(415, f'unsupported charset "{charset[:64]}"')


def _read(req: Request, limit: int, inflate: bool) -> bytes:
    """The body with its Content-Encoding undone, at most ``limit`` bytes.

    Raises:
        HTTPError: 415 for an encoding other than gzip/deflate/identity (or any encoding when
            ``inflate`` is off), 413 over the limit, 400 for a corrupt compressed body.
    """
    data = req.raw_body
    encoding = req.headers.get("content-encoding")
    if encoding is not None:
        encoding = encoding.strip().lower()
        if encoding and encoding != "identity":
            if not inflate:
                raise HTTPError(415, "content encoding unsupported")
            if encoding not in _ENCODINGS:
                raise HTTPError(415, f'unsupported content encoding "{encoding[:64]}"')
            if data:
                return _inflate(data, encoding, limit)
    if len(data) > limit:
        raise HTTPError(413, _TOO_LARGE)
    return data


def _looks_like_zlib(data: bytes) -> bool:
    """Whether ``data`` starts with a zlib header (RFC 1950 section 2.2), not raw deflate."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """Decompress ``data``, never producing more than ``limit + 1`` bytes (zip-bomb safe).

    ``deflate`` accepts the zlib format (RFC 9110 section 8.4.1.2) and, as browsers do, raw
    deflate. Concatenated gzip members (RFC 1952 section 2.2) are inflated one after another,
    as gunzip does.

    Work and memory are linear in ``len(data)`` plus the output, whatever the structure: the
    input is fed through a zero-copy view in slices that double while a member goes on, so the
    copies zlib makes of input it did not consume (``unused_data`` at a member's end,
    ``unconsumed_tail`` when the output bound stops it) stay within the member's own size plus
    one slice, instead of the whole rest of the body for every one of thousands of tiny members.
    """
    if encoding == "deflate":
        wbits = zlib.MAX_WBITS if _looks_like_zlib(data) else -zlib.MAX_WBITS
    else:
        wbits = _GZIP_WBITS
    view = memoryview(data)
    total = len(data)
    parts: list[bytes] = []
    size = 0
    pos = 0
    try:
        decompressor = zlib.decompressobj(wbits)
        step = _FIRST_SLICE
        while True:
            end = min(pos + step, total)
            # max_length bounds the output of this call: reaching it means the limit is passed,
            # so nothing past limit + 1 bytes is ever inflated.
            piece = decompressor.decompress(view[pos:end], limit - size + 1)
            size += len(piece)
            if size > limit:
                raise HTTPError(413, _TOO_LARGE)
            if piece:
                parts.append(piece)
            # Below the output bound, zlib consumed the whole slice unless the stream ended.
            if decompressor.eof:
                pos = end - len(decompressor.unused_data)
                if wbits != _GZIP_WBITS or pos == total:
                    break  # raw and zlib deflate: whatever follows the stream is ignored
                decompressor = zlib.decompressobj(wbits)  # the next gzip member
                step = _FIRST_SLICE
                continue
            pos = end
            if pos == total:
                raise HTTPError(400, f"invalid {encoding} body: unexpected end of data")
            step *= 2
    except zlib.error as exc:
        reason = str(exc).rpartition(": ")[2] or "corrupt data"
        raise HTTPError(400, f"invalid {encoding} body: {reason}") from None
    return b"".join(parts)


# -- JSON ------------------------------------------------------------------------------------------


# Under this name the depth scan was defined here before it moved to evserve.jsontext.
_json_too_deep = nesting_exceeds


def _json_codec(charset: str | None) -> str:
    """The codec for a JSON body's charset; RFC 8259 JSON is UTF-8, Express takes any UTF.

    Raises:
        HTTPError: 415 for a charset that is not one of the allowed UTFs.
    """
    if charset is None or charset == "utf-8":
        return "utf-8-sig"  # a BOM is dropped, as iconv does
    codec = _text_codec(charset)
    if codec not in _UTF_CODECS:
        raise _unsupported_charset(charset)
    return "utf-8-sig" if codec == "utf-8" else codec


def _byte_order(codec: str, data: bytes) -> str:
    """``utf-16``/``utf-32`` without a BOM: the order the first (ASCII) character shows.

    A JSON text starts with an ASCII character, so a leading NUL byte means big-endian
    (RFC 4627 section 3); Python would otherwise assume the machine's order.
    """
    if codec == "utf-16" and data[:2] not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16-be" if data[:1] == b"\x00" else "utf-16-le"
    if codec == "utf-32" and data[:4] not in (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE):
        return "utf-32-be" if data[:1] == b"\x00" else "utf-32-le"
    return codec


def _parse_json(data: bytes, codec: str, strict: bool, decoder: JSONTextDecoder) -> Any:
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        raise HTTPError(400, f"invalid JSON: the body is not valid {codec.removesuffix('-sig')}") from None
    if strict:
        first = text.lstrip(_JSON_WHITESPACE)[:1]
        if first and first not in "{[":
            raise HTTPError(400, "invalid JSON: the top-level value must be an object or array")
    try:
        # A strict UTF-8 decode leaves no surrogate in text, so data may stand for its UTF-8.
        return decoder.decode(text, data if codec == "utf-8-sig" else None)
    except ValueError as exc:  # JSONTextError, or a ValueError raised by object_hook
        raise HTTPError(400, f"invalid JSON: {exc}") from None


def json(
    limit: LimitOption = "1mb",
    strict: bool = True,
    type: TypeOption = "application/json",
    inflate: bool = True,
    object_hook: Callable[[dict[str, Any]], Any] | None = None,
) -> Middleware:
    """Middleware that parses JSON bodies into ``req.body``.

    Args:
        limit: the largest (inflated) body accepted; bigger gives 413.
        strict: accept only an object or an array at the top level (else 400).
        type: the Content-Types to parse: a MIME type, an extension (``"json"``), a wildcard
            (``"application/*"``), a suffix (``"+json"``), a list of those, or
            ``callable(req) -> bool``.
        inflate: inflate gzip/deflate bodies; when False an encoded body gives 415.
        object_hook: called with every decoded object (dict), its result used instead: the
            Python counterpart of JSON.parse's ``reviver``.

    The charset must be a UTF (``utf-8`` by default, ``utf-16``/``utf-32`` accepted; not
    ``utf-7``), else 415. Decoding follows :mod:`evserve.jsontext`, so whatever is accepted can
    be sent back with ``res.json``: nesting deeper than 100 levels, ``NaN``/``Infinity``,
    numbers outside a float's range (``1e999``), integers of more than 4300 digits, unpaired
    surrogates (``"\\ud800"``), invalid UTF-8 and trailing data give 400 with a short reason
    (``invalid JSON: Expecting value at line 1 column 1``).
    """
    max_size = parse_limit(limit)
    matches = _type_matcher(type)
    decoder = JSONTextDecoder(object_hook=object_hook, max_depth=MAX_JSON_DEPTH)

    def json_parser(req: Request, res: Response, next_: Next) -> None:
        if req.body is not None or not _has_body(req) or not matches(req):
            next_()
            return
        try:
            codec = _json_codec(_charset(req))
            data = _read(req, max_size, inflate)
            req.body = _parse_json(data, _byte_order(codec, data), strict, decoder) if data else {}
        except HTTPError as exc:
            next_(exc)
            return
        next_()

    json_parser.needs_body = True  # type: ignore[attr-defined]  # see Router: skipped without a body
    return json_parser


# -- urlencoded, text, raw -----------------------------------------------------------------------


def urlencoded(
    limit: LimitOption = "1mb",
    type: TypeOption = "application/x-www-form-urlencoded",
    extended: bool = True,
    parameter_limit: int = 1000,
    depth: int = 5,
    inflate: bool = True,
) -> Middleware:
    """Middleware that parses HTML form bodies into ``req.body`` (a dict).

    Args:
        limit: the largest (inflated) body accepted; bigger gives 413.
        type: the Content-Types to parse (see :func:`json`).
        extended: nest ``a[b]=1`` and build lists with the query parser
            (``evserve.query.parse_query``); False keeps bracketed keys whole (depth 0), as
            body-parser 2 does.
        parameter_limit: pairs read at most; the rest is ignored (SPEC section 8: the query
            bounds are never an error; Express answers 413 instead).
        depth: the deepest bracket nesting honoured (extended only).
        inflate: inflate gzip/deflate bodies; when False an encoded body gives 415.

    Only the ``utf-8`` charset (by any of its names) is accepted (415 otherwise); invalid
    UTF-8 becomes U+FFFD.
    """
    max_size = parse_limit(limit)
    matches = _type_matcher(type)
    # body-parser 2 parses both with qs, the flat form at depth 0 ("a[b]" stays one key, "=x"
    # is skipped); Express 5's "simple" query parser is another thing (Node's querystring).
    keep = depth if extended else 0

    def parse(qs: str) -> dict[str, Any]:
        return parse_query(qs, depth=keep, parameter_limit=parameter_limit)

    def urlencoded_parser(req: Request, res: Response, next_: Next) -> None:
        if req.body is not None or not _has_body(req) or not matches(req):
            next_()
            return
        try:
            charset = _charset(req)
            if charset is not None and charset != "utf-8" and _text_codec(charset) != "utf-8":
                raise _unsupported_charset(charset)
            data = _read(req, max_size, inflate)
        except HTTPError as exc:
            next_(exc)
            return
        req.body = parse(data.decode("utf-8", "replace")) if data else {}
        next_()

    urlencoded_parser.needs_body = True  # type: ignore[attr-defined]  # see Router: skipped without a body
    return urlencoded_parser


def text(
    limit: LimitOption = "100kb",
    type: TypeOption = "text/plain",
    default_charset: str = "utf-8",
    inflate: bool = True,
) -> Middleware:
    """Middleware that decodes text bodies into ``req.body`` (a str).

    Args:
        limit: the largest (inflated) body accepted; bigger gives 413.
        type: the Content-Types to parse (see :func:`json`).
        default_charset: the charset when the Content-Type names none.
        inflate: inflate gzip/deflate bodies; when False an encoded body gives 415.

    The charset must be a UTF other than UTF-7, US-ASCII, ISO-8859-x, a Windows, KOI8, DOS 866
    or Mac code page, or a Chinese, Japanese or Korean encoding of the WHATWG Encoding Standard
    (by any name Python gives it); anything else, such as ``base64``, ``utf-7`` or
    ``unicode_escape``, is a 415. Undecodable bytes become U+FFFD, and a UTF-8 byte-order mark
    is dropped, as Express does, so the text never holds a lone surrogate.

    Raises:
        ValueError: ``default_charset`` is not one of those charsets.
    """
    max_size = parse_limit(limit)
    matches = _type_matcher(type)
    default_codec = _check_charset(default_charset, "default_charset")

    def text_parser(req: Request, res: Response, next_: Next) -> None:
        if req.body is not None or not _has_body(req) or not matches(req):
            next_()
            return
        try:
            charset = _charset(req)
            codec = default_codec if charset is None else _text_codec(charset)
            if codec is None:
                raise _unsupported_charset(charset or "")
            data = _read(req, max_size, inflate)
        except HTTPError as exc:
            next_(exc)
            return
        req.body = data.decode("utf-8-sig" if codec == "utf-8" else codec, "replace")
        next_()

    text_parser.needs_body = True  # type: ignore[attr-defined]  # see Router: skipped without a body
    return text_parser


def raw(
    limit: LimitOption = "100kb",
    type: TypeOption = "application/octet-stream",
    inflate: bool = True,
) -> Middleware:
    """Middleware that puts the (inflated) body bytes in ``req.body``.

    Args:
        limit: the largest (inflated) body accepted; bigger gives 413.
        type: the Content-Types to take (see :func:`json`); ``"*/*"`` takes everything.
        inflate: inflate gzip/deflate bodies; when False an encoded body gives 415.
    """
    max_size = parse_limit(limit)
    matches = _type_matcher(type)

    def raw_parser(req: Request, res: Response, next_: Next) -> None:
        if req.body is not None or not _has_body(req) or not matches(req):
            next_()
            return
        try:
            req.body = _read(req, max_size, inflate)
        except HTTPError as exc:
            next_(exc)
            return
        next_()

    raw_parser.needs_body = True  # type: ignore[attr-defined]  # see Router: skipped without a body
    return raw_parser
