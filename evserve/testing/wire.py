"""The test client's end of the wire: an in-memory transport, and a strict response reader.

``MemoryTransport`` is a ``connection.Transport`` whose peer is the test client in the same
thread: what the connection writes waits until the client reads it (``take``), so a streaming
handler meets back-pressure as on a socket whose peer reads between turns of the reactor.

``ResponseReader`` turns the bytes a connection wrote back into responses, and refuses what an
HTTP/1.1 client must not accept (RFC 9112): a malformed status line or header line, bare CR or
LF, obs-fold, Content-Length beside Transfer-Encoding, a bad chunk. It is sans-IO: the caller
feeds bytes and says when the server closed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evserve.errors import ClientError, MalformedResponse, ResponseTimeout, ServerDisconnected

if TYPE_CHECKING:
    from evserve.connection import Connection

__all__ = [
    "ClientError",
    "MalformedResponse",
    "MemoryTransport",
    "ParsedResponse",
    "ResponseReader",
    "ResponseTimeout",
    "ServerDisconnected",
]

log = logging.getLogger("evserve.testing")

MAX_HEAD_SIZE = 1 << 20  # bytes of a response head (status line, headers) the reader accepts
MAX_CHUNK_LINE = 4096  # bytes of a chunk-size line with its extensions


class MemoryTransport:
    """A ``connection.Transport`` that hands the connection's output to the test client.

    Output waits in memory until the client reads it with ``take``; ``buffer_size`` counts what
    it has not read. When a read takes unsent output from above the low-water mark, the
    connection hears ``drained()``, as from a socket transport. ``close`` completes once the
    client has read everything (the connection then hears ``connection_lost``); ``abort``
    drops what is unread at once.

    Args:
        high_water: unsent bytes above which the connection's writers are told to wait (the
            server's ``write_buffer_size``); the low-water mark is a quarter of it.
    """

    __slots__ = ("_out", "aborted", "closed", "closing", "conn", "discarded", "high_water",
                 "low_water", "paused")

    def __init__(self, high_water: int) -> None:
        self.conn: Connection | None = None
        self.high_water = high_water
        self.low_water = high_water // 4
        self._out = bytearray()
        self.paused = False  # the connection holds a request (its input waits in its parser)
        self.closing = False  # close() was called: done once the client has read everything
        self.closed = False  # nothing more will be written
        self.aborted = False  # closed dropping unread output (a reset, on a socket)
        self.discarded = 0  # bytes dropped by the abort

    # -- the Transport protocol ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the client (dropped once closing).

        Raises:
            TypeError: ``data`` is not bytes-like, as a socket transport refuses it.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"a transport sends bytes, not {type(data).__name__}")
        if data and not self.closing and not self.closed:
            self._out += data

    def send_file(self, file: Any, offset: int, count: int) -> None:
        """Queue ``count`` bytes of ``file`` from ``offset`` (read now), then close the file.

        A file shorter than promised aborts the connection, as on a socket: the response
        announced bytes it cannot carry.
        """
        try:
            if self.closing or self.closed:
                return
            file.seek(offset)
            data = bytearray()
            while len(data) < count:
                piece = file.read(count - len(data))
                if not piece:
                    break
                data += piece
        except (OSError, ValueError) as exc:
            log.warning("reading a file to send failed: %s", exc)
            self.abort()
            return
        finally:
            file.close()
        if len(data) < count:
            log.warning("file ended %d bytes early while sending", count - len(data))
            self.abort()
            return
        self._out += data

    def buffer_size(self) -> int:
        """Bytes written and not yet read by the client."""
        return len(self._out)

    def pause_reading(self) -> None:
        """Note that the connection holds a request (what arrives meanwhile waits in its parser)."""
        self.paused = True

    def resume_reading(self) -> None:
        """Note that the connection processes input again."""
        self.paused = False

    def close(self) -> None:
        """Close once the client has read everything written."""
        if self.closing or self.closed:
            return
        self.closing = True
        if not self._out:
            self._finish()

    def abort(self) -> None:
        """Close now, dropping what the client has not read; the connection hears
        ``connection_lost``."""
        if self.closed:
            return
        self.closed = True
        self.aborted = True
        self.discarded = len(self._out)
        self._out.clear()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.connection_lost()

    # -- the client's side -----------------------------------------------------------------------

    def take(self) -> bytes:
        """Everything written since the last call (the client reads it).

        The connection hears ``drained()`` when this took its output from above the low-water
        mark, and ``connection_lost()`` when this completed a ``close``.
        """
        size = len(self._out)
        if not size:
            return b""
        data = bytes(self._out)
        self._out.clear()
        if self.closing:
            self._finish()
        elif size > self.low_water and self.conn is not None:
            self.conn.drained()
        return data

    @property
    def has_output(self) -> bool:
        """Whether there are bytes the client has not read."""
        return bool(self._out)

    def _finish(self) -> None:
        self.closed = True
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.connection_lost()


# -- reading responses -------------------------------------------------------------------------

_STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) ([1-9][0-9][0-9]) ([\t\x20-\x7e\x80-\xff]*)")
_HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})((?:[ \t]*;[^\r\n]*)?)")


@dataclass
class ParsedResponse:
    """One response as read from the wire.

    Attributes:
        http_version: ``"1.1"`` or ``"1.0"``.
        status: the status code.
        reason: the reason phrase.
        headers: the header lines, ``(name, value)`` in order, names as sent.
        body: the content, with the transfer coding removed.
        trailers: the trailer lines of a chunked body.
        interim: the 1xx responses that came first, as ``(status, reason, headers)``.
        close_delimited: whether the body ended with the connection.
        raw: the bytes of the response as written (interim responses included).
    """

    http_version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    interim: list[tuple[int, str, list[tuple[str, str]]]] = field(default_factory=list)
    close_delimited: bool = False
    raw: bytes = b""


# Where the reader stands in the current response.
_HEAD, _NO_BODY, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE = range(8)


class ResponseReader:
    """Reads the responses of one connection, in order, from the bytes fed to it.

    Feed bytes with ``feed``; ``next_response(method, eof=...)`` returns the next whole
    response to a request made with ``method`` (which decides whether a body follows: none for
    HEAD), or ``None`` while more bytes are needed. Interim (1xx) responses are collected into
    the final one; a 101 is final. Raises only ``MalformedResponse``.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf already consumed
        self._reset()

    def _reset(self) -> None:
        self._state = _HEAD
        self._response: ParsedResponse | None = None
        self._interim: list[tuple[int, str, list[tuple[str, str]]]] = []
        self._body = bytearray()
        self._remaining = 0
        self._raw = bytearray()

    def feed(self, data: bytes) -> None:
        """Add bytes received from the server."""
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet part of a returned response."""
        return len(self._buf) - self._pos + len(self._raw)

    def preview(self, size: int = 200) -> bytes:
        """The first ``size`` bytes of the response being read (for error messages)."""
        return bytes((self._raw + self._buf[self._pos:])[:size])

    def take_rest(self) -> bytes:
        """Remove and return the unread bytes (what follows a 101 belongs to the new protocol)."""
        rest = bytes(self._buf[self._pos:])
        self._buf.clear()
        self._pos = 0
        return rest

    def _consume(self, size: int) -> bytes:
        start = self._pos
        self._pos = start + size
        piece = bytes(self._buf[start:self._pos])
        self._raw += piece
        if self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[:self._pos]  # released in amortised O(1) a byte
            self._pos = 0
        return piece

    def _line(self, limit: int, what: str) -> bytes | None:
        """The next CRLF-ended line (without it), or None when it has not all arrived."""
        end = self._buf.find(b"\r\n", self._pos)
        if end < 0:
            if len(self._buf) - self._pos > limit:
                raise MalformedResponse(f"{what} longer than {limit} bytes")
            return None
        line = self._consume(end + 2 - self._pos)[:-2]
        if b"\r" in line or b"\n" in line:
            raise MalformedResponse(f"a bare CR or LF in {what}: {line[:80]!r}")
        return line

    def next_response(self, method: str, *, eof: bool = False) -> ParsedResponse | None:
        """The next whole response to a ``method`` request, or None while incomplete.

        ``eof`` says the server closed the connection: a body delimited by the close is then
        complete. An incomplete response at ``eof`` stays None; the caller reports it.

        Raises:
            MalformedResponse: the bytes are not a valid HTTP/1.1 response.
        """
        while True:
            state = self._state
            if state == _HEAD:
                if not self._read_head(method):
                    return None
            elif state == _NO_BODY:
                return self._finish()
            elif state == _LENGTH:
                available = min(self._remaining, len(self._buf) - self._pos)
                if available:
                    self._body += self._consume(available)
                    self._remaining -= available
                if self._remaining:
                    return None
                return self._finish()
            elif state == _CHUNK_SIZE:
                line = self._line(MAX_CHUNK_LINE, "a chunk-size line")
                if line is None:
                    return None
                match = _CHUNK_LINE.fullmatch(line)
                if match is None:
                    raise MalformedResponse(f"invalid chunk-size line {line[:80]!r}")
                self._remaining = int(match[1], 16)
                self._state = _CHUNK_DATA if self._remaining else _TRAILERS
            elif state == _CHUNK_DATA:
                available = min(self._remaining, len(self._buf) - self._pos)
                if available:
                    self._body += self._consume(available)
                    self._remaining -= available
                if self._remaining:
                    return None
                self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(self._buf) - self._pos < 2:
                    return None
                if self._consume(2) != b"\r\n":
                    raise MalformedResponse("chunk data not followed by CRLF")
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                line = self._line(MAX_HEAD_SIZE, "the trailer section")
                if line is None:
                    return None
                if not line:
                    return self._finish()
                response = self._response
                if response is not None:
                    response.trailers.append(_header_line(line))
            else:  # _UNTIL_CLOSE
                rest = len(self._buf) - self._pos
                if rest:
                    self._body += self._consume(rest)
                if not eof:
                    return None
                if self._response is not None:
                    self._response.close_delimited = True
                return self._finish()

    def _read_head(self, method: str) -> bool:
        """Parse a head if it has all arrived; False while it has not."""
        end = self._buf.find(b"\r\n\r\n", self._pos)
        if end < 0:
            if len(self._buf) - self._pos > MAX_HEAD_SIZE:
                raise MalformedResponse(f"a response head longer than {MAX_HEAD_SIZE} bytes")
            return False
        block = self._consume(end + 4 - self._pos)[:-4]
        status_line, *lines = block.split(b"\r\n")
        for line in (status_line, *lines):
            if b"\r" in line or b"\n" in line:
                raise MalformedResponse(f"a bare CR or LF in the response head: {line[:80]!r}")
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise MalformedResponse(f"invalid status line {status_line[:80]!r}")
        headers = [_header_line(line) for line in lines]
        status = int(match[2])
        reason = match[3].decode("latin-1")
        if 100 <= status < 200 and status != 101:
            _refuse_framing(status, headers)
            self._interim.append((status, reason, headers))
            return True  # the final response follows
        self._response = ParsedResponse(match[1].decode("ascii"), status, reason, headers)
        self._state = self._framing(method, status, headers)
        return True

    def _framing(self, method: str, status: int, headers: list[tuple[str, str]]) -> int:
        """How the body ends (RFC 9112 section 6.3), as the reader state that reads it."""
        if status == 101 or status == 204:
            _refuse_framing(status, headers)
        if method == "HEAD" or status < 200 or status == 204 or status == 304:
            return _NO_BODY
        codings = [v for n, v in headers if n.lower() == "transfer-encoding"]
        lengths = [v for n, v in headers if n.lower() == "content-length"]
        if codings:
            if lengths:
                raise MalformedResponse("a response with both Transfer-Encoding and Content-Length "
                                        "(RFC 9112 section 6.2)")
            last = ",".join(codings).split(",")[-1].strip().lower()
            return _CHUNK_SIZE if last == "chunked" else _UNTIL_CLOSE
        if lengths:
            values = {v.strip() for value in lengths for v in value.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit() or not next(iter(values)).isascii():
                raise MalformedResponse(f"invalid Content-Length {', '.join(lengths)!r}")
            self._remaining = int(next(iter(values)))
            return _LENGTH
        return _UNTIL_CLOSE

    def _finish(self) -> ParsedResponse:
        response = self._response
        if response is None:  # pragma: no cover - a final head always comes first
            raise MalformedResponse("no response head")
        response.body = bytes(self._body)
        response.interim = self._interim
        response.raw = bytes(self._raw)
        self._reset()
        return response


def _header_line(line: bytes) -> tuple[str, str]:
    """A header (or trailer) line as ``(name, value)``; obs-fold and junk are refused."""
    match = _HEADER_LINE.fullmatch(line)
    if match is None:
        if line[:1] in (b" ", b"\t"):
            raise MalformedResponse(f"obs-fold (a line starting with whitespace): {line[:80]!r}")
        raise MalformedResponse(f"invalid header line {line[:80]!r}")
    return match[1].decode("ascii"), match[2].decode("latin-1")


def _refuse_framing(status: int, headers: list[tuple[str, str]]) -> None:
    """A 1xx or 204 response may not carry Content-Length or Transfer-Encoding (RFC 9110
    sections 8.6 and 6.1)."""
    for name, _ in headers:
        if name.lower() in ("content-length", "transfer-encoding"):
            raise MalformedResponse(f"a {status} response with {name} (RFC 9110 section 8.6)")
