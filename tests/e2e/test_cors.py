"""End to end: the CORS middleware's preflight answer as the bytes on a real socket (a 204
without framing headers, the connection usable after it). The middleware's behaviour (origins,
credentials, preflights, OPTIONS that is no preflight) is checked through TestClient in
tests/app/test_cors.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from evserve import App
from evserve.middleware.cors import cors

from .conftest import RawClient

SITE = "https://site.example"


@contextlib.contextmanager
def serving(middleware) -> Iterator[str]:
    """An app with ``middleware`` then ``GET/POST /thing``; yields the URL of ``/thing``."""
    app = App()
    app.use(middleware)
    app.get("/thing", lambda req, res: res.set("X-Secret", "42").send("thing"))
    app.post("/thing", lambda req, res: res.status(201).send("made"))
    with app.run_in_thread() as server:
        yield server.url + "/thing"


def test_preflight_bytes_on_the_wire():
    with serving(cors(origin=[SITE], max_age=600)) as url, RawClient(_address(url)) as client:
        client.request("OPTIONS", "/thing", {
            "Origin": SITE,
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "x-token",
        })
        res = client.read_response("OPTIONS")
        assert res.status == 204 and res.body == b""
        assert res.header("Content-Length") is None  # RFC 9110 section 8.6: never on a 204
        assert res.header("Transfer-Encoding") is None
        assert res.header("Vary") == "Origin, Access-Control-Request-Headers"
        assert res.header("Access-Control-Allow-Origin") == SITE
        assert res.header("Access-Control-Allow-Headers") == "x-token"
        assert res.header("Access-Control-Max-Age") == "600"
        # The connection stays usable.
        client.request("GET", "/thing", {"Origin": SITE})
        assert client.read_response().body == b"thing"


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)
