"""The sans-IO HTTP/1.1 request parser: bytes in, events out, ``ParseError`` for anything bad.

No socket, clock, thread or logging here. Feed bytes with ``receive_data`` (``b""`` means the
peer closed its side), then call ``next_event`` until it returns ``None`` (more data needed).
Events, in order, for each request: one ``RequestHead``, zero or more ``BodyChunk``, one
``EndOfMessage``. Several pipelined requests in one buffer come out one after another. When a
response switches the connection to another protocol, ``switch_protocol`` hands back the bytes
that followed the request and retires the parser.

Guarantees:
    * ``next_event`` raises only ``ParseError`` (carrying the status to answer with), whatever
      bytes it was fed and however they were split; after one it keeps raising the same error.
    * Cost is linear in the input: a head or chunk line delivered a byte at a time is scanned
      only from where the previous scan stopped, and consumed bytes are released in amortised
      O(1) per byte.

The rules enforced are RFC 9112 (message syntax and framing) and RFC 9110 (field values), taking
the strict reading wherever the RFCs allow one: CRLF line endings only, no obs-fold, no space
before the colon, one Host on HTTP/1.1, no Content-Length together with Transfer-Encoding.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from evserve.errors import ParseError
from evserve.headers import Headers

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_MAX_TARGET_SIZE",
    "BodyChunk",
    "EndOfMessage",
    "Event",
    "ParserState",
    "RequestHead",
    "RequestParser",
]

DEFAULT_MAX_TARGET_SIZE = 8192
DEFAULT_MAX_HEADER_SIZE = 16384
DEFAULT_MAX_HEADERS = 100
DEFAULT_MAX_BODY_SIZE = 1048576
MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions; longer is abuse
# Chunk extensions carry nothing evserve uses, so their bytes are bounded per body too (past it,
# 400, as for other bad framing). Node bounds them to 16 KiB a chunk since its 2024 fix for
# chunk-extension floods; with at most MAX_CHUNK_LINE a chunk, this bound is the tighter one.
MAX_CHUNK_EXTENSIONS = 16384
# The framing a chunked body may cost beyond its data, as Go's net/http counts it: each chunk
# may spend 16 bytes plus twice its data on its size line and CRLFs; what it spends beyond that
# adds up, and past this many bytes the body is refused (400). So a client cannot make the
# server read and scan an unbounded number of bytes per body byte (tiny chunks with long size
# lines, a size with thousands of leading zeros).
MAX_CHUNK_OVERHEAD = 16384
# Parsed heads, by their exact bytes, shared by every parser in this process: a head that comes
# again, on the same connection or another (a client polling, a health check, a benchmark), is
# not parsed again: about 1.5 us instead of 10 for a 10-line GET. Only heads of at most
# _CACHED_HEAD_SIZE bytes are looked up, and one is kept only from its second sighting among
# the last _SEEN_MAX heads (by hash): a head that never repeats, as most real ones (cookies,
# paths), costs a copy and two lookups (about 0.5 us), is not kept, and pushes out no head that
# repeats. A parser remembers the entry it used last (a reference to the shared one, so an idle
# connection holds no head of its own) and takes a head that repeats it without a lookup. The
# table is cleared when full, so it stays bounded. Each entry keeps the limits the head needs, so
# a parser with smaller limits never takes a head it would have refused. Heads are immutable:
# sharing one shares no state between requests.
_CACHED_HEAD_SIZE = 1024
_SHARED_HEADS_MAX = 256
# (head, target, header bytes, header lines, content length, the head's bytes: the table's key)
_SharedHead = tuple["RequestHead", int, int, int, int, bytes]
_SEEN_MAX = 256
_SHARED_HEADS: dict[bytes, _SharedHead] = {}
_SEEN: set[int] = set()


# RequestHead is immutable, as a NamedTuple: a head parsed once is handed out again for any
# request whose head repeats it byte for byte (see _SHARED_HEADS), so nothing a handler does to
# one request may show in another. The parser builds it with tuple.__new__, which skips the
# generated constructor's argument handling: 0.11 us against 0.27 us for RequestHead(...), and
# 0.15 us for a slotted dataclass (a frozen one costs 0.98 us). BodyChunk and EndOfMessage are
# NamedTuples too, built the same way; an end without trailers is one shared event.
class RequestHead(NamedTuple):
    """The request line and header section of one request; immutable.

    Attributes:
        method: the method token, case preserved (``"GET"``).
        target: the request-target exactly as sent (origin, absolute, authority or ``*`` form).
        http_version: ``"1.1"`` or ``"1.0"``.
        headers: the header lines, names lowercased, in received order.
        keep_alive: whether the connection may carry another request after this one.
        expect_continue: the client sent ``Expect: 100-continue`` and waits for it.
        content_length: the body length when framed by Content-Length, else ``None``.
        chunked: the body is framed by the chunked transfer coding.
    """

    method: str
    target: str
    http_version: str
    headers: Headers
    keep_alive: bool
    expect_continue: bool
    content_length: int | None
    chunked: bool


_new_tuple = tuple.__new__


class BodyChunk(NamedTuple):
    """A piece of the request body (chunked framing already removed): the body bytes at hand,
    those of every chunk in the buffer together, never one event per chunk."""

    data: bytes


class EndOfMessage(NamedTuple):
    """The end of one request; ``trailers`` holds a chunked body's trailer lines (ignored)."""

    trailers: tuple[tuple[str, str], ...] = ()


