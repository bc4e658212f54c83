"""Content negotiation (Accept, Content-Type matching) and MIME type lookup by extension."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from evserve.media_types import lookup_extension

__all__ = [
    "accepts",
    "accepts_charsets",
    "accepts_charsets_list",
    "accepts_encodings",
    "accepts_encodings_list",
    "accepts_languages",
    "accepts_languages_list",
    "accepts_list",
    "content_type_for",
    "is_type",
    "mime_type",
    "parse_content_type",
]

_DEFAULT_TYPE = "application/octet-stream"
# Types whose Content-Type gets "; charset=utf-8" besides text/*: those mime-db gives a UTF-8
# charset, as npm mime-types' contentType() (Express res.type, res.set) adds it.
_CHARSET_TYPES = frozenset(
    {"application/json", "application/javascript", "application/manifest+json"}
)
_HAS_CHARSET = re.compile(r";\s*charset\s*=", re.IGNORECASE)
# negotiator's simpleMediaTypeRegExp: type "/" subtype, then optional ";" parameters.
_MEDIA_RANGE = re.compile(r"\s*([^\s/;]+)/([^;\s]+)\s*(?:;(.*))?", re.DOTALL)
# A strict type/subtype (RFC 9110 section 8.3.1 tokens), for Content-Type in is_type.
_MIME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+")
_Q_VALUE = re.compile(r"\s*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# Accept headers longer than this are parsed every time rather than cached.
_CACHED_HEADER_SIZE = 1024


def _lookup(ext_or_type: str) -> str | None:
    """Return the media type of an extension, ".ext" or file name, or ``None`` when unknown.

    Only the built-in table (:mod:`evserve.media_types`) is consulted, never the platform's, so
    the answer is the same on every system and Python version.
    """
    ext = ext_or_type.rpartition(".")[2].strip().lower()
    return lookup_extension(ext) if ext else None


def mime_type(ext_or_type: str) -> str:
    """Return the MIME type for an extension, like Express ``res.type`` without the charset.

    Extensions are looked up in evserve's built-in table (:mod:`evserve.media_types`, mime-db's
    values as Express 5 resolves them), never in the platform's MIME database.

    Args:
        ext_or_type: ``"json"``, ``".json"``, a file name (``"a.json"``), or a MIME type; a value
            containing "/" is returned unchanged.

    Returns:
        For example ``"application/json"``, ``"text/html"``, ``"text/plain"`` (``"txt"``,
        ``"text"``); ``"application/octet-stream"`` for anything unknown.
    """
    if "/" in ext_or_type:
        return ext_or_type
    return _lookup(ext_or_type) or _DEFAULT_TYPE


def content_type_for(ext_or_type: str) -> str:
    """Return a Content-Type value for an extension or MIME type, as Express ``res.type`` sets it.

    Like :func:`mime_type`, adding ``"; charset=utf-8"`` to ``text/*``, ``application/json``,
    ``application/javascript`` and ``application/manifest+json`` (the types mime-db gives a
    UTF-8 charset) unless the value already names a charset.

    Args:
        ext_or_type: an extension, a file name or a MIME type (possibly with parameters).

    Returns:
        For example ``"application/json; charset=utf-8"`` or ``"image/png"``.
    """
    value = mime_type(ext_or_type)
    if _HAS_CHARSET.search(value):
        return value
    base = value.partition(";")[0].strip().lower()
    if base.startswith("text/") or base in _CHARSET_TYPES:
        return f"{value}; charset=utf-8"
    return value


def _split_unquoted(text: str, sep: str) -> list[str]:
    """Split on ``sep`` except inside double quotes (negotiator's split, in linear time)."""
    pieces = text.split(sep)
    if '"' not in text:
        return pieces
    joined: list[str] = []
    pending: list[str] = []
    for piece in pieces:
        pending.append(piece)
        if piece.count('"') % 2:
            if len(pending) > 1:  # this piece closes the quoted string the first one opened
                joined.append(sep.join(pending))
                pending = []
        elif len(pending) == 1:
            joined.append(piece)
            pending = []
    if pending:
        joined.append(sep.join(pending))
    return joined


class _MediaRange(NamedTuple):
    type: str  # lowercased, for matching
    subtype: str
    params: tuple[tuple[str, str], ...]
    q: float
    position: int
    text: str  # "type/subtype" as written, as negotiator lists it


def _parse_q(text: str) -> float:
    """JavaScript ``parseFloat`` on a q-value: a leading number, else 0 (which excludes)."""
    match = _Q_VALUE.match(text)
    if match is None:
        return 0.0
    try:
        return float(match.group(1))
    except ValueError:
        return 0.0


def _parse_media_range(text: str, index: int) -> _MediaRange | None:
    """negotiator ``parseMediaType``: lowercased type and subtype, params up to ``q``."""
    match = _MEDIA_RANGE.fullmatch(text)
    if match is None:
        return None
    q = 1.0
    params: list[tuple[str, str]] = []
    if match.group(3):
        for item in _split_unquoted(match.group(3), ";"):
            key, eq, value = item.strip().partition("=")
            key = key.lower()
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            if key == "q":
                q = _parse_q(value) if eq else 0.0
                break  # what follows q are accept-extensions, not media type parameters
            params.append((key, value))
    kind, subtype = match.group(1), match.group(2)
    return _MediaRange(kind.lower(), subtype.lower(), tuple(params), q, index, f"{kind}/{subtype}")


def _parse_accept_uncached(header: str) -> tuple[_MediaRange, ...]:
    ranges: list[_MediaRange] = []
    for index, item in enumerate(_split_unquoted(header, ",")):
        parsed = _parse_media_range(item.strip(), index)
        if parsed is not None:
            ranges.append(parsed)
    return tuple(ranges)


_parse_accept_cached = lru_cache(maxsize=256)(_parse_accept_uncached)


def _parse_accept(header: str) -> tuple[_MediaRange, ...]:
    if len(header) > _CACHED_HEADER_SIZE:
        return _parse_accept_uncached(header)
    return _parse_accept_cached(header)


@lru_cache(maxsize=256)
def _parse_offer(offer: str) -> _MediaRange | None:
    """The media type an offer stands for (an extension is looked up), or ``None``."""
    mime = offer if "/" in offer else _lookup(offer)
    if mime is None:
        return None
    return _parse_media_range(mime, 0)


def _specificity(offer: _MediaRange, spec: _MediaRange) -> int:
    """negotiator ``specify``: 4 type, 2 subtype, 1 params matched exactly; -1 for no match.

    A wildcard on either side matches without counting as specific, so an offer of
    ``"text/*"`` answers ``Accept: text/html``, and ``Accept: */*`` ranks all offers alike.
    """
    s = 0
    if spec.type == "*" or offer.type == "*":
        pass
    elif spec.type == offer.type:
        s |= 4
    else:
        return -1
    if spec.subtype == "*" or offer.subtype == "*":
        pass
    elif spec.subtype == offer.subtype:
        s |= 2
    else:
        return -1
    if spec.params:
        offered = dict(offer.params)
        for key, value in spec.params:
            if value != "*" and value.lower() != offered.get(key, "").lower():
                return -1
        s |= 1
    return s


def accepts(accept_header: str | None, offers: Sequence[str]) -> str | None:
    """Pick the offer the client prefers, like Express ``req.accepts`` (npm accepts/negotiator).

    Offers are extensions (``"json"``, ``"html"``) or MIME types, wildcards allowed. Each offer
    takes its most specific matching Accept entry; offers whose entry has q=0, or that match
    nothing, are out. The winner has the highest q, then the most specific match (type, subtype,
    parameters), then the entry that comes first in the header, then the earlier offer.

    Args:
        accept_header: the Accept header, or ``None`` when absent.
        offers: what the handler can produce, in its own order of preference.

    Returns:
        The chosen offer exactly as given; the first offer when there is no (or an empty) Accept
        header; ``None`` when nothing is acceptable or ``offers`` is empty. Never raises.
    """
    if not offers:
        return None
    if not accept_header:
        return offers[0]
    specs = _parse_accept(accept_header)
    best: tuple[float, int, int, int] | None = None
    chosen: str | None = None
    for offer_index, offer in enumerate(offers):
        parsed = _parse_offer(offer)
        if parsed is None:
            continue
        # negotiator getMediaTypePriority: the most specific entry, then highest q, then latest.
        s_best, q_best, o_best = -1, 0.0, -1
        for spec in specs:
            s = _specificity(parsed, spec)
            if s < 0:
                continue
            if s > s_best or (s == s_best and spec.q >= q_best):
                s_best, q_best, o_best = s, spec.q, spec.position
        if s_best < 0 or not q_best > 0:
            continue
        rank = (-q_best, -s_best, o_best, offer_index)
        if best is None or rank < best:
            best, chosen = rank, offer
    return chosen


def accepts_list(accept_header: str | None) -> list[str]:
    """Return the acceptable media types in the client's order of preference.

    negotiator's ``mediaTypes()`` (Express ``req.accepts()`` with no arguments): sorted by q
    (highest first), then by position in the header; q=0 entries are left out.

    Args:
        accept_header: the Accept header, or ``None`` when absent (which means ``*/*``).

    Returns:
        ``type/subtype`` strings as written in the header, without parameters: ``["*/*"]`` for
        ``None``, ``[]`` for an empty header. Never raises.
    """
    if accept_header is None:
        return ["*/*"]
    specs = [spec for spec in _parse_accept(accept_header) if spec.q > 0]
    specs.sort(key=lambda spec: (-spec.q, spec.position))
    return [spec.text for spec in specs]


# negotiator's Accept-Charset / Accept-Encoding entry, and its Accept-Language one ("en-US":
# prefix "en", the rest after the first "-").
_TOKEN_ENTRY = re.compile(r"\s*([^\s;]+)\s*(?:;(.*))?")
_LANGUAGE_ENTRY = re.compile(r"\s*([^\s;-]+)(?:-([^\s;]+))?\s*(?:;(.*))?")


class _Token(NamedTuple):
    full: str  # lowercased: "utf-8", "gzip", "en-us", "*"
    prefix: str  # a language's primary tag ("en"); the whole token for charsets and encodings
    q: float
    position: int
    text: str = ""  # as written in the header ("en-US"), for the lists


def _token_q(params: str | None) -> float:
    """The q of an Accept-* entry's parameters: 1 when absent, JavaScript ``parseFloat`` else.

    Unlike negotiator, "q" is found whatever its case and spacing (RFC 9110 section 12.4.2:
    ``OWS ";" OWS "q=" qvalue``, and the name is case-insensitive).
    """
    if params:
        for param in params.split(";"):
            key, eq, value = param.strip().partition("=")
            if key.lower() == "q":
                return _parse_q(value) if eq else 0.0
    return 1.0


def _parse_token(text: str, position: int, *, language: bool) -> _Token | None:
    if language:
        match = _LANGUAGE_ENTRY.fullmatch(text)
        if match is None:
            return None
        written = f"{match.group(1)}-{match.group(2)}" if match.group(2) else match.group(1)
        return _Token(written.lower(), match.group(1).lower(), _token_q(match.group(3)), position,
                      written)
    match = _TOKEN_ENTRY.fullmatch(text)
    if match is None:
        return None
    written = match.group(1)
    full = written.lower()
    return _Token(full, full, _token_q(match.group(2)), position, written)


def _parse_tokens(header: str, *, language: bool = False) -> list[_Token]:
    """The well-formed entries of an Accept-Charset/-Encoding/-Language header, q=0 ones too."""
    tokens: list[_Token] = []
    for position, item in enumerate(header.split(",")):
        token = _parse_token(item.strip(), position, language=language)
        if token is not None:
            tokens.append(token)
    return tokens


def _token_specificity(offer: _Token, spec: _Token) -> int:
    """negotiator ``specify`` for charsets and encodings: 1 exact, 0 ``*``, -1 no match."""
    if spec.full == offer.full:
        return 1
    return 0 if spec.full == "*" else -1


def _language_specificity(offer: _Token, spec: _Token) -> int:
    """negotiator ``specify`` for languages, -1 for no match.

    4: the same tag; 2: the entry's primary tag is the offer (entry "en-US", offer "en");
    1: the entry is the offer's primary tag (entry "en", offer "en-US"); 0: the entry is ``*``.
    """
    if spec.full == offer.full:
        return 4
    if spec.prefix == offer.full:
        return 2
    if spec.full == offer.prefix:
        return 1
    return 0 if spec.full == "*" else -1


def _choose_token(
    specs: Sequence[_Token],
    offers: Sequence[str],
    *,
    language: bool = False,
) -> str | None:
    """negotiator's priority rules for a token list, returning the winning offer as given.

    Each offer takes the entry that matches it most specifically (then the highest q, then the
    last such entry), so that entry's q decides: ``en;q=0, *`` refuses "en". Offers with q=0 are
    out; the winner has the highest q, then the most specific match, then the entry earliest in
    the header, then the earliest offer.
    """
    specify = _language_specificity if language else _token_specificity
    best: tuple[float, int, int, int] | None = None
    chosen: str | None = None
    for offer_index, offer in enumerate(offers):
        if language:
            parsed = _parse_token(offer, 0, language=True)
            if parsed is None:
                continue
        else:
            parsed = _Token(offer.lower(), offer.lower(), 1.0, 0)
        found: tuple[int, float, int] | None = None  # (specificity, q, position), the maximum
        for spec in specs:
            s = specify(parsed, spec)
            if s >= 0 and (found is None or (s, spec.q, spec.position) > found):
                found = (s, spec.q, spec.position)
        if found is None or not found[1] > 0:
            continue
        rank = (-found[1], -found[0], found[2], offer_index)
        if best is None or rank < best:
            best, chosen = rank, offer
    return chosen


def accepts_charsets(accept_charset: str | None, offers: Sequence[str]) -> str | None:
    """Pick the charset the client prefers, like Express ``req.acceptsCharsets`` (negotiator).

    Comparison ignores case. An absent header means ``*``; an empty one accepts nothing. Each
    offer's q is that of its own entry when there is one, else that of ``*``: with
    ``utf-8;q=0.5, *``, ``("utf-8", "iso-8859-1")`` gives ``"iso-8859-1"``. Ties go to the
    exact match, then to the entry earlier in the header, then to the earlier offer.

    Args:
        accept_charset: the Accept-Charset header, or ``None`` when absent.
        offers: the charsets the handler can produce, in its own order of preference.

    Returns:
        The chosen offer exactly as given, or ``None`` when none is acceptable or ``offers`` is
        empty. Never raises.
    """
    if not offers:
        return None
    return _choose_token(_parse_tokens("*" if accept_charset is None else accept_charset), offers)


def accepts_encodings(accept_encoding: str | None, offers: Sequence[str]) -> str | None:
    """Pick the content coding the client prefers, like Express ``req.acceptsEncodings``.

    The rules of :func:`accepts_charsets`, plus negotiator's implicit ``identity``: unless an
    entry names ``identity`` or ``*``, identity is acceptable with the lowest q in the header
    (q=0 entries not counting), ranked after every entry. So an absent or empty header accepts
    ``"identity"`` only (negotiator; RFC 9110 section 12.5.3 would accept any coding), and
    ``identity;q=0`` or ``*;q=0`` refuses it.

    Args:
        accept_encoding: the Accept-Encoding header, or ``None`` when absent.
        offers: the codings the handler can produce (``"gzip"``, ``"br"``, ``"identity"``...).

    Returns:
        The chosen offer exactly as given, or ``None`` when none is acceptable or ``offers`` is
        empty. Never raises.
    """
    if not offers:
        return None
    return _choose_token(_encoding_specs(accept_encoding), offers)


def _encoding_specs(accept_encoding: str | None) -> list[_Token]:
    """The Accept-Encoding entries plus negotiator's implicit ``identity`` where it applies."""
    header = accept_encoding or ""
    specs = _parse_tokens(header)
    if not any(spec.full in ("identity", "*") for spec in specs):
        lowest = min([spec.q or 1.0 for spec in specs], default=1.0)
        specs.append(_Token("identity", "identity", min(lowest, 1.0), header.count(",") + 1,
                            "identity"))
    return specs


def _preference_list(specs: Sequence[_Token]) -> list[str]:
    """negotiator's list with no offers: q>0 entries by q (highest first), then position."""
    kept = sorted((spec for spec in specs if spec.q > 0), key=lambda spec: (-spec.q, spec.position))
    return [spec.text for spec in kept]


def accepts_charsets_list(accept_charset: str | None) -> list[str]:
    """Return the acceptable charsets in the client's order of preference.

    negotiator's ``charsets()`` (Express ``req.acceptsCharsets()`` with no arguments).

    Args:
        accept_charset: the Accept-Charset header, or ``None`` when absent (which means ``*``).

    Returns:
        The charsets as written, by q (highest first) then position, q=0 ones left out:
        ``["*"]`` for ``None``, ``[]`` for an empty header. Never raises.
    """
    return _preference_list(_parse_tokens("*" if accept_charset is None else accept_charset))


def accepts_encodings_list(accept_encoding: str | None) -> list[str]:
    """Return the acceptable content codings in the client's order of preference.

    negotiator's ``encodings()`` (Express ``req.acceptsEncodings()`` with no arguments),
    ``identity`` included, as in :func:`accepts_encodings`, unless the header names it or ``*``.

    Args:
        accept_encoding: the Accept-Encoding header, or ``None`` when absent.

    Returns:
        The codings as written, by q (highest first) then position, q=0 ones left out:
        ``["identity"]`` for ``None`` or an empty header. Never raises.
    """
    return _preference_list(_encoding_specs(accept_encoding))


def accepts_languages_list(accept_language: str | None) -> list[str]:
    """Return the acceptable languages in the client's order of preference.

    negotiator's ``languages()`` (Express ``req.acceptsLanguages()`` with no arguments).

    Args:
        accept_language: the Accept-Language header, or ``None`` when absent (which means
            ``*``).

    Returns:
        The language tags as written, by q (highest first) then position, q=0 ones left out:
        ``["*"]`` for ``None``, ``[]`` for an empty header. Never raises.
    """
    header = "*" if accept_language is None else accept_language
    return _preference_list(_parse_tokens(header, language=True))


def accepts_languages(accept_language: str | None, offers: Sequence[str]) -> str | None:
    """Pick the language the client prefers, like Express ``req.acceptsLanguages`` (negotiator).

    Tags compare without case. An entry matches an offer exactly, by its primary tag (entry
    ``en-US`` matches offer ``"en"``, and entry ``en`` offer ``"en-US"``, each less
    specifically), or as ``*``; the most specific entry sets the offer's q, so with
    ``en-US, en;q=0.8`` the offers ``("en", "en-US")`` give ``"en-US"`` and ``en;q=0, *``
    refuses ``"en"``. Ties go to the more specific match, then to the entry earlier in the
    header, then to the earlier offer. An absent header means ``*``; an empty one accepts
    nothing.

    Args:
        accept_language: the Accept-Language header, or ``None`` when absent.
        offers: the languages the handler can produce, in its own order of preference.

    Returns:
        The chosen offer exactly as given, or ``None`` when none is acceptable or ``offers`` is
        empty. Never raises.
    """
    if not offers:
        return None
    header = "*" if accept_language is None else accept_language
    return _choose_token(_parse_tokens(header, language=True), offers, language=True)


def _normalize_expected(kind: str) -> str | None:
    """type-is ``normalize``: shorthands, "+suffix" and extensions to a bare MIME type."""
    if kind == "urlencoded":
        return "application/x-www-form-urlencoded"
    if kind == "multipart":
        return "multipart/*"
    if kind.startswith("+"):
        return "*/*" + kind.lower()
    if "/" in kind:
        return kind.partition(";")[0].strip().lower()
    return _lookup(kind)


def _mime_match(expected: str, actual: str) -> bool:
    """type-is ``mimeMatch``: wildcards ``*/*``, ``text/*`` and suffixes ``application/*+json``."""
    exp_type, sep, exp_sub = expected.partition("/")
    if not sep or "/" in exp_sub:
        return False
    act_type, _, act_sub = actual.partition("/")
    if exp_type != "*" and exp_type != act_type:
        return False
    if exp_sub.startswith("*+"):
        suffix = exp_sub[1:]
        return len(act_sub) >= len(suffix) and act_sub.endswith(suffix)
    return exp_sub in ("*", act_sub)


def is_type(content_type: str | None, types: Sequence[str]) -> str | None:
    """Match a Content-Type against types, like Express ``req.is`` (npm type-is).

    Parameters are ignored on both sides and comparison ignores case. A type may be an extension
    (``"json"``, ``"html"``), ``"urlencoded"`` (application/x-www-form-urlencoded),
    ``"multipart"`` (multipart/*), a suffix (``"+json"``), a MIME type, or a wildcard
    (``"*/*"``, ``"text/*"``, ``"application/*+json"``).

    Args:
        content_type: the request's Content-Type header, or ``None``.
        types: the candidates, tried in order.

    Returns:
        The first matching candidate exactly as given (also for wildcards, unlike type-is, which
        returns the actual type for them); with no candidates, the request's bare lowercased
        MIME type (Express ``req.is()``); ``None`` when there is no valid Content-Type or no
        match. Never raises.
    """
    if not content_type:
        return None
    actual = content_type.partition(";")[0].strip().lower()
    if not _MIME.fullmatch(actual):
        return None
    if not types:
        return actual
    for kind in types:
        expected = _normalize_expected(kind)
        if expected is not None and _mime_match(expected, actual):
            return kind
    return None


def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type (or similar) header into its MIME type and parameters, leniently.

    Args:
        value: the header value, or ``None``.

    Returns:
        ``(mime, params)``: the part before the first ";" stripped and lowercased (``""`` when
        absent), and parameter names lowercased to values, quoted strings unquoted (backslash
        escapes resolved). Malformed parameters are skipped; the first of a repeated name wins.
        Never raises.
    """
    if not value:
        return "", {}
    pieces = _split_unquoted(value, ";")
    mime = pieces[0].strip().lower()
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        key, eq, raw = piece.partition("=")
        key = key.strip().lower()
        if not eq or not key or key in params:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
        params[key] = raw
    return mime, params
