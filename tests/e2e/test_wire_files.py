"""Open files per connection stay bounded while a client pipelines file requests and does not
read: ``static``, ``res.send_file`` (from a plain and an ``async`` handler), ``res.download``,
multi-range responses, HEAD and 304 (no file kept), and a client that resets mid-file.

The server runs in this process, so ``/proc/self/fd`` counts its descriptors. The application
samples that count as each request starts (a file opened for an earlier response and still
held shows there), and once more when the connection has stopped taking requests.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import evserve
from evserve import App, static
from evserve.connection import State
from evserve.server import Server

from .conftest import DEADLINE, RawClient, on_reactor, wait_idle, wait_until

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")

HIGH_WATER = 16384  # write_buffer_size of the servers here
PIPELINED = 500
EXTRA_FDS = 4  # at most two files held (a third while one opens), and one of slack


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def content(size: int, seed: bytes) -> bytes:
    block = b"".join(hashlib.sha256(seed + b"%d" % i).digest() for i in range(64))
    return (block * (size // len(block) + 1))[:size]


BIG = content(3 * HIGH_WATER + 123, b"big")  # a file segment above the high-water mark
SMALL = content(HIGH_WATER - 200, b"small")  # one below it (500 of them outgrow any socket buffer)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wire_files")
    (path / "big.bin").write_bytes(BIG)
    (path / "small.bin").write_bytes(SMALL)
    return path


class Sampler:
    """The application's view of the process's descriptors, taken as each request starts."""

    def __init__(self) -> None:
        self.samples: list[int] = []

    def __call__(self, req: Any, res: Any, next_: Callable[[], None]) -> None:
        self.samples.append(open_fds())
        next_()


@pytest.fixture
def file_server(root: Path) -> Iterator[tuple[Server, Sampler]]:
    app = App()
    sampler = Sampler()
    app.use(sampler)
    app.use("/static", static(str(root)))

    @app.get("/send/:name")
    def send(req: Any, res: Any) -> None:
        res.send_file(req.params["name"], root=str(root))

    @app.get("/async/:name")
    async def send_later(req: Any, res: Any) -> None:
        await evserve.sleep(0)
        res.send_file(req.params["name"], root=str(root))

    @app.get("/download/:name")
    def download(req: Any, res: Any) -> None:
        res.download(str(root / req.params["name"]), "data.bin")

    with app.run_in_thread(write_buffer_size=HIGH_WATER, write_timeout=30) as server:
        yield server, sampler


def the_connection(server: Server) -> Any:
    conns = list(server._connections)
    return conns[0] if len(conns) == 1 else None


def stalled(server: Server) -> bool:
    """The one connection waits for its peer to read before it takes another request."""
    def probe() -> bool:
        conn = the_connection(server)
        return conn is not None and conn.state is State.WRITING \
            and conn.transport.buffer_size() > HIGH_WATER
    return on_reactor(server, probe)


def read_responses(client: RawClient, count: int, method: str = "GET") -> list[tuple[bytes, bytes]]:
    """Read ``count`` Content-Length framed responses (head, body) with large reads."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    buf = bytearray(client.buffer)
    client.buffer.clear()
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    deadline = time.monotonic() + DEADLINE * 3
    while len(out) < count:
        end = buf.find(b"\r\n\r\n", pos)
        if end >= 0:
            head = bytes(buf[pos:end])
            match = re.search(rb"(?im)^content-length: *(\d+)", head)
            length = int(match.group(1)) if match and method != "HEAD" and b" 304 " not in head[:13] else 0
            if len(buf) >= end + 4 + length:
                out.append((head, bytes(buf[end + 4 : end + 4 + length])))
                pos = end + 4 + length
                continue
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(out)} of {count} responses arrived")
        client.sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = client.sock.recv(1 << 20)
        if not data:
            raise AssertionError(f"closed after {len(out)} of {count} responses")
        buf += data
    return out


