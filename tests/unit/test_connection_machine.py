"""The connection state machine fuzzed without sockets (fuzz/connection_machine.py), at the
budget of the active hypothesis profile, plus programs it found worth keeping, and proof that
its checks can fail: each breaks ``Connection`` in one way and the machine must say so.

``python -m fuzz.connection_machine --examples 20000`` runs the same machine at scale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from evserve.connection import Connection
from fuzz.connection_fakes import ErrorLogRecorder
from fuzz.connection_inputs import ReqSpec
from fuzz.connection_machine import ConnectionMachine

TestConnectionMachine = ConnectionMachine.TestCase
TestConnectionMachine.settings = settings(stateful_step_count=30)  # the rest from the profile


@pytest.fixture(autouse=True)
def _no_machine_left_logging() -> Iterator[None]:
    """A program that fails before its teardown leaves its log handler behind: remove it."""
    yield
    evlog = logging.getLogger("evserve")
    for handler in [h for h in evlog.handlers if isinstance(h, ErrorLogRecorder)]:
        evlog.removeHandler(handler)


def spec(**changes: object) -> ReqSpec:
    fields: dict[str, object] = {
        "method": "GET", "version": "1.1", "connection": None, "expect": False, "framing": "none",
        "body": b"", "chunk_cuts": (), "mode": "now", "size": 10, "leading_blank": False, "filler": 0,
    }
    fields.update(changes)
    return ReqSpec(**fields)  # type: ignore[arg-type]


def machine(write_buffer_size: int = 1024, *, renders_errors: bool = False, render_later: bool = False,
            peer_reading: bool = True) -> ConnectionMachine:
    state = ConnectionMachine()
    state.start(write_buffer_size=write_buffer_size, renders_errors=renders_errors,
                render_later=render_later, peer_reading=peer_reading)
    state.check()
    return state


def finish(state: ConnectionMachine) -> None:
    """Run the machine's end-of-run checks (drive to close, everything answered, in order)."""
    state.check()
    state.teardown()


# -- programs -----------------------------------------------------------------------------------


def pipelined_to_a_peer_that_does_not_read() -> None:
    # Three requests in one read, a peer that reads nothing, a high-water mark one response
    # exceeds: one response is written, then the connection waits (WRITING) until drained.
    state = machine(64, peer_reading=False)
    state.feed_requests([spec(), spec(), spec()], [], 0)
    state.check()
    assert len(state.app.dispatched) == 1
    state.peer_reads(1 << 16)
    state.check()
    assert len(state.app.dispatched) == 2
    finish(state)


def a_head_trickled_past_its_deadline() -> None:
    # "GET /" at t=1000, 3 more bytes at t=1009: header_timeout (10 s) still runs from t=1000.
    state = machine()
    state.feed_request(spec(), [], hold=4, hold_in="head")
    state.time_passes(9.0)
    state.send_held(3)
    state.check()
    state.time_passes(1.5)
    assert b" 408 " in state.transport.written
    finish(state)


def a_body_trickled_past_its_deadline() -> None:
    # The head and 3 bytes of the body at t=1000, 5 more at t=1029: body_timeout (30 s) still
    # runs from the end of the head.
    state = machine(renders_errors=True)
    state.feed_request(spec(method="POST", framing="length", body=b"0123456789" * 5), [], hold=3, hold_in="body")
    state.time_passes(29.0)
    state.send_held(5)
    state.check()
    state.time_passes(1.5)
    assert [d.status for d in state.app.dispatched] == [408]
    finish(state)


def a_request_in_flight_at_shutdown() -> None:
    state = machine()
    state.feed_request(spec(mode="later"), [], 0)
    state.disrupt("shutdown")
    state.app_answers()
    state.check()
    assert b"Connection: close" in state.transport.written
    finish(state)


def half_close_after_pipelined_requests() -> None:
    state = machine(peer_reading=False)
    state.feed_requests([spec(mode="later"), spec(method="POST", framing="chunked", body=b"abc" * 20,
                                                   chunk_cuts=(7, 30), expect=True)], [5, 90], 0)
    state.disrupt("eof")
    state.app_answers()
    state.set_peer_reading(True)
    finish(state)
    assert [seq for _, seq in state.responses] == [0, 1]


def a_stream_to_a_peer_that_does_not_read() -> None:
    # Each piece crosses the high-water mark: the app is told to wait, and waits for on_drain.
    state = machine(64, peer_reading=False)
    state.feed_request(spec(mode="stream", size=100), [], 0)
    for _ in range(2):
        if not state.app.pending[0].blocked:  # the app writes on unless told to wait
            state.app_streams_more()
        state.check()
    state.peer_reads(1 << 16)
    state.app_streams_more()
    state.check()
    finish(state)


