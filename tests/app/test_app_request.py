"""The request object (SPEC sections 3 and 8), after Express 4's ``req.*`` tests (``req.query``,
``req.accepts``, ``req.is``, ``req.get``, ``req.ip``, ``req.host``, ``req.hostname``,
``req.protocol``, ``req.secure``, ``req.xhr``, cookie-parser), through the real connection code
in memory (``TestClient``; requests a client would not send as they are go byte for byte).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from evserve import App
from evserve.testing import TestClient

from .conftest import parse_responses

SECRET = "keyboard cat"


def sign_value(value: str, secret: str) -> str:
    """SPEC section 8: ``s:<value>.<base64url HMAC-SHA256 without padding>`` (an independent oracle)."""
    mac = hmac.new(secret.encode(), value.encode(), hashlib.sha256).digest()
    return f"s:{value}." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def report(fn):
    """An app whose only route, ``/``, answers ``fn(req)`` as JSON (any method)."""
    app = App()
    app.all("/", lambda req, res: res.json(fn(req)))
    return app


def raw(client: TestClient, data: bytes, method: str = "GET"):
    """Send ``data`` byte for byte on a fresh connection and return the parsed response."""
    return parse_responses(client.raw(data), [method])[0]


def raw_json(client: TestClient, head: str) -> object:
    """Send a bodiless request head (lines joined with CRLF) and decode its JSON answer."""
    res = raw(client, (head.replace("\n", "\r\n") + "\r\n\r\n").encode("latin-1"))
    assert res.status == 200, res.text
    return json.loads(res.body)


# -- req.query ---------------------------------------------------------------------------------


def test_query_is_parsed_with_nesting_by_default():
    app = report(lambda req: req.query)
    with TestClient(app) as client:
        get = lambda qs: client.get("/?" + qs).json()  # noqa: E731
        assert get("") == {}
        assert get("name=tobi&age=2") == {"name": "tobi", "age": "2"}
        assert get("user[name]=tobi&user[pet][kind]=ferret") == {
            "user": {"name": "tobi", "pet": {"kind": "ferret"}}
        }
        assert get("a[]=1&a[]=2") == {"a": ["1", "2"]}
        assert get("a=1&a=2&a=3") == {"a": ["1", "2", "3"]}
        assert get("a[0]=x&a[1]=y") == {"a": ["x", "y"]}
        assert get("sp=a+b&pct=%C3%A9%20z&bare") == {"sp": "a b", "pct": "\u00e9 z", "bare": ""}
        assert get("bad=%zz&lone=%") == {"bad": "%zz", "lone": "%"}


def test_query_is_empty_without_a_query_string():
    app = report(lambda req: [req.query, req.query is req.query])
    with TestClient(app) as client:
        assert client.get("/").json() == [{}, True]
        assert client.get("/?").json() == [{}, True]


def test_query_parser_simple_does_not_nest():
    app = App(query_parser="simple")
    app.get("/", lambda req, res: res.json(req.query))
    with TestClient(app) as client:
        got = client.get("/?user[name]=tobi&a=1&a=2").json()
        assert got == {"user[name]": "tobi", "a": ["1", "2"]}


def test_query_parser_disabled():
    app = App(query_parser=False)
    app.get("/", lambda req, res: res.json(req.query))
    with TestClient(app) as client:
        assert client.get("/?a=1").json() == {}


def test_query_parser_callable():
    calls = []

    def parse(qs):
        calls.append(qs)
        return {"raw": qs}

    app = App(query_parser=parse)
    app.get("/", lambda req, res: res.json([req.query, req.query]))
    with TestClient(app) as client:
        assert client.get("/?a=1&b").json() == [{"raw": "a=1&b"}] * 2
    assert calls == ["a=1&b"]  # parsed once per request


def test_query_is_parsed_by_the_top_level_apps_setting():
    app = App()
    sub = App(query_parser="simple")
    seen = []
    sub.get("/x", lambda req, res: res.json(req.query))
    app.use("/peek", lambda req, res, next: (seen.append(req.query), next())[1])
    app.use("/peek", sub)
    app.use(sub)
    with TestClient(app) as client:
        # Like Express: the top-level app parses the query once, whichever app reads it first.
        assert client.get("/x?a[b]=1").json() == {"a": {"b": "1"}}
        assert client.get("/peek/x?a[b]=1").json() == {"a": {"b": "1"}}
    assert seen == [{"a": {"b": "1"}}]

    top = App(query_parser="simple")
    top.use("/sub", App(query_parser="extended").get("/", lambda req, res: res.json(req.query)))
    with TestClient(top) as client:
        assert client.get("/sub?a[b]=1").json() == {"a[b]": "1"}


def test_query_bounds_drop_the_extra_and_never_fail():
    app = report(lambda req: req.query)
    with TestClient(app, max_target_size=65536) as client:
        many = "&".join(f"k{i}=v" for i in range(1200))
        got = client.get("/?" + many).json()
        assert len(got) == 1000
        assert "k999" in got and "k1000" not in got

        got = client.get("/?" + "&".join(["a[]=x"] * 150)).json()
        assert got == {"a": ["x"] * 100}
        got = client.get("/?" + "&".join(["b=y"] * 150)).json()
        assert got == {"b": ["y"] * 100}

        got = client.get("/?a[b][c][d][e][f][g][h]=deep").json()
        assert got == {"a": {"b": {"c": {"d": {"e": {"f": {"[g][h]": "deep"}}}}}}}
        # an index above the list bound makes an object, not a 10**9-item list
        assert client.get("/?a[1000000000]=x").json() == {"a": {"1000000000": "x"}}


# -- req.params, req.get, headers --------------------------------------------------------------


def test_get_is_case_insensitive_with_a_default_and_referrer_alias():
    app = report(lambda req: [
        req.get("x-custom"), req.get("X-CUSTOM"), req.get("missing"), req.get("missing", "dflt"),
        req.get("Referrer"), req.get("referer"),
    ])
    with TestClient(app) as client:
        got = client.get("/", headers={"X-Custom": "v", "Referer": "http://r/"}).json()
        assert got == ["v", "v", None, "dflt", "http://r/", "http://r/"]


def test_headers_keep_order_and_repeats():
    app = report(lambda req: [
        [(n, v) for n, v in req.headers.items() if n.startswith("x-")],
        req.headers.get_all("x-b"), req.headers["X-B"], "x-a" in req.headers,
    ])
    with TestClient(app) as client:
        got = raw_json(client, "GET / HTTP/1.1\nHost: h\nX-B: 1\nX-A: a\nx-b: 2")
    assert got == [[["x-b", "1"], ["x-a", "a"], ["x-b", "2"]], ["1", "2"], "1, 2", True]


def test_method_version_raw_body_and_links():
    seen = {}

    def probe(req):
        seen["res_is_paired"] = req.res is not None and req.res.req is req
        seen["app"] = req.app
        return [req.method, req.http_version, req.raw_body.decode(), req.body]

    app = report(probe)
    with TestClient(app) as client:
        assert client.post("/", data=b"payload").json() == ["POST", "1.1", "payload", None]
        got = raw_json(client, "GET / HTTP/1.0")
        assert got == ["GET", "1.0", "", None]
    assert seen == {"res_is_paired": True, "app": app}


# -- content negotiation: accepts, is_type -----------------------------------------------------


@pytest.mark.parametrize(("accept", "offers", "expected"), [
    (None, ["json", "html"], "json"),
    ("application/json", ["html", "json"], "json"),
    ("text/html", ["json", "html"], "html"),
    ("text/html;q=0.5, application/json", ["html", "json"], "json"),
    ("text/*", ["application/json", "text/plain"], "text/plain"),
    ("*/*", ["png", "json"], "png"),
    ("image/png", ["json", "html"], None),
    ("application/json;q=0", ["json"], None),
    ("text/html, application/json", [["json", "html"]], "html"),  # ties go by header order
    ("application/json, text/html", ["html", "json"], "json"),
])
def test_accepts(accept, offers, expected):
    app = report(lambda req: req.accepts(*offers))
    headers = {} if accept is None else {"Accept": accept}
    with TestClient(app) as client:
        if accept is None:
            got = raw_json(client, "GET / HTTP/1.1\nHost: h")  # the client always sends Accept
        else:
            got = client.get("/", headers=headers).json()
    assert got == expected


@pytest.mark.parametrize(("content_type", "types", "expected"), [
    ("application/json", ["json"], "json"),
    ("application/json; charset=utf-8", ["html", "json"], "json"),
    ("application/json", ["application/*"], "application/*"),
    ("application/vnd.api+json", ["+json"], "+json"),
    ("text/html", ["json", "text/*"], "text/*"),
    ("application/x-www-form-urlencoded", ["urlencoded"], "urlencoded"),
    ("text/plain", ["json"], None),
    ("application/json", [["xml", "json"]], "json"),
])
def test_is_type_with_a_body(content_type, types, expected):
    app = report(lambda req: req.is_type(*types))
    with TestClient(app) as client:
        got = client.post("/", data=b"{}", headers={"Content-Type": content_type}).json()
    assert got == expected


def test_is_type_without_a_body_matches_nothing():
    app = report(lambda req: req.is_type("json"))
    with TestClient(app) as client:
        assert raw_json(client, "GET / HTTP/1.1\nHost: h\nContent-Type: application/json") is None
        # like type-is: a declared length, even 0, is a body
        r = client.post("/", data=b"", headers={"Content-Type": "application/json"})
        assert r.request.headers["Content-Length"] == "0"
        assert r.json() == "json"
        r = client.post("/", data=b"{}", headers={"Content-Type": "application/json",
                                                  "Transfer-Encoding": "chunked"})
        assert r.request.headers["Transfer-Encoding"] == "chunked"
        assert r.json() == "json"


# -- xhr ----------------------------------------------------------------------------------------


def test_xhr():
    app = report(lambda req: req.xhr)
    with TestClient(app) as client:
        assert client.get("/", headers={"X-Requested-With": "XMLHttpRequest"}).json() is True
        assert client.get("/", headers={"X-Requested-With": "xmlhttprequest"}).json() is True
        assert client.get("/", headers={"X-Requested-With": "fetch"}).json() is False
        assert client.get("/").json() is False


# -- ip, host, hostname, protocol, secure, trust_proxy -----------------------------------------

NET = ["ip", "ips", "host", "hostname", "protocol", "secure", "subdomains"]


def net(req):
    return {name: getattr(req, name) for name in NET}


def test_without_trust_proxy_forwarded_headers_are_ignored():
    app = App()
    app.get("/", lambda req, res: res.json(net(req)))
    with TestClient(app) as client:
        got = raw_json(client, "GET / HTTP/1.1\nHost: example.com:3000\nX-Forwarded-For: 1.2.3.4\n"
                               "X-Forwarded-Host: evil.test\nX-Forwarded-Proto: https")
    assert got == {"ip": "127.0.0.1", "ips": [], "host": "example.com:3000", "hostname": "example.com",
                   "protocol": "http", "secure": False, "subdomains": []}


def test_trust_proxy_true_trusts_every_hop():
    app = App(trust_proxy=True)
    app.get("/", lambda req, res: res.json(net(req)))
    with TestClient(app) as client:
        got = raw_json(client, "GET / HTTP/1.1\nHost: internal:8080\n"
                               "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3\n"
                               "X-Forwarded-Host: tobi.ferrets.example.com\nX-Forwarded-Proto: https")
    assert got == {"ip": "1.1.1.1", "ips": ["1.1.1.1", "2.2.2.2", "3.3.3.3"],
                   "host": "tobi.ferrets.example.com", "hostname": "tobi.ferrets.example.com",
                   "protocol": "https", "secure": True, "subdomains": ["ferrets", "tobi"]}


def test_trust_proxy_hop_count():
    app = App(trust_proxy=2)
    app.get("/", lambda req, res: res.json([req.ip, req.ips, req.protocol]))
    with TestClient(app) as client:
        got = raw_json(client, "GET / HTTP/1.1\nHost: h\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3\n"
                               "X-Forwarded-Proto: https, http")
    # the connection's peer and one forwarded hop are trusted: the client is the next one back
    assert got == ["2.2.2.2", ["2.2.2.2", "3.3.3.3"], "https"]


@pytest.mark.parametrize(("setting", "expected_ip"), [
    (["127.0.0.1"], "3.3.3.3"),
    (["127.0.0.0/8", "3.3.3.0/24"], "2.2.2.2"),
    ("loopback", "3.3.3.3"),
    (["10.0.0.0/8"], "127.0.0.1"),
])
def test_trust_proxy_addresses(setting, expected_ip):
    app = App(trust_proxy=setting)
    app.get("/", lambda req, res: res.json(req.ip))
    with TestClient(app) as client:
        got = raw_json(client, "GET / HTTP/1.1\nHost: h\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3")
    assert got == expected_ip


def test_host_and_hostname_forms():
    app = App()
    app.get("/", lambda req, res: res.json([req.host, req.hostname]))
    with TestClient(app) as client:
        assert raw_json(client, "GET / HTTP/1.1\nHost: [::1]:3000") == ["[::1]:3000", "[::1]"]
        assert raw_json(client, "GET / HTTP/1.1\nHost: [::1]") == ["[::1]", "[::1]"]
        assert raw_json(client, "GET / HTTP/1.1\nHost: example.com") == ["example.com", "example.com"]
        # absolute-form: the target's authority is the host (RFC 9112 section 3.2.2)
        got = raw_json(client, "GET http://other.test:81/?x=1 HTTP/1.1\nHost: example.com")
        assert got == ["other.test:81", "other.test"]
        assert raw_json(client, "GET / HTTP/1.0") == [None, None]


def test_absolute_form_target_routes_by_its_path():
    app = App()
    app.get("/p", lambda req, res: res.json([req.url, req.original_url, req.query]))
    with TestClient(app) as client:
        got = raw_json(client, "GET http://h.test/p?a=1 HTTP/1.1\nHost: h.test")
    # original_url keeps the target as received (Express 5); routing uses its path.
    assert got == ["/p?a=1", "http://h.test/p?a=1", {"a": "1"}]


# -- cookies -----------------------------------------------------------------------------------


def test_cookies_are_parsed():
    app = report(lambda req: [req.cookies, req.signed_cookies])
    with TestClient(app) as client:
        got = client.get("/", headers={"Cookie": 'a=1; b="two"; c=%E2%98%83; a=dup; s=s:x.y'}).json()
        assert got == [{"a": "1", "b": "two", "c": "\u2603", "s": "s:x.y"}, {}]
        assert client.get("/").json() == [{}, {}]


def test_signed_cookies():
    app = App(cookie_secret=SECRET)
    app.get("/", lambda req, res: res.json([req.cookies, req.signed_cookies]))
    good = sign_value("tobi", SECRET)
    tampered = sign_value("tobi", SECRET).replace("tobi", "loki")
    other_key = sign_value("tobi", "another secret")
    with TestClient(app) as client:
        cookie = f"user={good}; plain=yes; bad={tampered}; foreign={other_key}"
        got = client.get("/", headers={"Cookie": cookie}).json()
    assert got == [{"plain": "yes"}, {"user": "tobi"}]
    assert good.startswith("s:tobi.") and "=" not in good


def test_a_signed_cookie_set_by_the_app_round_trips():
    app = App(cookie_secret=SECRET)
    app.get("/set", lambda req, res: res.cookie("sid", "abc 123", signed=True).cookie("n", "1").send("ok"))
    app.get("/read", lambda req, res: res.json([req.cookies, req.signed_cookies]))
    with TestClient(app) as client:  # its cookie jar plays the session's
        r = client.get("/set")
        assert r.status_code == 200
        assert client.get("/read").json() == [{"n": "1"}, {"sid": "abc 123"}]


def test_json_cookies_come_back_as_objects():
    app = App(cookie_secret=SECRET)
    app.get("/set", lambda req, res: res.cookie("cart", {"items": [1, 2]}).cookie("s", ["a"], signed=True).send("ok"))
    app.get("/read", lambda req, res: res.json([req.cookies, req.signed_cookies]))
    with TestClient(app) as client:
        client.get("/set")  # the client's cookie jar plays the session's
        got = client.get("/read").json()
        assert got == [{"cart": {"items": [1, 2]}}, {"s": ["a"]}]
        # like cookie-parser: only a j: value that parses to something truthy is replaced
        raw_cookies = "a=j%3A%7Bbad; b=j:0; c=j:%22%22; d=j:%22x%22; e=j:[]; f=" + "j:" + "[" * 5000
        got = client.get("/read", headers={"Cookie": raw_cookies}).json()
        assert got[0] == {"a": "j:{bad", "b": "j:0", "c": 'j:""', "d": "x", "e": [], "f": "j:" + "[" * 5000}


# -- audit regressions -------------------------------------------------------------------------


def test_trust_proxy_true_and_one_are_different_settings_in_one_process():
    # True == 1 in Python: a cache keyed by the setting alone once made them the same.
    forwarded = "GET / HTTP/1.1\nHost: h\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3"
    for setting, expected in ((1, "3.3.3.3"), (True, "1.1.1.1"), (1, "3.3.3.3"), (False, "127.0.0.1")):
        app = App(trust_proxy=setting)
        app.get("/", lambda req, res: res.json(req.ip))
        with TestClient(app) as client:
            assert raw_json(client, forwarded) == expected, setting


@pytest.mark.parametrize(("target", "expected"), [
    ("/p#frag", ["/p", "/p", {}]),
    ("/p?a=1#frag", ["/p?a=1", "/p?a=1", {"a": "1"}]),
    ("http://h.test/p?a=1#x", ["/p?a=1", "http://h.test/p?a=1", {"a": "1"}]),
])
def test_a_fragment_is_neither_routed_nor_part_of_the_query(target, expected):
    app = App()
    app.get("/p", lambda req, res: res.json([req.url, req.original_url, req.query]))
    with TestClient(app) as client:
        assert raw_json(client, f"GET {target} HTTP/1.1\nHost: h.test") == expected


@pytest.mark.parametrize(("target", "host", "path"), [
    ("http://example.com?x=1", "example.com", "/"),
    ("http://example.com:8080#top", "example.com:8080", "/"),
    ("http://example.com#a/b", "example.com", "/"),
    ("HTTP://Example.com/a", "Example.com", "/a"),
])
def test_the_authority_of_an_absolute_form_target_ends_at_path_query_or_fragment(target, host, path):
    app = App()
    app.use(lambda req, res: res.json([req.host, req.path]))
    with TestClient(app) as client:
        assert raw_json(client, f"GET {target} HTTP/1.1\nHost: other") == [host, path]


@pytest.mark.parametrize("target", ["http://user:pw@example.com/a", "http:///a", "http://exa mple/"])
def test_an_absolute_form_target_with_userinfo_or_no_host_is_400(target):
    app = App()
    app.use(lambda req, res: res.send("ok"))
    with TestClient(app) as client:
        res = raw(client, f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        assert res.status == 400


def test_two_cookie_lines_are_joined_as_cookies():
    app = report(lambda req: req.cookies)
    with TestClient(app) as client:
        assert raw_json(client, "GET / HTTP/1.1\nHost: h\nCookie: a=1\nCookie: b=2") == {"a": "1", "b": "2"}


@pytest.mark.parametrize("target", ["http://:80/x", "http://:/x"])
def test_an_absolute_form_target_with_only_a_port_is_400(target):
    app = App()
    app.use(lambda req, res: res.send("ok"))
    with TestClient(app) as client:
        assert raw(client, f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode()).status == 400
