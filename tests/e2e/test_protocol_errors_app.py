"""Requests the server refuses after reading their head are answered through the App.

A body over ``max_body_size`` (by Content-Length or chunked), a body timeout, or an unsupported
framing on an otherwise well-formed head reach the application's error middleware as an
``HTTPError`` with the protocol status, so a JSON API answers them in JSON. The status and the
closed connection are the same as for a plain application.
"""

from __future__ import annotations

import json

import pytest

from evserve import App

from .conftest import RawClient


def make_app():
    app = App()
    seen = []

    @app.post("/upload")
    def upload(req, res):
        res.json({"size": len(req.raw_body)})

    def json_errors(err, req, res, next):
        seen.append((req.method, req.path, err.status))
        res.status(err.status).json({"error": err.message})

    app.use(json_errors)
    return app, seen


def exchange(server, data: bytes) -> tuple[int, dict[str, str], bytes, bool]:
    with RawClient(server) as client:
        client.send(data)
        response = client.read_response("POST")
        closed = client.wait_closed()
    headers = {name.lower(): value for name, value in response.headers}
    return response.status, headers, response.body, closed


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n", 413),
        (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"400\r\n" + b"a" * 1024 + b"\r\n400\r\n" + b"b" * 1024 + b"\r\n", 413),
        (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 3\r\n\r\nabc", 417),
    ],
)
def test_refused_after_the_head_goes_through_error_middleware(request_bytes, status):
    app, seen = make_app()
    with app.run_in_thread(max_body_size=1500) as server:
        got, headers, body, closed = exchange(server, request_bytes)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert headers.get("connection") == "close"
    assert json.loads(body)["error"]
    assert closed
    assert seen == [("POST", "/upload", status)]


def test_body_timeout_is_answered_by_the_app():
    app, seen = make_app()
    with app.run_in_thread(body_timeout=0.2) as server:
        got, headers, body, closed = exchange(
            server, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
        )
    assert got == 408
    assert json.loads(body) == {"error": "request timeout"}
    assert closed
    assert seen == [("POST", "/upload", 408)]


def test_a_malformed_head_still_gets_the_plain_page():
    app, seen = make_app()
    with app.run_in_thread() as server:
        got, headers, body, closed = exchange(server, b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")
    assert got == 400
    assert headers["content-type"].startswith("text/plain")
    assert closed
    assert seen == []


def test_default_error_page_without_error_middleware():
    app = App()
    app.post("/upload", lambda req, res: res.send("never"))
    with app.run_in_thread(max_body_size=10) as server:
        got, headers, body, closed = exchange(
            server, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
        )
    assert got == 413
    assert b"too large" in body
    assert closed
