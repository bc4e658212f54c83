"""Generators of HTTP/1.1 request streams and parser drivers, shared by tests/unit and fuzz/.

A generated request is a ``GenRequest``: what was put on the wire (``raw``) and what the parser
must report for it. ``expected_events`` turns a pipelined list of them into the normalised event
list that ``parse_stream`` produces from the bytes, so properties compare plain tuples.

Every generator takes a ``Choices`` object, the source of its decisions: ``Drawn`` (hypothesis
draws, so that tests shrink failures to small examples) or ``Seeded`` (a ``random.Random``,
about 20 times faster, for fuzzing at scale). The hypothesis strategies are ``requests``,
``request_streams`` and ``mutated_streams``; ``seeded`` turns a builder into a strategy of
seeds, each building one example.

Normalised events:
    ``("head", method, target, version, headers, keep_alive, expect_continue, content_length,
    chunked)`` with ``headers`` a tuple of ``(lowercased name, value)``;
    ``("body", data)`` with consecutive body chunks concatenated (so splits do not matter);
    ``("end", trailers)``.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

from evserve.errors import ParseError
from evserve.parser import BodyChunk, EndOfMessage, RequestHead, RequestParser

__all__ = [
    "Choices",
    "Drawn",
    "GenRequest",
    "Outcome",
    "Seeded",
    "arbitrary_splits",
    "build_request",
    "build_stream",
    "choose_splits",
    "expected_events",
    "mutate",
    "mutated_streams",
    "normalise",
    "parse_stream",
    "request_streams",
    "requests",
    "seeded",
    "split_at",
]

T = TypeVar("T")
Event = tuple[object, ...]

# -- running the parser -----------------------------------------------------------------------


@dataclass
class Outcome:
    """What the parser made of a stream: normalised events, then the error status, if any."""

    events: list[Event]
    error: int | None = None
    reason: str | None = None


def normalise(events: Iterable[RequestHead | BodyChunk | EndOfMessage]) -> list[Event]:
    """Turn parser events into comparable tuples, concatenating consecutive body chunks."""
    out: list[Event] = []
    body = bytearray()
    for event in events:
        if isinstance(event, BodyChunk):
            body += event.data
            continue
        if body:
            out.append(("body", bytes(body)))
            body.clear()
        if isinstance(event, RequestHead):
            out.append(
                (
                    "head",
                    event.method,
                    event.target,
                    event.http_version,
                    tuple(event.headers.items()),
                    event.keep_alive,
                    event.expect_continue,
                    event.content_length,
                    event.chunked,
                )
            )
        else:
            out.append(("end", tuple(event.trailers)))
    if body:
        out.append(("body", bytes(body)))
    return out


def parse_stream(
    chunks: Iterable[bytes], *, eof: bool = True, parser: RequestParser | None = None
) -> Outcome:
    """Feed ``chunks`` one ``receive_data`` each, draining events after each, then EOF.

    Any exception other than ``ParseError`` propagates: that is the bug the properties look for.
    """
    p = parser if parser is not None else RequestParser()
    raw: list[RequestHead | BodyChunk | EndOfMessage] = []
    try:
        for chunk in chunks:
            if not chunk:
                continue
            p.receive_data(chunk)
            while (event := p.next_event()) is not None:
                raw.append(event)
        if eof:
            p.receive_data(b"")
            while (event := p.next_event()) is not None:
                raw.append(event)
    except ParseError as exc:
        if not isinstance(exc.status, int) or not 400 <= exc.status <= 599:
            raise AssertionError(f"ParseError with a non-error status {exc.status!r}") from exc
        # The error is sticky: asking again gives the same one, never an event.
        try:
            p.next_event()
        except ParseError as again:
            if again is not exc:
                raise AssertionError("a second, different ParseError after the first") from None
        else:
            raise AssertionError("next_event() returned after a ParseError")
        return Outcome(normalise(raw), exc.status, exc.reason)
    return Outcome(normalise(raw))


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates and out-of-range ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    pieces = []
    start = 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


# -- sources of choices -----------------------------------------------------------------------


class Choices(Protocol):
    """The decisions a generator makes; sizes are inclusive bounds."""

    def boolean(self) -> bool: ...

    def integer(self, low: int, high: int) -> int: ...  # constant bounds only

    def index(self, n: int) -> int: ...  # 0 <= i < n, for bounds that depend on the data

    def choice(self, items: Sequence[T]) -> T: ...  # items: a module-level constant

    def binary(self, max_size: int, min_size: int = 0) -> bytes: ...

    def chars(self, alphabet: Sequence[str], max_size: int, min_size: int = 0) -> str: ...

    def permutation(self, n: int) -> list[int]: ...


_cache: dict[tuple[Any, ...], st.SearchStrategy[Any]] = {}


def _cached(key: tuple[Any, ...], make: Callable[[], st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    # Building a strategy costs more than drawing from it, so each is built once.
    strategy = _cache.get(key)
    if strategy is None:
        strategy = _cache[key] = make()
    return strategy


def chars_from(alphabet: Sequence[str], *, min_size: int = 0, max_size: int) -> st.SearchStrategy[str]:
    """Strings of ``alphabet`` items, drawn as one byte string (much faster than ``st.text``,
    which draws each character separately) and mapped byte by byte."""
    table = [alphabet[i % len(alphabet)] for i in range(256)]
    return st.binary(min_size=min_size, max_size=max_size).map(lambda b: "".join([table[x] for x in b]))


_INDEX = st.integers(0, 1 << 16)


class Drawn:
    """Choices drawn by hypothesis (shrinkable)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def boolean(self) -> bool:
        return self.draw(_cached(("bool",), st.booleans))

    def integer(self, low: int, high: int) -> int:
        return self.draw(_cached(("int", low, high), lambda: st.integers(low, high)))

    def index(self, n: int) -> int:
        return self.draw(_INDEX) % n

    def choice(self, items: Sequence[T]) -> T:
        # keyed by identity: items must be a module-level constant
        return self.draw(_cached(("choice", id(items)), lambda: st.sampled_from(items)))  # type: ignore[no-any-return]

    def binary(self, max_size: int, min_size: int = 0) -> bytes:
        return self.draw(_cached(("binary", min_size, max_size), lambda: st.binary(min_size=min_size, max_size=max_size)))

    def chars(self, alphabet: Sequence[str], max_size: int, min_size: int = 0) -> str:
        key = ("chars", id(alphabet), min_size, max_size)  # alphabet: a module-level constant
        return self.draw(_cached(key, lambda: chars_from(alphabet, min_size=min_size, max_size=max_size)))

    def permutation(self, n: int) -> list[int]:
        return list(self.draw(_cached(("perm", n), lambda: st.permutations(range(n)))))


