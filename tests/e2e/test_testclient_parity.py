"""The test client sees what the wire carries: for each raw request, the bytes its in-memory
connection wrote equal the bytes a real server sends on a socket (the Date value aside).

Each case builds its own app and serves it twice: through ``TestClient.raw`` and through a server
on 127.0.0.1 (port 0) read by a raw-byte client. A case that closes the connection is read to the
close; the others are read response by response, then checked to be still open.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evserve import App, body_parser
from evserve.testing import TestClient

from .conftest import RawClient, parse_response

DATE = re.compile(rb"\r\nDate: [^\r\n]*\r\n")
CONFIG = {"max_body_size": 200}


def make_app(root: Path) -> App:
    (root / "note.txt").write_bytes(b"a file\n" * 10)
    app = App()
    app.use("/json", body_parser.json(limit=50))
    app.use("/form", body_parser.urlencoded())

    app.get("/", lambda req, res: res.send("hello"))
    app.get("/tagged", lambda req, res: res.set("ETag", '"v1"').send("tagged body"))
    app.post("/json", lambda req, res: res.status(201).json({"got": req.body}))
    app.post("/form", lambda req, res: res.json(req.body))
    app.post("/echo", lambda req, res: res.send(req.raw_body))
    app.delete("/item", lambda req, res: res.status(204).end())
    app.get("/redirect", lambda req, res: res.redirect("/elsewhere?x=1"))
    app.get("/cookies", lambda req, res: res.cookie("a", "1", http_only=True)
            .cookie("b", "x y", path="/b", same_site="lax").clear_cookie("old").send("ok"))
    app.get("/file", lambda req, res: res.send_file("note.txt", root=str(root)))

    @app.get("/chunked")
    def chunked(req, res):
        res.type("text/plain")
        res.write("one,")
        res.write(b"two,")
        res.end("three")

    @app.get("/stream")
    def stream(req, res):
        res.type("application/octet-stream").stream(b"%d:" % i + b"s" * 3000 for i in range(40))

    return app


def head(line: str, *headers: str, body: bytes = b"") -> bytes:
    return ("\r\n".join((line, "Host: parity.test", *headers)) + "\r\n\r\n").encode("latin-1") + body


# (id, request bytes, the methods of the responses expected, whether the server closes)
CASES = [
    ("get", head("GET / HTTP/1.1"), ["GET"], False),
    ("head", head("HEAD / HTTP/1.1"), ["HEAD"], False),
    ("get-query-json-accept", head("GET /?a=1&b=%20 HTTP/1.1", "Accept: application/json"), ["GET"], False),
    ("post-json", head("POST /json HTTP/1.1", "Content-Type: application/json", "Content-Length: 13",
                       body=b'{"k": [1, 2]}'), ["POST"], False),
    ("post-json-malformed-400", head("POST /json HTTP/1.1", "Content-Type: application/json",
                                     "Content-Length: 5", body=b'{"k":'), ["POST"], False),
    ("post-json-over-parser-limit-413", head("POST /json HTTP/1.1", "Content-Type: application/json",
                                             "Content-Length: 60", body=b'["' + b"x" * 56 + b'"]'),
     ["POST"], False),
    ("post-form", head("POST /form HTTP/1.1", "Content-Type: application/x-www-form-urlencoded",
                       "Content-Length: 15", body=b"a=1&b=2&b=3&c=%"), ["POST"], False),
    ("post-chunked-body", head("POST /echo HTTP/1.1", "Transfer-Encoding: chunked",
                               body=b"5\r\nhello\r\n1;ext=x\r\n!\r\n0\r\nTrailer: 1\r\n\r\n"), ["POST"], False),
    ("body-over-max-body-size-413", head("POST /echo HTTP/1.1", "Content-Length: 300", body=b"z" * 300),
     ["POST"], True),
    ("expect-continue", head("POST /echo HTTP/1.1", "Expect: 100-continue", "Content-Length: 2", body=b"hi"),
     ["POST", "POST"], False),
    ("chunked-response", head("GET /chunked HTTP/1.1"), ["GET"], False),
    ("streamed-response", head("GET /stream HTTP/1.1"), ["GET"], False),
    ("streamed-head", head("HEAD /stream HTTP/1.1"), ["HEAD"], False),
    ("http10-stream-close-delimited", head("GET /chunked HTTP/1.0"), ["GET"], True),
    ("http10-keep-alive", head("GET / HTTP/1.0", "Connection: keep-alive"), ["GET"], False),
    ("connection-close", head("GET / HTTP/1.1", "Connection: close"), ["GET"], True),
    ("not-found-404", head("GET /missing/thing HTTP/1.1"), ["GET"], False),
    ("head-not-found", head("HEAD /missing HTTP/1.1"), ["HEAD"], False),
    ("cookies", head("GET /cookies HTTP/1.1", "Cookie: old=1; a=0"), ["GET"], False),
    ("redirect", head("GET /redirect HTTP/1.1"), ["GET"], False),
    ("no-content-204", head("DELETE /item HTTP/1.1"), ["DELETE"], False),
    ("not-modified-304", head("GET /tagged HTTP/1.1", 'If-None-Match: "v1"'), ["GET"], False),
    ("options-allow", head("OPTIONS /item HTTP/1.1"), ["OPTIONS"], False),
    ("file", head("GET /file HTTP/1.1"), ["GET"], False),
    ("file-range", head("GET /file HTTP/1.1", "Range: bytes=2-9"), ["GET"], False),
    ("pipelined", head("GET / HTTP/1.1") + head("HEAD /chunked HTTP/1.1") + head("GET /redirect HTTP/1.1"),
     ["GET", "HEAD", "GET"], False),
    ("bad-header-400", head("GET / HTTP/1.1", "Bad Header: 1"), [], True),
    ("bare-lf-400", b"GET / HTTP/1.1\nHost: x\n\n", [], True),
    ("unknown-coding-501", head("POST /echo HTTP/1.1", "Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"),
     [], True),
    ("version-505", head("GET / HTTP/2.0"), [], True),
]


def normalise(data: bytes) -> bytes:
    return DATE.sub(b"\r\nDate: <date>\r\n", data)


def over_socket(server, data: bytes, methods: list[str], closes: bool) -> bytes:
    with RawClient(server) as client:
        client.send(data)
        if closes:
            return client.read_until_close()
        out = b""
        for method in methods:
            out += client.read_response(method).raw
        # Nothing more comes, and the connection stays open for the next request.
        client.send(head("GET / HTTP/1.1"))
        assert client.read_response("GET").status == 200
        assert not client.buffer
        return out


@pytest.mark.parametrize(("data", "methods", "closes"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_same_bytes_as_a_socket(serve, tmp_path, data, methods, closes):
    app = make_app(tmp_path)
    with TestClient(app, **CONFIG) as client:
        in_memory = client.raw(data)
    server = serve(app, **CONFIG)
    on_the_wire = over_socket(server, data, methods, closes)
    assert normalise(in_memory) == normalise(on_the_wire)
    if methods:  # the test client's own reader agrees on where each response ends
        buffer, rest = bytearray(in_memory), methods
        for method in rest:
            _, used = parse_response(buffer, method, eof=closes)
            del buffer[:used]
        assert not buffer


def test_the_client_request_bytes_are_served_alike(serve, tmp_path):
    """What ``client.get`` writes, replayed on a socket, gets the response the client saw."""
    app = make_app(tmp_path)
    with TestClient(app, base_url="http://parity.test", **CONFIG) as client:
        res = client.post("/json", json={"k": "é"}, params={"q": "1 2"})
        assert res.status_code == 201
        request, seen = res.request.data, res.raw
    server = serve(app, **CONFIG)
    assert normalise(over_socket(server, request, ["POST"], False)) == normalise(seen)
