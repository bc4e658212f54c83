"""write_timeout is about a peer that stops reading, not one that reads slowly but steadily."""

from __future__ import annotations

import socket
import time

from evserve import App

from .conftest import DEADLINE

BODY = 6 << 20


def big_app() -> App:
    app = App()
    app.get("/big", lambda req, res: res.send(b"x" * BODY))
    return app


def download(server) -> socket.socket:
    """A connection with a small receive buffer that has asked for the big body."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    return sock


def test_a_slow_steady_reader_is_not_cut_by_write_timeout():
    with big_app().run_in_thread(write_timeout=0.5) as server, download(server) as sock:
        head = sock.recv(1024)
        got = len(head) - head.index(b"\r\n\r\n") - 4  # body bytes so far
        deadline = time.monotonic() + 60
        # About 2 MB/s in small reads: the server's send queue (megabytes on loopback)
        # takes seconds to drain, far longer than write_timeout, yet the peer reads all
        # along. Without the kernel's word the connection was reset half-way.
        while got < BODY and time.monotonic() < deadline:
            data = sock.recv(16384)
            if not data:
                break
            got += len(data)
            time.sleep(0.008)
        assert got == BODY, f"cut after {got} bytes"


def test_a_reader_that_stops_is_still_dropped():
    with big_app().run_in_thread(write_timeout=0.3) as server, download(server) as sock:
        sock.recv(1000)
        deadline = time.monotonic() + DEADLINE
        while server.connection_count and time.monotonic() < deadline:
            time.sleep(0.02)  # polling: the server drops the silent reader
        assert server.connection_count == 0
