"""Express 5 parity of the request object, through the real connection code in memory
(``TestClient``, requests byte for byte): req.accepts() and its siblings with no arguments
(negotiator's preference lists), and absolute-form request targets (``GET http://host/p?q=1``:
originalUrl as received, routing by the path)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from evserve import App, Router, logger
from evserve.testing import TestClient

from .conftest import parse_responses


def report(fn: Any) -> App:
    """An app whose every path answers ``fn(req)`` as JSON (any method)."""
    app = App()
    app.use(lambda req, res: res.json(fn(req)))
    return app


def get_json(client: TestClient, head: str) -> Any:
    """Send a bodiless request head (lines joined with CRLF) and decode its JSON answer."""
    wire = client.raw((head.replace("\n", "\r\n") + "\r\n\r\n").encode("latin-1"))
    [res] = parse_responses(wire, ["GET"])
    assert res.status == 200, res.body
    return json.loads(res.body)


# -- req.accepts() with no offers --------------------------------------------------------------


def preferences(req: Any) -> list[Any]:
    return [
        req.accepts(),
        req.accepts([]),
        req.accepts_charsets(),
        req.accepts_encodings(),
        req.accepts_languages(),
    ]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("", [["*/*"], ["*/*"], ["*"], ["identity"], ["*"]]),
        (
            "Accept: text/html, application/json;q=0.9, */*;q=0.1\n"
            "Accept-Charset: utf-8, iso-8859-1;q=0.2, utf-7;q=0.5\n"
            "Accept-Encoding: gzip;q=0.8, br\n"
            "Accept-Language: en;q=0.8, es, pt",
            [
                ["text/html", "application/json", "*/*"],
                ["text/html", "application/json", "*/*"],
                ["utf-8", "utf-7", "iso-8859-1"],
                ["br", "gzip", "identity"],
                ["es", "pt", "en"],
            ],
        ),
        (
            "Accept: \nAccept-Charset: \nAccept-Encoding: \nAccept-Language: ",
            [[], [], [], ["identity"], []],
        ),
        (
            "Accept: image/png;q=0, text/*\nAccept-Encoding: identity;q=0, gzip",
            [["text/*"], ["text/*"], ["*"], ["gzip"], ["*"]],
        ),
    ],
)
def test_no_offers_give_the_clients_preferences(headers: str, expected: list[Any]) -> None:
    with TestClient(report(preferences)) as client:
        head = "GET / HTTP/1.1\nHost: h" + ("\n" + headers if headers else "")
        assert get_json(client, head) == expected


def test_offers_still_give_one_answer() -> None:
    app = report(lambda req: [req.accepts("json", "html"), req.accepts_languages("es", "en")])
    with TestClient(app) as client:
        got = get_json(client, "GET / HTTP/1.1\nHost: h\nAccept: text/html\nAccept-Language: en")
    assert got == ["html", "en"]


# -- absolute-form targets ----------------------------------------------------------------------


def describe(req: Any) -> dict[str, Any]:
    return {
        "url": req.url,
        "original_url": req.original_url,
        "base_url": req.base_url,
        "path": req.path,
        "query": req.query,
        "host": req.host,
        "hostname": req.hostname,
        "protocol": req.protocol,
        "secure": req.secure,
    }


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "http://h.test:8080/p?q=1",
            {"url": "/p?q=1", "original_url": "http://h.test:8080/p?q=1", "path": "/p",
             "query": {"q": "1"}, "host": "h.test:8080", "hostname": "h.test"},
        ),
        (
            "http://h.test/p?q=1#frag",
            {"url": "/p?q=1", "original_url": "http://h.test/p?q=1", "path": "/p",
             "query": {"q": "1"}, "host": "h.test", "hostname": "h.test"},
        ),
        (
            "http://h.test?q=1",
            {"url": "/?q=1", "original_url": "http://h.test?q=1", "path": "/",
             "query": {"q": "1"}, "host": "h.test", "hostname": "h.test"},
        ),
        (
            # The scheme written in the target says nothing about the connection.
            "https://h.test/p",
            {"url": "/p", "original_url": "https://h.test/p", "path": "/p", "query": {},
             "host": "h.test", "hostname": "h.test"},
        ),
    ],
)
def test_absolute_form_keeps_the_original_and_routes_by_the_path(
    target: str, expected: dict[str, Any]
) -> None:
    app = App()
    app.get(expected["path"], lambda req, res: res.json(describe(req)))
    with TestClient(app) as client:
        got = get_json(client, f"GET {target} HTTP/1.1\nHost: other.example")
    assert got == {**expected, "base_url": "", "protocol": "http", "secure": False}


def test_absolute_form_through_a_mount() -> None:
    api = Router()
    api.get("/items/:id", lambda req, res: res.json({**describe(req), "id": req.params["id"]}))
    app = App()
    app.use("/api", api)
    with TestClient(app) as client:
        got = get_json(client, "GET http://h.test/api/items/7?x=1 HTTP/1.1\nHost: h.test")
    assert got["url"] == "/items/7?x=1"
    assert got["path"] == "/items/7"
    assert got["base_url"] == "/api"
    assert got["original_url"] == "http://h.test/api/items/7?x=1"
    assert got["query"] == {"x": "1"}
    assert got["id"] == "7"


def test_the_access_log_shows_the_target_as_received(caplog: pytest.LogCaptureFixture) -> None:
    # morgan logs req.originalUrl: for an absolute-form request, the whole URL.
    caplog.set_level(logging.INFO, logger="evserve.access")
    app = App()
    app.use(logger())
    app.get("/hello", lambda req, res: res.send("hello"))
    with TestClient(app) as client:
        wire = client.raw(b"GET http://h.test/hello?x=1 HTTP/1.1\r\nHost: h.test\r\n\r\n")
        assert parse_responses(wire, ["GET"])[0].status == 200

        def line() -> str | None:
            found = [r.getMessage() for r in caplog.records if r.name == "evserve.access"]
            return found[0] if found else None

        logged = line()  # logged as the response ended, before client.raw returned
        assert logged is not None and logged.startswith("GET http://h.test/hello?x=1 200 ")