# The end of a request without trailers, the common case: one immutable event for all.
_END_OF_MESSAGE = EndOfMessage()


Event = RequestHead | BodyChunk | EndOfMessage

# --- grammar (RFC 9110 section 5.6.2 token, 5.5 field values; RFC 9112 sections 3, 5, 7) ---
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# field-value bytes: HTAB, SP, VCHAR, obs-text. Never CR, LF, NUL or another control byte.
_VALUE = r"[\t\x20-\x7e\x80-\xff]*"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_LOOKS_VERSIONED = re.compile(r"\S+ \S+ HTTP/[0-9]+\.[0-9]+")
_HEADER_BLOCK = re.compile(rf"(?:{_TOKEN}:{_VALUE}\r\n)*")
_HEADER_LINE = re.compile(rf"({_TOKEN}):[ \t]*({_VALUE})\r\n")
_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)(?:[/?#][\x21-\x7e]*)?")
_AUTHORITY_FORM = re.compile(r"[\x21-\x7e]+:[0-9]+")
_HOST = re.compile(r"(?:\[[0-9A-Za-z:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
_QUOTED = r'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*" + _TOKEN.encode()
    + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN.encode() + rb"|" + _QUOTED.encode() + rb"))?)*"
)
_PLAIN_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})\r\n")  # the usual chunk-size line
# A CR not followed by LF, or an LF not preceded by CR: SPEC section 7 answers both with 400.
_BARE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_KNOWN_CODINGS = frozenset({"chunked", "gzip", "x-gzip", "deflate", "compress", "x-compress"})

class ParserState(enum.IntEnum):
    """Where the parser is in the stream of requests (ordered: the message states come first,
    so ``in_message`` and ``is_done`` compare against ``DONE``)."""

    HEAD = 0  # waiting for (the rest of) a request head
    BODY = 1  # a Content-Length body
    CHUNK_SIZE = 2  # a chunk-size line of a chunked body
    CHUNK_DATA = 3  # a chunk's data
    CHUNK_END = 4  # the CRLF after a chunk's data
    TRAILERS = 5  # the trailer section of a chunked body
    END = 6  # EndOfMessage is due
    DONE = 7  # the connection carries no further request
    SWITCHED = 8  # the connection left HTTP/1.1 (switch_protocol): nothing more is parsed


_HEAD = ParserState.HEAD
_BODY = ParserState.BODY
_CHUNK_SIZE = ParserState.CHUNK_SIZE
_CHUNK_DATA = ParserState.CHUNK_DATA
_CHUNK_END = ParserState.CHUNK_END
_TRAILERS = ParserState.TRAILERS
_END = ParserState.END
_DONE = ParserState.DONE
_SWITCHED = ParserState.SWITCHED


