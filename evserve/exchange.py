"""The exchange: one request as the connection received it, and the only way to answer it.

This is the seam between the wire and whatever answers requests. The connection makes one
``Exchange`` per request and hands it to its **handler** (the ``Handler`` protocol of ``evserve.handlers``): the
Express layer (``App``) is one handler, a plain ``fn(exchange)`` another. A handler reads the
head and the body, then answers through the exchange's methods, and nothing else: it never sees
the connection's state, the parser or the socket.

Answering, in order::

    inform(100..199)*  then one of
        respond(status, headers, body)                       a whole response
        start_response(status, headers, content_length=...)  then write()* / send_file()*, end()
        upgrade(protocol, headers)                           101, then the connection is the
                                                             protocol's (WebSocket and the like)
    or at any time: abort()

Framing (Content-Length, chunked, close-delimited, no body for HEAD/1xx/204/304) is not the
handler's to write: ``writer.frame_response`` decides it from the request and the status, and the
exchange writes what it says. Header lines are ``(name, value)`` pairs, each validated; a
framework that validated every value when it was set (``Response`` does) may pass its lines
formatted instead, as ``validated_lines=``, which are written as they are. Bodies are bytes-like
(``bytes``, ``bytearray``, ``memoryview``); anything else raises ``TypeError`` before a byte is
written.

Guarantees to the handler: once the response is complete (``state`` DONE) or the connection is
gone (LOST), further answers are ignored, never raised (``ExchangeStateError`` is raised only for
a misuse on a live exchange, such as a second response). ``on_lost`` is called at most once,
and never after the response was complete; ``on_drained`` only while a body is being streamed.
"""

from __future__ import annotations

import enum
import io
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from evserve.errors import ResponseStateError
from evserve.parser import RequestHead
from evserve.status import reason_phrase
from evserve.writer import (
    LAST_CHUNK,
    Framing,
    chunk_size_line,
    frame_chunk,
    frame_response,
    http_date,
    serialize_head,
    status_line,
    validate_header,
)

if TYPE_CHECKING:
    from evserve.connection import Connection, SwitchedProtocol
    from evserve.handlers import Handler
    from evserve.reactor import Reactor

__all__ = [
    "BytesLike",
    "Exchange",
    "ExchangeListener",
    "HeaderLines",
    "ResponseState",
    "plain_error",
]

log = logging.getLogger("evserve.exchange")

# Header lines: (name, value) pairs, validated by the exchange.
HeaderLines = Iterable[tuple[str, str]]
BytesLike = bytes | bytearray | memoryview


class ResponseState(enum.IntEnum):
    """Where the answer to one request stands."""

    FRESH = 1  # nothing sent: any answer may start
    STREAMING = 2  # the head is sent; body parts follow until end()
    DONE = 3  # the response is complete (handed to the transport) or the server sent one
    LOST = 4  # the connection went away (or was aborted) before the response was complete


_FRESH = ResponseState.FRESH
_STREAMING = ResponseState.STREAMING
_DONE = ResponseState.DONE
_LOST = ResponseState.LOST
_NO_BODY = Framing.NO_BODY
_LENGTH = Framing.LENGTH
_CHUNKED = Framing.CHUNKED
_BIG_BODY = 65536  # a whole body above this is written apart from its head (no big copy)
# Lines that state the framing: the writer's to decide, never a handler's.
_FRAMING_NAMES = frozenset({"content-length", "transfer-encoding", "connection"})


