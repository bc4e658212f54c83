"""A value a client sends can always be sent back (through the real connection code in memory,
``TestClient``).

Every way a client's value reaches a handler (JSON, urlencoded and text bodies, JSON cookies
plain and signed, the query string, route params) is echoed with ``res.json``/``res.send``:
the answer is a 2xx, or the documented 400/415 from the parser, never a 500. Numbers beyond a
float and unpaired surrogates in JSON are refused at the parser; ``j:`` cookies holding them
stay text; percent-escapes of surrogates (``%ED%A0%80``) never decode to one.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from evserve import App, body_parser
from evserve.cookies import sign_value
from evserve.testing import ClientResponse, TestClient

from .conftest import exchange

SECRET = "values secret"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@contextlib.contextmanager
def echo_server(**settings) -> Iterator[TestClient]:
    """An app that echoes what each input path gave it; yields a client of it."""
    app = App(cookie_secret=SECRET, **settings)
    app.use(body_parser.json(strict=False))
    app.use(body_parser.urlencoded())
    app.use(body_parser.text(type="text/*"))
    app.post("/json", lambda req, res: res.json({"body": req.body}))
    app.post("/send", lambda req, res: res.send(req.body))
    app.get("/query", lambda req, res: res.json(req.query))
    app.get("/send-query", lambda req, res: res.send(req.query))
    app.get("/params/:value", lambda req, res: res.json(req.params))
    app.get("/cookies", lambda req, res: res.json([req.cookies, req.signed_cookies]))
    with TestClient(app) as client:
        yield client


def post(client: TestClient, path: str, data: bytes | str, content_type: str,
         **headers: str) -> ClientResponse:
    headers["Content-Type"] = content_type
    return client.post(path, data=data.encode() if isinstance(data, str) else data, headers=headers)


def refused(res: ClientResponse, status: int) -> str:
    assert res.status_code == status, (res.status_code, res.text)
    return res.text


# -- JSON bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[1e999]", "number out of range: 1e999"),
        ('{"a": [-1e400]}', "number out of range: -1e400"),
        ('{"n": {"deep": [0, 1E+400]}}', "number out of range: 1E+400"),
        ("1e999", "number out of range: 1e999"),  # a top-level number (strict=False)
        ("[1" + "0" * 250 + "e99]", "number out of range: 1" + "0" * 28 + "..."),
        ("[" + "1" * 5000 + "]", "integer with more than 4300 digits"),
        ('["\\ud800"]', "unpaired surrogate \\ud800 at line 1 column 3"),
        ('{"\\udc00": 1}', "unpaired surrogate \\udc00 at line 1 column 3"),
        ('["\\ud800x"]', "unpaired surrogate \\ud800 at line 1 column 3"),
        ('["\\udbff\\ud800\\udc00"]', "unpaired surrogate \\udbff at line 1 column 3"),
        ('"\\uDFFF"', "unpaired surrogate \\uDFFF at line 1 column 2"),
    ],
    ids=["1e999", "nested-1e400", "deep-1E+400", "top-level", "long-mantissa", "5000-digits",
         "high", "low-in-key", "high-then-x", "high-high-low", "top-level-low"],
)
def test_json_that_cannot_be_written_back_is_400(body, message):
    with echo_server() as client:
        for path in ("/json", "/send"):
            assert refused(post(client, path, body, JSON), 400) == f"invalid JSON: {message}"


def test_the_same_refusals_in_other_utfs_and_compressed():
    with echo_server() as client:
        body = '{"a": ["\\ud800"]}'
        res = post(client, "/json", body.encode("utf-16"), JSON + "; charset=utf-16")
        assert refused(res, 400) == "invalid JSON: unpaired surrogate \\ud800 at line 1 column 9"
        res = post(client, "/json", "[1e999]".encode("utf-32-be"), JSON + "; charset=utf-32")
        assert refused(res, 400) == "invalid JSON: number out of range: 1e999"
        raw = '["'.encode("utf-16-le") + b"\x00\xd8" + '"]'.encode("utf-16-le")  # not escaped
        res = post(client, "/json", raw, JSON + "; charset=utf-16le")
        assert refused(res, 400) == "invalid JSON: the body is not valid utf-16-le"
        res = post(client, "/json", b'["\xed\xa0\x80"]', JSON)  # a surrogate encoded in UTF-8
        assert refused(res, 400) == "invalid JSON: the body is not valid utf-8"
        res = post(client, "/json", gzip.compress(b'{"x": 1e999}'), JSON, **{"Content-Encoding": "gzip"})
        assert refused(res, 400) == "invalid JSON: number out of range: 1e999"


def test_json_that_can_be_written_back_is_echoed():
    value = {"pair": "\ud83d\ude00", "escaped": "\\ud800", "big": 1e308, "tiny": 1e-999, "int": 10**400}
    body = json.dumps(value)  # ensure_ascii: the emoji travels as a \ud83d\ude00 escape pair
    with echo_server() as client:
        res = post(client, "/json", body, JSON)
        assert res.status_code == 200
        assert res.json() == {"body": {**value, "pair": "\U0001f600", "tiny": 0.0}}
        res = post(client, "/send", body, JSON)
        assert res.status_code == 200 and res.json()["pair"] == "\U0001f600"


# -- JSON cookies --------------------------------------------------------------------------------------


def test_json_cookies_that_cannot_be_written_back_stay_text():
    texts = {
        "a": "j:[1e999]",
        "b": 'j:["\\ud800"]',
        "c": "j:NaN",
        "d": 'j:{"x":-1e400}',
        "e": 'j:{"\\udc00":1}',
        "f": "j:[" + "1" * 5000 + "]",
    }
    cookie = "; ".join(f"{name}={quote(text, safe='')}" for name, text in texts.items())
    cookie += "; ok=" + quote('j:{"k":["\\ud83d\\ude00",1e308]}', safe="")
    signed = sign_value("j:[1e999]", SECRET)
    cookie += "; s=" + quote(signed, safe="") + "; t=" + quote(sign_value('j:["ok"]', SECRET), safe="")
    with echo_server() as client:
        res = client.get("/cookies", headers={"Cookie": cookie})
        assert res.status_code == 200, res.text
        plain, signed_cookies = res.json()
        assert plain == {**texts, "ok": {"k": ["\U0001f600", 1e308]}}
        assert signed_cookies == {"s": "j:[1e999]", "t": ["ok"]}


def test_cookie_escapes_of_surrogates_stay_raw():
    with echo_server() as client:
        cookie = "a=%ED%A0%80; b=j%3A%22%ED%A0%80%22; c=%F0%9F%98%80; d=\xed\xa0\x80"
        res = exchange(client, "GET", "/cookies", {"Cookie": cookie})  # Latin-1 bytes as they are
        assert res.status == 200
        plain, _ = json.loads(res.body)
        # decodeURIComponent would throw on a surrogate's escapes: the whole value stays as it
        # came (npm cookie), so it is no j: cookie either; raw header bytes are Latin-1 text.
        assert plain == {"a": "%ED%A0%80", "b": "j%3A%22%ED%A0%80%22", "c": "\U0001f600", "d": "\xed\xa0\x80"}


# -- the query string and route params ---------------------------------------------------------------


SURROGATE_ESCAPES = "a=%ED%A0%80&b=%ED%B0%80&c=%F0%9F%98%80&d=%ED%A0%BD%ED%B8%80&e[%ED%A0%80]=1&f=%C0%80"


def test_query_escapes_of_surrogates_never_decode_to_one():
    with echo_server() as client:
        for path in ("/query", "/send-query"):
            res = client.get(f"{path}?{SURROGATE_ESCAPES}")
            assert res.status_code == 200, res.text
            assert res.json() == {
                "a": "%ED%A0%80",
                "b": "%ED%B0%80",
                "c": "\U0001f600",
                "d": "%ED%A0%BD%ED%B8%80",  # CESU-8: a pair encoded half by half is not UTF-8
                "e": {"%ED%A0%80": "1"},
                "f": "%C0%80",
            }
    with echo_server(query_parser="simple") as client:
        res = client.get(f"/query?{SURROGATE_ESCAPES}")
        assert res.status_code == 200, res.text
        got = res.json()
        assert got["a"] == got["b"] == "\ufffd" * 3 and got["c"] == "\U0001f600"


@pytest.mark.parametrize(
    ("escaped", "status", "value"),
    [
        ("%ED%A0%80", 400, None),
        ("%ED%B0%80", 400, None),
        ("%ED%A0%BD%ED%B8%80", 400, None),
        ("%F0%9F%98%80", 200, "\U0001f600"),
        ("%EF%BF%BD", 200, "\ufffd"),
    ],
)
def test_route_params_that_are_not_utf8_are_400(escaped, status, value):
    with echo_server() as client:
        res = client.get(f"/params/{escaped}")
        assert res.status_code == status, res.text
        if status == 200:
            assert res.json() == {"value": value}
        else:
            assert res.text == f"Failed to decode param '{escaped}'"


# -- urlencoded and text bodies ------------------------------------------------------------------------


def test_urlencoded_bodies_never_hold_a_surrogate():
    with echo_server() as client:
        res = post(client, "/json", SURROGATE_ESCAPES, FORM)
        assert res.status_code == 200, res.text
        body = res.json()["body"]
        assert body["a"] == "%ED%A0%80" and body["c"] == "\U0001f600"
        res = post(client, "/json", b"g=\xed\xa0\x80", FORM)
        assert res.json() == {"body": {"g": "\ufffd" * 3}}


@pytest.mark.parametrize(
    ("charset", "data", "text"),
    [
        ("utf-8", b"a\xed\xa0\x80b", "a\ufffd\ufffd\ufffdb"),
        ("utf-16le", b"a\x00\x00\xd8b\x00", "a\ufffdb"),  # a lone high surrogate
        ("utf-16be", b"\xdc\x00\x00a", "\ufffda"),  # a lone low surrogate
        ("utf-16", b"\xff\xfe\x00\xd8\x00\xd8\x00\xdc", "\ufffd\U00010000"),
        ("utf-32le", b"\x00\xd8\x00\x00a\x00\x00\x00", "\ufffda"),
        ("utf-32-be", b"\x00\x00\xdf\xff", "\ufffd"),
        ("shift_jis", "\u65e5\u672c".encode("shift_jis"), "\u65e5\u672c"),
        ("koi8-r", "\u043f\u0440\u0438".encode("koi8-r"), "\u043f\u0440\u0438"),
    ],
)
def test_text_bodies_decode_to_writable_text(charset, data, text):
    with echo_server() as client:
        res = post(client, "/send", data, f"text/plain; charset={charset}")
        assert res.status_code == 200, res.text
        assert res.content.decode("utf-8") == text
        assert post(client, "/json", data, f"text/plain; charset={charset}").json() == {"body": text}
