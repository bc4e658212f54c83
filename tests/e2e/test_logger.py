"""End to end: the access logger (SPEC sections 5 and 8) where the socket matters: a response the
client resets midway is logged and marked aborted, and a request body that never comes in time
(408) is logged. The formats and the rest are checked through TestClient in
tests/app/test_logger.py."""

from __future__ import annotations

import logging
import re
import time

import pytest

from evserve import App
from evserve.middleware.logger import logger

from .conftest import DEADLINE, RawClient, wait_until

MS = r"\d+\.\d{3}"


@pytest.fixture
def access(caplog):
    """``access(n)`` waits for and returns the first ``n`` access-log lines of the test."""
    caplog.set_level(logging.INFO, logger="evserve.access")

    def lines(count: int = 1) -> list[str]:
        def ready():
            found = [r for r in caplog.records if r.name == "evserve.access"]
            return found if len(found) >= count else None

        records = wait_until(ready, message=f"fewer than {count} access-log lines")
        assert all(r.levelno == logging.INFO for r in records)
        return [r.getMessage() for r in records]

    return lines


def make_app(*middleware) -> App:
    """The routes these socket tests need (the rest of the logger's tests run in tests/app)."""
    app = App()
    for fn in middleware:
        app.use(fn)
    app.get("/hello", lambda req, res: res.send("hello"))

    @app.get("/stream-forever")
    def stream_forever(req, res):
        res.write("start\n")

        def tick():
            if not res.finished:
                res.write("x" * 4096)
                req.reactor.call_later(0.01, tick)

        req.reactor.call_later(0.01, tick)

    return app


# -- aborted and timed out -----------------------------------------------------------------------------


def test_an_aborted_response_is_logged_and_marked(access):
    with make_app(logger()).run_in_thread() as server:
        client = RawClient(server)
        try:
            client.request("GET", "/stream-forever")
            deadline = time.monotonic() + DEADLINE
            while b"start" not in client.buffer:  # the head and the first chunk arrived
                client.buffer += client._recv(deadline)
        finally:
            client.close_with_reset()
        (line,) = access(1)
    assert re.fullmatch(rf"GET /stream-forever 200 {MS} ms - - \(aborted\)", line), line


@pytest.mark.parametrize(("head", "status"), [
    (b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab", 408),  # body timeout
])
def test_a_request_the_server_refuses_after_its_head_is_logged(serve, clients, access, head, status):
    server = serve(make_app(logger()), max_body_size=10, body_timeout=0.2)
    client = clients(server)
    client.send(head)
    assert client.read_response().status == status
    (line,) = access(1)
    assert re.fullmatch(rf"POST /hello {status} {MS} ms - \d+", line), line


