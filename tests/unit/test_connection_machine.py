"""The connection state machine fuzzed without sockets (fuzz/connection_machine.py), at the
budget of the active hypothesis profile, plus programs it found worth keeping.

``python -m fuzz.connection_machine --examples 20000`` runs the same machine at scale.
"""

from __future__ import annotations

from hypothesis import settings

from fuzz.connection_machine import ConnectionMachine, ReqSpec

TestConnectionMachine = ConnectionMachine.TestCase
TestConnectionMachine.settings = settings(stateful_step_count=30)  # the rest from the profile


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


def test_pipelined_responses_wait_for_a_peer_that_does_not_read() -> None:
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


def test_a_trickled_head_keeps_the_deadline_of_its_first_byte() -> None:
    state = machine()
    state.feed_request(spec(), [], hold=5)  # "GET /" now, the rest later
    state.time_passes(9.0)
    state.send_held()
    state.check()
    finish(state)
    state = machine()
    state.feed_request(spec(), [], hold=5)
    state.time_passes(9.0)
    state.time_passes(1.5)  # header_timeout (10 s) from the first byte: 408, whatever came since
    assert b" 408 " in state.transport.written
    finish(state)


def test_a_request_in_flight_at_shutdown_is_answered_with_connection_close() -> None:
    state = machine()
    state.feed_request(spec(mode="later"), [], 0)
    state.disrupt("shutdown")
    state.app_answers()
    state.check()
    assert b"Connection: close" in state.transport.written
    finish(state)


def test_half_close_after_pipelined_requests_still_gets_every_response() -> None:
    state = machine(peer_reading=False)
    state.feed_requests([spec(mode="later"), spec(method="POST", framing="chunked", body=b"abc" * 20,
                                                   chunk_cuts=(7, 30), expect=True)], [5, 90], 0)
    state.disrupt("eof")
    state.app_answers()
    state.set_peer_reading(True)
    finish(state)
    assert [seq for _, seq in state.responses] == [0, 1]


def test_send_honours_a_connection_close_header() -> None:
    state = machine()
    state.feed_requests([spec(mode="sendclose"), spec()], [], 0)
    finish(state)
