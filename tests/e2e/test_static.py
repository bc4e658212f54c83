"""static(root) end to end, where the socket matters: a big file sent with sendfile, HTTP/1.0
and pipelining, a client that resets mid-file, concurrent big downloads, no descriptor leaks.

What static serves and refuses (path safety, redirects, dotfiles, fallthrough, ranges, 304,
HEAD) is checked through TestClient in tests/app/test_static.py.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from evserve.server import Server
from tests.static_tree import BIG_SIZE, HELLO, big_sha256, build_tree, make_app

from .conftest import RawClient, RawResponse, wait_idle, wait_until


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tree (see tests/static_tree.py) in a temporary directory."""
    return build_tree(tmp_path_factory.mktemp("static"))


def raw_get(server: Server, target: str, method: str = "GET", headers: dict[str, str] | None = None,
            version: str = "1.1") -> RawResponse:
    with RawClient(server) as client:
        client.request(method, target, headers=headers, version=version)
        return client.read_response(method)


@pytest.fixture
def server(tree: Path, serve: Callable[..., Server]) -> Server:
    return serve(make_app(tree))


# -- serving ---------------------------------------------------------------------------------


def test_big_file_by_hash(server: Server, tree: Path) -> None:
    with requests.get(server.url + "/static/big.bin", stream=True, timeout=30) as res:
        assert res.status_code == 200
        assert res.headers["Content-Length"] == str(BIG_SIZE)
        digest = hashlib.sha256()
        for chunk in res.iter_content(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == big_sha256(tree)


def test_http10_and_pipelining(server: Server) -> None:
    res = raw_get(server, "/static/hello.txt", version="1.0")
    assert (res.status, res.header("content-length"), res.body) == (200, str(len(HELLO)), HELLO)
    with RawClient(server) as client:
        client.send(b"GET /static/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                    b"HEAD /static/digits.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                    b"GET /static/digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,5-6\r\n\r\n"
                    b"GET /static/style.css HTTP/1.1\r\nHost: t\r\n\r\n")
        first = client.read_response()
        second = client.read_response("HEAD")
        third = client.read_response()
        fourth = client.read_response()
        client.request("GET", "/static/hello.txt")  # nothing stray was left on the connection
        fifth = client.read_response()
    assert first.body == HELLO
    assert fifth.body == HELLO
    assert (second.status, second.header("content-length"), second.body) == (200, "1000", b"")
    assert third.status == 206 and len(parse_multipart(third)) == 2
    assert fourth.body == b"body{}"


# -- ranges and sockets --------------------------------------------------------------------


def parse_multipart(res: RawResponse) -> list[tuple[str, str, bytes]]:
    """The parts of a multipart/byteranges body as (Content-Type, Content-Range, data)."""
    content_type = str(res.header("content-type"))
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    body = res.body
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    inner = body[len(boundary) + 4 : -(len(boundary) + 8)]
    parts = []
    for chunk in inner.split(b"\r\n--" + boundary + b"\r\n"):
        head, _, data = chunk.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((fields["Content-Type"], fields["Content-Range"], data))
    return parts


def test_client_going_away_mid_file(server: Server) -> None:
    with RawClient(server, rcvbuf=4096) as client:
        client.request("GET", "/static/big.bin")
        assert client.has_data(5)
        client.close_with_reset()
    res = requests.get(server.url + "/static/hello.txt", timeout=10)
    assert res.content == HELLO


def test_many_concurrent_big_downloads(server: Server, tree: Path) -> None:
    socks = []
    try:
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            socks.append(sock)
            sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        expected = big_sha256(tree)
        for sock in socks:
            chunks = []
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    break
                chunks.append(data)
            raw = b"".join(chunks)
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert hashlib.sha256(body).hexdigest() == expected
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_descriptor_leaks(tree: Path, serve: Callable[..., Server]) -> None:
    server = serve(make_app(tree, fallthrough=False))
    targets = [
        ("GET", "/static/hello.txt", {}), ("HEAD", "/static/big.bin", {}),
        ("GET", "/static/missing", {}), ("GET", "/static/link_out", {}),
        ("GET", "/static/fifo", {}), ("GET", "/static/sub", {}), ("GET", "/static/sub/", {}),
        ("GET", "/static/empty/", {}), ("GET", "/static/hello.txt/", {}),
        ("GET", "/static/digits.txt", {"Range": "bytes=0-1,4-5,8-9"}),
        ("HEAD", "/static/digits.txt", {"Range": "bytes=0-1,4-5"}),
        ("GET", "/static/digits.txt", {"Range": "bytes=5000-"}),
        ("GET", "/static/digits.txt", {"If-None-Match": "*"}),
        ("GET", "/static/digits.txt", {"If-Match": '"x"'}),
        ("GET", "/static/empty.txt", {}),
    ]
    with RawClient(server) as client:  # warm up: the server's own descriptors settle
        client.request("GET", "/static/hello.txt")
        client.read_response()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with RawClient(server) as client:
            for method, target, headers in targets:
                client.request(method, target, headers=headers)
                client.read_response(method)
        with RawClient(server, rcvbuf=4096) as client:  # a client that leaves mid-file
            client.request("GET", "/static/big.bin")
            assert client.has_data(5)
            client.close_with_reset()
    wait_idle(server)
    wait_until(lambda: len(os.listdir("/proc/self/fd")) <= before,
               message="file descriptors leaked")
