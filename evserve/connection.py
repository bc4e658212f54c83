"""The per-connection HTTP/1.1 state machine: parser events in, exchanges out, deadlines kept.

This module owns the life of one connection and nothing else. It never touches a socket: bytes
arrive through ``data_received``/``eof_received``, leave through a ``Transport``, and time comes in
as arguments, so the whole machine can be driven (and fuzzed) without the network. Each request
becomes an ``Exchange`` handed to the connection's handler (``evserve.exchange``); the handler
answers through it, and the exchange tells the connection when the response is complete.

States and legal moves (``MOVES``; every change of ``state`` is checked against it)::

    accept ─────────────┐
                        ▼
    IDLE ──first byte──▶ READING_HEADERS ──head──▶ READING_BODY ──end──▶ HANDLED ──101──▶ SWITCHED
      ▲                         │  (no body) ─────────────────────────────▶ │
      │                         ▼                                           ▼
      └──────── keep-alive ─ WRITING ◀──────────── response complete ───────┘
                                │  (Connection: close, error, shutdown, EOF)
                                ▼
                             CLOSING ──flushed──▶ CLOSED      (any state ──lost/abort──▶ CLOSED)

Deadlines, each counted from the start of its state (a byte does not reset them):
``keepalive_timeout`` in IDLE, ``header_timeout`` in READING_HEADERS, ``body_timeout`` in
READING_BODY, ``handler_timeout`` (when set) in HANDLED until the response starts. A new
connection starts in READING_HEADERS: its first request is due within ``header_timeout`` of the
accept (a client that sends nothing gets a 408, as from Node), and ``keepalive_timeout`` is the
wait between requests only. While output is waiting for the peer to read, the transport's
``write_timeout`` runs. In SWITCHED the connection belongs to another protocol (``upgrade``),
which keeps its own deadlines.

Two facts are kept beside the state because they cut across it: the peer's end of input
(``peer_eof``: a client may half-close after its last request and still read the answers) and a
graceful shutdown in progress (``stopping``: the response in flight is the last).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Coroutine
from types import CoroutineType
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from evserve.config import Config
from evserve.errors import ParseError
from evserve.exchange import Exchange, plain_error
from evserve.handlers import Handler, as_handler
from evserve.headers import Headers
from evserve.parser import BodyChunk, EndOfMessage, RequestHead, RequestParser
from evserve.tasks import Future, run_coroutine
from evserve.writer import serialize_head

if TYPE_CHECKING:
    from evserve.reactor import Reactor

__all__ = ["MOVES", "Connection", "State", "SwitchedProtocol", "Transport"]

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
    HANDLED = 4  # the handler owns the request; it may answer now or later
    WRITING = 5  # response complete, output waiting for the peer to read
    CLOSING = 6  # the last response is flushing; the connection closes after it
    CLOSED = 7  # nothing more happens
    SWITCHED = 8  # after a 101: the bytes belong to another protocol (see Exchange.upgrade)


_S = State
MOVES: dict[State, frozenset[State]] = {
    _S.IDLE: frozenset({_S.READING_HEADERS, _S.CLOSING, _S.CLOSED}),
    _S.READING_HEADERS: frozenset({_S.READING_BODY, _S.HANDLED, _S.CLOSING, _S.CLOSED}),
    _S.READING_BODY: frozenset({_S.HANDLED, _S.CLOSING, _S.CLOSED}),
    _S.HANDLED: frozenset({_S.WRITING, _S.SWITCHED, _S.CLOSING, _S.CLOSED}),
    _S.WRITING: frozenset({_S.IDLE, _S.READING_HEADERS, _S.CLOSING, _S.CLOSED}),
    _S.SWITCHED: frozenset({_S.CLOSING, _S.CLOSED}),
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
_SWITCHED = State.SWITCHED

_CONTINUE = serialize_head(100, ())
# What each reading state waits for, for the log line of its timeout.
_WAITING_FOR = {_IDLE: "next request", _READING_HEADERS: "request head", _READING_BODY: "request body"}


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


class SwitchedProtocol(Protocol):
    """What takes a connection over after a 101 (``Exchange.upgrade``): a WebSocket, say.

    The connection forwards its transport's events to it; it writes through the transport it
    is given and closes it when done. ``shutdown`` asks for a graceful end (the server stops).
    """

    def connection_made(self, transport: Transport) -> None:
        """The protocol owns ``transport`` from now on."""

    def data_received(self, data: bytes) -> None:
        """Bytes from the peer (the first call carries those that followed the request)."""

    def eof_received(self) -> None:
        """The peer closed its sending side."""

    def drained(self) -> None:
        """Unsent output fell below the low-water mark."""

    def connection_lost(self) -> None:
        """The connection is closed; nothing more is delivered."""

    def shutdown(self) -> None:
        """The server is stopping: end the protocol's session gracefully, then close."""