class Seeded(random.Random):
    """Choices from a seeded ``random.Random`` (fast; sizes lean to the small and the bounds)."""

    def boolean(self) -> bool:
        return self.random() < 0.5

    def integer(self, low: int, high: int) -> int:
        return self.randint(low, high)

    def index(self, n: int) -> int:
        return self.randrange(n)

    def _size(self, low: int, high: int) -> int:
        r = self.random()
        if r < 0.1:
            return low
        if r < 0.15:
            return high
        return min(high, low + int(self.expovariate(4 / (high - low + 1))))

    def binary(self, max_size: int, min_size: int = 0) -> bytes:
        return self.randbytes(self._size(min_size, max_size))

    def chars(self, alphabet: Sequence[str], max_size: int, min_size: int = 0) -> str:
        return "".join(self.choices(alphabet, k=self._size(min_size, max_size)))

    def permutation(self, n: int) -> list[int]:
        return self.sample(range(n), n)


def seeded(build: Callable[[Seeded], T]) -> st.SearchStrategy[T]:
    """A strategy of ``build(Seeded(seed))`` for seeds drawn by hypothesis."""
    return st.integers(0, (1 << 64) - 1).map(lambda seed: build(Seeded(seed)))


# -- generated requests -----------------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
UNRESERVED = string.ascii_letters + string.digits + "-._~"
SUB_DELIMS = "!$&'()*+,;="
PCHAR = UNRESERVED + SUB_DELIMS + ":@"
# field-vchar (VCHAR / obs-text); SP and HTAB only between them
FIELD_VCHAR = "".join(chr(c) for c in range(0x21, 0x7F)) + "".join(chr(c) for c in range(0x80, 0x100))

# Names the generator adds itself, with their framing or connection meaning, and "upgrade",
# which h11 treats as a protocol switch proposal.
SPECIAL_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade"})


