"""A bounded run of the live fuzzer (fuzz/live.py): random and mutated byte streams against a real
server, each connection answered or closed within its deadline, the server healthy afterwards.

``python -m fuzz.live --connections 2000`` runs the same at scale.
"""

from __future__ import annotations

import logging

import pytest

from fuzz.live import KINDS, TIMEOUTS, make_app, run


@pytest.mark.slow
def test_live_fuzz_never_hangs_and_leaves_the_server_healthy() -> None:
    summary = run(150, seed=20261121, concurrency=16, time_limit=60)
    assert summary.connections == 150
    assert not summary.failures, summary.report() + "\n" + "\n".join(summary.failures)
    # The cases reach the server's answers, not only its closes, and every kind of case ran
    # (the deadlines and the write timeout among them).
    assert summary.statuses[200] and summary.statuses[400] and summary.statuses[408]
    assert set(summary.kinds) == {kind for kind, _ in KINDS}, summary.kinds


def test_a_refused_transfer_coding_is_not_logged_as_an_error(serve, clients, caplog) -> None:
    server = serve(make_app(), **TIMEOUTS)
    client = clients(server)
    with caplog.at_level(logging.DEBUG, logger="evserve"):
        client.send(b"POST /echo HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
        assert client.read_response().status == 501
        client.wait_closed()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