class Exchange:
    """One request and its response, between a connection and its handler.

    Attributes:
        head: the request line and headers (``RequestHead``: method, target, http_version,
            headers, ...).
        body: the request body, whole (the handler is called once it has arrived).
        state: the response's ``ResponseState``.
        keep_alive: whether the connection may carry another request after this one; the
            request decides it, ``close_after()`` and the framing can only turn it off.
        listener: an object told of the same events as the three hooks below, through its
            ``exchange_drained()``, ``exchange_lost()`` and ``exchange_taken_over(status)``
            (see ``ExchangeListener``): how a framework follows every exchange without making
            three callables per request. Let go of once the exchange is over.
        on_drained: called (no arguments) when unsent output falls back below the low-water
            mark while a body is being streamed; set by the handler.
        on_lost: called once if the connection goes away before the response is complete.
        on_taken_over: called once, with the status sent, if the server answers in the
            handler's place (a ``handler_timeout`` 503); later answers are ignored.
    """

    __slots__ = (
        "_chunked",
        "_conn",
        "_remaining",
        "body",
        "head",
        "keep_alive",
        "listener",
        "on_drained",
        "on_lost",
        "on_taken_over",
        "state",
    )

    def __init__(self, conn: Connection, head: RequestHead, body: bytes, keep_alive: bool) -> None:
        self._conn = conn
        self.head = head
        self.body = body
        self.keep_alive = keep_alive
        self.state = _FRESH
        # _chunked and _remaining (body bytes still owed under a declared length, -1 when not
        # counted) are set by start_response: only a STREAMING exchange reads them.
        self.listener: ExchangeListener | None = None
        self.on_drained: Callable[[], object] | None = None
        self.on_lost: Callable[[], object] | None = None
        self.on_taken_over: Callable[[int], object] | None = None

    # -- what the handler may read -------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The connection the request arrived on."""
        return self._conn

    @property
    def handler(self) -> Handler:
        """The handler the connection hands its requests to (the top-level one)."""
        return self._conn.handler

    @property
    def reactor(self) -> Reactor | None:
        """The reactor running the connection (``None`` when driven without one)."""
        return self._conn.reactor

    @property
    def peer(self) -> Any:
        """The peer's address, as the socket gives it (``(host, port, ...)`` for TCP)."""
        return self._conn.peer

    @property
    def secure(self) -> bool:
        """Whether the connection is encrypted (TLS)."""
        return self._conn.secure

    @property
    def write_blocked(self) -> bool:
        """Whether unsent output is above the high-water mark (a streaming writer should wait
        for ``on_drained``)."""
        return self._conn.write_blocked()

    @property
    def headers_sent(self) -> bool:
        """Whether the response head has gone out (or the exchange is over)."""
        return self.state is not _FRESH

    def add_close_callback(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when the connection closes (at once if it has)."""
        self._conn.add_close_callback(callback)

    # -- answering -----------------------------------------------------------------------------

    def _check_fresh(self) -> bool:
        """Whether a response may start; False (ignore the call) once the exchange is over."""
        state = self.state
        if state is _FRESH:
            return True
        if state is _STREAMING:
            raise ResponseStateError("a response was already started for this request")
        return False

    def respond(
        self,
        status: int,
        headers: HeaderLines = (),
        body: BytesLike = b"",
        *,
        reason: str | None = None,
        add_date: bool = True,
        validated_lines: str | None = None,
    ) -> None:
        """Send a whole response: head and ``body`` (framed by Content-Length) at once.

        For a response that may carry no body (HEAD, 1xx, 204, 205, 304) the body is not sent;
        a HEAD response states its length. ``add_date`` adds a Date line (pairs that include a
        Date turn it off). ``validated_lines``, when given, replaces ``headers``: header lines
        already formatted as ``"Name: value\\r\\n"`` and validated by the caller (token
        names, values without CR, LF or other controls, no Content-Length, Transfer-Encoding
        or Connection line), written as they are.

        Raises:
            ResponseStateError: a streamed response was started and not ended.
            ValueError: an invalid header, status or reason; a framing header among the pairs
                (Content-Length, Transfer-Encoding: the writer sets those).
            TypeError: ``body`` is not bytes-like.
        """
        if self.state is not _FRESH and not self._check_fresh():
            return
        if status < 200:
            raise ValueError(f"{status} is not a final status: use inform() or upgrade()")
        if type(body) is not bytes:
            body = _as_bytes(body, "respond")
        head = self.head
        if validated_lines is None:
            validated_lines, add_date = self._header_block(headers, add_date)
        framing, lines, self.keep_alive = frame_response(
            head.method, head.http_version, status, len(body), self.keep_alive)
        date = _date_line() if add_date else ""
        data = f"{status_line(status, reason)}{validated_lines}{date}{lines}\r\n".encode("latin-1")
        self.state = _DONE
        self.listener = self.on_drained = self.on_lost = self.on_taken_over = None  # (_let_go)
        transport = self._conn.transport
        if framing is _NO_BODY or not body:
            transport.write(data)
        elif len(body) < _BIG_BODY:
            transport.write(data + body)
        else:
            transport.write(data)
            transport.write(body)
        self._conn.response_complete(self)

    def start_response(
        self,
        status: int,
        headers: HeaderLines = (),
        *,
        content_length: int | None = None,
        reason: str | None = None,
        add_date: bool = True,
        validated_lines: str | None = None,
    ) -> bool:
        """Send the head of a response whose body follows through ``write``/``send_file``.

        With ``content_length`` None the body is chunked for an HTTP/1.1 client and ends with
        the connection for an HTTP/1.0 one. Returns whether a body may follow: for HEAD, 1xx,
        204 and 304 the head is the whole response, and the exchange is DONE on return.

        ``validated_lines`` is as for ``respond``.

        Raises:
            ResponseStateError: a response was already started.
            ValueError: as for ``respond``, and for a negative ``content_length``.
            TypeError: ``content_length`` is not an int.
        """
        if not self._check_fresh():
            return False
        if status < 200:
            raise ValueError(f"{status} is not a final status: use inform() or upgrade()")
        if content_length is not None:
            if type(content_length) is not int:
                raise TypeError(f"content_length must be an int, not {content_length!r}")
            if content_length < 0:
                raise ValueError(f"content_length must be >= 0, not {content_length}")
        head = self.head
        if validated_lines is None:
            validated_lines, add_date = self._header_block(headers, add_date)
        framing, lines, self.keep_alive = frame_response(
            head.method, head.http_version, status, content_length, self.keep_alive)
        date = _date_line() if add_date else ""
        self._conn.transport.write(
            f"{status_line(status, reason)}{validated_lines}{date}{lines}\r\n".encode("latin-1"))
        if framing is _NO_BODY:
            self.state = _DONE
            self._let_go()
            self._conn.response_complete(self)
            return False
        self._chunked = framing is _CHUNKED
        self._remaining: int = content_length if content_length is not None and framing is _LENGTH else -1
        self.state = _STREAMING
        return True

    def write(self, data: BytesLike) -> bool:
        """Send a piece of the body; returns False when the writer should wait for
        ``on_drained`` (output above the high-water mark) or stop (the exchange is over).

        Raises:
            ResponseStateError: no response was started.
            TypeError: ``data`` is not bytes-like.
            ValueError: ``data`` would pass the declared ``content_length``.
        """
        if type(data) is not bytes:
            data = _as_bytes(data, "write")
        state = self.state
        if state is not _STREAMING:
            if state is _FRESH:
                raise ResponseStateError("write() before start_response()")
            return False
        if data:
            if self._remaining >= 0:
                self._count(len(data))
            self._conn.transport.write(frame_chunk(data) if self._chunked else data)
        return not self._conn.write_blocked()

    def send_file(self, file: Any, offset: int, count: int) -> None:
        """Send ``count`` bytes of the open binary ``file`` from ``offset`` as part of the body
        (zero-copy where the transport can); the file is closed once sent, or at once when the
        exchange takes no more body.

        Raises:
            ResponseStateError: no response was started.
            TypeError: ``file`` is open in text mode.
            ValueError: a negative ``offset`` or ``count``, or ``count`` bytes would pass the
                declared ``content_length``.
        """
        if isinstance(file, io.TextIOBase):
            file.close()
            raise TypeError("send_file() needs a file opened in binary mode ('rb')")
        if offset < 0 or count < 0:
            file.close()
            raise ValueError(f"send_file() needs offset >= 0 and count >= 0, not {offset}, {count}")
        if self.state is not _STREAMING or count == 0:
            file.close()
            if self.state is _FRESH:
                raise ResponseStateError("send_file() before start_response()")
            return
        if self._remaining >= 0:
            try:
                self._count(count)
            except ValueError:
                file.close()
                raise
        transport = self._conn.transport
        if self._chunked:
            transport.write(chunk_size_line(count))
            transport.send_file(file, offset, count)
            transport.write(b"\r\n")
        else:
            transport.send_file(file, offset, count)

    def end(self, data: BytesLike = b"") -> None:
        """Send ``data`` last and complete the streamed response (ignored once over).

        Raises:
            ResponseStateError: no response was started.
            TypeError: ``data`` is not bytes-like.
            ValueError: the body would pass, or falls short of, the declared
                ``content_length`` (the connection is aborted for a short one).
        """
        if type(data) is not bytes:
            data = _as_bytes(data, "end")
        state = self.state
        if state is not _STREAMING:
            if state is _FRESH:
                raise ResponseStateError("end() before start_response()")
            return
        if self._remaining >= 0:
            if data:
                self._count(len(data))
            if self._remaining:
                # The head promised more: the peer would wait for bytes that never come, or
                # read the next response as the rest of this one. Cut the connection.
                missing = self._remaining
                self._conn.abort()
                raise ValueError(f"the response ended {missing} bytes short of its declared "
                                 "Content-Length: connection aborted")
        transport = self._conn.transport
        if self._chunked:
            transport.write(frame_chunk(data) + LAST_CHUNK if data else LAST_CHUNK)
        elif data:
            transport.write(data)
        self.state = _DONE
        self._let_go()
        self._conn.response_complete(self)

    def inform(self, status: int, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Send an interim 1xx response (103 Early Hints, 100 Continue) before the final one.

        Not sent to an HTTP/1.0 client (RFC 9110 section 15.2), nor a 100 when the connection
        already answered the request's ``Expect: 100-continue``.

        Raises:
            ValueError: ``status`` is not 100-199, or is 101 (use ``upgrade``); bad headers, or
                a framing header (Content-Length, Transfer-Encoding, Connection).
            ResponseStateError: the final response was already started.
        """
        if not 100 <= status <= 199 or status == 101:
            raise ValueError(f"inform() takes an interim status 100-199 other than 101, not {status}")
        lines = list(headers)
        for name, value in lines:
            _check_bodyless_line(name, value)
            if name.lower() == "connection":
                raise ValueError("a 1xx response carries no Connection header")
        state = self.state
        if state is _STREAMING:
            raise ResponseStateError("inform() after the final response was started")
        head = self.head
        if state is not _FRESH or head.http_version != "1.1" or (status == 100 and head.expect_continue):
            return
        self._conn.transport.write(serialize_head(status, lines))

    def upgrade(self, protocol: SwitchedProtocol, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Answer 101 Switching Protocols and hand the connection to ``protocol``.

        ``headers`` carry what the new protocol's handshake needs (``Upgrade``, ``Connection:
        Upgrade``, ...). The HTTP deadlines stop; ``protocol.connection_made(transport)`` is
        called, then ``data_received`` with the bytes that followed the request, if any.
        The server still counts the connection and asks the protocol to ``shutdown()`` when it
        stops.

        Raises:
            ResponseStateError: a response was already started, or the request cannot switch
                (an HTTP/1.0 request, or the connection is to close after it).
        """
        if not self._check_fresh():
            return
        if self.head.http_version != "1.1" or not self.keep_alive:
            raise ResponseStateError("this request cannot switch protocols (HTTP/1.0, or closing)")
        lines = list(headers)
        for name, value in lines:
            _check_bodyless_line(name, value)
        self._conn.transport.write(serialize_head(101, lines))
        self.state = _DONE
        self._let_go()
        self._conn.switch_protocol(self, protocol)

    def close_after(self) -> None:
        """Close the connection once this response is sent (``Connection: close`` is added
        when the head has not gone out yet)."""
        self.keep_alive = False

    def abort(self) -> None:
        """Drop the connection now, discarding unsent output (a response cut short)."""
        if self.state is _FRESH or self.state is _STREAMING:
            self._conn.abort()

    # -- called by the connection ----------------------------------------------------------------

    def connection_lost(self) -> None:
        """The connection went away before the response was complete: the listener and
        ``on_lost`` are told."""
        if self.state is _DONE or self.state is _LOST:
            return
        self.state = _LOST
        listener = self.listener
        callback = self.on_lost
        self._let_go()
        if listener is not None:
            listener.exchange_lost()
        if callback is not None:
            callback()

    def drained(self) -> None:
        """Unsent output fell below the low-water mark: the listener and ``on_drained`` are
        told."""
        if self.state is not _STREAMING:
            return
        if self.listener is not None:
            self.listener.exchange_drained()
        callback = self.on_drained
        if callback is not None:
            callback()

    def take_over(self, status: int, reason: str) -> None:
        """Answer in the handler's place with a plain error page, then close (the handler
        did not answer in time); ``on_taken_over`` is told, and the handler's later answers
        are ignored."""
        if self.state is not _FRESH:
            return
        listener = self.listener
        callback = self.on_taken_over
        plain_error(self, status, reason)
        if listener is not None:
            listener.exchange_taken_over(status)
        if callback is not None:
            callback(status)

    # -- helpers ---------------------------------------------------------------------------------

    def _let_go(self) -> None:
        """Drop the listener and hooks once the exchange is over: nothing more is told, and the
        handler's objects are not kept alive by (nor in a cycle with) the exchange."""
        self.listener = self.on_drained = self.on_lost = self.on_taken_over = None

    def _count(self, size: int) -> None:
        """Count ``size`` body bytes against the declared length; refuse what would pass it."""
        if size > self._remaining:
            raise ValueError(f"{size} bytes would pass the declared Content-Length "
                             f"({self._remaining} bytes left): nothing sent")
        self._remaining -= size

    def _header_block(self, headers: HeaderLines, add_date: bool) -> tuple[str, bool]:
        """The pairs as one validated, CRLF-ended block, and whether a Date must still be added."""
        parts: list[str] = []
        for name, value in headers:
            validate_header(name, value)
            key = name.lower()
            if key in _FRAMING_NAMES:
                if key == "connection":
                    if "close" in {t.strip().lower() for t in value.split(",")}:
                        self.keep_alive = False
                    continue
                raise ValueError(f"{name} is set by the writer from the response; pass "
                                 "content_length= to start_response instead")
            if key == "date":
                add_date = False
            parts.append(f"{name}: {value}\r\n")
        return "".join(parts), add_date

    def __repr__(self) -> str:
        return f"<Exchange {self.head.method} {self.head.target} {self.state.name}>"