def pipeline(server: Server, sampler: Sampler, requests: bytes, count: int, *, stall: bool = True) -> tuple[RawClient, int]:
    """Send ``requests`` (``count`` of them) without reading; returns the client and the most
    descriptors above the baseline seen while the server took them."""
    client = RawClient(server, rcvbuf=4096)
    try:
        wait_until(lambda: the_connection(server) is not None)
        baseline = open_fds()
        sampler.samples.clear()
        client.send(requests)
        if stall:
            wait_until(lambda: stalled(server), message="the connection never waited for its peer")
        else:
            wait_until(lambda: len(sampler.samples) == count)
        most = max([*sampler.samples, open_fds()]) - baseline
    except BaseException:
        client.close()
        raise
    return client, most


@pytest.mark.parametrize(
    "target",
    ["/static/big.bin", "/static/small.bin", "/send/big.bin", "/send/small.bin", "/async/big.bin",
     "/download/small.bin", "/download/big.bin"],
)
def test_pipelined_files_hold_a_bounded_number_of_descriptors(file_server: tuple[Server, Sampler],
                                                              target: str) -> None:
    server, sampler = file_server
    body = BIG if "big" in target else SMALL
    request = f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode()
    client, most = pipeline(server, sampler, request * PIPELINED, PIPELINED)
    with client:
        assert most <= EXTRA_FDS, f"{most} descriptors more than before the requests"
        responses = read_responses(client, PIPELINED)
        assert all(b" 200 " in head[:13] and got == body for head, got in responses)
    wait_idle(server)


def test_pipelined_multi_range_responses_hold_a_bounded_number_of_descriptors(
        file_server: tuple[Server, Sampler]) -> None:
    server, sampler = file_server
    ranges = [(0, 99), (5000, 5999), (20000, len(BIG) - 1)]
    spec = ",".join(f"{a}-{b}" for a, b in ranges)
    request = f"GET /static/big.bin HTTP/1.1\r\nHost: test\r\nRange: bytes={spec}\r\n\r\n".encode()
    client, most = pipeline(server, sampler, request * PIPELINED, PIPELINED)
    with client:
        assert most <= EXTRA_FDS, f"{most} descriptors more than before the requests"
        for head, got in read_responses(client, PIPELINED):
            assert b" 206 " in head[:13]
            for a, b in ranges:
                assert b"Content-Range: bytes %d-%d/%d\r\n\r\n" % (a, b, len(BIG)) + BIG[a : b + 1] in got
    wait_idle(server)


@pytest.mark.parametrize("kind", ["HEAD", "304"])
def test_head_and_not_modified_keep_no_file_open(file_server: tuple[Server, Sampler], kind: str) -> None:
    server, sampler = file_server
    with RawClient(server) as probe:
        probe.request("GET", "/static/big.bin")
        etag = probe.read_response().header("etag")
    assert etag
    if kind == "HEAD":
        request = b"HEAD /static/big.bin HTTP/1.1\r\nHost: test\r\n\r\n"
    else:
        request = f"GET /static/big.bin HTTP/1.1\r\nHost: test\r\nIf-None-Match: {etag}\r\n\r\n".encode()
    client, most = pipeline(server, sampler, request * PIPELINED, PIPELINED, stall=False)
    with client:
        assert most <= 2, f"{most} descriptors more than before the requests"
        responses = read_responses(client, PIPELINED, "HEAD" if kind == "HEAD" else "GET")
        status = b" 200 " if kind == "HEAD" else b" 304 "
        assert all(status in head[:13] and got == b"" for head, got in responses)
    wait_idle(server)


def test_a_client_that_resets_mid_file_leaves_no_file_open(file_server: tuple[Server, Sampler]) -> None:
    server, sampler = file_server
    with RawClient(server) as probe:  # a connection's worth of descriptors, opened and closed
        probe.request("GET", "/static/small.bin")
        probe.read_response()
    wait_idle(server)
    baseline = open_fds()
    request = b"GET /static/big.bin HTTP/1.1\r\nHost: test\r\n\r\n"
    client, most = pipeline(server, sampler, request * PIPELINED, PIPELINED)
    assert most <= EXTRA_FDS
    client.close_with_reset()
    wait_idle(server)
    wait_until(lambda: open_fds() <= baseline, message="a file (or socket) was left open after a reset")
