"""The connection state machine fuzzed without sockets: a hypothesis ``RuleBasedStateMachine``.

``evserve.connection.Connection`` is driven the way the server drives it, with every outside
party faked (``fuzz.connection_fakes``): a transport that records what is written and models the
socket transport's flow control (paused reading, the high-water mark, a peer that does not read,
write deadlines), a clock that only moves when a rule says so, and an application that answers
now, later, in a stream, or not at all (it raises). Rules feed arbitrary splits of valid
pipelined requests (``fuzz.connection_inputs``: bodies by length or chunked, ``Expect:
100-continue``, HTTP/1.0 and 1.1, keep-alive or close) and of garbage or mutated bytes, or hold
back the end of a request (inside its head, inside its body, or anywhere) and send it bit by bit
while time passes; send EOF; let the application answer or stream; let the peer read or stop
reading; move the clock past deadlines and sweep them as the server does; shut down; reset the
connection. A closed connection is checked (as at the end of a run, below) and replaced by a
new one.

After every step (see ``ConnectionMachine.check``):

* the state is a ``State`` and every state change taken was in ``MOVES``;
* each read state's deadline is the one of SPEC section 6, counted from the state's start (a
  byte does not reset it); no read state outlives its deadline once the sweep has run (408
  sent, or closed), nor does output unread past ``write_timeout``;
* responses come out in request order, each complete and framed as its request asked, one per
  request, nothing after a ``Connection: close`` response, nothing written after close;
* the parser holds at most an unfinished head under the limits (READING_HEADERS), a chunk-size
  line or trailers in progress (READING_BODY), or that plus one read (other states); nothing
  over a limit reaches the application; unsent output stays within the high-water mark plus the
  one response call that crossed it, and no other call writes above the mark;
* after a shutdown the connection is never idle, and at most the request in progress is served;
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
from collections.abc import Callable
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
from fuzz.connection_fakes import ErrorLogRecorder, FakeTransport, FuzzApp, ObservedConnection  # noqa: E402
from fuzz.connection_inputs import (  # noqa: E402
    BODY_BOUND,
    HEAD_BOUND,
    LIMITS,
    PAUSED_READ_SIZE,
    READ_SIZE,
    TIMEOUTS,
    ReqSpec,
    cut,
    garbage,
    req_specs,
)

__all__ = ["ConnectionMachine", "ReqSpec", "TestConnectionMachine", "run"]

INF = float("inf")
IDLE, READING_HEADERS, READING_BODY, HANDLED, WRITING, CLOSING, CLOSED, SWITCHED = State
READ_STATES = (IDLE, READING_HEADERS, READING_BODY)
STATE_TIMEOUT = {IDLE: "keepalive_timeout", READING_HEADERS: "header_timeout", READING_BODY: "body_timeout"}
# Most bytes the parser may hold in each state after a step (see fuzz.connection_inputs).
PARSER_BOUND = {READING_HEADERS: HEAD_BOUND, READING_BODY: BODY_BOUND}
PARSER_BOUND_ELSE = max(HEAD_BOUND, BODY_BOUND) + READ_SIZE + PAUSED_READ_SIZE
WRITE_BUFFER_SIZES = (64, 1024, 8192)
STATUS_LINE = re.compile(r"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*")
HEADER_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+): ?([^\r\n]*)")


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
        self.log = ErrorLogRecorder(self)
        logging.getLogger("evserve").addHandler(self.log)

    def _open(self, write_buffer_size: int, renders_errors: bool, render_later: bool, peer_reading: bool) -> None:
        """A new connection, with its fakes and its bookkeeping."""
        self.connections += 1
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
        self.shutdown_dispatched = 0  # requests dispatched before the shutdown
        self.shutdown_allowance = 0  # requests that may still be dispatched after it (1: one in progress)
        self.last_response_pos = -1  # where the last final response began
        self.continue_pending = False
        self.responses: list[tuple[int, int | None]] = []  # (status, seq)
        config = Config(write_buffer_size=write_buffer_size, **LIMITS, **TIMEOUTS)  # type: ignore[arg-type]
        self.config = config
        self.transport = FakeTransport(self, write_buffer_size, config.write_timeout)
        self.transport.peer_reading = peer_reading
        self.app = FuzzApp(self, config)
        self.render_later = render_later
        app: Any = self.app if renders_errors else self.app.__call__  # a bare function: plain error pages
        self.conn = ObservedConnection(self, app, config, self.transport, None, ("fuzz", 1), clock=self.clock)
        self.transport.conn = self.conn
        self.conn.on_closed = self._on_closed
        self.conn.add_close_callback(self._on_close_callback)
        self.entered = self.now

    def violation(self, text: str) -> None:
        """Record a broken invariant; the next ``check`` raises it."""
        self.violations.append(text)

    def on_state(self, old: State | None, new: State) -> None:
        """The connection's state is set (from ``ObservedConnection``): is the move legal?"""
        if not isinstance(new, State):  # what the check is for: mypy cannot see a bug coming
            self.violation(f"state set to {new!r}, not a State")  # type: ignore[unreachable]
        if old is not None:
            if new not in MOVES[old]:
                self.violation(f"illegal transition {old.name} -> {new.name}")
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
        """The first connection, with a high-water mark, and an app that renders protocol errors
        (now or later) or not, and a peer that reads or not."""
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
        """The connection's clock: moved by the rules only."""
        return self.now

    def as_unit(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """``method`` of a Response, counted as one unit of output (see ``FakeTransport.write``)."""

        def call(*args: Any) -> Any:
            outer = self.unit
            self.unit = [next(self.unit_ids), 0]
            try:
                return method(*args)
            finally:
                self.unit = outer

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
                take = t.reads(len(piece))
                if take < len(piece):
                    self.inbound.appendleft(piece[take:])
                    piece = piece[:take]
                if piece:  # (b"" would mean EOF to the parser; the transport never passes it)
                    conn.data_received(piece)
                continue
            if self.eof_sent and not self.eof_delivered:
                self.eof_delivered = True
                t.reading = False
                # EOF in the middle of a request: the request is refused (400), then closed.
                cut_short = conn.state in (READING_HEADERS, READING_BODY) and conn._parser.in_message
                mark = self._mark()
                conn.eof_received()
                if cut_short and not self._refused_with(400, mark):
                    self.violation("EOF in the middle of a request, but no 400")
                continue
            return
        self.violation("the connection and the transport loop without end")

    def _mark(self) -> tuple[int, int]:
        """Where output and dispatches are now (for ``_refused_with``)."""
        return len(self.transport.written), len(self.app.dispatched)

    def _refused_with(self, status: int, mark: tuple[int, int]) -> bool:
        """Whether, since ``mark``, a refusal with ``status`` was written or handed to the app."""
        written, dispatched = mark
        return b" %d " % status in self.transport.written[written:written + 16] or any(
            d.status == status and d.kind == "error" for d in self.app.dispatched[dispatched:]
        )

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
        """Something other than valid requests happened: the end-of-run order checks are off."""
        self.clean = False

    # -- rules: the peer ------------------------------------------------------------------------

    @precondition(lambda self: self.is_open() and not self.eof_sent)
    @rule(spec=req_specs(), cuts=st.lists(st.integers(0, 1 << 16), max_size=3),
          hold=st.one_of(st.just(0), st.integers(1, 1 << 16)),
          hold_in=st.sampled_from(("head", "body", "anywhere")))
    def feed_request(self, spec: ReqSpec, cuts: list[int], hold: int, hold_in: str = "anywhere") -> None:
        """One request; with ``hold``, the peer keeps back its end from a point inside its head,
        inside its body (if it has one) or anywhere, for ``send_held`` to send later, bit by
        bit (so that time passes, and bytes arrive, in the middle of a request)."""
        if not hold:
            self.feed_requests([spec], cuts, 0)
            return
        head, body = spec.render_parts(len(self.fed))
        before = len(self.held)
        if hold_in == "head" or (hold_in == "body" and not body):
            at = before + 1 + hold % (len(head) - 1)  # at least one byte of the head is sent
        elif hold_in == "body":
            at = before + len(head) + hold % len(body)
        else:
            at = hold % (before + len(head) + len(body))
        self.feed_requests([spec], cuts, 0, hold_at=at)

    @precondition(lambda self: self.is_open() and bool(self.held))
    @rule(part=st.one_of(st.just(0), st.integers(1, 64)),
          wait=st.one_of(st.sampled_from((0.0, 1.0, 4.0, 9.0, 29.0)), st.floats(0, 12)))
    def send_held(self, part: int = 0, wait: float = 0.0) -> None:
        """After ``wait`` seconds, the peer sends what it held back: all of it (``part`` 0), or
        its first ``part`` bytes."""
        if wait:
            self._advance(self.now + wait)
            if not self.is_open():
                return
        if part:
            self.inbound.append(self.held[:part])
            self.held = self.held[part:]
        else:
            self.inbound.append(self.held)
            self.held = b""
        self.pump()

    @precondition(lambda self: self.is_open() and not self.eof_sent)
    @rule(specs=st.lists(req_specs(), min_size=1, max_size=4), cuts=st.lists(st.integers(0, 1 << 16), max_size=8),
          tiny=st.sampled_from((0, 0, 0, 1, 2, 7)))
    def feed_requests(self, specs: list[ReqSpec], cuts: list[int], tiny: int, hold_at: int | None = None) -> None:
        """Pipelined requests, split into reads at ``cuts`` (or in ``tiny``-byte reads); what
        follows ``hold_at``, if given, is held back (see ``feed_request``)."""
        if self.transport.close_requested or self.transport.closed:
            self.disturb()  # sent to a closed connection: nobody reads it
        data, self.held = self.held, b""
        for spec in specs:
            data += spec.render(len(self.fed))
            self.fed.append(spec)
        if hold_at is not None:
            data, self.held = data[:hold_at], data[hold_at:]
        self.inbound.extend(cut(data, cuts, tiny))
        self.pump()

    @precondition(lambda self: self.is_open() and not self.eof_sent)
    @rule(data=garbage(), cuts=st.lists(st.integers(0, 1 << 16), max_size=8), tiny=st.sampled_from((0, 0, 1, 3)))
    def feed_garbage(self, data: bytes, cuts: list[int], tiny: int) -> None:
        """Invalid, mutated or over-limit bytes (after whatever the peer held back), split."""
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
                self.shutdown_dispatched = len(self.app.dispatched)
                in_progress = conn.state is READING_BODY or (
                    conn.state is READING_HEADERS and conn._parser.in_message
                )
                self.shutdown_allowance = 1 if in_progress else 0
            conn.shutdown()
        self.pump()

    @precondition(lambda self: self.conn is not None and self.conn.state is not CLOSED)
    @rule(reading=st.booleans())
    def set_peer_reading(self, reading: bool) -> None:
        """The peer starts or stops reading what the server writes."""
        self.transport.peer_reading = reading
        self.pump()

    @precondition(lambda self: bool(self.transport.queue))
    @rule(n=st.one_of(st.integers(1, 100), st.integers(1, 1 << 16)))
    def peer_reads(self, n: int) -> None:
        """The peer reads ``n`` bytes of what waits for it (whether or not it reads on)."""
        self.transport.peer_read(n)
        self.pump()

    # -- rules: the application and the server -----------------------------------------------

    @precondition(lambda self: any(not d.blocked for d in self.app.pending))
    @rule()
    def app_answers(self) -> None:
        """The application finishes the oldest response it owes (that is not waiting to drain)."""
        self.app.answer()
        self.pump()

    @precondition(lambda self: any(d.mode == "stream" and not d.blocked for d in self.app.pending))
    @rule()
    def app_streams_more(self) -> None:
        """The application writes one more piece of a streamed response."""
        d = next(d for d in self.app.pending if d.mode == "stream" and not d.blocked)
        self.app.write_piece(d)
        self.pump()

    # -- rules: time ----------------------------------------------------------------------------

    @precondition(lambda self: self.conn is not None and self.conn.state is not CLOSED)
    @rule(dt=st.one_of(st.sampled_from((0.001, 0.5, 1.0, 4.999)), st.floats(0, 3), st.floats(0, 40)))
    def time_passes(self, dt: float) -> None:
        """``dt`` seconds pass; the server's sweep runs."""
        self._advance(self.now + dt)

    @precondition(lambda self: self.conn is not None and min(self.conn.deadline, self.transport.write_deadline) < INF)
    @rule(which=st.sampled_from(("read", "write")), eps=st.sampled_from((0.0, 0.001, 0.5)))
    def deadline_passes(self, which: str, eps: float) -> None:
        """The clock jumps to the read or write deadline (plus ``eps``); the sweep runs."""
        assert self.conn is not None
        deadline = self.conn.deadline if which == "read" else self.transport.write_deadline
        if deadline == INF:
            deadline = min(self.conn.deadline, self.transport.write_deadline)
        self._advance(deadline + eps)

    def _advance(self, now: float) -> None:
        """Move the clock to ``now`` and sweep: a deadline passed must have been acted on."""
        conn = self.conn
        assert conn is not None
        state, deadline, write_deadline = conn.state, conn.deadline, self.transport.write_deadline
        mark = self._mark()
        self.now = max(self.now, now)
        self.sweep()
        if state in READ_STATES and deadline <= self.now:
            if conn.state in READ_STATES:
                self.violation(f"{state.name} deadline passed and swept, but still {conn.state.name}")
            if state is not IDLE:
                self.disturb()
                if not self._refused_with(408, mark):
                    self.violation(f"{state.name} timed out without a 408")
        if write_deadline <= self.now:
            if conn.state is not CLOSED:
                self.violation(f"write deadline passed and swept, but the connection is {conn.state.name}")
            self.disturb()
        self.pump()

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def check(self) -> None:
        """The invariants of the module docstring, after every step."""
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
        # Bounded buffers: the parser's input by the limits, the output by the high-water mark.
        parser = conn._parser
        bound = PARSER_BOUND.get(state, PARSER_BOUND_ELSE)
        if parser.buffered > bound:
            problems.append(f"parser holds {parser.buffered} bytes in {state.name}, more than {bound}")
        if len(parser._buf) > 65536 + 2 * PARSER_BOUND_ELSE:
            problems.append(f"parser buffer of {len(parser._buf)} bytes")
        if sum(map(len, conn._body)) > self.config.max_body_size:
            problems.append("request body buffered beyond max_body_size")
        if len(t.queue) > t.high_water and len(t.queue) > t.high_water + t.crossing_size:
            problems.append(f"{len(t.queue)} bytes unsent > high-water {t.high_water} + the "
                            f"{t.crossing_size} bytes of the one response call that crossed it")
        # A shutdown: idle connections close, and no request after the one in progress is served.
        if self.shut_down:
            if state is IDLE:
                problems.append("IDLE after a shutdown")
            late = len(self.app.dispatched) - self.shutdown_dispatched
            if late > self.shutdown_allowance:
                problems.append(f"{late} request(s) dispatched after a shutdown (allowed: {self.shutdown_allowance})")
        # No dead ends.
        live = [d for d in self.app.pending if not d.res.req.aborted]
        if state is HANDLED:
            if conn.current_exchange is None:
                problems.append("HANDLED but no response is owed")
            elif conn.current_exchange is not self.app.dispatched[-1].res.req.exchange:
                problems.append("HANDLED for a response that is not the latest request's")
            elif not live and not (self.app.dispatched[-1].mode in ("pump", "pumpfail") and t.queue):
                problems.append("HANDLED but the application owes nothing")
        elif live:
            problems.append(f"the application owes a response but the connection is {state.name}")
        if state is WRITING and len(t.queue) <= t.low_water:
            problems.append("WRITING with output drained")
        if state is IDLE and parser.buffered:
            problems.append("IDLE with bytes buffered")
        if state is IDLE and self.eof_delivered:
            problems.append("IDLE after the peer's EOF")
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
            if conn.current_exchange is not None:
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
        elif status >= 400 and self.conn is not None:
            # The server's refusal of the request being parsed: a HEAD gets the page's headers
            # only, even when the refusal came before a head could be made.
            error = self.conn._parser._error
            if error is not None:
                method = error.head.method if error.head is not None else (error.method or "GET")
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
        """At the end of a run: drive the connection to its close, then the final checks."""
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
