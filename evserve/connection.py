"""The per-connection HTTP/1.1 state machine: parser events in, responses out, deadlines kept.

This module owns the life of one connection and nothing else. It never touches a socket: bytes
arrive through ``data_received``/``eof_received``, leave through a ``Transport``, and time comes in
as arguments, so the whole machine can be driven (and fuzzed) without the network.

States and legal moves (``MOVES``)::

    accept ─────────────┐
                        ▼
    IDLE ──first byte──▶ READING_HEADERS ──head──▶ READING_BODY ──end──▶ HANDLED
      ▲                         │  (no body) ─────────────────────────────▶ │
      │                         ▼                                           ▼
      └──────── keep-alive ─ WRITING ◀──────────── response complete ───────┘
                                │  (Connection: close, error, shutdown, EOF)
                                ▼
                             CLOSING ──flushed──▶ CLOSED      (any state ──abort──▶ CLOSED)

Deadlines, each counted from the start of its state (a byte does not reset them):
``keepalive_timeout`` in IDLE, ``header_timeout`` in READING_HEADERS, ``body_timeout`` in
READING_BODY. A new connection starts in READING_HEADERS: its first request is due within
``header_timeout`` of the accept (a client that sends nothing gets a 408, as from Node), and
``keepalive_timeout`` is the wait between requests only. In HANDLED the application owns the request and no read deadline runs. While output
is waiting for the peer to read, ``write_timeout`` runs (restarted whenever the peer reads some).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from evserve.config import Config
from evserve.errors import ParseError
from evserve.parser import BodyChunk, EndOfMessage, RequestHead, RequestParser
from evserve.status import reason_phrase
from evserve.writer import (
    LAST_CHUNK,
    body_allowed,
    frame_chunk,
    http_date,
    serialize_head,
    status_line,
)

if TYPE_CHECKING:
    from evserve.reactor import Reactor
    from evserve.request import Request
    from evserve.response import Response

__all__ = ["MOVES", "Connection", "State", "Transport"]

log = logging.getLogger("evserve.connection")
app_log = logging.getLogger("evserve")  # application errors, with their traceback (STYLE.md)

INF = float("inf")


class State(enum.IntEnum):
    """Where a connection is in its request/response cycle.

    An ``IntEnum`` so that the ``MOVES`` lookups on the per-request path hash in C (a plain
    ``Enum`` hashes through a Python-level ``__hash__``).
    """

    IDLE = 1  # between requests, waiting for the first byte of the next (keepalive_timeout)
    READING_HEADERS = 2  # a new connection, or part of a head received (header_timeout)
    READING_BODY = 3  # head parsed, body arriving (body_timeout)
    HANDLED = 4  # the application owns the request; it may answer now or later
    WRITING = 5  # response complete, output waiting for the peer to read
    CLOSING = 6  # the last response is flushing; the connection closes after it
    CLOSED = 7  # nothing more happens


_S = State
MOVES: dict[State, frozenset[State]] = {
    _S.IDLE: frozenset({_S.READING_HEADERS, _S.CLOSING, _S.CLOSED}),
    _S.READING_HEADERS: frozenset({_S.READING_BODY, _S.HANDLED, _S.CLOSING, _S.CLOSED}),
    _S.READING_BODY: frozenset({_S.HANDLED, _S.CLOSING, _S.CLOSED}),
    _S.HANDLED: frozenset({_S.WRITING, _S.CLOSING, _S.CLOSED}),
    _S.WRITING: frozenset({_S.IDLE, _S.READING_HEADERS, _S.CLOSING, _S.CLOSED}),
    _S.CLOSING: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}

_IDLE = State.IDLE
_READING_HEADERS = State.READING_HEADERS
_READING_BODY = State.READING_BODY
_HANDLED = State.HANDLED
_WRITING = State.WRITING
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Transport(Protocol):
    """What a connection needs from the byte pipe under it (a socket, or a fake in tests)."""

    def write(self, data: bytes) -> None:
        """Queue ``data``; it is sent in order, without blocking."""

    def send_file(self, file: Any, offset: int, count: int) -> None:
        """Queue ``count`` bytes of the open binary ``file`` from ``offset``; the transport closes it."""

    def buffer_size(self) -> int:
        """Bytes queued but not yet sent."""

    def pause_reading(self) -> None:
        """Stop delivering received data until ``resume_reading``."""

    def resume_reading(self) -> None:
        """Deliver received data again."""

    def close(self) -> None:
        """Close once everything queued is sent."""

    def abort(self) -> None:
        """Close now, dropping anything queued."""


Application = Callable[["Request", "Response"], object]


class Connection:
    """One HTTP/1.1 connection: parses requests, hands them to ``app``, frames the responses.

    Args:
        app: called as ``app(req, res)`` for each complete request; it may finish ``res`` before
            returning or later (from a timer, a coroutine or another thread via the reactor).
        config: limits and timeouts.
        transport: where response bytes go.
        reactor: the reactor running this connection (exposed to the application as
            ``req.reactor``); ``None`` when driven without one.
        peer: the peer's address as ``(host, port, ...)``.
        secure: whether the transport is TLS (sets ``req.protocol``).
        clock: returns the current time in seconds (``time.monotonic`` by default).
    """

    __slots__ = (
        "_body",
        "_clock",
        "_close_callbacks",
        "_config",
        "_head",
        "_in_process",
        "_keep_alive",
        "_linger",
        "_no_body",
        "_parser",
        "_peer_eof",
        "_res",
        "_stopping",
        "app",
        "deadline",
        "on_closed",
        "peer",
        "reactor",
        "requests_served",
        "secure",
        "state",
        "transport",
    )

    def __init__(
        self,
        app: Application,
        config: Config,
        transport: Transport,
        reactor: Reactor | None = None,
        peer: Any = None,
        *,
        secure: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self._config = config
        self.transport = transport
        self.reactor = reactor
        self.peer = peer
        self.secure = secure
        self._clock = clock
        self._parser = RequestParser(
            max_target_size=config.max_target_size,
            max_header_size=config.max_header_size,
            max_headers=config.max_headers,
            max_body_size=config.max_body_size,
        )
        self.state = _READING_HEADERS  # the first request is due within header_timeout
        self.deadline = clock() + config.header_timeout
        self._head: RequestHead | None = None
        self._body: list[bytes | bytearray] = []
        self._res: Response | None = None
        self._keep_alive = True
        self._linger = True
        self._no_body = False  # the streamed response now sent may carry no body (HEAD, 204, 304)
        self._peer_eof = False
        self._stopping = False
        self._in_process = False
        self.requests_served = 0
        self.on_closed: Callable[[Connection], object] | None = None
        self._close_callbacks: list[Callable[[], object]] = []

    # -- state -----------------------------------------------------------------------------

    def _move(self, new: State) -> None:
        if new not in MOVES[self.state]:
            raise RuntimeError(f"illegal connection move {self.state.name} -> {new.name}")
        self.state = new

    @property
    def linger_on_close(self) -> bool:
        """Whether closing should drain the peer's input for a while first (see the transport).

        False when nothing more can come: the peer sent EOF, or the last request asked for the
        close itself (``Connection: close``, HTTP/1.0), was read whole and nothing followed it.
        """
        return self._linger and not self._peer_eof

    @property
    def is_idle(self) -> bool:
        """True between requests, with nothing received of the next one."""
        return self.state is _IDLE

    @property
    def current_response(self) -> Response | None:
        """The response the application owns now, if any."""
        return self._res

    # -- input -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed bytes received from the peer."""
        if self.state is _CLOSED:
            return
        self._parser.receive_data(data)
        if self.state is _IDLE:
            self._move(_READING_HEADERS)
            self.deadline = self._clock() + self._config.header_timeout
        self._process()

    def eof_received(self) -> None:
        """The peer closed its sending side; requests already received are still answered."""
        if self.state is _CLOSED:
            return
        self._peer_eof = True
        self._parser.receive_data(b"")
        if self.state is _IDLE or (self.state is _READING_HEADERS and not self._parser.in_message):
            self._close()
            return
        self._process()

    def connection_lost(self) -> None:
        """The transport is gone (reset, error, or closed by us): free everything now."""
        if self.state is _CLOSED:
            return
        self.state = _CLOSED  # any state may end here
        self.deadline = INF
        res = self._res
        self._res = None
        self._body = []
        if res is not None:
            res._connection_lost()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("error in a connection close callback")
        if self.on_closed is not None:
            self.on_closed(self)

    def add_close_callback(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when the connection closes (at once if it already has)."""
        if self.state is _CLOSED:
            callback()
        else:
            self._close_callbacks.append(callback)

    def _process(self) -> None:
        """Turn buffered bytes into requests until one is left with the application."""
        if self._in_process:
            return
        self._in_process = True
        parser = self._parser
        try:
            while True:
                state = self.state
                if state is not _READING_HEADERS and state is not _READING_BODY:
                    if state is _IDLE and parser.buffered:
                        self._move(_READING_HEADERS)
                        self.deadline = self._clock() + self._config.header_timeout
                        continue
                    break
                try:
                    event = parser.next_event()
                except ParseError as exc:
                    self._protocol_error(exc.status, exc.reason, exc.head, exc.method)
                    break
                if event is None:
                    if state is _READING_HEADERS and not parser.in_message:
                        # Only empty lines arrived: still idle as far as deadlines go.
                        if self._peer_eof:
                            self._close()
                    break
                kind = type(event)
                if kind is RequestHead:
                    self._head = event  # type: ignore[assignment]
                    head: RequestHead = event  # type: ignore[assignment]
                    if head.content_length or head.chunked:
                        self._move(_READING_BODY)
                        self.deadline = self._clock() + self._config.body_timeout
                        if head.expect_continue:
                            self.transport.write(_CONTINUE)
                elif kind is BodyChunk:
                    # The body so far is one object: its first piece (kept without a copy, the
                    # common small body), then a bytearray the next pieces are appended to, so
                    # memory follows the body's bytes however finely the client split them.
                    body = self._body
                    if not body:
                        body.append(event.data)  # type: ignore[union-attr]
                    else:
                        whole = body[0]
                        if not isinstance(whole, bytearray):
                            whole = body[0] = bytearray(whole)
                        whole += event.data  # type: ignore[union-attr]
                elif kind is EndOfMessage:
                    self._dispatch()
        finally:
            self._in_process = False

    # -- handing requests to the application -------------------------------------------------

    def _dispatch(self) -> None:
        Request, Response = _REQUEST_CLASSES or _load_request_classes()
        head = self._head
        if head is None:  # pragma: no cover - the parser always gives a head first
            raise RuntimeError("end of message without a head")
        body = self._body
        raw_body = bytes(body[0]) if body else b""  # (bytes() of bytes is that same object)
        self._body = []
        self._move(_HANDLED)
        self.deadline = self._handler_deadline()
        self._keep_alive = head.keep_alive and not self._stopping
        req = Request(self, head, raw_body)
        res = Response(self, req)
        req.res = res
        self._res = res
        try:
            self.app(req, res)
        except Exception:
            app_log.exception("unhandled error in application %r", self.app)
            if self._res is res:
                if res.headers_sent:
                    self.abort()
                else:
                    self._send_error(500)
        if self._res is res and self.state is _HANDLED:
            # Answered later: stop reading until it is (pipelined bytes wait in the parser).
            self.transport.pause_reading()

    def _handler_deadline(self) -> float:
        timeout = self._config.handler_timeout
        return INF if timeout is None else self._clock() + timeout

    # -- output (called by Response) -------------------------------------------------------

    def send_complete(
        self,
        res: Response,
        status: int,
        block: str,
        body: bytes,
        reason: str | None = None,
    ) -> None:
        """Send a whole response with a body of known size, then finish the request.

        ``block`` is the application's header lines, already validated and formatted as
        ``"Name: value\r\n"`` each; the framing headers (Date, Content-Length, Connection) are
        the connection's to add (Date only when ``block`` has none).
        """
        if self._res is not res:
            return  # the connection was lost, or this is a stale response
        head = self._head
        date = _date_line() if "date" not in res._headers else ""  # Node keeps a Date set
        if status < 200 or status == 204:
            body = b""
            tail = date + _connection_line(self._keep_alive, head)
        elif (head is not None and head.method == "HEAD") or status == 304:
            length = "" if status == 304 else f"Content-Length: {len(body)}\r\n"
            body = b""
            tail = date + length + _connection_line(self._keep_alive, head)
        else:
            tail = f"{date}Content-Length: {len(body)}\r\n{_connection_line(self._keep_alive, head)}"
        data = f"{status_line(status, reason)}{block}{tail}\r\n".encode("latin-1")
        if not body:
            self.transport.write(data)
        elif len(body) < 65536:
            self.transport.write(data + body)
        else:
            self.transport.write(data)
            self.transport.write(body)
        self._finish(res)

    def send_head(
        self,
        res: Response,
        status: int,
        block: str,
        content_length: int | None,
        reason: str | None = None,
    ) -> bool:
        """Send the head of a streamed response; returns whether a body is chunked-framed.

        With ``content_length`` None the body is chunked on HTTP/1.1 and close-delimited on 1.0.
        """
        if self._res is not res:
            return False
        head = self._head
        method = head.method if head is not None else "GET"
        version = head.http_version if head is not None else "1.1"
        framing = ""
        chunked = False
        self._no_body = no_body = not body_allowed(method, status)
        if no_body:
            if status != 204 and status != 304 and content_length is not None:
                framing = f"Content-Length: {content_length}\r\n"
        elif content_length is not None:
            framing = f"Content-Length: {content_length}\r\n"
        elif version == "1.1":
            chunked = True
            framing = "Transfer-Encoding: chunked\r\n"
        else:
            self._keep_alive = False  # close-delimited body for an HTTP/1.0 client
        date = _date_line() if "date" not in res._headers else ""  # Node keeps a Date set
        tail = date + framing + _connection_line(self._keep_alive, head)
        self.transport.write(f"{status_line(status, reason)}{block}{tail}\r\n".encode("latin-1"))
        return chunked

    def send_body(self, res: Response, data: bytes, chunked: bool) -> None:
        """Send a piece of a streamed body; dropped when the response may carry none."""
        if self._res is not res or not data or self._no_body:
            return
        self.transport.write(frame_chunk(data) if chunked else data)

    def send_file(self, res: Response, file: Any, offset: int, count: int) -> None:
        """Send ``count`` bytes of ``file`` as (part of) a Content-Length-framed body."""
        if self._res is not res or self._no_body:
            file.close()
            return
        self.transport.send_file(file, offset, count)

    def send_end(self, res: Response, chunked: bool) -> None:
        """End a streamed response and finish the request."""
        if self._res is not res:
            return
        if chunked:
            self.transport.write(LAST_CHUNK)
        self._no_body = False
        self._finish(res)

    def send_informational(self, res: Response, status: int, lines: list[tuple[str, str]]) -> None:
        """Send a 1xx interim response (e.g. 103 Early Hints) before the final one."""
        if self._res is res and 100 <= status < 200:
            self.transport.write(serialize_head(status, lines))

    def write_blocked(self) -> bool:
        """Whether unsent output is above the high-water mark (the writer should wait)."""
        return self.transport.buffer_size() > self._config.write_buffer_size

    def _finish(self, res: Response) -> None:
        """The current response is complete: move on to the next request, or close."""
        self._res = None
        self.requests_served += 1
        if self.state is _CLOSED:
            return
        self._move(_WRITING)
        if not self._keep_alive or self._stopping or (
            self._peer_eof and not self._parser.buffered
        ):
            if self._parser.is_done and not self._parser.buffered:
                # The client asked for this close and its request was read to the end (a
                # refusal leaves the parser in error, not done): it may send nothing more (RFC
                # 9112 section 9.6), so there is no input to protect the response from.
                self._linger = False
            self._close()
            return
        self.transport.resume_reading()
        if self.transport.buffer_size() > self._config.write_buffer_size:
            return  # wait in WRITING; drained() moves on
        self._next_request()

    def _next_request(self) -> None:
        if self._stopping:
            # shutdown() came while WRITING: like a shutdown during HANDLED, the response in
            # flight is the last; a pipelined request already buffered is not started.
            self._close()
            return
        if self._parser.buffered:
            self._move(_READING_HEADERS)
            self.deadline = self._clock() + self._config.header_timeout
            if not self._in_process:
                self._process()
        else:
            self._move(_IDLE)
            self.deadline = self._clock() + self._config.keepalive_timeout
            if self._peer_eof:
                self._close()

    def drained(self) -> None:
        """The transport's backlog fell below the low-water mark."""
        if self.state is _WRITING:
            self._next_request()
        elif self._res is not None:
            self._res._drained()

    # -- errors, timeouts, closing -------------------------------------------------------------

    def _protocol_error(self, status: int, reason: str, head: RequestHead | None = None,
                        method: str | None = None) -> None:
        """Answer a request the server refuses, then close.

        When the request's head is known (a body over the limit, a body timeout, a framing
        error found after a well-formed head) and the application can render errors (an
        ``App``: ``render_protocol_error``), the application answers, so its error middleware
        shapes the page (JSON for a JSON API). Otherwise a plain-text page is sent.
        """
        log.debug("protocol error from %s: %d %s", self.peer, status, reason)
        self._keep_alive = False
        if head is None and self.state is _READING_BODY:
            head = self._head
        render = getattr(self.app, "render_protocol_error", None)
        if head is not None and render is not None and self._res is None:
            self._dispatch_error(head, status, reason, render)
            return
        self._head = None
        self._send_error(status, reason, method)

    def _dispatch_error(self, head: RequestHead, status: int, reason: str, render: Callable[..., object]) -> None:
        Request, Response = _REQUEST_CLASSES or _load_request_classes()
        self._head = head
        self._body = []
        self._move(_HANDLED)
        self.deadline = self._handler_deadline()
        req = Request(self, head, b"")
        res = Response(self, req)
        req.res = res
        self._res = res
        try:
            render(req, res, status, reason)
        except Exception:
            app_log.exception("error rendering a %d for %r", status, self.app)
            if self._res is res:
                self._send_error(status, reason)
                return
        if self._res is res and self.state is _HANDLED:
            self.transport.pause_reading()

    def _send_error(self, status: int, reason: str | None = None, method: str | None = None) -> None:
        """Answer with a plain error page and close after it is flushed.

        As the App's default page: the detail for a 4xx, only the reason phrase for a 5xx. No
        body for a HEAD request (``method`` is the one read from a request line that failed
        later on, when no head could be made).
        """
        detail = f": {reason}" if reason and status < 500 else ""
        body = f"{status} {reason_phrase(status)}{detail}\n".encode("utf-8", "replace")
        lines = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Content-Type-Options", "nosniff"),
            ("Date", http_date(int(time.time()))),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
        head = self._head
        if (head.method if head is not None else method) == "HEAD":
            body = b""
        self.transport.write(serialize_head(status, lines, validate=False) + body)
        if self._res is not None:
            res, self._res = self._res, None
            res._abandoned()
        self._close()

    def check_deadline(self, now: float) -> bool:
        """Act on a passed deadline; returns whether one had passed."""
        if now < self.deadline:
            return False
        state = self.state
        if state is _READING_HEADERS or state is _READING_BODY:
            log.debug("%s timeout from %s", state.value, self.peer)
            self._protocol_error(408, "request timeout")
        elif state is _IDLE:
            self._close()
        elif state is _HANDLED and self._res is not None and not self._res.headers_sent:
            self._handler_timed_out(self._res)
        else:
            self.deadline = INF
            return False
        return True

    def _handler_timed_out(self, res: Response) -> None:
        """``handler_timeout`` passed with no response started: 503, and the user is told."""
        req = res.req
        app_log.error(
            "%s %s was not answered within handler_timeout (%.3g s): sent 503; a handler "
            "neither answered nor called next(err)", req.method, req.original_url,
            self._config.handler_timeout,
        )
        res.status_code = 503  # what the access log shows for the abandoned response
        self._send_error(503, "the application did not answer in time")

    def write_timed_out(self) -> None:
        """The peer left output unread past ``write_timeout``: drop the connection."""
        log.debug("write timeout to %s", self.peer)
        self.abort()

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the in-flight response."""
        self._stopping = True
        self._keep_alive = False
        if self.state is _IDLE or (self.state is _READING_HEADERS and not self._parser.in_message):
            self._close()

    def _close(self) -> None:
        if self.state is _CLOSED or self.state is _CLOSING:
            return
        self.state = _CLOSING  # legal from every open state
        self.deadline = INF
        self.transport.close()

    def abort(self) -> None:
        """Drop the connection now, discarding unsent output."""
        if self.state is _CLOSED:
            return
        self.transport.abort()
        self.connection_lost()


# The app layer sits above this one: its Request/Response classes are imported on first use.
_REQUEST_CLASSES: tuple[type[Request], type[Response]] | None = None


def _load_request_classes() -> tuple[type[Request], type[Response]]:
    global _REQUEST_CLASSES
    from evserve.request import Request
    from evserve.response import Response

    _REQUEST_CLASSES = (Request, Response)
    return _REQUEST_CLASSES


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


def _connection_line(keep_alive: bool, head: RequestHead | None) -> str:
    if not keep_alive:
        return "Connection: close\r\n"
    if head is not None and head.http_version == "1.0":
        return "Connection: keep-alive\r\n"
    return ""
