"""A client that goes away while a handler holds its request is noticed at once, although the
connection does not process input meanwhile: the request's ``on_close`` callbacks run,
``req.aborted`` is set and the connection is freed. A FIN is noticed too (the response still
goes out). Input read meanwhile is bounded, and the socket stops being watched once the bound
is reached (a level-triggered selector would otherwise report it on every turn).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from evserve import App
from evserve.connection import State
from evserve.server import Server
from evserve.transport import PAUSED_READ_SIZE, RECV_SIZE

from .conftest import RawClient, on_reactor, wait_idle, wait_until


class Holder:
    """An application whose ``/hold`` handler never answers; it records what it saw."""

    def __init__(self) -> None:
        self.app = App()
        self.requests: list[Any] = []
        self.closed: list[str] = []
        self.lock = threading.Lock()

        @self.app.get("/hold")
        def hold(req: Any, res: Any) -> None:
            with self.lock:
                self.requests.append(req)
            req.on_close(lambda: self.closed.append(req.path))

        @self.app.get("/now")
        def now(req: Any, res: Any) -> None:
            res.send("now")


@pytest.fixture
def holder() -> Holder:
    return Holder()


def held_connection(server: Server) -> Any:
    def probe() -> Any:
        conns = [c for c in server._connections if c.state is State.HANDLED]
        return conns[0] if len(conns) == 1 else None
    return on_reactor(server, probe)


@pytest.mark.parametrize("pipelined", [b"", b"GET /now HTTP/1.1\r\nHost: test\r\n\r\n"])
def test_a_reset_while_the_handler_holds_the_request_is_noticed_at_once(
        serve: Any, holder: Holder, pipelined: bytes) -> None:
    server = serve(holder.app, keepalive_timeout=60, header_timeout=60)
    client = RawClient(server)
    try:
        client.send(b"GET /hold HTTP/1.1\r\nHost: test\r\n\r\n" + pipelined)
        wait_until(lambda: len(holder.requests) == 1)
        assert server.connection_count == 1
    finally:
        client.close_with_reset()
    req = holder.requests[0]
    wait_until(lambda: holder.closed == ["/hold"], message="on_close never ran after a reset")
    assert req.aborted is True
    wait_idle(server)
    assert len(holder.requests) == 1  # the pipelined request was never started


def test_a_reset_after_more_pipelined_bytes_than_are_read_ahead(serve: Any, holder: Holder) -> None:
    # Up to a bound, bytes that arrive while the handler holds the request are read (and kept
    # unprocessed), so a reset behind them is still seen; past it, the socket is not watched.
    server = serve(holder.app, keepalive_timeout=60, header_timeout=60)
    client = RawClient(server)
    filler = b"GET /now HTTP/1.1\r\nHost: test\r\nX-Pad: " + b"p" * 900 + b"\r\n\r\n"
    try:
        client.send(b"GET /hold HTTP/1.1\r\nHost: test\r\n\r\n")
        wait_until(lambda: len(holder.requests) == 1)
        client.send(filler * ((PAUSED_READ_SIZE + 16384) // len(filler)))
        conn = wait_until(lambda: held_connection(server))
        wait_until(lambda: not on_reactor(server, lambda: conn.transport.is_reading),
                   message="the socket is still watched past the read-ahead bound")
        buffered = on_reactor(server, lambda: conn._parser.buffered)
        assert PAUSED_READ_SIZE <= buffered <= PAUSED_READ_SIZE + RECV_SIZE
    finally:
        client.close()
    assert holder.closed == []  # (what was read ahead is only buffered, never processed)
    on_reactor(server, holder.requests[0].res.send, "late")  # answered: the connection then sees the FIN
    wait_idle(server)


def test_a_fin_while_the_handler_holds_the_request_is_noticed_and_the_answer_still_sent(
        serve: Any, holder: Holder) -> None:
    server = serve(holder.app)
    with RawClient(server) as client:
        client.send(b"GET /hold HTTP/1.1\r\nHost: test\r\n\r\n")
        wait_until(lambda: len(holder.requests) == 1)
        client.sock.shutdown(socket.SHUT_WR)
        conn = wait_until(lambda: held_connection(server))
        wait_until(lambda: on_reactor(server, lambda: not conn.linger_on_close),
                   message="the peer's EOF was not noticed while the handler held the request")
        assert holder.closed == [] and not holder.requests[0].aborted
        on_reactor(server, holder.requests[0].res.send, "late")
        res = client.read_response()
        assert (res.status, res.text) == (200, "late")
        assert client.read_until_close() == b""
    wait_idle(server)
    assert holder.closed == ["/hold"]