def idle_at_shutdown() -> None:
    state = machine()
    state.feed_request(spec(), [], 0)
    state.disrupt("shutdown")
    state.check()
    finish(state)


def eof_in_the_middle_of_a_head() -> None:
    state = machine()
    state.feed_garbage(b"GET / HTTP/1.1\r\nHo", [], 0)
    state.disrupt("eof")
    state.check()
    finish(state)


def over_the_limits() -> None:
    state = machine()
    state.feed_garbage(b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(20)) + b"\r\n", [], 0)
    state.check()
    state = machine()
    state.feed_garbage(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"c" * 3000, [], 0)
    state.check()
    state = machine()
    state.feed_garbage(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2049\r\n\r\n" + b"x" * 2049, [], 0)
    state.check()
    finish(state)


def output_unread_past_write_timeout() -> None:
    state = machine(64, peer_reading=False)
    state.feed_request(spec(size=500), [], 0)
    state.deadline_passes("write", 0.0)
    finish(state)


def test_pipelined_responses_wait_for_a_peer_that_does_not_read() -> None:
    pipelined_to_a_peer_that_does_not_read()


def test_a_trickled_head_keeps_the_deadline_of_its_first_byte() -> None:
    a_head_trickled_past_its_deadline()


def test_a_trickled_body_keeps_the_deadline_of_its_head() -> None:
    a_body_trickled_past_its_deadline()


def test_a_request_in_flight_at_shutdown_is_answered_with_connection_close() -> None:
    a_request_in_flight_at_shutdown()


def test_half_close_after_pipelined_requests_still_gets_every_response() -> None:
    half_close_after_pipelined_requests()


def test_send_honours_a_connection_close_header() -> None:
    state = machine()
    state.feed_requests([spec(mode="sendclose"), spec()], [], 0)
    finish(state)


def test_a_stream_waits_for_a_peer_that_does_not_read() -> None:
    a_stream_to_a_peer_that_does_not_read()


def test_eof_in_the_middle_of_a_head_is_refused() -> None:
    eof_in_the_middle_of_a_head()


def test_requests_over_the_limits_never_reach_the_app() -> None:
    over_the_limits()


def test_shutdown_while_writing_serves_no_further_request() -> None:
    # The first response waits above the high-water mark (WRITING) when the server shuts down;
    # the second request is already buffered. Shut down in HANDLED, the connection closes after
    # the in-flight response without serving it; so it must here.
    state = machine(64, peer_reading=False)
    state.feed_requests([spec(size=700), spec()], [], 0)
    state.disrupt("shutdown")
    state.peer_reads(1 << 16)
    finish(state)


# -- the checks can fail --------------------------------------------------------------------------


def _reset_deadline_on_every_byte(original: Callable[..., None]) -> Callable[..., None]:
    def data_received(self: Connection, data: bytes) -> None:
        if self.state == 2:  # READING_HEADERS: a byte restarts header_timeout
            self.deadline = self._clock() + self._config.header_timeout
        original(self, data)

    return data_received


def _never_blocked(original: Callable[..., bool]) -> Callable[..., bool]:
    return lambda self: False


def _no_close_on_shutdown(original: Callable[..., None]) -> Callable[..., None]:
    def shutdown(self: Connection) -> None:
        self.stopping = True

    return shutdown


def _ignore_write_timeout(original: Callable[..., None]) -> Callable[..., None]:
    return lambda self: None


BROKEN = [
    # (what to break, how, a program that must then fail)
    ("data_received", _reset_deadline_on_every_byte, a_head_trickled_past_its_deadline),
    ("write_blocked", _never_blocked, a_stream_to_a_peer_that_does_not_read),
    ("shutdown", _no_close_on_shutdown, idle_at_shutdown),
    ("write_timed_out", _ignore_write_timeout, output_unread_past_write_timeout),
]


@pytest.mark.parametrize(("name", "breaker", "program"), BROKEN, ids=[b[0] for b in BROKEN])
def test_the_machine_notices_a_broken_connection(monkeypatch, name, breaker, program) -> None:
    program()  # passes on the real Connection
    monkeypatch.setattr(Connection, name, breaker(getattr(Connection, name)))
    with pytest.raises(AssertionError):
        program()


def test_the_machine_notices_a_request_over_the_limits(monkeypatch) -> None:
    real_init = Connection.__init__

    def init(self: Connection, app, config, *args, **kwargs) -> None:
        real_init(self, app, config, *args, **kwargs)
        self._parser.max_headers = 1000  # the parser no longer counts header lines
        self._parser.max_header_size = 1 << 20
        self._parser.max_target_size = 1 << 20

    over_the_limits()
    monkeypatch.setattr(Connection, "__init__", init)
    with pytest.raises(AssertionError):
        over_the_limits()
