"""A transport over another byte layer overrides ``recv``/``send``/``shutdown_writing`` only.

``XorTransport`` stands for TLS: every byte on the wire is transformed, so a byte that went
around its ``send`` (an ``os.sendfile`` straight to the socket) shows up untransformed at the
peer. It runs on a TCP connection over 127.0.0.1, one reactor turn at a time, for an owner that
is a stub recording what the transport tells it (it has no attribute the transport could peek
at besides the ``TransportOwner`` protocol). Also here: ``Reactor.listen`` and the function the
server installs behind it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import evserve.reactor
import evserve.server
from evserve import App
from evserve.reactor import Reactor, install_listen
from evserve.transport import FILE_CHUNK, SocketTransport

from .conftest import DEADLINE

HIGH_WATER = 16384
_XOR = bytes(byte ^ 0x5A for byte in range(256))


def xor(data: bytes | memoryview) -> bytes:
    return bytes(data).translate(_XOR)


class XorTransport(SocketTransport):
    """Every byte XORed with 0x5A on the wire, both ways; counts what crosses each method."""

    __slots__ = ("calls",)

    def __init__(self, *args: Any) -> None:
        self.calls: dict[str, int] = {"recv": 0, "send": 0, "shutdown_writing": 0}
        super().__init__(*args)

    def recv(self, size: int) -> bytes:
        self.calls["recv"] += 1
        return xor(super().recv(size))

    def send(self, data: bytes | memoryview) -> int:
        self.calls["send"] += 1
        # XOR is byte by byte: the count of the encoded bytes taken is the count of ours.
        return super().send(xor(data))

    def shutdown_writing(self) -> None:
        self.calls["shutdown_writing"] += 1
        super().shutdown_writing()


class Owner:
    """The ``TransportOwner`` protocol, recorded; nothing else."""

    __slots__ = ("drains", "eofs", "linger_on_close", "lost", "received")

    def __init__(self, linger_on_close: bool = True) -> None:
        self.received = bytearray()
        self.eofs = 0
        self.drains = 0
        self.lost = 0
        self.linger_on_close = linger_on_close

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self) -> None:
        self.eofs += 1

    def drained(self) -> None:
        self.drains += 1

    def connection_lost(self) -> None:
        self.lost += 1


@pytest.fixture
def pair() -> Iterator[tuple[Reactor, XorTransport, Owner, socket.socket]]:
    reactor = Reactor()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname(), timeout=DEADLINE)
        ours, _ = listener.accept()
    ours.setblocking(False)
    peer.settimeout(DEADLINE)
    transport = XorTransport(reactor, ours, HIGH_WATER, 30.0)
    owner = Owner()
    transport.conn = owner
    try:
        yield reactor, transport, owner, peer
    finally:
        transport.abort()
        peer.close()
        reactor.close()


def turn_until(reactor: Reactor, predicate: Any) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, "the condition never held"
        reactor.run_once(0.01)


def read_exactly(reactor: Reactor, peer: socket.socket, count: int) -> bytes:
    """What the peer receives, ``count`` bytes, turning the reactor while it waits."""
    peer.setblocking(False)
    got = bytearray()
    deadline = time.monotonic() + DEADLINE
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} bytes arrived"
        reactor.run_once(0.01)
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            continue
        assert chunk, f"EOF after {len(got)} of {count} bytes"
        got += chunk
    peer.settimeout(DEADLINE)
    return bytes(got)


def test_input_crosses_recv(pair: Any) -> None:
    reactor, transport, owner, peer = pair
    peer.sendall(xor(b"GET / HTTP/1.1\r\n\r\n"))
    turn_until(reactor, lambda: len(owner.received) == 18)
    assert owner.received == b"GET / HTTP/1.1\r\n\r\n" and transport.calls["recv"] >= 1


def test_output_crosses_send_queued_or_not(pair: Any) -> None:
    reactor, transport, owner, peer = pair
    sent = [b"hello "]
    transport.write(sent[0])
    while transport.buffer_size() == 0:  # the peer does not read yet: some output must wait
        sent.append(bytes([len(sent) % 256]) * 65536)
        transport.write(sent[-1])
    sent.append(b" world")
    transport.write(sent[-1])  # queued behind the rest
    expected = b"".join(sent)
    assert read_exactly(reactor, peer, len(expected)) == xor(expected)
    turn_until(reactor, lambda: transport.buffer_size() == 0 and owner.drains > 0)


def test_a_file_goes_through_send_in_bounded_chunks_when_send_is_overridden(pair: Any, tmp_path: Path) -> None:
    reactor, transport, owner, peer = pair
    content = bytes(range(251)) * 2000  # several FILE_CHUNKs, not a multiple of one
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    file = open(path, "rb")  # noqa: SIM115 - the transport closes it
    transport.send_file(file, 7, len(content) - 7)
    # Untransformed bytes at the peer would mean os.sendfile went around send().
    assert read_exactly(reactor, peer, len(content) - 7) == xor(content[7:])
    assert transport.calls["send"] >= (len(content) - 7) // FILE_CHUNK
    turn_until(reactor, lambda: file.closed and transport.buffer_size() == 0)


def test_a_file_without_a_descriptor_goes_through_send(pair: Any) -> None:
    import io

    reactor, transport, owner, peer = pair
    transport.write(b"head:")
    transport.send_file(io.BytesIO(b"0123456789"), 2, 5)
    assert read_exactly(reactor, peer, 10) == xor(b"head:23456")


def test_a_file_shorter_than_promised_aborts(pair: Any, tmp_path: Path) -> None:
    reactor, transport, owner, peer = pair
    path = tmp_path / "short.bin"
    path.write_bytes(b"s" * 100)
    file = open(path, "rb")  # noqa: SIM115 - the transport closes it
    transport.send_file(file, 0, 200 + HIGH_WATER)
    turn_until(reactor, lambda: transport.is_closed)
    assert file.closed and owner.lost == 1


def test_a_lingering_close_shuts_writing_down_through_the_override(pair: Any) -> None:
    reactor, transport, owner, peer = pair
    transport.write(b"bye")
    transport.close()
    assert transport.calls["shutdown_writing"] == 1
    assert owner.lost == 1 and transport.is_lingering
    assert peer.recv(100) == xor(b"bye")
    assert peer.recv(100) == b""  # FIN after our bytes
    peer.sendall(xor(b"late input"))  # drained and discarded through recv while lingering
    peer.close()
    recvs = transport.calls["recv"]
    turn_until(reactor, lambda: transport.is_closed)
    assert transport.calls["recv"] > recvs  # the lingering drain reads through recv too
    assert owner.received == b"" and owner.lost == 1


def test_no_lingering_close_when_the_owner_says_nothing_more_comes(pair: Any) -> None:
    reactor, transport, owner, peer = pair
    owner.linger_on_close = False
    transport.write(b"bye")
    transport.close()
    assert transport.is_closed and transport.calls["shutdown_writing"] == 0 and owner.lost == 1
    assert peer.recv(100) == xor(b"bye")
    assert peer.recv(100) == b""


def test_the_transport_keeps_the_eof_it_read(pair: Any) -> None:
    reactor, transport, owner, peer = pair
    peer.sendall(xor(b"last words"))
    peer.shutdown(socket.SHUT_WR)
    turn_until(reactor, lambda: owner.eofs == 1)
    assert owner.received == b"last words" and not transport.is_reading
    transport.pause_reading()
    transport.resume_reading()  # an EOF stays readable: watching it again would spin
    assert not transport.is_reading
    for _ in range(5):
        reactor.run_once(0)
    assert owner.eofs == 1
    # The owner still asks for a lingering close, but the transport knows nothing more comes.
    transport.write(b"answer")
    transport.close()
    assert transport.is_closed and transport.calls["shutdown_writing"] == 0
    assert peer.recv(100) == xor(b"answer")


def test_a_reset_seen_by_recv_aborts(pair: Any) -> None:
    reactor, transport, owner, peer = pair
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()
    turn_until(reactor, lambda: owner.lost == 1)
    assert transport.is_closed and owner.eofs == 0


# -- Reactor.listen: the function the server installs ----------------------------------------


def test_reactor_listen_is_the_servers_listen() -> None:
    reactor = Reactor()
    try:
        server = reactor.listen(App(), port=0, keepalive_timeout=1)
        assert isinstance(server, evserve.server.Server) and server.port > 0
        assert server.config.keepalive_timeout == 1
        server.close()
    finally:
        reactor.close()


def test_reactor_listen_calls_the_installed_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evserve.reactor, "_listen", evserve.reactor._listen)  # restored after
    calls: list[tuple[Any, ...]] = []

    def fake(reactor: Reactor, app: Any, host: str, port: int, **config: Any) -> Any:
        calls.append((reactor, app, host, port, config))
        return "server"

    install_listen(fake)  # type: ignore[arg-type]
    reactor = Reactor()
    try:
        assert reactor.listen("app", port=5, backlog=3) == "server"
        assert calls == [(reactor, "app", "127.0.0.1", 5, {"backlog": 3})]
    finally:
        reactor.close()


def test_reactor_listen_without_a_server_layer_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evserve.reactor, "_listen", None)
    reactor = Reactor()
    try:
        with pytest.raises(RuntimeError, match="import evserve"):
            reactor.listen(App())
    finally:
        reactor.close()
