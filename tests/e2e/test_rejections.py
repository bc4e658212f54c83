"""SPEC section 7 on the wire: every rejected request gets its status, then the connection closes.

Each case is sent whole, then a byte at a time; the status must be the same both ways, the
application must never see the request, and the server must end up holding no connection.
"""

from __future__ import annotations

import logging

import pytest

from .conftest import wait_idle

LIMITS = {
    "max_target_size": 1024,
    "max_header_size": 2048,
    "max_headers": 20,
    "max_body_size": 1000,
}

H = b"Host: test\r\n"

CASES = [
    # 400: malformed request line or header
    ("garbage request line", b"GARBAGE\r\n\r\n", 400),
    ("missing version", b"GET /\r\n" + H + b"\r\n", 400),
    ("two spaces", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("lowercase version", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("header without colon", b"GET / HTTP/1.1\r\n" + H + b"NoColon\r\n\r\n", 400),
    ("control char in value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    ("bare LF line endings", b"GET / HTTP/1.1\n" + b"Host: test\n\n", 400),
    ("bare LF in a header", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\nX-B: 2\r\n\r\n", 400),
    ("bare CR in a header", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\rX-B: 2\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : test\r\n\r\n", 400),
    ("missing Host on 1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("repeated Host", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    ("repeated Host on 1.0", b"GET / HTTP/1.0\r\n" + H + H + b"\r\n", 400),
    (
        "Content-Length with Transfer-Encoding",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    ("non-numeric Content-Length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", 400),
    ("negative Content-Length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("conflicting Content-Length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1, 2\r\n\r\nab", 400),
    (
        "repeated conflicting Content-Length",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
    ),
    (
        "Transfer-Encoding not ending in chunked",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    ),
    ("Transfer-Encoding gzip alone", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("malformed chunk size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ("bare LF after chunk size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\nabc", 400),
    # 501: a transfer coding evserve does not implement
    ("unknown transfer coding", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: bogus\r\n\r\n", 501),
    (
        "unknown coding before chunked",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: bogus, chunked\r\n\r\n",
        501,
    ),
    # 414, 431, 413
    ("target too long", b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("header section too large", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 3000 + b"\r\n\r\n", 431),
    (
        "too many header lines",
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(30)) + b"\r\n",
        431,
    ),
    ("Content-Length over the limit", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1001\r\n\r\n", 413),
    (
        "huge Content-Length",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999999\r\n\r\n",
        413,
    ),
    (
        "chunked body over the limit",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        + (b"1f4\r\n" + b"x" * 500 + b"\r\n") * 3 + b"0\r\n\r\n",
        413,
    ),
    ("one huge chunk", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nffffffff\r\n", 413),
    # 417: an expectation other than 100-continue (RFC 9110 section 10.1.1; as Node does)
    ("unknown expectation", b"POST / HTTP/1.1\r\n" + H + b"Expect: foo\r\nContent-Length: 2\r\n\r\nab", 417),
    # 505
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("HTTP/0.9-style version", b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505),
]


@pytest.fixture
def rejecting_server(serve):
    calls = []

    def app(req, res):
        calls.append(req.url)
        res.send("accepted")

    server = serve(app, **LIMITS)
    server.calls = calls  # type: ignore[attr-defined]
    return server


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(("name", "data", "status"), CASES, ids=[c[0] for c in CASES])
def test_rejected_with_status_and_closed(rejecting_server, clients, name, data, status, bytewise):
    server = rejecting_server
    client = clients(server)
    if bytewise:
        for i in range(len(data)):
            try:
                client.send(data[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break  # the server already answered and closed: the rest is not needed
    else:
        client.send(data)
    res = client.read_response()
    assert res.status == status, f"{name}: {res.raw!r}"
    assert res.header("connection") == "close"
    assert res.body.startswith(str(status).encode())
    client.wait_closed()
    assert client.buffer == b""
    assert not client.reset  # a clean close: the answer is not at risk from an RST
    assert server.calls == []
    client.close()
    wait_idle(server)


def test_a_valid_request_before_a_bad_one_is_answered_first(rejecting_server, clients, caplog):
    caplog.set_level(logging.DEBUG, logger="evserve.transport")
    client = clients(rejecting_server)
    client.send(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\nGET /bad HTTP/1.1\r\n\r\n")
    ok, bad = client.read_responses(2)
    assert (ok.status, ok.text) == (200, "accepted")
    assert bad.status == 400
    client.wait_closed()
    assert (client.buffer, client.reset) == (b"", False)  # each answer exactly once, then FIN
    assert rejecting_server.calls == ["/ok"]
    wait_idle(rejecting_server)
    assert "send failed" not in caplog.text  # nothing was written after the close began


def test_the_same_limits_let_requests_at_the_limit_through(rejecting_server, clients):
    client = clients(rejecting_server)
    client.send(b"GET /" + b"a" * 1000 + b" HTTP/1.1\r\n" + H + b"\r\n")
    assert client.read_response().status == 200
    client.send(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\n\r\n" + b"x" * 1000)
    assert client.read_response().status == 200
    client.send(b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(19)) + b"\r\n")
    assert client.read_response().status == 200
    client.send(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc")
    assert client.read_response().status == 200


HEAD_CASES = [
    ("missing Host", b"HEAD / HTTP/1.1\r\n\r\n", 400),
    ("repeated Host", b"HEAD / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    ("invalid Host", b"HEAD / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("obs-fold", b"HEAD / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    ("header section too large", b"HEAD / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 3000 + b"\r\n\r\n", 431),
    ("target too long", b"HEAD /" + b"a" * 2000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("HTTP/2.0", b"HEAD / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("asterisk", b"HEAD * HTTP/1.1\r\n" + H + b"\r\n", 400),
]


@pytest.mark.parametrize(("name", "data", "status"), HEAD_CASES, ids=[c[0] for c in HEAD_CASES])
def test_a_refused_head_request_gets_no_body(rejecting_server, clients, name, data, status):
    # RFC 9110 section 9.3.2: no content in a response to HEAD, even an error found before a
    # request head could be made (the method is read from the request line).
    client = clients(rejecting_server)
    client.send(data)
    res = client.read_response(method="HEAD")
    assert res.status == status
    assert int(res.header("content-length")) > 0  # the length a GET's page would have
    client.wait_closed()
    assert client.buffer == b""  # and not one byte of it
    wait_idle(rejecting_server)


def test_the_plain_error_page_shows_the_detail_for_4xx_and_only_the_reason_for_5xx(rejecting_server, clients):
    client = clients(rejecting_server)
    client.send(b"GET / HTTP/1.1\r\n\r\n")
    res = client.read_response()
    assert res.body == b"400 Bad Request: missing Host header\n"
    assert res.header("x-content-type-options") == "nosniff"
    other = clients(rejecting_server)
    other.send(b"GET / HTTP/2.0\r\n" + H + b"\r\n")
    res = other.read_response()
    assert res.body == b"505 HTTP Version Not Supported\n"  # SPEC section 8: no detail for 5xx
