"""``SocketTransport`` on a TCP connection over 127.0.0.1, driven one reactor turn at a time: file segments count
as unsent output and do not hold files open while they wait, and reading while paused stops at
its bound. The connection is a stub that records what the transport tells it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evserve.reactor import Reactor
from evserve.transport import PAUSED_READ_SIZE, SocketTransport

from .conftest import DEADLINE

HIGH_WATER = 16384


class StubConnection:
    """What a transport calls on its connection, recorded."""

    def __init__(self) -> None:
        self.eof = False
        self.received = bytearray()
        self.lost = 0
        self.linger_on_close = False

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self) -> None:
        self.eof = True

    def drained(self) -> None:
        pass

    def connection_lost(self) -> None:
        self.lost += 1


@pytest.fixture
def pair() -> Iterator[tuple[Reactor, SocketTransport, StubConnection, socket.socket]]:
    reactor = Reactor()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname(), timeout=DEADLINE)
        ours, _ = listener.accept()
    ours.setblocking(False)
    peer.settimeout(DEADLINE)
    transport = SocketTransport(reactor, ours, HIGH_WATER, 30.0)
    conn = StubConnection()
    transport.conn = conn  # type: ignore[assignment]
    try:
        yield reactor, transport, conn, peer
    finally:
        transport.abort()
        peer.close()
        reactor.close()


def turn_until(reactor: Reactor, predicate: Any) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, "the condition never held"
        reactor.run_once(0.01)


def fill(transport: SocketTransport) -> None:
    """Queue output until some of it waits (the peer does not read)."""
    while transport.buffer_size() == 0:
        transport.write(b"w" * 65536)


def test_a_small_file_segment_behind_waiting_output_is_read_and_its_file_closed(pair: Any, tmp_path: Path) -> None:
    reactor, transport, conn, peer = pair
    path = tmp_path / "small.bin"
    path.write_bytes(b"s" * 1000)
    fill(transport)
    before = transport.buffer_size()
    file = open(path, "rb")  # noqa: SIM115 - the transport closes it
    transport.send_file(file, 10, 900)
    assert file.closed
    assert transport.buffer_size() == before + 900


def test_a_large_file_segment_keeps_its_file_and_counts_as_unsent_output(pair: Any, tmp_path: Path) -> None:
    reactor, transport, conn, peer = pair
    path = tmp_path / "big.bin"
    path.write_bytes(b"b" * (3 * HIGH_WATER))
    fill(transport)
    before = transport.buffer_size()
    file = open(path, "rb")  # noqa: SIM115 - the transport closes it
    transport.send_file(file, 0, 3 * HIGH_WATER)
    assert not file.closed
    assert transport.buffer_size() == before + 3 * HIGH_WATER > HIGH_WATER
    assert not transport.is_reading  # above the high-water mark
    transport.abort()
    assert file.closed and conn.lost == 1


def test_a_file_shorter_than_promised_aborts(pair: Any, tmp_path: Path) -> None:
    reactor, transport, conn, peer = pair
    path = tmp_path / "short.bin"
    path.write_bytes(b"s" * 100)
    fill(transport)
    file = open(path, "rb")  # noqa: SIM115 - the transport closes it
    transport.send_file(file, 0, 200)
    assert file.closed and transport.is_closed and conn.lost == 1


def test_reading_while_paused_stops_at_its_bound(pair: Any) -> None:
    reactor, transport, conn, peer = pair
    transport.pause_reading()
    assert transport.is_reading  # still watched: a reset or EOF must be seen
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    peer.sendall(b"x" * (PAUSED_READ_SIZE + 50000))
    turn_until(reactor, lambda: not transport.is_reading)
    assert len(conn.received) == PAUSED_READ_SIZE
    for _ in range(20):  # data is pending, but the socket is no longer watched: no busy turns
        reactor.run_once(0)
    assert len(conn.received) == PAUSED_READ_SIZE
    transport.resume_reading()
    turn_until(reactor, lambda: len(conn.received) == PAUSED_READ_SIZE + 50000)


def test_a_reset_while_paused_is_seen(pair: Any) -> None:
    reactor, transport, conn, peer = pair
    transport.pause_reading()
    peer.sendall(b"GET / HTTP/1.1\r\n")
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()
    turn_until(reactor, lambda: conn.lost == 1)
    assert transport.is_closed


def test_an_eof_while_paused_is_seen(pair: Any) -> None:
    reactor, transport, conn, peer = pair
    transport.pause_reading()
    peer.sendall(b"GET / HTTP/1.1\r\n")
    peer.shutdown(socket.SHUT_WR)
    turn_until(reactor, lambda: conn.eof)
    assert conn.received == b"GET / HTTP/1.1\r\n" and not transport.is_reading and conn.lost == 0
