"""End to end: errors and the connection (SPEC sections 2 and 8), over real sockets: the
connection serves on after an error page, and an error after the head was sent cuts the
connection. How errors reach error middleware and the error page is checked through TestClient
in tests/app/test_app_errors.py.
"""

from __future__ import annotations

import logging

from evserve import App

from .conftest import RawClient


def boom(message="secret detail"):
    def handler(req, res):
        raise RuntimeError(message)

    return handler


def evserve_errors(caplog):
    return [r for r in caplog.records if r.name == "evserve" and r.levelno >= logging.ERROR]


# -- the default error page --------------------------------------------------------------------


def test_the_connection_survives_an_error():
    app = App()
    app.get("/boom", boom())
    app.get("/ok", lambda req, res: res.send("fine"))
    with app.run_in_thread() as server, RawClient(server) as client:
        client.request("GET", "/boom")
        assert client.read_response().status == 500
        client.request("GET", "/ok")
        assert client.read_response().text == "fine"


class WithStatus(Exception):
    def __init__(self, status, message="custom message"):
        super().__init__(message)
        self.status = status


def test_an_error_after_the_head_was_sent_aborts_the_connection(caplog):
    app = App()

    def handler(req, res):
        res.write("partial ")
        raise RuntimeError("mid-stream")

    app.get("/", handler)
    with caplog.at_level(logging.ERROR, logger="evserve"), app.run_in_thread() as server, \
            RawClient(server) as client:
        client.request("GET", "/")
        data = client.read_until_close()  # EOF or reset: the server cut the connection
        assert client.eof
    # What reached the client before the cut (possibly nothing, the abort being a reset) is
    # never a complete response, and never a second status line.
    assert data.count(b"HTTP/1.1") <= 1
    assert data == b"" or data.startswith(b"HTTP/1.1 200 ")
    assert not data.endswith(b"0\r\n\r\n")
    assert b"Internal Server Error" not in data
    assert len(evserve_errors(caplog)) == 1


def test_an_error_after_the_head_was_sent_aborts_even_with_content_length():
    app = App()

    def handler(req, res):
        res.set("Content-Length", "100")
        res.write("only some")
        raise RuntimeError("mid-stream")

    app.get("/", handler)
    with app.run_in_thread() as server, RawClient(server) as client:
        client.request("GET", "/")
        data = client.read_until_close()
    assert data.count(b"HTTP/1.1") <= 1
    assert b"Internal Server Error" not in data
    assert len(data.partition(b"\r\n\r\n")[2]) < 100


# -- error middleware by arity -----------------------------------------------------------------


# -- HTTPError's headers -------------------------------------------------------------------------