class Connection:
    """One HTTP/1.1 connection: parses requests, hands each to its handler as an ``Exchange``.

    Args:
        handler: what answers the requests: a ``Handler`` (an ``App`` is one), or anything
            ``exchange.as_handler`` accepts (``fn(req, res)``, ``fn(exchange)``).
        config: limits and timeouts.
        transport: where response bytes go.
        reactor: the reactor running this connection (exposed to handlers); ``None`` when
            driven without one.
        peer: the peer's address as ``(host, port, ...)``.
        secure: whether the transport is TLS (``req.protocol`` says https).
        clock: returns the current time in seconds (``time.monotonic`` by default).
    """

    __slots__ = (
        "_body",
        "_clock",
        "_close_callbacks",
        "_config",
        "_exchange",
        "_head",
        "_in_process",
        "_linger",
        "_parser",
        "_protocol",
        "deadline",
        "handler",
        "on_closed",
        "peer",
        "peer_eof",
        "reactor",
        "requests_served",
        "secure",
        "state",
        "stopping",
        "transport",
    )

    def __init__(
        self,
        handler: Any,
        config: Config,
        transport: Transport,
        reactor: Reactor | None = None,
        peer: Any = None,
        *,
        secure: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler: Handler = as_handler(handler)
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
        self._exchange: Exchange | None = None
        self._protocol: SwitchedProtocol | None = None
        self._linger = True
        self.peer_eof = False  # the peer closed its sending side
        self.stopping = False  # a graceful shutdown: the response in flight is the last
        self._in_process = False  # _process is on the stack (it is not re-entered)
        self.requests_served = 0
        self.on_closed: Callable[[Connection], object] | None = None
        self._close_callbacks: list[Callable[[], object]] = []

    # -- state -----------------------------------------------------------------------------

    def _move(self, new: State) -> None:
        if new not in MOVES[self.state]:
            self._illegal(new)
        self.state = new

    # The moves every request makes (IDLE -> READING_HEADERS -> HANDLED -> WRITING -> IDLE) are
    # written out where they happen, as `if new not in MOVES[self.state]: self._illegal(new)`
    # then the assignment: the same check as _move, without a call per move (measured: 1.5% of
    # a small request's instructions).

    def _illegal(self, new: State) -> NoReturn:
        raise RuntimeError(f"illegal connection move {self.state.name} -> {new.name}")

    @property
    def config(self) -> Config:
        """The limits and timeouts in force."""
        return self._config

    @property
    def linger_on_close(self) -> bool:
        """Whether closing should drain the peer's input for a while first (see the transport).

        False when nothing more can come: the peer sent EOF, or the last request asked for the
        close itself (``Connection: close``, HTTP/1.0), was read whole and nothing followed it.
        """
        return self._linger and not self.peer_eof

    @property
    def is_idle(self) -> bool:
        """True between requests, with nothing received of the next one."""
        return self.state is _IDLE

    @property
    def current_exchange(self) -> Exchange | None:
        """The exchange whose response is not complete yet, if any."""
        return self._exchange

    def write_blocked(self) -> bool:
        """Whether unsent output is above the high-water mark (a writer should wait)."""
        return self.transport.buffer_size() > self._config.write_buffer_size

    # -- input -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed bytes received from the peer."""
        state = self.state
        if state is _CLOSED:
            return
        if state is _SWITCHED:
            self._to_protocol("data_received", data)
            return
        self._parser.receive_data(data)
        if state is _IDLE:
            if _READING_HEADERS not in MOVES[self.state]:
                self._illegal(_READING_HEADERS)
            self.state = _READING_HEADERS
            self.deadline = self._clock() + self._config.header_timeout
        self._process()

    def eof_received(self) -> None:
        """The peer closed its sending side; requests already received are still answered."""
        if self.state is _CLOSED:
            return
        self.peer_eof = True
        if self.state is _SWITCHED:
            self._to_protocol("eof_received")
            return
        self._parser.receive_data(b"")
        if self.state is _IDLE or (self.state is _READING_HEADERS and not self._parser.in_message):
            self._close()
            return
        self._process()

    def connection_lost(self) -> None:
        """The transport is gone (reset, error, or closed by us): free everything now."""
        if self.state is _CLOSED:
            return
        self._move(_CLOSED)  # every state may end here
        self.deadline = INF
        exchange = self._exchange
        self._exchange = None
        self._body = []
        if exchange is not None:
            exchange.connection_lost()
        protocol = self._protocol
        if protocol is not None:
            self._protocol = None
            try:
                protocol.connection_lost()
            except Exception:
                log.exception("error in %r.connection_lost", protocol)
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
        """Turn buffered bytes into requests until one is left with the handler."""
        if self._in_process:
            return
        self._in_process = True
        parser = self._parser
        try:
            while True:
                state = self.state
                if state is not _READING_HEADERS and state is not _READING_BODY:
                    # Done for now: the handler holds a request, or the response is flushing,
                    # or (IDLE) nothing is buffered: _next_request starts a buffered request.
                    break
                try:
                    event = parser.next_event()
                except ParseError as exc:
                    self._refuse(exc.status, exc.reason, exc.head, exc.method)
                    break
                if event is None:
                    if state is _READING_HEADERS and not parser.in_message:
                        # Only empty lines arrived: still idle as far as deadlines go.
                        if self.peer_eof:
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

    # -- handing requests to the handler -------------------------------------------------------

    def _dispatch(self) -> None:
        head = self._head
        if head is None:  # pragma: no cover - the parser always gives a head first
            raise RuntimeError("end of message without a head")
        body = self._body
        raw_body = bytes(body[0]) if body else b""  # (bytes() of bytes is that same object)
        self._body = []
        if _HANDLED not in MOVES[self.state]:
            self._illegal(_HANDLED)
        self.state = _HANDLED
        self.deadline = self._handler_deadline()
        exchange = self._exchange = Exchange(self, head, raw_body, head.keep_alive and not self.stopping)
        try:
            result = self.handler.handle_exchange(exchange)
            if result is not None and type(result) is CoroutineType:
                self._drive(result, exchange)
        except Exception:
            app_log.exception("unhandled error in handler %r", self.handler)
            self._handler_failed(exchange)
        if self._exchange is exchange and self.state is _HANDLED:
            # Answered later: stop reading until it is (pipelined bytes wait in the parser).
            self.transport.pause_reading()

    def _drive(self, coro: Coroutine[Any, Any, Any], exchange: Exchange) -> None:
        """Run the coroutine an ``async def`` handler returned on this connection's reactor;
        its error, now or later, is the handler's (a 500, or the response cut short).

        Raises:
            Exception: the coroutine's error when it fails before its first suspension.
        """
        task = run_coroutine(coro, self.reactor)
        if task.done():
            error = task.exception()
            if error is not None:
                raise error
            return

        def finished(task: Future[Any]) -> None:
            error = task.exception()
            if error is not None:
                app_log.error("unhandled error in handler %r", self.handler,
                              exc_info=(type(error), error, error.__traceback__))
                self._handler_failed(exchange)

        task.add_done_callback(finished)

    def _handler_failed(self, exchange: Exchange) -> None:
        """The handler raised: a 500 if nothing was sent, else the response is cut short."""
        if self._exchange is not exchange:
            return
        if exchange.headers_sent:
            self.abort()
        else:
            plain_error(exchange, 500)

    def _handler_deadline(self) -> float:
        timeout = self._config.handler_timeout
        return INF if timeout is None else self._clock() + timeout

    # -- called by the exchange ------------------------------------------------------------------

    def response_complete(self, exchange: Exchange) -> None:
        """The exchange's response is all written: move on to the next request, or close."""
        if self._exchange is not exchange:
            return  # a stale exchange, or the connection was lost
        self._exchange = None
        self.requests_served += 1
        if self.state is _CLOSED:
            return
        if _WRITING not in MOVES[self.state]:
            self._illegal(_WRITING)
        self.state = _WRITING
        if not exchange.keep_alive or self.stopping or (self.peer_eof and not self._parser.buffered):
            if self._parser.is_done and not self._parser.buffered:
                # The client asked for this close and its request was read to the end (a
                # refusal leaves the parser in error, not done): it may send nothing more (RFC
                # 9112 section 9.6), so there is no input to protect the response from.
                self._linger = False
            self._close()
            return
        transport = self.transport
        transport.resume_reading()
        if transport.buffer_size() > self._config.write_buffer_size:
            return  # wait in WRITING; drained() moves on
        self._next_request()

    def switch_protocol(self, exchange: Exchange, protocol: SwitchedProtocol) -> None:
        """After a 101: hand the transport, and the bytes that followed the request, to
        ``protocol``; the HTTP deadlines stop."""
        if self._exchange is not exchange or self.state is not _HANDLED:
            raise RuntimeError(f"cannot switch protocols in state {self.state.name}")
        self._exchange = None
        self.requests_served += 1
        self._move(_SWITCHED)
        self.deadline = INF
        self._protocol = protocol
        try:
            trailing = self._parser.switch_protocol()
            protocol.connection_made(self.transport)
        except Exception:
            app_log.exception("%r failed to take over the connection: dropped", protocol)
            self.abort()
            return
        if trailing:
            self._to_protocol("data_received", trailing)
        if self.state is _SWITCHED:
            self.transport.resume_reading()

    def _to_protocol(self, event: str, *args: Any) -> None:
        """Pass a transport event to the switched protocol; one that raises loses the
        connection (its error is logged), never the reactor's loop."""
        protocol = self._protocol
        if protocol is None:
            return
        try:
            getattr(protocol, event)(*args)
        except Exception:
            app_log.exception("error in %r.%s: connection dropped", protocol, event)
            self.abort()

    def _next_request(self) -> None:
        if self.stopping:
            # shutdown() came while WRITING: like a shutdown during HANDLED, the response in
            # flight is the last; a pipelined request already buffered is not started.
            self._close()
            return
        if self._parser.buffered:
            if _READING_HEADERS not in MOVES[self.state]:
                self._illegal(_READING_HEADERS)
            self.state = _READING_HEADERS
            self.deadline = self._clock() + self._config.header_timeout
            if not self._in_process:
                self._process()
        else:
            if _IDLE not in MOVES[self.state]:
                self._illegal(_IDLE)
            self.state = _IDLE
            self.deadline = self._clock() + self._config.keepalive_timeout
            if self.peer_eof:
                self._close()

    def drained(self) -> None:
        """The transport's backlog fell below the low-water mark."""
        state = self.state
        if state is _WRITING:
            self._next_request()
        elif state is _SWITCHED:
            self._to_protocol("drained")
        elif self._exchange is not None:
            self._exchange.drained()

    # -- refusals, timeouts, closing -------------------------------------------------------------

    def _refuse(self, status: int, reason: str, head: RequestHead | None = None,
                method: str | None = None) -> None:
        """Answer a request the server refuses, then close.

        When the request's head is known (a body over the limit, a body timeout, a framing
        error found after a well-formed head) the handler renders the refusal
        (``refuse_exchange``), so an App's error middleware shapes the page (JSON for a JSON
        API). Otherwise a plain-text page is sent.
        """
        log.debug("refused a request from %s: %d %s", self.peer, status, reason)
        if head is None and self.state is _READING_BODY:
            head = self._head
        known = head is not None
        if head is None:
            # No head to answer through: a made-up one carries the method read, if any (a
            # HEAD request's error has no body), and the plain page answers.
            head = RequestHead(method or "GET", "*", "1.1", Headers(), False, False, None, False)
        self._head = head
        self._body = []
        if _HANDLED not in MOVES[self.state]:
            self._illegal(_HANDLED)
        self.state = _HANDLED
        self.deadline = self._handler_deadline()
        exchange = self._exchange = Exchange(self, head, b"", False)
        try:
            if known:
                result = self.handler.refuse_exchange(exchange, status, reason)
                if result is not None and type(result) is CoroutineType:
                    self._drive(result, exchange)
            else:
                plain_error(exchange, status, reason)
        except Exception:
            app_log.exception("error rendering a %d in handler %r", status, self.handler)
            if self._exchange is exchange and not exchange.headers_sent:
                plain_error(exchange, status, reason)
            else:
                self._handler_failed(exchange)
        if self._exchange is exchange and self.state is _HANDLED:
            self.transport.pause_reading()

    def check_deadline(self, now: float) -> bool:
        """Act on a passed deadline; returns whether one had passed."""
        if now < self.deadline:
            return False
        state = self.state
        if state is _READING_HEADERS or state is _READING_BODY:
            log.debug("timeout waiting for the %s from %s (%s)", _WAITING_FOR[state], self.peer, state.name)
            self._refuse(408, "request timeout")
        elif state is _IDLE:
            log.debug("keep-alive timeout from %s (%s)", self.peer, state.name)
            self._close()
        elif state is _HANDLED and self._exchange is not None and not self._exchange.headers_sent:
            self._handler_timed_out(self._exchange)
        else:
            self.deadline = INF
            return False
        return True

    def _handler_timed_out(self, exchange: Exchange) -> None:
        """``handler_timeout`` passed with no response started: 503, and the user is told."""
        head = exchange.head
        app_log.error(
            "%s %s was not answered within handler_timeout (%.3g s): sent 503; the handler %r "
            "neither answered nor raised", head.method, head.target.split("#", 1)[0],
            self._config.handler_timeout, self.handler,
        )
        exchange.take_over(503, "the application did not answer in time")

    def write_timed_out(self) -> None:
        """The peer left output unread past ``write_timeout``: drop the connection."""
        log.debug("write timeout to %s (%s)", self.peer, self.state.name)
        self.abort()

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the in-flight response."""
        self.stopping = True
        state = self.state
        if self._exchange is not None:
            self._exchange.close_after()
        if state is _SWITCHED:
            self._to_protocol("shutdown")
        elif state is _IDLE or (state is _READING_HEADERS and not self._parser.in_message):
            self._close()

    def _close(self) -> None:
        state = self.state
        if state is _CLOSED or state is _CLOSING:
            return
        self._move(_CLOSING)  # legal from every open state
        self.deadline = INF
        self.transport.close()

    def abort(self) -> None:
        """Drop the connection now, discarding unsent output."""
        if self.state is _CLOSED:
            return
        self.transport.abort()
        self.connection_lost()

    def __repr__(self) -> str:
        return f"<Connection {self.peer} {self.state.name} served={self.requests_served}>"

