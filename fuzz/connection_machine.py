"""The connection state machine fuzzed without sockets: a hypothesis ``RuleBasedStateMachine``.

``evserve.connection.Connection`` is driven the way the server drives it, with every outside
party faked: a transport that records what is written and models the socket transport's flow
control (paused reading, the high-water mark, a peer that does not read, write deadlines), a
clock that only moves when a rule says so, and an application that answers now, later, in a
stream, or not at all (it raises). Rules feed arbitrary splits of valid pipelined requests
(bodies by length or chunked, ``Expect: 100-continue``, HTTP/1.0 and 1.1, keep-alive or close)
and of garbage or mutated bytes, or hold back the end of a request while time passes; send
EOF; let the application answer or stream; let the peer read or stop reading; move the clock
past deadlines and sweep them as the server does; shut down; reset the connection. A closed
connection is checked (as at the end of a run, below) and replaced by a new one.

After every step (see ``ConnectionMachine.check``):

* the state is a ``State`` and every state change taken was in ``MOVES``;
* each state's deadline is the one of SPEC section 6, counted from the state's start, and no
  read state outlives its deadline once the sweep has run (408 sent, or closed);
* responses come out in request order, each complete and framed as its request asked, one per
  request, nothing after a ``Connection: close`` response, nothing written after close;
* the parser's buffer stays within the head limits plus one read, the body within
  ``max_body_size``; above the high-water mark only the response call that crossed it writes on;
* no state is a dead end: a request the application owns is the one the connection waits
  for, WRITING waits for output to drain, a read state has reading on.

At the end of every run the connection is driven to completion (the peer reads everything, the
application answers, the clock jumps to each next deadline): it must close, and on a connection
that saw only valid requests and nothing disruptive, every request up to the first that ends the
connection must have been answered, in order.

Run at scale: ``python -m fuzz.connection_machine --examples 20000 [--seed S]``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import re
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # evserve and tests.* from a checkout, however started

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    invariant,
    precondition,
    rule,
)

from evserve.config import Config  # noqa: E402
from evserve.connection import MOVES, Connection, State  # noqa: E402
from evserve.request import Request  # noqa: E402
from evserve.response import Response  # noqa: E402
from tests.strategies import Drawn, mutate  # noqa: E402

__all__ = ["ConnectionMachine", "TestConnectionMachine", "run"]

INF = float("inf")
IDLE, READING_HEADERS, READING_BODY, HANDLED, WRITING, CLOSING, CLOSED = State
READ_STATES = (IDLE, READING_HEADERS, READING_BODY)
NO_WRITE_STATES = (IDLE, WRITING, CLOSING, CLOSED)

LIMITS = {"max_header_size": 512, "max_headers": 12, "max_target_size": 128, "max_body_size": 2048}
TIMEOUTS = {"keepalive_timeout": 5.0, "header_timeout": 10.0, "body_timeout": 30.0, "write_timeout": 20.0}
STATE_TIMEOUT = {IDLE: "keepalive_timeout", READING_HEADERS: "header_timeout", READING_BODY: "body_timeout"}
WRITE_BUFFER_SIZES = (64, 1024, 8192)
READ_SIZE = 4096  # most bytes one read delivers (the fake socket's recv size)
# Most bytes of a request head the parser may hold before it must refuse it (414/431): the
# request line with its CRLF (target + 64), then the header lines (+3 for a CRLFCRLF in
# progress); see RequestParser._check_partial_head.
HEAD_BOUND = LIMITS["max_target_size"] + 66 + LIMITS["max_header_size"] + 3

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
MODES = ("now", "later", "stream", "pump", "pumpfail", "raise", "raisestream", "close", "sendclose", "empty")
# Modes after which the connection closes whatever the request said.
CLOSING_MODES = frozenset({"close", "sendclose", "raise", "raisestream", "pumpfail"})
# Drawn from with repetitions: the modes that keep the connection open come up more often.
GENERATED_MODES = (*MODES, "now", "now", "later", "later", "stream", "pump")
METHODS = ("GET", "GET", "POST", "PUT", "HEAD", "DELETE")
TARGET = re.compile(r"/r/([0-9]+)/([a-z]+)/([0-9]+)")
STATUS_LINE = re.compile(r"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*")
HEADER_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+): ?([^\r\n]*)")


class AppError(Exception):
    """Raised on purpose by the fuzz application (the 'raise' modes)."""


# -- requests the peer sends ----------------------------------------------------------------


@dataclass(frozen=True)
class ReqSpec:
    """A valid request, minus its id (given when it is fed)."""

    method: str
    version: str
    connection: str | None  # the Connection header, if any
    expect: bool
    framing: str  # "none", "length" or "chunked"
    body: bytes
    chunk_cuts: tuple[int, ...]
    mode: str  # how the application answers it
    size: int  # the size of the body (or of each streamed piece) the application sends
    leading_blank: bool
    filler: int  # extra header lines

    @property
    def keep_alive(self) -> bool:
        if self.version == "1.1":
            return self.connection != "close"
        return self.connection == "keep-alive"

    def ends_connection(self) -> bool:
        """Whether the connection closes after answering this request."""
        if not self.keep_alive or self.mode in CLOSING_MODES:
            return True
        # A streamed response to HTTP/1.0 is close-delimited (unless it may carry no body).
        return self.mode in ("stream", "pump") and self.version == "1.0" and self.method != "HEAD"

    def render(self, rid: int) -> bytes:
        lines = [f"{self.method} /r/{rid}/{self.mode}/{self.size} HTTP/{self.version}", "Host: fuzz"]
        lines += [f"X-Fill-{i}: {'v' * (7 * i)}" for i in range(self.filler)]
        if self.connection is not None:
            lines.append(f"Connection: {self.connection}")
        if self.expect:
            lines.append("Expect: 100-continue")
        body = self.body
        if self.framing == "length":
            lines.append(f"Content-Length: {len(body)}")
        elif self.framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
            pieces, start = [], 0
            for cut in sorted({c % (len(body) + 1) for c in self.chunk_cuts} | {len(body)}):
                if cut > start:
                    piece = body[start:cut]
                    pieces.append(b"%x\r\n%s\r\n" % (len(piece), piece))
                    start = cut
            body = b"".join(pieces) + b"0\r\n\r\n"
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return (b"\r\n" if self.leading_blank else b"") + head + body


@st.composite
def req_specs(draw: st.DrawFn) -> ReqSpec:
    version = draw(st.sampled_from(("1.1", "1.1", "1.1", "1.0")))
    method = draw(st.sampled_from(METHODS))
    connection = draw(st.sampled_from((None, None, None, "close", "keep-alive")))
    framing = draw(st.sampled_from(("none", "length", "chunked") if version == "1.1" else ("none", "length")))
    body = b""
    if framing != "none":
        body = draw(st.one_of(st.binary(max_size=40), st.integers(0, LIMITS["max_body_size"]).map(lambda n: b"z" * n)))
    return ReqSpec(
        method=method,
        version=version,
        connection=connection,
        expect=draw(st.integers(0, 3)) == 0,
        framing=framing,
        body=body,
        chunk_cuts=tuple(draw(st.lists(st.integers(0, 1 << 12), max_size=4))),
        mode=draw(st.sampled_from(GENERATED_MODES)),
        size=draw(st.one_of(st.sampled_from((0, 1, 10, 100)), st.integers(0, 3000))),
        leading_blank=draw(st.integers(0, 9)) == 0,
        filler=draw(st.integers(0, 3)),
    )


NASTY = (
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + b"x" * 2048 + b"\r\n1\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
    b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"b" * 600 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(20)) + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"\r\n\r\n\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
)


@st.composite
def garbage(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(("bytes", "mutated", "mutated", "nasty", "nasty-mutated")))
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=300))
    if kind == "nasty":
        return draw(st.sampled_from(NASTY))
    base = draw(st.sampled_from(NASTY)) if kind == "nasty-mutated" else draw(req_specs()).render(draw(st.integers(0, 99)))
    return mutate(Drawn(draw), base) or b"\x00"


def cut(data: bytes, cuts: list[int], tiny: int) -> list[bytes]:
    """``data`` split at ``cuts`` (taken modulo its length), or in ``tiny``-byte pieces; no piece
    longer than ``READ_SIZE``."""
    if tiny:
        return [data[i : i + tiny] for i in range(0, len(data), tiny)]
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points) if b > a]
    return [p[i : i + READ_SIZE] for p in pieces for i in range(0, len(p), READ_SIZE)]


# -- the fakes ------------------------------------------------------------------------------


class FakeTransport:
    """A ``connection.Transport`` that records what is written, with the flow control of
    ``evserve.transport.SocketTransport``: reading stops while paused, above the high-water mark,
    once closing and after EOF, and resumes as that transport resumes it; ``drained()`` is called
    when unsent output falls to the low-water mark; a write deadline runs while output waits."""

    def __init__(self, machine: ConnectionMachine, high_water: int, write_timeout: float) -> None:
        self.machine = machine
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
        self.close_requested = False
        self.closed = False
        self.aborted = False  # closed dropping unsent output: the last response may be cut
        self.write_deadline = INF
        self.crossed_by: object = None  # the unit of writes that took the output above high water

    # Transport protocol

    def write(self, data: bytes) -> None:
        m = self.machine
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
            m.max_unit = max(m.max_unit, len(data))
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
            elif uid != self.crossed_by:
                m.violation(f"{len(data)} bytes written with {before} unsent above the high-water mark "
                            f"{self.high_water}: {bytes(data[:40])!r}")
        self.queue += data
        if before <= self.high_water < len(self.queue):
            self.crossed_by = "continue" if data == CONTINUE else uid
            self.reading = False

    def send_file(self, file: Any, offset: int, count: int) -> None:
        try:
            file.seek(offset)
            data = file.read(count)
        finally:
            file.close()
        self.write(data)

    def buffer_size(self) -> int:
        return len(self.queue)

    def pause_reading(self) -> None:
        self.paused = True
        self.reading = False

    def resume_reading(self) -> None:
        if not self.paused:
            return
        self.paused = False
        if not self.close_requested and not self.closed and len(self.queue) <= self.high_water \
                and self.conn is not None and not self.conn._peer_eof:
            self.reading = True

    def close(self) -> None:
        if self.closed or self.close_requested:
            return
        self.close_requested = True
        self.reading = False
        if not self.queue:
            self._finish_close()

    def abort(self) -> None:
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
            self.write_deadline = self.machine.now + self.write_timeout
        if not self.queue:
            self.write_deadline = INF
            if self.close_requested:
                self._finish_close()
                return
        if len(self.queue) <= self.low_water:
            conn = self.conn
            if not self.paused and not self.reading and not self.close_requested \
                    and conn is not None and not conn._peer_eof:
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
    """A ``Connection`` whose every state change (direct assignments included) is recorded."""

    __slots__ = ("_observer",)

    def __init__(self, observer: ConnectionMachine, *args: Any, **kwargs: Any) -> None:
        self._observer = observer
        super().__init__(*args, **kwargs)

    @property
    def state(self) -> State:
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
    """``app(req, res)``: how it answers is written in the target, ``/r/<id>/<mode>/<size>``."""

    def __init__(self, machine: ConnectionMachine) -> None:
        self.machine = machine
        self.dispatched: list[Dispatch] = []
        self.pending: list[Dispatch] = []  # answered later, by a rule

    def _record(self, req: Request, res: Response, kind: str, status: int) -> Dispatch:
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
            setattr(res, name, self.machine.as_unit(getattr(res, name)))
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
            self.pending.append(d)
        elif mode in ("pump", "pumpfail"):
            res.stream(self.pieces(d, fail=mode == "pumpfail"))
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
        if self.machine.render_later:
            self.pending.append(d)
        else:
            self.send_whole(d)

    # answering

    def send_whole(self, d: Dispatch) -> None:
        body = f"{d.seq}:".encode() + b"x" * d.size
        d.body[:] = body
        d.answered = True
        d.res.send(body)

    def write_piece(self, d: Dispatch) -> None:
        piece = b"<%d>" % len(d.body) + b"s" * d.size
        d.body += piece
        if not d.res.write(piece):
            d.blocked = True

            def unblock() -> None:
                d.blocked = False

            d.res.on_drain(unblock)

    def pieces(self, d: Dispatch, fail: bool) -> Iterator[bytes]:
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


class _LogRecorder(logging.Handler):
    def __init__(self, machine: ConnectionMachine) -> None:
        super().__init__(logging.ERROR)
        self.machine = machine

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, AppError):
            self.machine.violation(f"unexpected error logged: {record.getMessage()} ({exc!r})")


# -- the machine ----------------------------------------------------------------------------


class ConnectionMachine(RuleBasedStateMachine):
    """Drives one ``Connection`` through rules; see the module docstring for the invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.conn: ObservedConnection | None = None
        self.violations: list[str] = []
        self.unit_ids = itertools.count()
        self.unit: list[Any] | None = None  # [id, bytes written]: the response call running now
        self.connections = 0
        self.log = _LogRecorder(self)
        logging.getLogger("evserve").addHandler(self.log)

    def _open(self, write_buffer_size: int, renders_errors: bool, render_later: bool, peer_reading: bool) -> None:
        """A new connection, with its fakes and its bookkeeping."""
        self.connections += 1
        self.transitions: list[tuple[State | None, State]] = []
        self.entered = self.now  # when the current state began
        self.inbound: deque[bytes] = deque()  # sent by the peer, not yet read by the server
        self.eof_sent = False
        self.eof_delivered = False
        self.held = b""  # the end of a request the peer has not sent yet
        self.clean = True  # only valid requests fed, nothing disruptive done
        self.fed: list[ReqSpec] = []  # valid requests fed, by id
        self.closed_calls = 0
        self.close_callbacks = 0
        self.out_pos = 0  # how much of the output has been read back
        self.next_seq = 0  # the request whose response is due
        self.close_response_seen = False
        self.close_response_seq: int | None = None
        self.closed_after_response = False  # WRITING -> CLOSING: a response was the last
        self.shut_down = False
        self.shutdown_pos = 0  # how much had been written when the server began shutting down
        self.last_response_pos = -1  # where the last final response began
        self.continue_pending = False
        self.responses: list[tuple[int, int | None]] = []  # (status, seq)
        self.max_unit = 0  # most bytes one response call (or one write of the connection's) wrote
        config = Config(write_buffer_size=write_buffer_size, **LIMITS, **TIMEOUTS)  # type: ignore[arg-type]
        self.config = config
        self.transport = FakeTransport(self, write_buffer_size, config.write_timeout)
        self.transport.peer_reading = peer_reading
        self.app = FuzzApp(self)
        self.render_later = render_later
        app: Any = self.app if renders_errors else self.app.__call__  # a bare function: plain error pages
        self.conn = ObservedConnection(self, app, config, self.transport, None, ("fuzz", 1), clock=self.clock)
        self.transport.conn = self.conn
        self.conn.on_closed = self._on_closed
        self.conn.add_close_callback(self._on_close_callback)
        self.entered = self.now

    def violation(self, text: str) -> None:
        self.violations.append(text)

    def on_state(self, old: State | None, new: State) -> None:
        if not isinstance(new, State):  # what the check is for: mypy cannot see a bug coming
            self.violation(f"state set to {new!r}, not a State")  # type: ignore[unreachable]
        if old is not None:
            if new not in MOVES[old]:
                self.violation(f"illegal transition {old.name} -> {new.name}")
            self.transitions.append((old, new))
            if old is WRITING and new is CLOSING:
                self.closed_after_response = True
        self.entered = self.now

    # -- set-up -------------------------------------------------------------------------------

    @initialize(
        write_buffer_size=st.sampled_from(WRITE_BUFFER_SIZES),
        renders_errors=st.booleans(),
        render_later=st.booleans(),
        peer_reading=st.booleans(),
    )
    def start(self, write_buffer_size: int, renders_errors: bool, render_later: bool, peer_reading: bool) -> None:
        self._open(write_buffer_size, renders_errors, render_later, peer_reading)

    @precondition(lambda self: self.conn is not None and self.conn.state is CLOSED)
    @rule(
        write_buffer_size=st.sampled_from(WRITE_BUFFER_SIZES),
        renders_errors=st.booleans(),
        render_later=st.booleans(),
        peer_reading=st.booleans(),
    )
    def reconnect(self, write_buffer_size: int, renders_errors: bool, render_later: bool, peer_reading: bool) -> None:
        """The connection is over: check what it did, and open the next one."""
        self.final_checks()
        self._open(write_buffer_size, renders_errors, render_later, peer_reading)

    def clock(self) -> float:
        return self.now

    def as_unit(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """``method`` of a Response, counted as one unit of output (see ``FakeTransport.write``)."""

        def call(*args: Any) -> Any:
            outer = self.unit
            unit = self.unit = [next(self.unit_ids), 0]
            try:
                return method(*args)
            finally:
                self.unit = outer
                self.max_unit = max(self.max_unit, unit[1])

        return call

    def _on_closed(self, conn: Connection) -> None:
        self.closed_calls += 1

    def _on_close_callback(self) -> None:
        self.close_callbacks += 1

    # -- driving ------------------------------------------------------------------------------

    def pump(self) -> None:
        """What the reactor does between steps: the peer reads if it does, received bytes and
        EOF are delivered while the transport reads."""
        t = self.transport
        conn = self.conn
        assert conn is not None
        for _ in range(100_000):
            if t.peer_reading and t.queue and not t.closed:
                t.peer_read(len(t.queue))
                continue
            if t.closed or t.close_requested:
                self.inbound.clear()  # a closed socket reads nothing more (lingering discards)
                return
            if not t.reading:
                return
            if self.inbound:
                piece = self.inbound.popleft()
                if piece:  # (b"" would mean EOF to the parser; the transport never passes it)
                    conn.data_received(piece)
                continue
            if self.eof_sent and not self.eof_delivered:
                self.eof_delivered = True
                t.reading = False
                conn.eof_received()
                continue
            return
        self.violation("the connection and the transport loop without end")

    def sweep(self) -> None:
        """The server's deadline sweep (``Server._sweep``) at ``self.now``."""
        conn = self.conn
        assert conn is not None
        if conn.state is CLOSED:
            return  # the server forgot it when it closed
        if conn.deadline <= self.now:
            conn.check_deadline(self.now)
        if self.transport.write_deadline <= self.now:
            conn.write_timed_out()

    def is_open(self) -> bool:
        """Whether the peer may still send (the connection is not closing)."""
        return self.conn is not None and self.conn.state is not CLOSING and self.conn.state is not CLOSED

    def disturb(self) -> None:
        self.clean = False

    # -- rules: the peer ------------------------------------------------------------------------

    @precondition(lambda self: self.is_open() and not self.eof_sent)
    @rule(spec=req_specs(), cuts=st.lists(st.integers(0, 1 << 16), max_size=3),
          hold=st.one_of(st.just(0), st.integers(1, 1 << 16)))
    def feed_request(self, spec: ReqSpec, cuts: list[int], hold: int) -> None:
        """One request; with ``hold``, the peer keeps back its end for a later ``send_held``
        (so that time can pass in the middle of a request)."""
        self.feed_requests([spec], cuts, 0, hold)

    @precondition(lambda self: self.is_open() and bool(self.held))
    @rule()
    def send_held(self) -> None:
        self.inbound.append(self.held)
        self.held = b""
        self.pump()

    @precondition(lambda self: self.is_open() and not self.eof_sent)
    @rule(specs=st.lists(req_specs(), min_size=1, max_size=4), cuts=st.lists(st.integers(0, 1 << 16), max_size=8),
          tiny=st.sampled_from((0, 0, 0, 1, 2, 7)))
    def feed_requests(self, specs: list[ReqSpec], cuts: list[int], tiny: int, hold: int = 0) -> None:
        """Pipelined requests, split into reads at ``cuts`` (or in ``tiny``-byte reads)."""
        if self.transport.close_requested or self.transport.closed:
            self.disturb()  # sent to a closed connection: nobody reads it
        data, self.held = self.held, b""
        for spec in specs:
            data += spec.render(len(self.fed))
            self.fed.append(spec)
        if hold:
            at = hold % len(data)
            data, self.held = data[:at], data[at:]
        self.inbound.extend(cut(data, cuts, tiny))
        self.pump()

    @precondition(lambda self: self.is_open() and not self.eof_sent)
    @rule(data=garbage(), cuts=st.lists(st.integers(0, 1 << 16), max_size=8), tiny=st.sampled_from((0, 0, 1, 3)))
    def feed_garbage(self, data: bytes, cuts: list[int], tiny: int) -> None:
        self.disturb()
        data, self.held = self.held + data, b""
        self.inbound.extend(cut(data, cuts, tiny))
        self.pump()

    @precondition(lambda self: self.conn is not None and self.conn.state is not CLOSED)
    @rule(kind=st.sampled_from(("eof", "reset", "shutdown")))
    def disrupt(self, kind: str) -> None:
        """The peer half-closes (EOF after what it sent) or resets, or the server shuts down."""
        conn = self.conn
        assert conn is not None
        if kind == "eof":
            self.eof_sent = True
            self.inbound.append(self.held)  # what the peer kept back, then its FIN
            self.held = b""
        elif kind == "reset":
            if conn.state is not CLOSED:
                self.disturb()
            self.transport.abort()  # the socket failed: the transport tears down, tells the connection
        else:
            if conn.state is not CLOSED:
                self.disturb()
            if not self.shut_down:
                self.shut_down = True
                self.shutdown_pos = len(self.transport.written)
            conn.shutdown()
        self.pump()

    @precondition(lambda self: self.conn is not None and self.conn.state is not CLOSED)
    @rule(reading=st.booleans())
    def set_peer_reading(self, reading: bool) -> None:
        self.transport.peer_reading = reading
        self.pump()

    @precondition(lambda self: bool(self.transport.queue))
    @rule(n=st.one_of(st.integers(1, 100), st.integers(1, 1 << 16)))
    def peer_reads(self, n: int) -> None:
        self.transport.peer_read(n)
        self.pump()


    # -- rules: the application and the server -----------------------------------------------

    @precondition(lambda self: any(not d.blocked for d in self.app.pending))
    @rule()
    def app_answers(self) -> None:
        self.app.answer()
        self.pump()

    @precondition(lambda self: any(d.mode == "stream" and not d.blocked for d in self.app.pending))
    @rule()
    def app_streams_more(self) -> None:
        d = next(d for d in self.app.pending if d.mode == "stream" and not d.blocked)
        self.app.write_piece(d)
        self.pump()


    # -- rules: time ----------------------------------------------------------------------------

    @precondition(lambda self: self.conn is not None and self.conn.state is not CLOSED)
    @rule(dt=st.one_of(st.sampled_from((0.001, 0.5, 1.0, 4.999)), st.floats(0, 3), st.floats(0, 40)))
    def time_passes(self, dt: float) -> None:
        self._advance(self.now + dt)

    @precondition(lambda self: self.conn is not None and min(self.conn.deadline, self.transport.write_deadline) < INF)
    @rule(which=st.sampled_from(("read", "write")), eps=st.sampled_from((0.0, 0.001, 0.5)))
    def deadline_passes(self, which: str, eps: float) -> None:
        assert self.conn is not None
        deadline = self.conn.deadline if which == "read" else self.transport.write_deadline
        if deadline == INF:
            deadline = min(self.conn.deadline, self.transport.write_deadline)
        self._advance(deadline + eps)

    def _advance(self, now: float) -> None:
        conn = self.conn
        assert conn is not None
        state, deadline, write_deadline = conn.state, conn.deadline, self.transport.write_deadline
        written, dispatched = len(self.transport.written), len(self.app.dispatched)
        self.now = max(self.now, now)
        self.sweep()
        if state in READ_STATES and deadline <= self.now:
            if conn.state in READ_STATES:
                self.violation(f"{state.name} deadline passed and swept, but still {conn.state.name}")
            if state is not IDLE:
                self.disturb()
                answered = b" 408 " in self.transport.written[written:written + 16] or any(
                    d.status == 408 and d.kind == "error" for d in self.app.dispatched[dispatched:]
                )
                if not answered:
                    self.violation(f"{state.name} timed out without a 408")
        if write_deadline <= self.now:
            if conn.state is not CLOSED:
                self.violation(f"write deadline passed and swept, but the connection is {conn.state.name}")
            self.disturb()
        self.pump()

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def check(self) -> None:
        conn = self.conn
        if conn is None:
            return
        t = self.transport
        state = conn.state
        problems = self.violations
        if not isinstance(state, State):
            problems.append(f"state {state!r} is not a State")  # type: ignore[unreachable]
        # Deadlines, from the start of the state (SPEC section 6).
        if state in READ_STATES:
            expected = self.entered + getattr(self.config, STATE_TIMEOUT[state])
            if conn.deadline != expected:
                problems.append(f"{state.name} deadline {conn.deadline} != state start {self.entered} + timeout")
            if conn.deadline <= self.now:
                problems.append(f"{state.name} past its deadline after a sweep")
        elif conn.deadline != INF:
            problems.append(f"{state.name} has a read deadline {conn.deadline}")
        if t.write_deadline <= self.now:
            problems.append("output waits past the write deadline after a sweep")
        # Bounded buffers.
        parser = conn._parser
        if parser.buffered > HEAD_BOUND + READ_SIZE:
            problems.append(f"parser holds {parser.buffered} bytes > {HEAD_BOUND} + one read")
        if len(parser._buf) > 65536 + 2 * (HEAD_BOUND + READ_SIZE):
            problems.append(f"parser buffer of {len(parser._buf)} bytes")
        if sum(map(len, conn._body)) > self.config.max_body_size:
            problems.append("request body buffered beyond max_body_size")
        if len(t.queue) > t.high_water + self.max_unit + len(CONTINUE):
            problems.append(f"{len(t.queue)} bytes unsent > high-water {t.high_water} + one write {self.max_unit}")
        # No dead ends.
        live = [d for d in self.app.pending if not d.res.req.aborted]
        if state is HANDLED:
            if conn._res is None:
                problems.append("HANDLED but no response is owed")
            elif conn._res is not self.app.dispatched[-1].res:
                problems.append("HANDLED for a response that is not the latest request's")
            elif not live and not (self.app.dispatched[-1].mode in ("pump", "pumpfail") and t.queue):
                problems.append("HANDLED but the application owes nothing")
        elif live:
            problems.append(f"the application owes a response but the connection is {state.name}")
        if state is WRITING and len(t.queue) <= t.low_water:
            problems.append("WRITING with output drained")
        if state is IDLE and parser.buffered:
            problems.append("IDLE with bytes buffered")
        if state in READ_STATES:
            if t.paused:
                problems.append(f"{state.name} with reading paused")
            elif not (t.reading or self.eof_delivered or len(t.queue) > t.low_water):
                problems.append(f"{state.name} with reading off")
        if state is CLOSING and not t.close_requested:
            problems.append("CLOSING but the transport was not told to close")
        if state is CLOSED:
            if not t.closed:
                problems.append("CLOSED but the transport is open")
            if conn._res is not None:
                problems.append("CLOSED still holding a response")
            if self.closed_calls != 1 or self.close_callbacks != 1:
                problems.append(f"on_closed called {self.closed_calls}x, close callbacks {self.close_callbacks}x")
        elif t.closed:
            problems.append(f"transport closed but the connection is {state.name}")
        # Responses, in order.
        self.read_responses(final=t.closed or t.close_requested)
        if self.close_response_seen and state not in (CLOSING, CLOSED) and (
            self.close_response_seq is None or self.app.dispatched[self.close_response_seq].answered
        ):  # (a streamed response to HEAD is complete on the wire before the application ends it)
            problems.append(f"a Connection: close response is complete but the connection is {state.name}")
        if self.closed_after_response and not self.close_response_seen and not self.eof_delivered and (
            not self.shut_down or self.last_response_pos >= self.shutdown_pos
        ):  # (a response begun before a shutdown cannot say so; one after must)
            problems.append("closed after a response that did not say Connection: close")
        if self.clean:
            ids = [d.rid for d in self.app.dispatched]
            if ids != list(range(len(ids))):
                problems.append(f"requests dispatched out of order: {ids}")
        if problems:
            raise AssertionError("\n".join(problems))

    def read_responses(self, final: bool) -> None:
        """Parse the responses written since last time and check each against its request."""
        buf = self.transport.written
        while self.out_pos < len(buf):
            parsed = self._parse_one(buf, self.out_pos, final)
            if parsed is None:
                return
            status, headers, body, end = parsed
            if status >= 200:
                self.last_response_pos = self.out_pos
            self.out_pos = end
            self._check_response(status, headers, body)

    def _parse_one(
        self, buf: bytearray, pos: int, final: bool
    ) -> tuple[int, dict[str, list[str]], bytes | None, int] | None:
        """One response from ``buf[pos:]``: status, headers, body (None when it cannot be known:
        close-delimited and cut by an abort) and where it ends; None when incomplete."""
        head_end = buf.find(b"\r\n\r\n", pos)
        if head_end < 0:
            self._incomplete(pos, final)
            return None
        status_line, *lines = bytes(buf[pos:head_end]).decode("latin-1").split("\r\n")
        match = STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise AssertionError(f"malformed status line {status_line!r} at {pos}")
        status = int(match[1])
        headers: dict[str, list[str]] = {}
        for line in lines:
            hm = HEADER_LINE.fullmatch(line)
            if hm is None:
                raise AssertionError(f"malformed header line {line!r}")
            headers.setdefault(hm[1].lower(), []).append(hm[2])
        start = head_end + 4
        if 100 <= status < 200:
            return status, headers, b"", start
        method = "GET"
        if "x-seq" in headers:
            method = self.app.dispatched[int(headers["x-seq"][0])].method
        elif status == 500 and self.next_seq < len(self.app.dispatched):
            method = self.app.dispatched[self.next_seq].method  # the page for an app that raised
        te, cl = headers.get("transfer-encoding"), headers.get("content-length")
        if te is not None and cl is not None:
            self.violation(f"response with both Transfer-Encoding and Content-Length: {headers}")
        if method == "HEAD" or status in (204, 304):
            return status, headers, b"", start
        if te is not None:
            if te != ["chunked"]:
                raise AssertionError(f"transfer coding {te}")
            body = bytearray()
            p = start
            while True:
                line_end = buf.find(b"\r\n", p)
                if line_end < 0:
                    self._incomplete(pos, final)
                    return None
                size = int(buf[p:line_end], 16)
                p = line_end + 2
                if len(buf) < p + size + 2:
                    self._incomplete(pos, final)
                    return None
                if buf[p + size : p + size + 2] != b"\r\n":
                    raise AssertionError("chunk data not followed by CRLF")
                body += buf[p : p + size]
                p += size + 2
                if size == 0:
                    return status, headers, bytes(body), p
        if cl is not None:
            length = int(cl[0])
            if len(buf) < start + length:
                self._incomplete(pos, final)
                return None
            return status, headers, bytes(buf[start : start + length]), start + length
        if not final:
            return None  # close-delimited: complete when the connection closes
        return status, headers, None if self.transport.aborted else bytes(buf[start:]), len(buf)

    def _incomplete(self, pos: int, final: bool) -> None:
        """An incomplete response: wait for more or, at the close, check it may be cut short."""
        if final:
            if not self.transport.aborted:
                self.violation(f"incomplete response at close: {bytes(self.transport.written[pos:pos + 80])!r}")
            self.out_pos = len(self.transport.written)  # cut by the abort: nothing follows
        return None

    def _check_response(self, status: int, headers: dict[str, list[str]], body: bytes | None) -> None:
        problems = self.violations
        if self.close_response_seen:
            problems.append(f"a {status} response after a Connection: close response")
        if status == 100:
            if self.continue_pending:
                problems.append("two 100 Continue for one request")
            self.continue_pending = True
            return
        if status < 200:
            problems.append(f"unexpected interim response {status}")
            return
        connection = {t.strip().lower() for v in headers.get("connection", []) for t in v.split(",")}
        if "close" in connection:
            self.close_response_seen = True
            self.close_response_seq = int(headers["x-seq"][0]) if "x-seq" in headers else None
        if len(headers.get("date", [])) != 1:
            problems.append(f"{status} response without exactly one Date")
        seq_header = headers.get("x-seq")
        dispatched = self.app.dispatched
        if seq_header is not None:
            seq = int(seq_header[0])
            if seq != self.next_seq:
                problems.append(f"response for request #{seq} where #{self.next_seq} was due")
            self.next_seq = seq + 1
            d = dispatched[seq]
            if status != d.status:
                problems.append(f"response #{seq} has status {status}, the app sent {d.status}")
            if d.version == "1.0" and "close" not in connection and "keep-alive" not in connection:
                problems.append(f"response #{seq} to HTTP/1.0 neither closes nor says keep-alive")
            if body is not None and d.method != "HEAD" and status not in (204, 304) and body != bytes(d.body):
                problems.append(f"response #{seq} body {body[:60]!r}... is not what the app sent {bytes(d.body[:60])!r}...")
            if self.clean and d.kind == "request" and d.expect != self.continue_pending:
                problems.append(f"request #{seq} expected 100-continue={d.expect}, got {self.continue_pending}")
        elif status == 500 and self.next_seq < len(dispatched) and dispatched[self.next_seq].mode == "raise":
            self.next_seq += 1  # the error page of a request whose handler raised
            if "close" not in connection:
                problems.append("500 for a raising handler does not close")
        else:
            if status < 400:
                problems.append(f"a {status} response the application did not send")
            if "close" not in connection:
                problems.append(f"protocol error {status} without Connection: close")
            if self.next_seq < len(dispatched):
                problems.append(f"protocol error {status} while request #{self.next_seq} awaits its response")
        self.continue_pending = False
        self.responses.append((status, int(seq_header[0]) if seq_header else None))

    # -- the end: drive to completion ---------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.conn is not None and not self.violations:
                self.settle()
                self.final_checks()
        finally:
            logging.getLogger("evserve").removeHandler(self.log)

    def settle(self) -> None:
        """Let everything run its course: the peer reads, the application answers, time passes
        to each next deadline. The connection must close, and never be left with nothing to
        wait for."""
        conn = self.conn
        assert conn is not None
        self.transport.peer_reading = True
        if self.held and self.is_open():
            self.inbound.append(self.held)  # the peer finishes sending
            self.held = b""
        for _ in range(500):
            self.pump()
            self.check()
            if conn.state is CLOSED:
                break
            d = next((d for d in self.app.pending if not d.blocked), None)
            if d is not None:
                if d.mode == "stream" and d.kind == "request" and d.body.count(b"<") < 5:
                    self.app.write_piece(d)
                else:
                    self.app.answer()
                continue
            next_deadline = min(conn.deadline, self.transport.write_deadline)
            if next_deadline == INF:
                raise AssertionError(f"stuck in {conn.state.name} with nothing left to wait for")
            self._advance(next_deadline + 0.001)
        else:
            raise AssertionError(f"the connection did not close: {conn.state.name}")

    def final_checks(self) -> None:
        """What a closed connection must have done: every request answered (or aborted), and on
        a clean connection every request up to the first that ends it answered, in order."""
        self.check()
        if self.held:
            self.disturb()  # the connection closed before the peer sent all it meant to
        if self.out_pos != len(self.transport.written):
            raise AssertionError(f"unparsed output at the end: {bytes(self.transport.written[self.out_pos:])[:100]!r}")
        for d in self.app.dispatched:
            if not d.answered and not d.res.req.aborted:
                raise AssertionError(f"request #{d.seq} was never answered")
        if self.clean and self.fed:
            expected = []
            for rid, spec in enumerate(self.fed):
                expected.append(rid)
                if spec.ends_connection():
                    break
            got = [d.rid for d in self.app.dispatched]
            if got != expected:
                raise AssertionError(f"dispatched {got}, expected {expected}")
            answered = [seq for _, seq in self.responses if seq is not None]
            # A handler that raises gets a 500 page (or, mid-stream, an abort): no X-Seq.
            failed = {d.seq for d in self.app.dispatched if d.mode in ("raise", "raisestream", "pumpfail")}
            if not set(range(len(got))) - failed <= set(answered):
                raise AssertionError(f"answered {answered} of {len(got)} requests (failing on purpose: {failed})")


TestConnectionMachine = ConnectionMachine.TestCase


# -- at scale -------------------------------------------------------------------------------


def run(examples: int, seed: int | None, steps: int = 50) -> None:
    """Run the machine for ``examples`` runs of up to ``steps`` steps; raises on a failure
    (hypothesis prints the shrunk failing program and its ``@reproduce_failure`` blob first)."""
    test = get_state_machine_test(  # type: ignore[no-untyped-call]
        ConnectionMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
            print_blob=True,
            database=None if seed is not None else settings().database,
        ),
    )
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    test()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.connection_machine", description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="runs of the machine (default 1000)")
    parser.add_argument("--steps", type=int, default=50, help="most steps per run (default 50)")
    parser.add_argument("--seed", type=int, default=None, help="seed, for a reproducible run")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(f"connection machine: {args.examples} runs of up to {args.steps} steps, seed {args.seed}", flush=True)
    try:
        run(args.examples, args.seed, args.steps)
    except Exception:
        seconds = time.perf_counter() - start
        print(f"FAILED after {seconds:.1f} s", flush=True)
        traceback.print_exc()
        print("\nThe steps above ('state = ConnectionMachine()' ...) replay the failure; the "
              "@reproduce_failure line replays it exactly under hypothesis.", flush=True)
        return 1
    seconds = time.perf_counter() - start
    print(f"passed: {args.examples} runs in {seconds:.1f} s ({args.examples / seconds:.0f} runs/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
