"""The outside parties of the connection machine, faked: transport, application, log.

``FakeTransport`` records every byte the connection writes and models the flow control of
``evserve.transport.SocketTransport`` (reading paused by the connection, with reads going on
while paused up to a budget; reading off above the high-water mark, once closing and after EOF;
``drained()`` at the low-water mark; a write deadline while output waits; a peer that may stop
reading). ``ObservedConnection`` reports every state change,
direct assignments included. ``FuzzApp`` answers each request as its target says (now, later,
streamed, 204, ``Connection: close``, or it raises) and checks that what reaches it respects
the parser limits. ``ErrorLogRecorder`` turns anything logged at ERROR, other than the fuzz
application's own failures, into a violation.

Each reports to an ``Observer`` (the machine in ``fuzz.connection_machine``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from evserve.config import Config
from evserve.connection import MOVES, Connection, State
from evserve.request import Request
from evserve.response import Response
from fuzz.connection_inputs import CONTINUE, MODES, PAUSED_READ_SIZE, TARGET

__all__ = ["AppError", "Dispatch", "ErrorLogRecorder", "FakeTransport", "FuzzApp", "ObservedConnection", "Observer"]

INF = float("inf")
IDLE, READING_HEADERS, READING_BODY, HANDLED, WRITING, CLOSING, CLOSED, SWITCHED = State
NO_WRITE_STATES = (IDLE, WRITING, CLOSING, CLOSED)


class AppError(Exception):
    """Raised on purpose by the fuzz application (the 'raise' modes)."""


class Observer(Protocol):
    """What the fakes report to (and read from): the machine."""

    now: float
    unit: list[Any] | None  # [id, bytes written]: the response call running now, if any
    render_later: bool

    @property
    def conn(self) -> Connection | None:
        """The connection being driven."""

    def violation(self, text: str) -> None:
        """Record a broken invariant (raised at the next check)."""

    def on_state(self, old: State | None, new: State) -> None:
        """The connection's state was set from ``old`` (None: the first time) to ``new``."""

    def as_unit(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """``method``, with what it writes counted as one unit of output."""


class FakeTransport:
    """A ``connection.Transport`` that records what is written, with the flow control of
    ``evserve.transport.SocketTransport``: while paused, reading goes on until ``read_budget``
    bytes were read (the budget is refilled by a read while not paused); reading stops above
    the high-water mark, once closing and after EOF, and resumes as that transport resumes it;
    ``drained()`` is called when unsent output falls to the low-water mark; a write deadline
    runs while output waits.

    Above the high-water mark only the unit of output (one response call) that crossed it may
    write on (any other write is a violation); ``crossing_size`` counts what that unit queued, so
    that unsent output must stay within ``high_water + crossing_size``: the high-water mark plus
    one chunk.
    """

    def __init__(self, observer: Observer, high_water: int, write_timeout: float) -> None:
        self.observer = observer
        self.conn: Connection | None = None  # cleared once the socket is closed, as the real one
        self.high_water = high_water
        self.low_water = high_water // 4
        self.write_timeout = write_timeout
        self.written = bytearray()  # everything the connection wrote, in order
        self.wire = bytearray()  # what the peer has read of it
        self.queue = bytearray()  # written, not yet read by the peer
        self.peer_reading = True
        self.reading = True  # the socket is registered for reading
        self.paused = False
        self.read_budget = PAUSED_READ_SIZE  # bytes that may still be read while paused
        self.close_requested = False
        self.closed = False
        self.aborted = False  # closed dropping unsent output: the last response may be cut
        self.write_deadline = INF
        self.crossed_by: object = None  # the unit of writes that took the output above high water
        self.crossing_size = 0  # bytes that unit queued (a 100 Continue that crossed: and the next)

    # Transport protocol

    def write(self, data: bytes) -> None:
        """Queue ``data`` (it reaches the peer at once if the peer reads and nothing waits)."""
        m = self.observer
        state = m.conn.state if m.conn is not None else None
        if state in NO_WRITE_STATES:
            m.violation(f"{len(data)} bytes written in state {state.name}: {bytes(data[:60])!r}")
        if self.closed or self.close_requested:
            m.violation(f"write after close (dropped): {bytes(data[:60])!r}")
            return
        if not data:
            return
        self.written += data
        unit = m.unit
        if unit is not None:
            unit[1] += len(data)
            uid: object = unit[0]
        else:
            uid = ("write", len(self.written))  # a write of the connection's own: its own unit
        if self.peer_reading and not self.queue:
            self.wire += data
            return
        if not self.queue:
            self.write_deadline = m.now + self.write_timeout
        before = len(self.queue)
        if before > self.high_water:
            # Above the high-water mark only the response call that crossed it may go on
            # writing (a stream's head and first piece, end's last piece and last chunk). A
            # 100 Continue that crossed it lets the next write of the same request through.
            if self.crossed_by == "continue":
                self.crossed_by = uid
            if uid == self.crossed_by:
                self.crossing_size += len(data)
            else:
                m.violation(f"{len(data)} bytes written with {before} unsent above the high-water mark "
                            f"{self.high_water}: {bytes(data[:40])!r}")
        self.queue += data
        if before <= self.high_water < len(self.queue):
            self.crossed_by = "continue" if data == CONTINUE else uid
            self.crossing_size = len(data)
            self.reading = False

    def send_file(self, file: Any, offset: int, count: int) -> None:
        """Queue ``count`` bytes of ``file`` from ``offset`` (read now), then close it."""
        try:
            file.seek(offset)
            data = file.read(count)
        finally:
            file.close()
        self.write(data)

    def buffer_size(self) -> int:
        """Bytes written and not yet read by the peer."""
        return len(self.queue)

    def pause_reading(self) -> None:
        """Hold received bytes back from processing until ``resume_reading`` (they are still
        read, and buffered by the connection, until the budget is spent)."""
        self.paused = True
        if self.read_budget <= 0:
            self.reading = False

    def reads(self, size: int) -> int:
        """How many of ``size`` bytes the socket reads now (reading is on)."""
        if not self.paused:
            self.read_budget = PAUSED_READ_SIZE
            return size
        take = min(size, self.read_budget)
        self.read_budget -= take
        if self.read_budget <= 0:
            self.reading = False
        return take

    def resume_reading(self) -> None:
        """Deliver received bytes again (unless above the high-water mark, closing, or at EOF)."""
        if not self.paused:
            return
        self.paused = False
        if not self.close_requested and not self.closed and len(self.queue) <= self.high_water \
                and self.conn is not None and not self.conn.peer_eof:
            self.reading = True

    def close(self) -> None:
        """Close once the peer has read everything queued."""
        if self.closed or self.close_requested:
            return
        self.close_requested = True
        self.reading = False
        if not self.queue:
            self._finish_close()

    def abort(self) -> None:
        """Close now, dropping unsent output; the connection hears ``connection_lost``."""
        if self.closed:
            return
        self.closed = True
        self.aborted = True
        self.reading = False
        self.queue.clear()
        self.write_deadline = INF
        if self.conn is not None:
            self.conn.connection_lost()

    # the peer's side

    def peer_read(self, n: int) -> None:
        """The peer reads ``n`` bytes of pending output (the socket's send buffer drains)."""
        if self.closed or not self.queue:
            return
        take = min(n, len(self.queue))
        self.wire += self.queue[:take]
        del self.queue[:take]
        if take:
            self.write_deadline = self.observer.now + self.write_timeout
        if not self.queue:
            self.write_deadline = INF
            if self.close_requested:
                self._finish_close()
                return
        if len(self.queue) <= self.low_water:
            conn = self.conn
            if (not self.paused or self.read_budget > 0) and not self.reading \
                    and not self.close_requested and conn is not None and not conn.peer_eof:
                self.reading = True
            if take and conn is not None:
                conn.drained()

    def _finish_close(self) -> None:
        self.closed = True
        self.reading = False
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.connection_lost()


class ObservedConnection(Connection):
    """A ``Connection`` whose every state change (direct assignments included) is reported."""

    __slots__ = ("_observer",)

    def __init__(self, observer: Observer, *args: Any, **kwargs: Any) -> None:
        self._observer = observer
        super().__init__(*args, **kwargs)

    @property
    def state(self) -> State:
        """The state, read from ``Connection``'s slot."""
        return _STATE_SLOT.__get__(self)  # type: ignore[no-any-return]

    @state.setter
    def state(self, new: State) -> None:
        try:
            old = _STATE_SLOT.__get__(self)
        except AttributeError:  # the first assignment, in __init__
            old = None
        self._observer.on_state(old, new)
        _STATE_SLOT.__set__(self, new)

    def _move(self, new: State) -> None:
        if new not in MOVES[self.state]:
            self._observer.violation(f"illegal move attempted: {self.state.name} -> {new.name}")
        super()._move(new)


_STATE_SLOT: Any = Connection.__dict__["state"]


@dataclass
class Dispatch:
    """One request handed to the application (or one refused request it renders)."""

    seq: int
    kind: str  # "request" or "error"
    method: str
    version: str
    rid: int | None
    mode: str
    size: int
    status: int
    expect: bool
    res: Response
    body: bytearray = field(default_factory=bytearray)  # the body the application sent
    answered: bool = False  # the application finished the response (or raised)
    blocked: bool = False  # a stream waiting for on_drain


class FuzzApp:
    """``app(req, res)``: how it answers is written in the target, ``/r/<id>/<mode>/<size>``.

    Every request that reaches it is checked against the limits of ``config``: a target, a
    header section or a body over a limit must have been refused by the connection.
    """

    def __init__(self, observer: Observer, config: Config) -> None:
        self.observer = observer
        self.config = config
        self.dispatched: list[Dispatch] = []
        self.pending: list[Dispatch] = []  # answered later, by a rule

    def _check_limits(self, req: Request, kind: str) -> None:
        c = self.config
        conn = self.observer.conn
        head = conn._head if conn is not None else None
        problems = []
        if head is not None:
            lines = head.headers.raw_items()
            if len(lines) > c.max_headers:
                problems.append(f"{len(lines)} header lines > max_headers {c.max_headers}")
            # Each line is at least "name:value\r\n" on the wire.
            size = sum(len(name) + len(value) + 3 for name, value in lines)
            if size > c.max_header_size:
                problems.append(f"a header section of at least {size} bytes > max_header_size {c.max_header_size}")
            if len(head.target) > c.max_target_size:
                problems.append(f"a target of {len(head.target)} bytes > max_target_size {c.max_target_size}")
        if len(req.raw_body) > c.max_body_size:
            problems.append(f"a body of {len(req.raw_body)} bytes > max_body_size {c.max_body_size}")
        for problem in problems:
            self.observer.violation(f"{kind} dispatched with {problem}")

    def _record(self, req: Request, res: Response, kind: str, status: int) -> Dispatch:
        self._check_limits(req, kind)
        match = TARGET.fullmatch(req.original_url)
        rid, mode, size = (int(match[1]), match[2], min(int(match[3]), 4000)) if match else (None, "now", 5)
        if mode not in MODES:
            mode = "now"
        if kind == "error":
            mode = "error"  # rendered whole, now or later (the target's mode is for the request)
        expect_header = req.headers.get("expect") or ""
        expect = (
            req.http_version == "1.1"
            and "100-continue" in {t.strip(" \t").lower() for t in expect_header.split(",")}
            and (req.headers.get("transfer-encoding") is not None or (req.headers.get("content-length") or "0").strip("0") != "")
        )
        d = Dispatch(len(self.dispatched), kind, req.method, req.http_version, rid, mode, size, status, expect, res)
        self.dispatched.append(d)
        res.set("X-Seq", str(d.seq))
        for name in ("send", "write", "end"):  # instance attributes: res.stream's calls go through them
            setattr(res, name, self.observer.as_unit(getattr(res, name)))
        return d

    def __call__(self, req: Request, res: Response) -> None:
        d = self._record(req, res, "request", 200)
        mode = d.mode
        if mode in ("now", "sendclose"):
            if mode == "sendclose":
                res.set("Connection", "close")
            self.send_whole(d)
        elif mode == "close":
            res.set("Connection", "close")
            body = f"{d.seq}:".encode() + b"x" * d.size
            d.body[:] = body
            d.answered = True
            res.end(body)
        elif mode == "empty":
            d.status = 204
            d.answered = True
            res.status(204).end()
        elif mode == "later":
            self.pending.append(d)
        elif mode == "stream":
            self.write_piece(d)
            if not res.finished:  # a HEAD (or 204/304) stream ends at its head
                self.pending.append(d)
        elif mode in ("pump", "pumpfail"):
            res.stream(self.pieces(d, fail=mode == "pumpfail"))
            if res.finished and not d.body:
                d.answered = True  # HEAD: the head was the whole response, nothing was pulled
        elif mode == "raise":
            d.status = 500
            d.answered = True
            raise AppError("raised before answering")
        else:  # raisestream
            d.body += b"first piece"
            res.write(b"first piece")
            d.answered = True
            raise AppError("raised while streaming")

    def render_protocol_error(self, req: Request, res: Response, status: int, reason: str) -> None:
        """Present on the app when the machine renders refused requests (as an ``App`` does)."""
        d = self._record(req, res, "error", status)
        res.status(status)
        if self.observer.render_later:
            self.pending.append(d)
        else:
            self.send_whole(d)

    # answering

    def send_whole(self, d: Dispatch) -> None:
        """Answer ``d`` with one ``res.send``."""
        body = f"{d.seq}:".encode() + b"x" * d.size
        d.body[:] = body
        d.answered = True
        d.res.send(body)

    def write_piece(self, d: Dispatch) -> None:
        """Stream one more piece of ``d``'s body; blocked (until on_drain) if told to wait."""
        piece = b"<%d>" % len(d.body) + b"s" * d.size
        d.body += piece
        if not d.res.write(piece):
            if d.res.finished:
                d.answered = True  # no body allowed (HEAD) or the client is gone: no drain comes
                return
            d.blocked = True

            def unblock() -> None:
                d.blocked = False

            d.res.on_drain(unblock)

    def pieces(self, d: Dispatch, fail: bool) -> Iterator[bytes]:
        """The body source of a ``res.stream`` (which fails after two pieces with ``fail``)."""
        for i in range(3 + d.size // 500):
            if fail and i == 2:
                d.answered = True
                raise AppError("the body's source failed")
            piece = b"[%d]" % i + b"p" * d.size
            d.body += piece
            yield piece
        d.answered = True

    def answer(self) -> bool:
        """Finish the oldest pending response not waiting for a drain; returns whether there was one."""
        d = next((d for d in self.pending if not d.blocked), None)
        if d is None:
            return False
        self.pending.remove(d)
        d.answered = True
        if d.mode == "stream" and d.kind == "request":
            tail = b"<end>"
            d.body += tail
            d.res.end(tail)
        else:
            self.send_whole(d)
        return True


class ErrorLogRecorder(logging.Handler):
    """Reports what evserve logs at ERROR, except the fuzz application's own ``AppError``s."""

    def __init__(self, observer: Observer) -> None:
        super().__init__(logging.ERROR)
        self.observer = observer

    def emit(self, record: logging.LogRecord) -> None:
        """Report ``record`` unless it is about an ``AppError``."""
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, AppError):
            self.observer.violation(f"unexpected error logged: {record.getMessage()} ({exc!r})")
