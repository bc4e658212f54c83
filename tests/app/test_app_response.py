"""The response object (SPEC sections 4 and 8), after Express 4's ``res.*`` tests (``res.send``,
``res.json``, ``res.status``, ``res.set``, ``res.append``, ``res.cookie``, ``res.clear_cookie``,
``res.redirect``, ``res.location``, ``res.vary``, ``res.type``, ``res.attachment``,
``res.send_status``, ``res.render``), through the real connection code in memory
(``TestClient``); most requests go byte for byte and the responses are read as written. A
``Connection`` header set by the app is checked on sockets in tests/e2e/test_app_response.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from datetime import datetime, timezone

import pytest

from evserve import App, HTTPError, ResponseStateError
from evserve.testing import TestClient

from .conftest import exchange, parse_responses, request_bytes

SECRET = "keyboard cat"


def served(handler, **settings):
    """An app answering every method on every path with ``handler(req, res)``."""
    app = App(**settings)
    app.use(handler)
    return app


def fetch(client, target="/", method="GET", headers=None, body=b"", version="1.1"):
    """One request, byte for byte, over a fresh connection; the response exactly as it came."""
    return exchange(client, method, target, headers, body, version)


def lines(res, name):
    """Every value of the header ``name``, one per line, in order."""
    return [v for k, v in res.headers if k.lower() == name.lower()]


# -- res.send ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "content_type", "wire"), [
    ("<p>hey</p>", "text/html; charset=utf-8", b"<p>hey</p>"),
    ("\u00e9\u2603", "text/html; charset=utf-8", "\u00e9\u2603".encode()),
    ("", "text/html; charset=utf-8", b""),
    (b"\x00\xffbin", "application/octet-stream", b"\x00\xffbin"),
    (bytearray(b"ba"), "application/octet-stream", b"ba"),
    ({"name": "tobi"}, "application/json; charset=utf-8", b'{"name":"tobi"}'),
    ([1, "two"], "application/json; charset=utf-8", b'[1,"two"]'),
    (3.5, "application/json; charset=utf-8", b"3.5"),
    (200, "application/json; charset=utf-8", b"200"),
    (True, "application/json; charset=utf-8", b"true"),
    (None, None, b""),
])
def test_send_picks_the_type_from_the_body(body, content_type, wire):
    app = served(lambda req, res: res.send(body))
    with TestClient(app) as client:
        res = fetch(client)
    assert res.status == 200
    assert res.header("Content-Type") == content_type
    assert res.body == wire
    assert res.header("Content-Length") == str(len(wire))


def test_send_keeps_a_type_set_earlier():
    app = App()
    app.get("/text", lambda req, res: res.type("txt").send("plain"))
    app.get("/bytes", lambda req, res: res.set("Content-Type", "image/png").send(b"\x89PNG"))
    app.get("/json", lambda req, res: res.type("application/vnd.api+json").send({"a": 1}))
    app.get("/xml", lambda req, res: res.set("Content-Type", "application/xml").send("<a/>"))
    with TestClient(app) as client:
        assert fetch(client, "/text").header("Content-Type") == "text/plain; charset=utf-8"
        assert fetch(client, "/bytes").header("Content-Type") == "image/png"
        assert fetch(client, "/json").header("Content-Type") == "application/vnd.api+json; charset=utf-8"
        # a str body is UTF-8: its charset is said whatever the type (Express setCharset)
        assert fetch(client, "/xml").header("Content-Type") == "application/xml; charset=utf-8"


def test_send_str_overrides_another_charset_because_it_sends_utf8():
    app = served(lambda req, res: res.set("Content-Type", "text/plain; charset=iso-8859-1").send("\u00e9"))
    with TestClient(app) as client:
        res = fetch(client)
    assert res.header("Content-Type") == "text/plain; charset=utf-8"
    assert res.body == "\u00e9".encode()


def test_send_refuses_other_objects():
    results = []

    def handler(req, res):
        try:
            res.send(object())
        except TypeError:
            results.append("TypeError")
        res.send("after")

    with TestClient(served(handler)) as client:
        assert fetch(client).text == "after"
    assert results == ["TypeError"]


def test_send_sets_a_weak_etag_and_answers_304_when_fresh():
    app = App()
    app.get("/", lambda req, res: res.send("kajdslfkasdf"))
    app.get("/empty", lambda req, res: res.send(""))
    app.get("/none", lambda req, res: res.send())
    app.get("/manual", lambda req, res: res.set("ETag", '"custom"').send("x"))
    app.get("/missing", lambda req, res: res.status(404).send("kajdslfkasdf"))
    app.post("/", lambda req, res: res.send("kajdslfkasdf"))
    with TestClient(app) as client:
        first = fetch(client)
        etag = first.header("ETag")
        assert re.fullmatch(r'W/"[0-9a-f]+-[A-Za-z0-9_-]+"', etag)
        assert fetch(client).header("ETag") == etag  # stable
        assert fetch(client, "/empty").header("ETag") is not None
        assert fetch(client, "/none").header("ETag") is None
        assert fetch(client, "/manual").header("ETag") == '"custom"'

        fresh = fetch(client, headers={"If-None-Match": etag})
        assert (fresh.status, fresh.body) == (304, b"")
        assert fresh.header("Content-Length") is None and fresh.header("Content-Type") is None
        assert fresh.header("ETag") == etag
        assert fetch(client, headers={"If-None-Match": '"other"'}).status == 200
        assert fetch(client, headers={"If-None-Match": etag, "Cache-Control": "no-cache"}).status == 200
        assert fetch(client, "/manual", headers={"If-None-Match": '"custom"'}).status == 304
        assert fetch(client, "/missing", headers={"If-None-Match": "*"}).status == 404
        assert fetch(client, method="POST", headers={"If-None-Match": etag}).status == 200


def test_send_honours_if_modified_since_against_last_modified():
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"
    app = served(lambda req, res: res.set("Last-Modified", stamp).send("dated"))
    with TestClient(app) as client:
        assert fetch(client, headers={"If-Modified-Since": stamp}).status == 304
        assert fetch(client, headers={"If-Modified-Since": "Wed, 21 Oct 2015 07:27:59 GMT"}).status == 200


def test_etag_setting_off():
    app = served(lambda req, res: res.send("no tag"), etag=False)
    with TestClient(app) as client:
        assert fetch(client).header("ETag") is None


@pytest.mark.parametrize("status", [204, 304])
def test_no_content_statuses_strip_body_and_its_headers(status):
    app = served(lambda req, res: res.status(status).set("Transfer-Encoding", "chunked").send("foo"))
    with TestClient(app) as client:
        # one connection, two requests: it is still in step, nothing stray followed
        res, again = parse_responses(client.raw(request_bytes() * 2), ["GET", "GET"])
    assert res.status == again.status == status
    assert res.body == b""
    for name in ("Content-Type", "Content-Length", "Transfer-Encoding"):
        assert res.header(name) is None


def test_reset_content_has_an_empty_body():
    app = App()
    app.get("/send", lambda req, res: res.status(205).send("form cleared"))
    app.get("/end", lambda req, res: res.status(205).end("form cleared"))
    with TestClient(app) as client:
        paths = ("/send", "/end", "/send")  # on one connection, each response in step
        wire = client.raw(b"".join(request_bytes("GET", path) for path in paths))
        for res in parse_responses(wire, ["GET"] * len(paths)):
            assert (res.status, res.body, res.header("Content-Length")) == (205, b"", "0")


def test_send_to_head_has_headers_but_no_body():
    app = served(lambda req, res: res.send("yay"))
    with TestClient(app) as client:
        wire = client.raw(request_bytes("HEAD") + request_bytes("GET"))  # one connection
        res, follow = parse_responses(wire, ["HEAD", "GET"])
    assert (res.status, res.body, res.header("Content-Length")) == (200, b"", "3")
    assert follow.text == "yay"


def test_sending_twice_raises_response_state_error():
    errors = []

    def handler(req, res):
        res.send("first")
        for attempt in (lambda: res.send("again"), lambda: res.json({}), lambda: res.end(),
                        lambda: res.send_status(500), lambda: res.redirect("/x"),
                        lambda: res.status(500), lambda: res.set("X-Late", "1"), lambda: res.write("x")):
            try:
                attempt()
            except ResponseStateError as exc:
                errors.append(isinstance(exc, RuntimeError))

    with TestClient(served(handler)) as client:
        res = fetch(client)
        assert (res.status, res.text, res.header("X-Late")) == (200, "first", None)
    assert errors == [True] * 8


def test_headers_sent_and_finished_flags_and_send_after_write():
    def handler(req, res):
        flags = [res.headers_sent, res.finished]
        res.write("a")
        flags += [res.headers_sent, res.finished]
        try:
            res.send("whole")
        except ResponseStateError:
            flags.append("send refused")
        try:
            res.status(500)
        except ResponseStateError:
            flags.append("status refused")
        res.end(repr(flags))

    with TestClient(served(handler)) as client:
        res = fetch(client)
    assert res.header("Transfer-Encoding") == "chunked"
    assert res.text == "a[False, False, True, False, 'send refused', 'status refused']"


# -- res.json ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "wire"), [
    (None, b"null"),
    ("str", b'"str"'),
    (123, b"123"),
    ([], b"[]"),
    ({"\u00e9": "\u2603"}, '{"\u00e9":"\u2603"}'.encode()),
])
def test_json(value, wire):
    app = served(lambda req, res: res.json(value))
    with TestClient(app) as client:
        res = fetch(client)
    assert (res.header("Content-Type"), res.body) == ("application/json; charset=utf-8", wire)


def test_json_spaces_setting_and_preset_type():
    app = App(json_spaces=2)
    app.get("/", lambda req, res: res.json({"a": [1]}))
    app.get("/typed", lambda req, res: res.type("application/problem+json").json({"a": 1}))
    with TestClient(app) as client:
        assert fetch(client).text == '{\n  "a": [\n    1\n  ]\n}'
        assert fetch(client, "/typed").header("Content-Type") == "application/problem+json; charset=utf-8"


def test_json_of_something_unserialisable_is_a_500():
    app = served(lambda req, res: res.json({"when": object()}))
    with TestClient(app) as client:
        res = fetch(client)
    assert (res.status, res.text) == (500, "Internal Server Error")


# -- res.status --------------------------------------------------------------------------------


def test_status_sets_the_code_and_chains():
    app = App()
    app.get("/created", lambda req, res: res.status(201).send("made"))
    app.get("/custom", lambda req, res: res.status(299).send("odd"))
    app.get("/teapot", lambda req, res: res.status(418).json({"short": "stout"}))
    with TestClient(app) as client:
        assert (fetch(client, "/created").status, fetch(client, "/created").text) == (201, "made")
        custom = fetch(client, "/custom")
        assert (custom.status, custom.reason) == (299, "299")
        assert fetch(client, "/teapot").status == 418


def test_status_takes_http_status_members():
    from http import HTTPStatus

    app = App()
    app.get("/", lambda req, res: res.status(HTTPStatus.CREATED).json(res.status_code))
    app.get("/send", lambda req, res: res.send_status(HTTPStatus.ACCEPTED))
    app.get("/redirect", lambda req, res: res.redirect("/x", HTTPStatus.SEE_OTHER))

    def raises(req, res):
        raise HTTPError(HTTPStatus.CONFLICT, "taken")

    app.get("/error", raises)
    with TestClient(app) as client:
        res = fetch(client)
        assert (res.status, res.reason, res.text) == (201, "Created", "201")
        assert (fetch(client, "/send").status, fetch(client, "/send").text) == (202, "Accepted")
        assert fetch(client, "/redirect").text == "See Other. Redirecting to /x"
        res = fetch(client, "/error")
        assert (res.status, res.reason, res.text) == (409, "Conflict", "taken")


@pytest.mark.parametrize(("code", "error"), [
    ("200", TypeError), (200.0, TypeError), (None, TypeError), (True, TypeError),
    (99, ValueError), (1000, ValueError), (0, ValueError), (-200, ValueError),
])
def test_status_refuses_bad_codes(code, error):
    seen = []

    def handler(req, res):
        try:
            res.status(code)
        except Exception as exc:
            seen.append(type(exc))
        res.send(str(res.status_code))

    with TestClient(served(handler)) as client:
        res = fetch(client)
    assert (res.status, res.text) == (200, "200")
    assert seen == [error]


# -- res.set, res.get, res.append, res.remove --------------------------------------------------


def test_set_get_remove():
    def handler(req, res):
        assert res.set("X-Num", 123) is res
        res.set({"X-A": "a", "X-B": "b", "X-List": ["1", "2"]})
        res.set("X-Gone", "soon").remove("x-gone")
        res.set("x-a", "replaced")
        res.set("Content-Type", "text/x-custom")
        res.set("X-Seen", repr([res.get("x-num"), res.get("X-LIST"), res.get("X-Gone")]))
        res.send("ok")

    with TestClient(served(handler)) as client:
        res = fetch(client)
    assert res.header("X-Num") == "123"
    assert lines(res, "X-A") == ["replaced"]
    assert lines(res, "X-List") == ["1", "2"]
    assert res.header("X-Gone") is None
    assert res.header("Content-Type") == "text/x-custom; charset=utf-8"
    assert res.header("X-Seen") == "['123', ['1', '2'], None]"


def test_set_content_type_keeps_a_given_charset_and_skips_non_text():
    app = App()
    app.get("/a", lambda req, res: res.set("Content-Type", "text/plain; charset=latin1").send(b"x"))
    app.get("/b", lambda req, res: res.set("Content-Type", "image/png").send(b"x"))
    with TestClient(app) as client:
        assert fetch(client, "/a").header("Content-Type") == "text/plain; charset=latin1"
        assert fetch(client, "/b").header("Content-Type") == "image/png"


def test_append():
    def handler(req, res):
        res.append("Link", "<http://localhost/>")
        res.append("Link", ["<http://localhost:80/>", "<http://localhost:8080/>"])
        res.set("X-Set", "one").append("X-Set", "two")
        res.cookie("foo", "bar").append("Set-Cookie", "fizz=buzz")
        res.append("X-Fresh", "only")
        res.send("ok")

    with TestClient(served(handler)) as client:
        res = fetch(client)
    assert lines(res, "Link") == ["<http://localhost/>", "<http://localhost:80/>", "<http://localhost:8080/>"]
    assert lines(res, "X-Set") == ["one", "two"]
    assert lines(res, "Set-Cookie") == ["foo=bar; Path=/", "fizz=buzz"]
    assert lines(res, "X-Fresh") == ["only"]


BAD_HEADERS = [
    ("X-Split", "a\r\nInjected: yes"),
    ("X-Lf", "a\nb"),
    ("X-Cr", "a\rb"),
    ("X-Nul", "a\x00b"),
    ("X-Esc", "a\x1bb"),
    ("X-Del", "a\x7fb"),
    ("Bad Name", "v"),
    ("Bad\r\nName", "v"),
    ("", "v"),
    ("X-Wide", "\u2603"),
]


@pytest.mark.parametrize(("name", "value"), BAD_HEADERS)
def test_control_characters_in_headers_raise_value_error(name, value):
    seen = []

    def handler(req, res):
        for attempt in (lambda: res.set(name, value), lambda: res.append(name, value),
                        lambda: res.set({name: value}), lambda: res.set(name, ["ok", value])):
            try:
                attempt()
            except ValueError:
                seen.append("ValueError")
        res.send("clean")

    with TestClient(served(handler)) as client:
        res = fetch(client)
    assert seen == ["ValueError"] * 4
    assert res.text == "clean"
    assert b"Injected" not in res.raw
    assert not any(k.lower() in (name.lower(), "injected") for k, _ in res.headers)


def test_set_needs_a_value_and_content_type_cannot_be_a_list():
    seen = []

    def handler(req, res):
        for attempt in (lambda: res.set("X-A"), lambda: res.set("Content-Type", ["text/html", "text/plain"])):
            try:
                attempt()
            except TypeError:
                seen.append("TypeError")
        res.send("ok")

    with TestClient(served(handler)) as client:
        assert fetch(client).text == "ok"
    assert seen == ["TypeError", "TypeError"]


# -- res.type, res.vary, res.attachment, res.send_status -----------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("json", "application/json; charset=utf-8"),
    (".json", "application/json; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("png", "image/png"),
    ("file.txt", "text/plain; charset=utf-8"),
    ("text/plain", "text/plain; charset=utf-8"),
    ("application/vnd.amazon.ebook", "application/vnd.amazon.ebook"),
    ("unknownext", "application/octet-stream"),
])
def test_type(given, expected):
    app = served(lambda req, res: res.type(given).send(b"x"))
    with TestClient(app) as client:
        assert fetch(client).header("Content-Type") == expected


@pytest.mark.parametrize(("calls", "expected"), [
    ([["Origin"]], "Origin"),
    ([[]], None),
    ([["Accept", "Accept-Encoding"]], "Accept, Accept-Encoding"),
    (["Accept", "accept", "Origin"], "Accept, Origin"),
    (["Accept, User-Agent", "user-agent"], "Accept, User-Agent"),
    (["Accept", "*", "Origin"], "*"),
])
def test_vary(calls, expected):
    def handler(req, res):
        for field in calls:
            assert res.vary(field) is res
        res.send("ok")

    with TestClient(served(handler)) as client:
        assert fetch(client).header("Vary") == expected


def test_vary_takes_a_tuple_and_links_add_up():
    app = served(lambda req, res: res.vary(("Accept", "Origin")).links({"next": "/p/2"})
                 .links({"last": "/p/9"}).send("ok"))
    with TestClient(app) as client:
        res = fetch(client)
    assert res.header("Vary") == "Accept, Origin"
    assert res.header("Link") == '</p/2>; rel="next", </p/9>; rel="last"'


def test_vary_appends_to_an_existing_header():
    app = served(lambda req, res: res.set("Vary", "Accept").vary("Origin").send("ok"))
    with TestClient(app) as client:
        assert fetch(client).header("Vary") == "Accept, Origin"


@pytest.mark.parametrize(("filename", "disposition", "content_type"), [
    (None, "attachment", None),
    ("/path/to/image.png", 'attachment; filename="image.png"', "image/png"),
    # As Express's content-disposition: Latin-1 names are sent as they are, others get a
    # "?" fallback and filename*; a %XX in the name also gets filename*.
    ("r\u00e9sum\u00e9.pdf", 'attachment; filename="r\u00e9sum\u00e9.pdf"', "application/pdf"),
    ("/locales/\u65e5\u672c\u8a9e.txt",
     "attachment; filename=\"???.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt",
     "text/plain; charset=utf-8"),
    ("\u20ac rates.pdf", "attachment; filename=\"? rates.pdf\"; filename*=UTF-8''%E2%82%AC%20rates.pdf",
     "application/pdf"),
    ("the%20plans.pdf", "attachment; filename=\"the%20plans.pdf\"; filename*=UTF-8''the%2520plans.pdf",
     "application/pdf"),
    ("a\\b.txt", 'attachment; filename="a\\\\b.txt"', "text/plain; charset=utf-8"),
    ('say "hi".txt', 'attachment; filename="say \\"hi\\".txt"', "text/plain; charset=utf-8"),
])
def test_attachment(filename, disposition, content_type):
    def handler(req, res):
        res.attachment(filename)
        res.end("data")

    with TestClient(served(handler)) as client:
        res = fetch(client)
    assert res.header("Content-Disposition") == disposition
    assert res.header("Content-Type") == (content_type or "text/html; charset=utf-8" if filename else None)


@pytest.mark.parametrize(("code", "text"), [(200, "OK"), (201, "Created"), (404, "Not Found"),
                                            (599, "599")])
def test_send_status(code, text):
    app = served(lambda req, res: res.send_status(code))
    with TestClient(app) as client:
        res = fetch(client)
    assert (res.status, res.text, res.header("Content-Type")) == (code, text, "text/plain; charset=utf-8")


# -- res.cookie, res.clear_cookie --------------------------------------------------------------


def cookies_of(handler, **settings):
    with TestClient(served(handler, **settings)) as client:
        res = fetch(client)
    return res, lines(res, "Set-Cookie")


def test_cookie_basics():
    def handler(req, res):
        assert res.cookie("name", "tobi") is res
        res.cookie("age", 1)
        res.cookie("user", {"name": "tobi"})
        res.cookie("odd", "a b;c\u00e9")
        res.send("ok")

    _, got = cookies_of(handler)
    assert got == [
        "name=tobi; Path=/",
        "age=1; Path=/",
        "user=j%3A%7B%22name%22%3A%22tobi%22%7D; Path=/",
        "odd=a%20b%3Bc%C3%A9; Path=/",
    ]


def test_cookie_options():
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    def handler(req, res):
        res.cookie("a", "1", http_only=True, secure=True)
        res.cookie("b", "2", path="/admin", domain="example.com")
        res.cookie("c", "3", expires=when)
        res.cookie("d", "4", expires=0)
        res.cookie("e", "5", same_site="lax")
        res.cookie("f", "6", same_site=True)
        res.cookie("g", "7", max_age=60)
        res.send("ok")

    _, got = cookies_of(handler)
    assert got[:6] == [
        "a=1; Path=/; HttpOnly; Secure",
        "b=2; Domain=example.com; Path=/admin",
        "c=3; Path=/; Expires=Wed, 02 Jan 2030 03:04:05 GMT",
        "d=4; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        "e=5; Path=/; SameSite=Lax",
        "f=6; Path=/; SameSite=Strict",
    ]
    assert re.fullmatch(r"g=7; Max-Age=60; Path=/; Expires=\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", got[6])


def test_signed_cookie():
    _, got = cookies_of(lambda req, res: res.cookie("user", "tobi", signed=True).send("ok"), cookie_secret=SECRET)
    mac = hmac.new(SECRET.encode(), b"tobi", hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert got == [f"user=s%3Atobi.{signature}; Path=/"]


def test_signed_cookie_without_a_secret_is_a_value_error():
    seen = []

    def handler(req, res):
        try:
            res.cookie("user", "tobi", signed=True)
        except ValueError:
            seen.append("ValueError")
        res.send("ok")

    _res, got = cookies_of(handler)
    assert (seen, got) == (["ValueError"], [])


def test_clear_cookie():
    def handler(req, res):
        res.clear_cookie("sid")
        res.clear_cookie("pref", path="/admin")
        res.send("ok")

    _, got = cookies_of(handler)
    assert got == [
        "sid=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        "pref=; Path=/admin; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    ]


@pytest.mark.parametrize("call", [
    lambda res: res.cookie("bad\r\nname", "v"),
    lambda res: res.cookie("bad name", "v"),
    lambda res: res.cookie("n", "line\r\nSet-Cookie: evil=1"),
    lambda res: res.cookie("n", "nul\x00"),
    lambda res: res.cookie("n", "v", path="/\r\nX: y"),
    lambda res: res.cookie("n", "v", path="/a;b"),
    lambda res: res.cookie("n", "v", domain="ex.com\nX: y"),
    lambda res: res.cookie("n", "v", same_site="sometimes"),
    lambda res: res.clear_cookie("bad\nname"),
])
def test_cookie_control_characters_and_bad_attributes_raise_value_error(call):
    seen = []

    def handler(req, res):
        try:
            call(res)
        except ValueError:
            seen.append("ValueError")
        res.send("ok")

    res, got = cookies_of(handler)
    assert (seen, got, res.text) == (["ValueError"], [], "ok")


# -- res.location, res.redirect ----------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("http://google.com/", "http://google.com/"),
    ("/snow \u2603", "/snow%20%E2%98%83"),
    ("/already%20encoded?x=%2F", "/already%20encoded?x=%2F"),
    ("/lone%zz%", "/lone%25zz%25"),
    ("/q?a=<b>&c=\"d\"", "/q?a=%3Cb%3E&c=%22d%22"),
    ("https://example.com/#frag", "https://example.com/#frag"),
])
def test_location_encodes_what_a_url_may_not_hold(url, expected):
    app = served(lambda req, res: res.location(url).end())
    with TestClient(app) as client:
        assert fetch(client).header("Location") == expected


def test_location_back():
    app = served(lambda req, res: res.location("back").end())
    with TestClient(app) as client:
        assert fetch(client, headers={"Referer": "/from-here"}).header("Location") == "/from-here"
        assert fetch(client, headers={"Referrer": "/other"}).header("Location") == "/other"
        assert fetch(client).header("Location") == "/"


@pytest.mark.parametrize("url", ["/a\r\nSet-Cookie: evil=1", "/a\nb", "/a\rb", "/nul\x00", "/tab\tx", "/del\x7f"])
def test_location_and_redirect_refuse_control_characters(url):
    seen = []

    def handler(req, res):
        for attempt in (lambda: res.location(url), lambda: res.redirect(url)):
            try:
                attempt()
            except ValueError:
                seen.append("ValueError")
        res.send("clean")

    with TestClient(served(handler)) as client:
        res = fetch(client)
    assert seen == ["ValueError", "ValueError"]
    assert (res.status, res.text, res.header("Location")) == (200, "clean", None)
    assert b"evil" not in res.raw


def test_redirect_defaults_to_302_with_a_text_body():
    app = served(lambda req, res: res.redirect("http://google.com"))
    with TestClient(app) as client:
        res = fetch(client)
    assert res.status == 302
    assert res.header("Location") == "http://google.com"
    assert res.header("Content-Type") == "text/plain; charset=utf-8"
    assert res.header("Vary") == "Accept"
    assert res.text == "Found. Redirecting to http://google.com"


def test_redirect_body_is_empty_when_neither_text_nor_html_is_acceptable():
    app = served(lambda req, res: res.redirect("/elsewhere", 301))
    with TestClient(app) as client:
        res = fetch(client, headers={"Accept": "application/json"})
    assert (res.status, res.header("Location"), res.body) == (301, "/elsewhere", b"")
    assert res.header("Content-Type") is None
    assert res.header("Content-Length") == "0"


def test_redirect_with_a_bad_status_changes_nothing():
    seen = []

    def handler(req, res):
        for attempt in (lambda: res.redirect("/x", 99), lambda: res.redirect("/x", "301"),
                        lambda: res.redirect("/x\n", 301)):
            try:
                attempt()
            except (TypeError, ValueError) as exc:
                seen.append(type(exc).__name__)
        res.send("still here")

    with TestClient(served(handler)) as client:
        res = fetch(client)
    assert seen == ["ValueError", "TypeError", "ValueError"]
    assert (res.status, res.text, res.header("Location")) == (200, "still here", None)


def test_redirect_status_forms():
    app = App()
    app.get("/a", lambda req, res: res.redirect("/to-a", 301))
    app.get("/b", lambda req, res: res.redirect(303, "/to-b"))
    app.get("/c", lambda req, res: res.redirect("/to-c", status=307))
    with TestClient(app) as client:
        for path, status in (("/a", 301), ("/b", 303), ("/c", 307)):
            res = fetch(client, path)
            assert (res.status, res.header("Location")) == (status, "/to-" + path[1:])


def test_redirect_html_body_is_escaped():
    app = served(lambda req, res: res.redirect("<la'me>"))
    with TestClient(app) as client:
        res = fetch(client, headers={"Accept": "text/html"})
    assert res.header("Location") == "%3Cla'me%3E"
    assert res.header("Content-Type") == "text/html; charset=utf-8"
    assert res.text == "<p>Found. Redirecting to <a href=\"%3Cla&#x27;me%3E\">%3Cla&#x27;me%3E</a></p>"
    assert "<la" not in res.text


def test_redirect_plain_text_when_asked_and_empty_for_head():
    app = served(lambda req, res: res.redirect("/x"))
    with TestClient(app) as client:
        res = fetch(client, headers={"Accept": "text/plain, */*"})
        assert res.text == "Found. Redirecting to /x"
        head = fetch(client, method="HEAD", headers={"Accept": "text/html"})
        assert (head.status, head.body, head.header("Location")) == (302, b"", "/x")


def test_redirect_back():
    app = served(lambda req, res: res.redirect("back"))
    with TestClient(app) as client:
        assert fetch(client, headers={"Referer": "/prev"}).header("Location") == "/prev"
        assert fetch(client).header("Location") == "/"


def test_a_client_follows_a_redirect_chain():
    app = App()
    app.get("/start", lambda req, res: res.redirect("/middle"))
    app.get("/middle", lambda req, res: res.redirect("/end", 301))
    app.get("/end", lambda req, res: res.send("arrived"))
    with TestClient(app) as client:
        r = client.get("/start", follow_redirects=True)
    assert (r.text, [h.status_code for h in r.history]) == ("arrived", [302, 301])


# -- res.end, res.write ------------------------------------------------------------------------


def test_end_and_write():
    app = App()
    app.get("/end", lambda req, res: res.end("done"))
    app.get("/empty", lambda req, res: res.status(202).end())

    def stream(req, res):
        res.type("txt")
        res.write("one ")
        res.write(b"two ")
        res.end("three")

    app.get("/stream", stream)
    with TestClient(app) as client:
        res = fetch(client, "/end")
        assert (res.text, res.header("Content-Length")) == ("done", "4")
        res = fetch(client, "/empty")
        assert (res.status, res.body, res.header("Content-Length")) == (202, b"", "0")
        res = fetch(client, "/stream")
        assert (res.text, res.header("Transfer-Encoding")) == ("one two three", "chunked")
        assert res.header("Content-Type") == "text/plain; charset=utf-8"
        assert res.raw.endswith(b"0\r\n\r\n")
        res = fetch(client, "/stream", version="1.0")
        assert res.header("Transfer-Encoding") is None
        assert res.text == "one two three"


def test_res_locals_and_on_finish():
    finished = threading.Event()

    def handler(req, res):
        res.locals["user"] = "tobi"
        res.on_finish(finished.set)
        res.send(res.locals["user"])

    with TestClient(served(handler)) as client:
        assert fetch(client).text == "tobi"
    assert finished.is_set()


# -- res.render and app.engine -----------------------------------------------------------------


@pytest.fixture
def views(tmp_path):
    root = tmp_path / "views"
    (root / "users").mkdir(parents=True)
    (root / "user.html").write_text("<p>$name is $age</p><p>${site}</p>", encoding="utf-8")
    (root / "users" / "list.html").write_text("<ul>$items</ul> $missing", encoding="utf-8")
    (root / "note.txt").write_text("note for {who}", encoding="utf-8")
    (tmp_path / "secret.html").write_text("top secret", encoding="utf-8")
    return root


def test_render_with_the_built_in_engine(views):
    app = App(views=str(views))
    app.locals["site"] = "Site & Co"
    app.get("/", lambda req, res: res.render("user", {"name": "<tobi>", "age": 2}))
    app.get("/ext", lambda req, res: res.render("user.html", {"name": "x", "age": 1}))

    def with_locals(req, res):
        res.locals["items"] = "<li>"
        res.render("users/list")

    app.get("/locals", with_locals)
    app.get("/override", lambda req, res: res.render("user", {"name": "n", "age": 0, "site": "mine"}))
    with TestClient(app) as client:
        res = fetch(client)
        assert res.header("Content-Type") == "text/html; charset=utf-8"
        assert res.text == "<p>&lt;tobi&gt; is 2</p><p>Site &amp; Co</p>"
        assert fetch(client, "/ext").text == "<p>x is 1</p><p>Site &amp; Co</p>"
        assert fetch(client, "/locals").text == "<ul>&lt;li&gt;</ul> $missing"
        assert fetch(client, "/override").text == "<p>n is 0</p><p>mine</p>"


def test_render_precedence_index_views_and_several_folders(views, tmp_path):
    extra = tmp_path / "extra"
    (extra / "blog").mkdir(parents=True)
    (extra / "blog" / "index.html").write_text("blog index $who", encoding="utf-8")
    (extra / "only-here.html").write_text("extra $who", encoding="utf-8")
    (views / "user.html").write_text("$who", encoding="utf-8")
    app = App(views=[str(views), extra])
    app.locals["who"] = "app"

    def precedence(req, res):
        res.locals["who"] = "res"
        res.render(req.query["view"], {"who": "call"} if "call" in req.query else None)

    app.get("/", precedence)
    with TestClient(app) as client:
        assert fetch(client, "/?view=user").text == "res"
        assert fetch(client, "/?view=user&call=1").text == "call"
        assert fetch(client, "/?view=blog").text == "blog index res"
        assert fetch(client, "/?view=only-here").text == "extra res"
        assert fetch(client, "/?view=nowhere").status == 500


def test_render_with_a_registered_engine(views):
    calls = []

    def engine(path, context):
        calls.append(path)
        with open(path, encoding="utf-8") as f:
            return f.read().format(**context)

    app = App(views=str(views))
    assert app.engine("txt", engine) is app
    app.get("/", lambda req, res: res.type("txt").render("note.txt", {"who": "you"}))
    app.get("/dot", lambda req, res: res.render("note.txt", {"who": "dot"}))
    with TestClient(app) as client:
        res = fetch(client)
        assert (res.text, res.header("Content-Type")) == ("note for you", "text/plain; charset=utf-8")
        assert fetch(client, "/dot").text == "note for dot"
    assert calls == [str(views / "note.txt")] * 2


def test_engine_with_a_dot_replaces_the_built_in_one(views):
    app = App(views=str(views))
    app.engine(".html", lambda path, context: "custom " + context["x"])
    app.get("/", lambda req, res: res.render("user", {"x": "engine"}))
    with TestClient(app) as client:
        assert fetch(client).text == "custom engine"


def test_engine_must_be_callable():
    with pytest.raises(TypeError):
        App().engine("html", "not callable")


def test_a_sub_app_renders_from_the_inherited_views_setting(views):
    app = App(views=str(views))
    sub = App()
    sub.get("/", lambda req, res: res.render("user", {"name": "sub", "age": 3, "site": "s"}))
    app.use("/sub", sub)
    with TestClient(app) as client:
        assert fetch(client, "/sub").text == "<p>sub is 3</p><p>s</p>"


def test_a_sub_app_uses_its_parents_engines_unless_it_has_its_own(views):
    app = App(views=str(views))
    sub = App()
    own = App()
    app.use("/sub", sub)
    app.use("/own", own)
    # registered after mounting: sub-apps look engines up when they render
    app.engine("txt", lambda path, context: "parent txt engine")
    app.engine("html", lambda path, context: "parent html engine")
    own.engine(".txt", lambda path, context: "own txt engine")
    sub.get("/", lambda req, res: res.render("note.txt"))
    sub.get("/html", lambda req, res: res.render("user"))
    own.get("/", lambda req, res: res.render("note.txt"))
    own.get("/html", lambda req, res: res.render("user"))
    with TestClient(app) as client:
        assert fetch(client, "/sub").text == "parent txt engine"
        assert fetch(client, "/sub/html").text == "parent html engine"
        assert fetch(client, "/own").text == "own txt engine"
        assert fetch(client, "/own/html").text == "parent html engine"


@pytest.mark.parametrize("view", ["missing", "../secret", "note.unknown"])
def test_render_failures_are_500s(views, view, caplog):
    app = App(views=str(views))
    app.get("/", lambda req, res: res.render(view))
    with caplog.at_level("ERROR", logger="evserve"), TestClient(app) as client:
        res = fetch(client)
    assert (res.status, res.text) == (500, "Internal Server Error")
    assert "top secret" not in res.text
    assert any(r.name == "evserve" and r.exc_info for r in caplog.records)


def test_render_views_default_to_the_views_folder_of_the_working_directory(views, monkeypatch):
    monkeypatch.chdir(views.parent)
    app = App()
    app.get("/", lambda req, res: res.render("user", {"name": "cwd", "age": 1, "site": ""}))
    with TestClient(app) as client:
        assert fetch(client).text == "<p>cwd is 1</p><p></p>"


def formatted(req, res):
    res.format({
        "text/plain": lambda: res.send("hey"),
        "text/html": lambda req, res: res.send("<p>hey</p>"),
        "json": lambda: res.json({"message": "hey"}),
    })


@pytest.mark.parametrize(("accept", "status", "body", "content_type"), [
    ("text/plain", 200, "hey", "text/plain; charset=utf-8"),
    ("text/html", 200, "<p>hey</p>", "text/html; charset=utf-8"),
    ("application/json", 200, '{"message":"hey"}', "application/json; charset=utf-8"),
    ("text/html;q=.5, application/json", 200, '{"message":"hey"}', "application/json; charset=utf-8"),
    (None, 200, "hey", "text/plain; charset=utf-8"),  # no Accept: the first
    ("image/png", 406, None, None),
])
def test_format_picks_the_handler_for_the_accepted_type(accept, status, body, content_type):
    with TestClient(served(formatted)) as client:
        res = client.get("/", headers={"Accept": accept} if accept else {}, timeout=10)
    assert res.status_code == status
    assert res.headers["Vary"] == "Accept"
    if body is not None:
        assert res.text == body
        assert res.headers["Content-Type"] == content_type


def test_format_falls_back_to_default_and_406_reaches_error_middleware():
    app = App()

    @app.get("/default")
    def with_default(req, res):
        res.format({"json": lambda: res.json(1), "default": lambda: res.status(406).send("nope")})

    app.get("/plain")(formatted)

    def on_error(err, req, res, next):
        res.status(err.status).json({"offered": err.types})

    app.use(on_error)
    with TestClient(app) as client:
        res = client.get("/default", headers={"Accept": "text/csv"}, timeout=10)
        assert (res.status_code, res.text) == (406, "nope")
        res = client.get("/plain", headers={"Accept": "text/csv"}, timeout=10)
        assert res.status_code == 406
        assert res.json() == {"offered": ["text/plain", "text/html", "application/json"]}


def test_a_head_handler_keeps_the_content_length_it_set_and_adds_none_otherwise(client_for):
    # RFC 9110 section 8.6: a HEAD response's Content-Length, if any, is the GET body's length.
    app = App()
    app.head("/declared", lambda req, res: res.set("Content-Length", "100").end())
    app.head("/bare", lambda req, res: res.end())
    app.get("/text", lambda req, res: res.send("hello"))
    client = client_for(app)
    heads = (("/declared", "100"), ("/bare", None), ("/text", "5"))
    # all on one connection: each HEAD response in step with the next
    wire = client.raw(b"".join(request_bytes("HEAD", target) for target, _ in heads)
                      + request_bytes("GET", "/text"))
    *responses, last = parse_responses(wire, ["HEAD"] * len(heads) + ["GET"])
    for (target, length), res in zip(heads, responses, strict=True):
        assert (res.status, res.header("Content-Length"), res.body) == (200, length, b""), target
    assert last.text == "hello"  # the connection is still in step
