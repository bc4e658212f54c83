"""End to end: the response object and the connection (SPEC sections 4 and 8), over real
sockets: a ``Connection`` header set by the app closes the connection after the response (or,
without the ``close`` token, keeps it). The ``res.*`` helpers themselves are checked through
TestClient in tests/app/test_app_response.py.
"""

from __future__ import annotations

import pytest

from evserve import App


def served(handler, **settings):
    """An app answering every method on every path with ``handler(req, res)``."""
    app = App(**settings)
    app.use(handler)
    return app


@pytest.mark.parametrize("finish", ["send", "json", "end", "stream"])
@pytest.mark.parametrize("value", ["close", "Keep-Alive, close", "CLOSE"])
def test_a_connection_close_header_set_by_the_app_closes_after_the_response(serve, clients, finish,
                                                                           value):
    def handler(req, res):
        res.set("Connection", value)
        if finish == "send":
            res.send("bye")
        elif finish == "json":
            res.json("bye")
        elif finish == "end":
            res.end("bye")
        else:
            res.write("b")
            res.end("ye")

    client = clients(serve(served(handler)))
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
    res = client.read_response()
    assert res.status == 200 and res.text.strip('"') == "bye"
    assert res.header("connection") == "close"
    assert client.read_until_close() == b""  # the pipelined second request is not answered


def test_a_connection_header_without_close_keeps_the_connection(serve, clients):
    def handler(req, res):
        res.set("Connection", "closed-captions")  # a token that only contains "close"
        res.send("ok")

    client = clients(serve(served(handler)))
    for _ in range(2):
        client.request(target="/")
        assert client.read_response().text == "ok"