class RequestParser:
    """Incremental parser for a stream of HTTP/1.1 requests on one connection.

    Args:
        max_target_size: longest request-target accepted; longer gives 414.
        max_header_size: most bytes of header lines (or trailer lines), each counted with its
            CRLF, after the request line (the empty line ending the section is not counted);
            more gives 431.
        max_headers: most header lines; more gives 431.
        max_body_size: largest body accepted, by Content-Length or chunked; larger gives 413.
    """

    __slots__ = (
        "_body_method",
        "_buf",
        "_chunked",
        "_eof",
        "_error",
        "_extensions",
        "_keep_alive",
        "_last_entry",
        "_overhead",
        "_pos",
        "_received",
        "_remaining",
        "_scan",
        "_state",
        "_valid_host",
        "max_body_size",
        "max_header_size",
        "max_headers",
        "max_target_size",
    )

    def __init__(
        self,
        *,
        max_target_size: int = DEFAULT_MAX_TARGET_SIZE,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self.max_target_size = max_target_size
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.max_body_size = max_body_size
        self._buf: bytes | bytearray = b""
        self._pos = 0  # start of the unconsumed bytes in _buf
        self._scan = 0  # where the search for the end of a head/trailer block resumes
        self._state = _HEAD
        self._remaining = 0  # bytes left in the current Content-Length body or chunk
        self._received = 0  # body bytes so far in a chunked body
        self._extensions = 0  # chunk-extension bytes so far in a chunked body
        self._overhead = 0  # framing bytes of a chunked body beyond its allowance (see above)
        self._keep_alive = True
        self._chunked = False
        self._body_method = "GET"  # the method of the request whose body is being read
        self._eof = False
        self._error: ParseError | None = None
        self._valid_host: str | None = None
        self._last_entry: _SharedHead | None = None  # the shared entry this parser last used

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Append bytes received from the peer; ``b""`` means the peer closed its sending side.

        After ``switch_protocol`` the bytes are dropped unparsed (see there).
        """
        if self._state is _SWITCHED:
            return
        if not data:
            self._eof = True
            return
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            # Common case: everything consumed. Keep the caller's bytes without copying.
            self._scan = 0
            self._buf = data
            self._pos = 0
            return
        if isinstance(buf, bytes):
            buf = bytearray(memoryview(buf)[pos:])
            self._scan -= pos
            self._pos = 0
        elif pos > 65536 and pos * 2 > len(buf):
            del buf[:pos]
            self._scan -= pos
            self._pos = 0
        buf += data
        self._buf = buf

    @property
    def state(self) -> ParserState:
        """Where the parser is in the stream of requests (for logs and tests)."""
        return self._state

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buf) - self._pos

    @property
    def in_message(self) -> bool:
        """True while a request has started (some of it received) but has not ended."""
        if self._state is _HEAD:
            return self._pos < len(self._buf)
        return self._state < _DONE

    @property
    def is_done(self) -> bool:
        """True once the connection can carry no further request: a request that does not keep
        it alive has ended, or ``switch_protocol`` was called."""
        return self._state >= _DONE

    def switch_protocol(self) -> bytes:
        """Leave HTTP/1.1: return the bytes received after the last request, parse no more.

        Call it when the response to a request switched the connection to another protocol
        (101 Switching Protocols, RFC 9110 section 15.2.2; a 2xx to CONNECT, section 9.3.6),
        once that request's ``EndOfMessage`` has come out of ``next_event`` and before
        ``next_event`` is called again (which would read on as HTTP). What the peer sent
        after the request's last byte already belongs to the new protocol: it is returned
        whole and in order, each byte exactly once (the unparsed end of the buffer, copied at
        most once; ``b""`` if there is none), and the parser lets go of its buffer.

        From then on the parser is inert, whatever was or will be fed to it: ``next_event``
        returns ``None`` (even after a ``ParseError``, which is not raised again),
        ``receive_data`` drops its bytes without parsing them (the new protocol reads the
        transport itself), ``buffered`` is 0, ``in_message`` False, ``is_done`` True, and a
        further call returns ``b""``. Called before the ``EndOfMessage`` came out, the bytes
        start right after the last event returned (so they hold the rest of that request).
        Never raises.
        """
        buf = self._buf
        pos = self._pos
        if pos == 0 and type(buf) is bytes:
            rest = buf
        elif pos >= len(buf):
            rest = b""
        else:
            rest = bytes(memoryview(buf)[pos:])
        self._buf = b""
        self._pos = self._scan = 0
        self._state = _SWITCHED
        self._error = None
        return rest

    # -- output ---------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """Return the next event, or ``None`` when more data is needed.

        Raises:
            ParseError: the input is not an acceptable request; ``.status`` says how to answer.
        """
        if self._error is not None:
            raise self._error
        try:
            state = self._state
            if state is _HEAD:
                return self._parse_head()
            if state is _END:
                self._state = _HEAD if self._keep_alive else _DONE
                if self._pos >= len(self._buf):
                    # Nothing pipelined behind: an idle connection's parser keeps no bytes.
                    self._buf = b""
                    self._pos = self._scan = 0
                return _END_OF_MESSAGE
            if state is _BODY:
                return self._parse_data()
            if state is _CHUNK_SIZE or state is _CHUNK_DATA or state is _CHUNK_END:
                return self._parse_chunked()
            if state is _TRAILERS:
                return self._parse_trailers()
            return None
        except ParseError as exc:
            if exc.head is None and self._state is _HEAD:
                # _pos is still the start of the refused head: note its method if readable.
                buf = self._buf
                space = buf.find(b" ", self._pos, self._pos + 32)
                if space > self._pos:
                    exc.method = bytes(buf[self._pos:space]).decode("latin-1")
            elif exc.method is None:
                exc.method = self._body_method  # refused in the body: that request's method
            self._error = exc
            raise

    # -- head -----------------------------------------------------------------------------

    def _parse_head(self) -> RequestHead | None:
        buf = self._buf
        pos = self._pos
        # RFC 9112 section 2.2: ignore empty lines received before the request-line.
        while buf.startswith(b"\r\n", pos):
            pos += 2
        self._pos = pos
        end = buf.find(b"\r\n\r\n", self._scan if self._scan > pos else pos)
        if end < 0:
            if pos >= len(buf):
                # All consumed: let go of the bytes, so an idle connection holds none.
                self._buf = b""
                self._pos = self._scan = 0
                return None
            if self._eof:
                raise ParseError(400, "connection closed in the middle of a request head")
            self._check_partial_head(buf, pos)
            return None
        last = self._last_entry
        if last is not None and end - pos == len(last[5]) and buf.startswith(last[5], pos):
            # The head this connection sent last, again (a keep-alive client repeating itself):
            # its shared entry was checked against this parser's limits when it was taken.
            self._pos = self._scan = end + 4
            return self._start_body(last[0])
        raw: bytes | None = None
        if end - pos <= _CACHED_HEAD_SIZE:
            raw = bytes(buf[pos:end])
            shared = _SHARED_HEADS.get(raw)
            if shared is not None and shared[1] <= self.max_target_size \
                    and shared[2] <= self.max_header_size and shared[3] <= self.max_headers \
                    and shared[4] <= self.max_body_size:
                self._pos = self._scan = end + 4
                self._last_entry = shared
                return self._start_body(shared[0])
        line_end = buf.find(b"\r\n", pos)
        if line_end - pos > self.max_target_size + 64:
            raise ParseError(414, "request-target too long")
        if end - line_end > self.max_header_size:  # header lines: buf[line_end + 2 : end + 2]
            raise ParseError(431, "request header section too large")
        head = buf[pos : end + 2].decode("latin-1")
        line, _, block = head.partition("\r\n")
        match = _REQUEST_LINE.fullmatch(line)
        if match is None:
            raise self._request_line_error(line)
        method, target, major, minor = match.groups()
        if major != "1" or minor not in "01":
            raise ParseError(505, f"HTTP/{major}.{minor} is not supported")
        version = "1.1" if minor == "1" else "1.0"
        if len(target) > self.max_target_size:
            raise ParseError(414, "request-target too long")
        if target[0] != "/" or method == "CONNECT":
            self._check_target_form(method, target)

        items: list[tuple[str, str]]
        index: dict[str, str]
        host_lines = 0
        if block:
            if _HEADER_BLOCK.fullmatch(block) is None:
                raise _header_error(block)
            if " \r\n" in block or "\t\r\n" in block:  # trailing whitespace (OWS): rare
                items = [(name.lower(), value.rstrip(" \t")) for name, value in _HEADER_LINE.findall(block)]
            else:
                items = [(name.lower(), value) for name, value in _HEADER_LINE.findall(block)]
            if len(items) > self.max_headers:
                raise ParseError(431, f"more than {self.max_headers} header lines")
            index = dict(items)
            if len(index) != len(items):
                # Repeated names (rare): join their values in order, RFC 9110 section 5.3;
                # Cookie is no comma list, so its lines join with "; " (RFC 9113 section
                # 8.2.3, as Node does).
                index = {}
                for name, value in items:
                    old = index.get(name)
                    if old is None:
                        index[name] = value
                    else:
                        index[name] = f"{old}; {value}" if name == "cookie" else f"{old}, {value}"
                    if name == "host":
                        host_lines += 1
            elif "host" in index:
                host_lines = 1
        else:
            items = []
            index = {}

        # Persistence, RFC 9112 section 9.3.
        connection = index.get("connection")
        if version == "1.1":
            keep_alive = True
            if connection is not None and "close" in _tokens(connection):
                keep_alive = False
            if host_lines != 1:
                raise ParseError(400, "missing Host header" if not host_lines else "repeated Host header")
        else:
            # RFC 9112 section 9.3: "close" wins over "keep-alive" whatever the version.
            options = _tokens(connection) if connection is not None else set()
            keep_alive = "keep-alive" in options and "close" not in options
            if host_lines > 1:
                raise ParseError(400, "repeated Host header")
        if host_lines:
            host = index["host"]
            if host != self._valid_host and _HOST.fullmatch(host) is None:
                raise ParseError(400, "invalid Host header")
            self._valid_host = host  # a client sends the same Host each time: check it once

        # Framing, RFC 9112 section 6.
        content_length: int | None = None
        chunked = False
        te = index.get("transfer-encoding")
        cl = index.get("content-length")
        try:
            if te is not None:
                if cl is not None:
                    raise ParseError(400, "both Content-Length and Transfer-Encoding")
                if version == "1.0":
                    raise ParseError(400, "Transfer-Encoding in an HTTP/1.0 request")
                chunked = self._check_transfer_coding(te)
            elif cl is not None:
                content_length = self._content_length(cl)
        except ParseError as exc:
            # The head itself is well formed: carry it, so the server can answer through the
            # application (its error middleware), knowing the method and target.
            exc.head = RequestHead(method, target, version, Headers(items, index), False, False, None, False)
            raise

        expect_continue = False
        expect = index.get("expect")
        if expect is not None and version == "1.1":  # HTTP/1.0: ignored (RFC 9110 section 10.1.1)
            members = _tokens(expect)
            members.discard("")
            if members - {"100-continue"}:
                # An expectation the server cannot meet: 417, as Node does (RFC 9110 10.1.1).
                raise ParseError(417, f"unsupported expectation {expect!r}", RequestHead(
                    method, target, version, Headers(items, index), False, False, None, False))
            expect_continue = "100-continue" in members

        result: RequestHead = _new_tuple(RequestHead, (
            method, target, version, Headers(items, index), keep_alive, expect_continue,
            content_length, chunked,
        ))
        if raw is not None:
            seen = hash(raw)  # computed once already, by the lookup above
            if seen in _SEEN:
                if len(_SHARED_HEADS) >= _SHARED_HEADS_MAX:
                    _SHARED_HEADS.clear()
                entry = (result, max(len(target), line_end - pos - 64), end - line_end,
                         len(items), content_length or 0, raw)
                _SHARED_HEADS[raw] = self._last_entry = entry
            else:
                if len(_SEEN) >= _SEEN_MAX:
                    _SEEN.clear()
                _SEEN.add(seen)
        # Consumed only now: a refusal above leaves _pos at the head (see next_event).
        self._pos = self._scan = end + 4
        return self._start_body(result)

    def _start_body(self, head: RequestHead) -> RequestHead:
        self._keep_alive = head.keep_alive
        if head.chunked:
            self._chunked = True
            self._received = self._extensions = self._overhead = 0
            self._state = _CHUNK_SIZE
            self._body_method = head.method
        elif head.content_length:
            self._chunked = False
            self._remaining = head.content_length
            self._state = _BODY
            self._body_method = head.method
        else:
            self._state = _END
        return head

    def _check_partial_head(self, buf: bytes | bytearray, pos: int) -> None:
        """Fail early on an incomplete head that can already never be valid."""
        size = len(buf)
        start = self._scan if self._scan > pos else pos
        bad = _BARE_CR_OR_LF.search(buf, start)
        if bad is not None and not (bad.start() == size - 1 and buf[-1:] == b"\r"):
            raise ParseError(400, "bare CR or LF in the request head")
        # The limits below are those of _parse_head, applied to the shortest the complete head
        # can be (a trailing CR may start the line's CRLF, the last 3 bytes may start the
        # CRLFCRLF): any stricter check would make the outcome depend on how bytes are split.
        line_end = buf.find(b"\r\n", pos, size)
        if line_end < 0:
            if size - pos > self.max_target_size + 65:
                raise ParseError(414, "request-target too long")
        elif line_end - pos > self.max_target_size + 64:
            raise ParseError(414, "request-target too long")
        elif size - line_end > self.max_header_size + 3:
            raise ParseError(431, "request header section too large")
        # Resume 3 bytes back: the terminator or a CRLF may straddle two receives.
        self._scan = size - 3 if size - 3 > pos else pos

    @staticmethod
    def _request_line_error(line: str) -> ParseError:
        if _LOOKS_VERSIONED.fullmatch(line) is not None:
            version = line.rsplit(" ", 1)[1]
            if re.fullmatch(r"HTTP/[0-9]\.[0-9]", version) and version not in ("HTTP/1.0", "HTTP/1.1"):
                return ParseError(505, f"{version} is not supported")
        return ParseError(400, "malformed request line")

    @staticmethod
    def _check_target_form(method: str, target: str) -> None:
        # RFC 9112 section 3.2: origin-form (checked by the caller), absolute-form,
        # authority-form (CONNECT only) and asterisk-form (OPTIONS only).
        if method == "CONNECT":
            if _AUTHORITY_FORM.fullmatch(target) is None:
                raise ParseError(400, "CONNECT needs an authority-form target")
        elif target == "*":
            if method != "OPTIONS":
                raise ParseError(400, "asterisk-form target is for OPTIONS only")
        else:
            match = _ABSOLUTE_FORM.fullmatch(target)
            if match is None:
                raise ParseError(400, "malformed request-target")
            authority = match.group(1)
            if "@" in authority:
                # RFC 9110 section 4.2.4: userinfo in a received http(s) URI is an error.
                raise ParseError(400, "userinfo in the request-target")
            if not authority or authority[0] == ":" or _HOST.fullmatch(authority) is None:
                raise ParseError(400, "invalid authority in the request-target")

    def _content_length(self, value: str) -> int:
        # RFC 9110 section 8.6: 1*DIGIT; a list of identical values may be accepted.
        if not (value.isascii() and value.isdigit()):
            parts = {p.strip(" \t") for p in value.split(",")}
            if len(parts) != 1:
                raise ParseError(400, "conflicting Content-Length values")
            value = parts.pop()
            if not (value.isascii() and value.isdigit()):
                raise ParseError(400, "invalid Content-Length")
        if len(value) > 18:  # also keeps int() far from its digit limit
            value = value.lstrip("0") or "0"
            if len(value) > 18:
                raise ParseError(413, "request body too large")
        length = int(value)
        if length > self.max_body_size:
            raise ParseError(413, "request body too large")
        return length

    @staticmethod
    def _check_transfer_coding(value: str) -> bool:
        codings = [c.strip(" \t").split(";", 1)[0].strip(" \t").lower() for c in value.split(",")]
        codings = [c for c in codings if c]
        if not codings:
            raise ParseError(400, "empty Transfer-Encoding")
        for coding in codings:
            if coding not in _KNOWN_CODINGS:
                raise ParseError(501, f"transfer coding {coding!r} is not implemented")
        # RFC 9112 section 6.3: chunked must be the final coding of a request, applied once.
        if codings[-1] != "chunked" or codings.count("chunked") > 1:
            raise ParseError(400, "Transfer-Encoding must end in a single chunked")
        if len(codings) > 1:
            raise ParseError(501, f"transfer coding {codings[0]!r} is not implemented")
        return True

    # -- body -----------------------------------------------------------------------------

    def _parse_data(self) -> BodyChunk | None:
        """The bytes of a Content-Length body received so far, as one event."""
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available <= 0:
            if self._eof:
                raise ParseError(400, "connection closed before the body was complete")
            return None
        take = self._remaining if self._remaining < available else available
        if pos == 0 and take == len(buf) and isinstance(buf, bytes):
            data = buf
        else:
            data = bytes(buf[pos : pos + take])
        self._pos = pos + take
        self._remaining -= take
        if self._remaining == 0:
            self._state = _END
        return _new_tuple(BodyChunk, (data,))

    def _parse_chunked(self) -> Event | None:
        """Decode the chunks at hand; the data of all of them comes out as one ``BodyChunk``.

        One event for every chunk in the buffer, whatever their sizes: a body sent in one-byte
        chunks costs an event per receive, not one per byte, so what a body holds downstream
        follows its data, not its chunking. An error found after some data was decoded is held
        back (raised by the next call): that data comes out first, as it would have had the
        input been split just before the error.
        """
        buf = self._buf
        size = len(buf)
        pos = self._pos
        data: bytes | bytearray | None = None
        try:
            while True:
                state = self._state
                if state is _CHUNK_SIZE:
                    # The common line (hex digits, no extension) in one match; anything else,
                    # and an incomplete line, takes the general path.
                    match = _PLAIN_CHUNK_LINE.match(buf, pos)
                    if match is None:
                        self._pos = pos
                        if not self._parse_chunk_line():
                            break
                        pos = self._pos
                        continue
                    pos = self._pos = match.end()
                    self._start_chunk(int(match.group(1), 16), pos - match.start(), 0)
                    continue
                if state is _CHUNK_DATA:
                    available = size - pos
                    if available <= 0:
                        if self._eof:
                            raise ParseError(400, "connection closed before the body was complete")
                        break
                    remaining = self._remaining
                    take = remaining if remaining < available else available
                    if data is None:
                        if pos == 0 and take == size and isinstance(buf, bytes):
                            data = buf
                        else:
                            data = buf[pos : pos + take]
                    else:
                        if type(data) is not bytearray:
                            data = bytearray(data)
                        data += buf[pos : pos + take]
                    pos = self._pos = pos + take
                    remaining -= take
                    self._remaining = remaining
                    if remaining:
                        break
                    self._state = _CHUNK_END
                elif state is _CHUNK_END:
                    # RFC 9112 section 7.1: chunk-data is followed by CRLF.
                    if buf.startswith(b"\r\n", pos):
                        pos = self._pos = pos + 2
                        self._state = _CHUNK_SIZE
                        continue
                    if size - pos >= 2 or buf[pos : pos + 1] not in (b"", b"\r"):
                        raise ParseError(400, "chunk data not followed by CRLF")
                    if self._eof:
                        raise ParseError(400, "connection closed in the middle of a chunked body")
                    break
                elif data is None:  # _TRAILERS: the last chunk came first in the buffer
                    return self._parse_trailers()
                else:
                    break  # the trailers come with the next call, after this data
        except ParseError as exc:
            if data is None:
                raise
            exc.method = self._body_method  # raised by the next call, for this request
            self._error = exc
        if data is None:
            return None
        return _new_tuple(BodyChunk, (data if type(data) is bytes else bytes(data),))

    def _parse_chunk_line(self) -> bool:
        """Read one chunk-size line (RFC 9112 section 7.1); False when it is not all here yet."""
        buf = self._buf
        pos = self._pos
        line_end = buf.find(b"\r\n", pos, pos + MAX_CHUNK_LINE + 2)
        if line_end < 0:
            bad = _BARE_CR_OR_LF.search(buf, pos, pos + MAX_CHUNK_LINE + 2)
            if bad is not None and not (bad.start() == len(buf) - 1 and buf[-1:] == b"\r"):
                raise ParseError(400, "bare CR or LF in a chunk-size line")
            if len(buf) - pos > MAX_CHUNK_LINE + 1:  # + 1: the CR of a complete line
                raise ParseError(400, "chunk-size line too long")
            if self._eof:
                raise ParseError(400, "connection closed in the middle of a chunked body")
            return False
        match = _CHUNK_LINE.fullmatch(buf, pos, line_end)
        if match is None:
            raise ParseError(400, "malformed chunk-size line")
        digits = match.group(1)
        if len(digits) > 15:
            digits = digits.lstrip(b"0") or b"0"
            if len(digits) > 15:
                raise ParseError(413, "request body too large")
        self._pos = line_end + 2
        self._start_chunk(int(digits, 16), line_end + 2 - pos, line_end - match.end(1))
        return True

    def _start_chunk(self, size: int, line: int, extensions: int) -> None:
        """Account for a chunk-size line just read (``line`` bytes with its CRLF, of which
        ``extensions`` after the size) announcing ``size`` bytes; the bounds are checked here."""
        if extensions:
            self._extensions += extensions
            if self._extensions > MAX_CHUNK_EXTENSIONS:
                raise ParseError(400, "too many bytes of chunk extensions")
        # The line and the CRLF after the data, beyond the allowance (Go's rule, see above).
        overhead = self._overhead + line + 2 - 16 - 2 * size
        if overhead > 0:
            if overhead > MAX_CHUNK_OVERHEAD:
                raise ParseError(400, "too much chunked framing for the data it carries")
            self._overhead = overhead
        else:
            self._overhead = 0
        if size == 0:
            self._state = _TRAILERS
            self._scan = self._pos
            return
        self._received += size
        if self._received > self.max_body_size:
            raise ParseError(413, "request body too large")
        self._remaining = size
        self._state = _CHUNK_DATA

    def _parse_trailers(self) -> Event | None:
        buf = self._buf
        pos = self._pos
        if buf.startswith(b"\r\n", pos):
            self._pos = self._scan = pos + 2
            return self._end_message(_END_OF_MESSAGE)
        end = buf.find(b"\r\n\r\n", self._scan if self._scan > pos else pos)
        if end < 0:
            size = len(buf)
            start = self._scan if self._scan > pos else pos
            bad = _BARE_CR_OR_LF.search(buf, start)
            if bad is not None and not (bad.start() == size - 1 and buf[-1:] == b"\r"):
                raise ParseError(400, "bare CR or LF in the trailer section")
            if size - pos > self.max_header_size + 1:  # as in _check_partial_head
                raise ParseError(431, "trailer section too large")
            if self._eof:
                raise ParseError(400, "connection closed in the middle of the trailers")
            self._scan = size - 3 if size - 3 > pos else pos
            return None
        if end + 2 - pos > self.max_header_size:
            raise ParseError(431, "trailer section too large")
        block = buf[pos : end + 2].decode("latin-1")
        if _HEADER_BLOCK.fullmatch(block) is None:
            raise _header_error(block)
        pairs = _HEADER_LINE.findall(block)
        if len(pairs) > self.max_headers:
            raise ParseError(431, f"more than {self.max_headers} trailer lines")
        self._pos = self._scan = end + 4
        return self._end_message(_new_tuple(EndOfMessage, (tuple([(n.lower(), v.rstrip(" \t")) for n, v in pairs]),)))

    def _end_message(self, event: EndOfMessage) -> EndOfMessage:
        """Return ``event``, the end of a request; let go of the buffer if it holds no more."""
        self._state = _HEAD if self._keep_alive else _DONE
        if self._pos >= len(self._buf):
            # Nothing pipelined behind: an idle connection's parser keeps no bytes.
            self._buf = b""
            self._pos = self._scan = 0
        return event


def _tokens(value: str) -> set[str]:
    """The lowercased members of a comma-separated list header."""
    return {part.strip(" \t").lower() for part in value.split(",")}


def _header_error(block: str) -> ParseError:
    """Say precisely what is wrong with a header block that failed the grammar."""
    for line in block.split("\r\n"):
        if not line:
            continue
        if line[0] in " \t":
            return ParseError(400, "obsolete line folding in a header")
        name, colon, _ = line.partition(":")
        if not colon:
            if "\n" in line or "\r" in line:
                return ParseError(400, "bare CR or LF in a header")
            return ParseError(400, "header line without a colon")
        if name != name.rstrip(" \t"):
            return ParseError(400, "whitespace before the colon in a header")
        if re.fullmatch(_TOKEN, name) is None:
            return ParseError(400, "invalid header name")
    return ParseError(400, "invalid character in a header value")