@dataclass
class GenRequest:
    """One generated request: its bytes and what the parser must say about it."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]  # expected: lowercased names, OWS-stripped values
    body: bytes
    content_length: int | None
    chunked: bool
    keep_alive: bool
    expect_continue: bool
    trailers: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes = b""
    trailer_section: bytes = b""  # the trailer lines as sent, each with its CRLF

    def events(self) -> list[Event]:
        out: list[Event] = [
            (
                "head",
                self.method,
                self.target,
                self.version,
                tuple(self.headers),
                self.keep_alive,
                self.expect_continue,
                self.content_length,
                self.chunked,
            )
        ]
        if self.body:
            out.append(("body", self.body))
        out.append(("end", tuple(self.trailers)))
        return out


def expected_events(reqs: Sequence[GenRequest]) -> list[Event]:
    """Events for pipelined ``reqs``; a request that closes the connection ends the list."""
    out: list[Event] = []
    for req in reqs:
        out.extend(req.events())
        if not req.keep_alive:
            break
    return out


def _cases(name: str) -> tuple[str, ...]:
    return (name, name.lower(), name.upper(), name.title())


_VERSIONS = ("1.1", "1.1", "1.1", "1.0")
_FORMS = ("origin",) * 8 + ("absolute", "asterisk", "authority")
_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
_ABSOLUTE_METHODS = ("GET", "POST", "DELETE")
_SCHEMES = ("http", "https", "HTTP", "coap+tcp")
_ESCAPES = ("%20", "%2F", "%2f", "%25", "%00", "%0D%0A", "%7E", "%C3%A9", "%e2%82%ac", "%FF", "%3F", "%23")
_PATH_PIECES = (*PCHAR, *_ESCAPES, "/", "/", "/", "..", ".")
_QUERY_PIECES = (*_PATH_PIECES, "?", "=", "&", "+", "a=1", "&b[]=2")
_HOSTS = (
    "example.com",
    "www.example.org",
    "localhost",
    "a",
    "0",
    "127.0.0.1",
    "10.0.0.255",
    "[::1]",
    "[2001:db8::7]",
    "[fe80::1:2:3]",
    "[::ffff:1.2.3.4]",
    "xn--bcher-kva.example",
    "my_host.internal",
    "sub.domain-with-dash.example",
)
_REG_NAME = string.ascii_letters + string.digits + "-._~!$&'()*+,;="
_HEADER_NAMES = (
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "User-Agent",
    "Cookie",
    "Referer",
    "Cache-Control",
    "X-Request-Id",
    "Content-Type",
    "Authorization",
    "If-None-Match",
)
_VALUE_CHARS = FIELD_VCHAR + " \t" * 8
_HOST_NAMES = _cases("Host")
_CONNECTION_NAMES = _cases("Connection")
_CONTENT_LENGTH_NAMES = _cases("Content-Length")
_CONNECTION_VALUES = ("close", "Close", "foo, close", "keep-alive", "Keep-Alive", "x-opt", "te")
_CONNECTION_VALUES_H11_10 = ("close", "x-opt")  # h11 never keeps an HTTP/1.0 connection open
_EXPECT_VALUES = ("100-continue", "100-Continue")
_ZEROS = ("0", "00", "000")
_FRAMINGS = ("length", "chunked")
_CHUNKED_VALUES = ("chunked", "Chunked", "CHUNKED")
_SIZE_FORMATS = ("%x", "%X", "0%x")
_EXTENSIONS = (
    ";a",
    ";name=value",
    ";n=0",
    ';q="quoted value"',
    ';q="with \\" and ;="',
    ';e=""',
    "; a",
    ";\tb\t=\tc",
    "; x = y",
    ";x;y;z",
    ";!#$%&'*+-.^_`|~=tok",
)
_BWS = ("", "", " ", "\t ")
_BLANK_LINES = (b"\r\n", b"\r\n\r\n")
_PLAIN = "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ !#*-._~"


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


def origin_form(c: Choices) -> str:
    """``absolute-path [ "?" query ]`` with percent-escapes (RFC 9112 section 3.2.1)."""
    target = "/" + c.chars(_PATH_PIECES, 24)
    if c.boolean():
        target += "?" + c.chars(_QUERY_PIECES, 16)
    return target


def host(c: Choices) -> str:
    """A valid Host value (RFC 9110 section 7.2: uri-host [ ":" port ])."""
    name = c.choice(_HOSTS) if c.boolean() else c.chars(_REG_NAME, 12, 1)
    return name + (f":{c.integer(0, 65535)}" if c.boolean() else "")


def header_name(c: Choices) -> str:
    name = c.choice(_HEADER_NAMES) if c.boolean() else c.chars(TCHAR, 10, 1)
    return "X-" + name if name.lower() in SPECIAL_HEADERS else name


def field_value(c: Choices) -> tuple[str, str]:
    """``(as sent, as parsed)``: leading and trailing OWS is not part of a field value."""
    sent = c.chars(_VALUE_CHARS, 30)
    return sent, sent.strip(" \t")


def chunk_extension(c: Choices, h11_compatible: bool) -> str:
    """``*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`` (RFC 9112 7.1.1);
    h11 refuses whitespace between the chunk size and the first ";"."""
    count = c.integer(0, 2)
    out = "".join(c.choice(_EXTENSIONS) for _ in range(count))
    if out and not h11_compatible:
        out = c.choice(_BWS) + out
    return out


def build_request(c: Choices, h11_compatible: bool = False) -> GenRequest:
    """One valid request, with its expected parse.

    Args:
        h11_compatible: avoid what h11 treats differently from RFC 9112 and SPEC section 7
            (see tests/unit/test_h11_differential.py): CONNECT and the authority-form, the
            asterisk-form, leading empty lines, Connection: keep-alive on HTTP/1.0, and space
            before a chunk extension. Bodies then hold no CR, LF, control character or hex
            digit, so that any of these in a mutated stream belongs to the framing.
    """
    version = c.choice(_VERSIONS)
    form = "origin" if h11_compatible else c.choice(_FORMS)
    if form == "origin":
        method = c.choice(_METHODS) if c.boolean() else c.chars(TCHAR, 10, 1)
        if method == "CONNECT":
            method = "X-CONNECT"
        target = origin_form(c)
    elif form == "absolute":
        method = c.choice(_ABSOLUTE_METHODS)
        target = f"{c.choice(_SCHEMES)}://{host(c)}{origin_form(c)}"
    elif form == "asterisk":
        method, target = "OPTIONS", "*"
    else:
        method = "CONNECT"
        authority = host(c)
        target = authority if ":" in authority.rsplit("]", 1)[-1] else f"{authority}:443"

    lines: list[tuple[str, str]] = []  # as sent
    expected: list[tuple[str, str]] = []
    for _ in range(c.integer(0, 6)):
        name = header_name(c)
        sent, value = field_value(c)
        lines.append((name, sent))
        expected.append((name.lower(), value))

    if version == "1.1" or c.boolean():
        value = host(c)
        lines.append((c.choice(_HOST_NAMES), value))
        expected.append(("host", value))

    # Connection options and persistence (RFC 9112 section 9.3)
    keep_alive = version == "1.1"
    if c.boolean():
        value = c.choice(_CONNECTION_VALUES_H11_10 if h11_compatible and version == "1.0" else _CONNECTION_VALUES)
        options = {o.strip().lower() for o in value.split(",")}
        keep_alive = "close" not in options and (version == "1.1" or "keep-alive" in options)
        lines.append((c.choice(_CONNECTION_NAMES), value))
        expected.append(("connection", value))

    expect_continue = False
    if c.integer(0, 4) == 0:
        value = c.choice(_EXPECT_VALUES)
        lines.append(("Expect", value))
        expected.append(("expect", value))
        expect_continue = version == "1.1"

    # Framing (RFC 9112 section 6)
    body = c.chars(_PLAIN, 300).encode() if h11_compatible else c.binary(300)
    framing = c.choice(_FRAMINGS) if version == "1.1" else "length"
    if not body and c.boolean():
        framing = "none"
    content_length: int | None = None
    chunked = False
    chunks = b""
    trailers: list[tuple[str, str]] = []
    trailer_lines: list[tuple[str, str]] = []
    if framing == "length":
        content_length = len(body)
        value = str(content_length)
        if c.integer(0, 9) == 0:
            value = c.choice(_ZEROS) + value  # 1*DIGIT allows leading zeros
        lines.append((c.choice(_CONTENT_LENGTH_NAMES), value))
        expected.append(("content-length", value))
    elif framing == "chunked":
        chunked = True
        value = c.choice(_CHUNKED_VALUES)
        lines.append(("Transfer-Encoding", value))
        expected.append(("transfer-encoding", value))
        cuts = [c.index(len(body) + 1) for _ in range(c.integer(0, 5))]
        for piece in split_at(body, cuts):
            if piece:
                size = c.choice(_SIZE_FORMATS) % len(piece)
                chunks += _latin1(size + chunk_extension(c, h11_compatible) + "\r\n") + piece + b"\r\n"
        chunks += _latin1("0" + chunk_extension(c, h11_compatible) + "\r\n")
        for _ in range(c.integer(0, 2)):
            name = header_name(c)
            sent, value = field_value(c)
            trailer_lines.append((name, sent))
            trailers.append((name.lower(), value))

    order = c.permutation(len(lines))
    lines = [lines[i] for i in order]
    expected = [expected[i] for i in order]

    head = f"{method} {target} HTTP/{version}\r\n" + "".join(f"{n}:{v}\r\n" for n, v in lines)
    raw = _latin1(head + "\r\n")
    if not h11_compatible and c.integer(0, 9) == 0:
        raw = c.choice(_BLANK_LINES) + raw  # RFC 9112 section 2.2
    trailer_section = _latin1("".join(f"{n}:{v}\r\n" for n, v in trailer_lines))
    raw += chunks + trailer_section + b"\r\n" if chunked else body
    return GenRequest(
        method=method,
        target=target,
        version=version,
        headers=expected,
        body=body,
        content_length=content_length,
        chunked=chunked,
        keep_alive=keep_alive,
        expect_continue=expect_continue,
        trailers=trailers,
        raw=raw,
        trailer_section=trailer_section,
    )


def build_stream(c: Choices, max_requests: int = 4, h11_compatible: bool = False) -> tuple[list[GenRequest], bytes]:
    """Several pipelined requests and their concatenated bytes."""
    reqs = [build_request(c, h11_compatible) for _ in range(c.integer(1, max_requests))]
    return reqs, b"".join(r.raw for r in reqs)


def requests(*, h11_compatible: bool = False) -> st.SearchStrategy[GenRequest]:
    """Hypothesis strategy: one valid request (see ``build_request``)."""
    return st.composite(lambda draw: build_request(Drawn(draw), h11_compatible))()


def request_streams(
    *, max_requests: int = 4, h11_compatible: bool = False
) -> st.SearchStrategy[tuple[list[GenRequest], bytes]]:
    """Hypothesis strategy: ``(requests, bytes)`` of a pipelined stream (see ``build_stream``)."""
    return st.composite(lambda draw: build_stream(Drawn(draw), max_requests, h11_compatible))()


# -- mutations and splits ---------------------------------------------------------------------

INTERESTING = (
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\n\n",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"=",
    b'"',
    b"\\",
    b"\x00",
    b"\x01",
    b"\x7f",
    b"\x80",
    b"\xff",
    b"0",
    b"1",
    b"9",
    b"a",
    b"f",
    b"G",
    b"/",
    b"*",
    b"?",
    b"%",
    b"%zz",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"chunked",
    b"gzip, ",
    b"close",
    b"keep-alive",
    b"100-continue",
    b"Host: x\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b" x\r\n",
    b"ffffffffffffffff",
    b"99999999999999999999",
    b"0\r\n\r\n",
)
_INTERESTING_BYTES = tuple(sorted({b[0] for b in INTERESTING}))
_MUTATIONS = ("insert", "delete", "replace", "duplicate", "truncate", "swap")


def mutate(c: Choices, data: bytes) -> bytes:
    """``data`` with one to four byte-level mutations."""
    out = bytearray(data)
    for _ in range(c.integer(1, 4)):
        kind = c.choice(_MUTATIONS)
        at = c.index(len(out) + 1)
        if kind == "insert":
            out[at:at] = c.choice(INTERESTING) if c.boolean() else c.binary(3, 1)
        elif kind == "delete":
            del out[at : at + c.integer(1, 4)]
        elif kind == "replace":
            if at < len(out):
                out[at] = c.choice(_INTERESTING_BYTES) if c.boolean() else c.integer(0, 255)
        elif kind == "duplicate":
            out[at:at] = out[at : at + c.integer(1, 40)]
        elif kind == "truncate":
            del out[at:]
        elif at + 1 < len(out):
            out[at], out[at + 1] = out[at + 1], out[at]
    return bytes(out)


def mutated_streams(base: st.SearchStrategy[bytes] | None = None) -> st.SearchStrategy[bytes]:
    """Hypothesis strategy: a valid request stream (or ``base``) with a few mutations."""
    if base is None:
        base = request_streams().map(lambda pair: pair[1])
    stream = base
    return st.composite(lambda draw: mutate(Drawn(draw), draw(stream)))()


def choose_splits(c: Choices, data: bytes) -> list[bytes]:
    """Ways to cut ``data`` into receives: random cuts, or pieces of 1 to 8 bytes."""
    if c.boolean():
        return split_at(data, [c.index(len(data) + 1) for _ in range(c.integer(0, 20))])
    k = c.integer(1, 8)
    return [data[i : i + k] for i in range(0, len(data), k)] or [b""]


def arbitrary_splits(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """Hypothesis strategy: ways to cut ``data`` (see ``choose_splits``)."""
    return st.composite(lambda draw: choose_splits(Drawn(draw), data))()
