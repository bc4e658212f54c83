"""Request details that must match Express, through the real connection code in memory
(``TestClient``).

``req.accepts_languages/charsets/encodings`` (npm negotiator), ``req.fresh`` with
``If-None-Match: *`` (jshttp/fresh), the automatic OPTIONS ``Allow`` list (router 2.x
``sendOptionsResponse``), and query strings or urlencoded bodies with escapes that are not UTF-8
(npm qs).
"""

from __future__ import annotations

import json

from evserve import App, body_parser
from evserve.testing import TestClient

from .conftest import parse_responses


def report(fn):
    """An app whose only route, ``/``, answers ``fn(req)`` as JSON (any method)."""
    app = App()
    app.all("/", lambda req, res: res.json({"answer": fn(req)}))
    return app


def test_accepts_languages_takes_the_q_of_the_most_specific_entry():
    app = report(lambda req: req.accepts_languages("en", "en-US"))
    with TestClient(app) as client:
        get = lambda value: client.get("/", headers={"Accept-Language": value}).json()  # noqa: E731
        assert get("en-US, en;q=0.8") == {"answer": "en-US"}
        assert get("en-US") == {"answer": "en-US"}
        assert get("en-US;q=0, en, *") == {"answer": "en"}
        assert get("en;q=0, *") == {"answer": None}  # "en" is en-US's most specific entry


def test_accepts_charsets_and_encodings_refuse_a_specific_q0():
    app = App()
    app.get("/charset", lambda req, res: res.json([req.accepts_charsets("utf-8", "iso-8859-1")]))
    app.get("/encoding", lambda req, res: res.json([req.accepts_encodings(["gzip"])]))
    with TestClient(app) as client:
        def get(path: str, name: str, value: str) -> object:
            return client.get(path, headers={name: value}).json()[0]

        assert get("/charset", "Accept-Charset", "utf-8;q=0.5, *") == "iso-8859-1"
        assert get("/charset", "Accept-Charset", "utf-8;q=0, iso-8859-1;q=0") is None
        assert get("/encoding", "Accept-Encoding", "gzip;q=0, *") is None
        assert get("/encoding", "Accept-Encoding", "gzip, *") == "gzip"


def test_accepts_encodings_without_the_header_is_identity_only():
    app = report(lambda req: [req.accepts_encodings("gzip", "identity"), req.accepts_encodings("gzip")])
    with TestClient(app) as client:
        wire = client.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # no Accept-Encoding at all
        assert json.loads(parse_responses(wire, ["GET"])[0].body) == {"answer": ["identity", None]}


def test_accepts_media_type_q0_beats_a_wildcard():
    app = report(lambda req: req.accepts("text/html"))
    with TestClient(app) as client:
        res = client.get("/", headers={"Accept": "text/html;q=0, */*"})
        assert res.json() == {"answer": None}


def test_fresh_with_if_none_match_star_needs_no_etag():
    app = App()

    @app.get("/")
    def home(req, res):
        res.set("X-Fresh", str(req.fresh)).end()

    @app.post("/")
    def post(req, res):
        res.set("X-Fresh", str(req.fresh)).end()

    with TestClient(app) as client:
        star = {"If-None-Match": "*"}
        assert client.get("/", headers=star).headers["X-Fresh"] == "True"
        assert client.post("/", headers=star).headers["X-Fresh"] == "False"
        no_cache = {**star, "Cache-Control": "no-cache"}
        assert client.get("/", headers=no_cache).headers["X-Fresh"] == "False"
        assert client.get("/", headers={"If-None-Match": '"x"'}).headers["X-Fresh"] == "False"


def test_send_answers_if_none_match_star_with_304():
    app = App(etag=False)
    app.get("/", lambda req, res: res.send("hello"))
    with TestClient(app) as client:
        assert client.get("/", headers={"If-None-Match": "*"}).status_code == 304
        assert client.get("/").status_code == 200


def test_options_allow_lists_methods_once_sorted():
    app = App()
    app.post("/x", lambda req, res: res.send("x"))
    app.get("/x", lambda req, res: res.send("x"))
    app.route("/y").put(lambda req, res: res.send("y")).get(lambda req, res: res.send("y"))
    app.delete("/z", lambda req, res: res.send("z"))
    app.patch("/z", lambda req, res: res.send("z"))
    app.delete("/z", lambda req, res: res.send("again"))
    with TestClient(app) as client:
        res = client.options("/x")
        assert (res.status_code, res.headers["Allow"]) == (204, "GET, HEAD, POST")
        assert client.options("/y").headers["Allow"] == "GET, HEAD, PUT"
        assert client.options("/z").headers["Allow"] == "DELETE, PATCH"


def test_query_with_escapes_that_are_not_utf8_is_kept_raw():
    app = report(lambda req: req.query)
    with TestClient(app) as client:
        get = lambda qs: client.get("/?" + qs).json()["answer"]  # noqa: E731
        assert get("name=caf%E9") == {"name": "caf%E9"}
        assert get("name=caf%C3%A9") == {"name": "caf\u00e9"}
        assert get("a+b=x+caf%E9&caf%E9=1") == {"a b": "x caf%E9", "caf%E9": "1"}


def test_urlencoded_body_with_escapes_that_are_not_utf8_is_kept_raw():
    app = App()
    app.use(body_parser.urlencoded())
    app.post("/", lambda req, res: res.json(req.body))
    with TestClient(app) as client:
        res = client.post(
            "/",
            data=b"name=caf%E9&ok=caf%C3%A9&sp=a+%E9",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert res.json() == {"name": "caf%E9", "ok": "caf\u00e9", "sp": "a %E9"}