def _as_bytes(data: object, what: str) -> bytes:
    """A body piece as bytes: ``bytearray`` and ``memoryview`` are copied (a view of wider
    items counts its bytes, not its items); anything else is a mistake."""
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, bytes):  # a bytes subclass
        return bytes(data)
    raise TypeError(f"{what}() takes bytes, bytearray or memoryview, not {type(data).__name__}")


def _check_bodyless_line(name: str, value: str) -> None:
    """Validate a header line of a 1xx response, which may state no body framing (RFC 9110
    sections 8.6 and 6.4.1)."""
    validate_header(name, value)
    if name.lower() in ("content-length", "transfer-encoding"):
        raise ValueError(f"a 1xx response carries no {name}")


def plain_error(exchange: Exchange, status: int, reason: str | None = None) -> None:
    """Answer ``exchange`` with a plain-text error page and close the connection after it.

    The page shows the detail for a 4xx and only the reason phrase for a 5xx (a server's
    internals stay on the server).
    """
    detail = f": {reason}" if reason and status < 500 else ""
    body = f"{status} {reason_phrase(status)}{detail}\n".encode("utf-8", "replace")
    exchange.close_after()
    exchange.respond(status, (
        ("Content-Type", "text/plain; charset=utf-8"),
        ("X-Content-Type-Options", "nosniff"),
    ), body)


_date_second = -1
_date = ""


def _date_line() -> str:
    """The ``Date`` header line, formatted at most once per second."""
    global _date_second, _date
    now = int(time.time())
    if now != _date_second:
        _date = f"Date: {http_date(now)}\r\n"
        _date_second = now
    return _date


class ExchangeListener(Protocol):
    """What a framework gives ``Exchange.listener`` to follow an exchange (a ``Response`` is one)."""

    def exchange_drained(self) -> object:
        """Unsent output fell back below the low-water mark while the body streams."""

    def exchange_lost(self) -> object:
        """The connection went away before the response was complete."""

    def exchange_taken_over(self, status: int) -> object:
        """The server answered in the handler's place with ``status``."""
