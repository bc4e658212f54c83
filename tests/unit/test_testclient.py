"""The in-memory test client: requests through the real connection code, no socket.

Each test builds its own app. The waits are the client's own (bounded by its ``timeout``); the
few tests that need time to pass (a deadline) use settings of a few tens of milliseconds.
"""

from __future__ import annotations

import gzip
import itertools
import logging
import threading
import time

import pytest

import evserve
from evserve import App, HTTPError, Router, body_parser
from evserve.connection import State
from evserve.testing import (
    ClientError,
    CookieJar,
    MalformedResponse,
    ResponseReader,
    ResponseTimeout,
    ServerDisconnected,
    TestClient,
)


@pytest.fixture
def app():
    return App()


@pytest.fixture
def client(app):
    with TestClient(app) as client:
        yield client


# -- routes, params, query, bodies ----------------------------------------------------------------


def test_route_params_and_query(app, client):
    @app.get("/user/:id")
    def user(req, res):
        res.json({"id": req.params["id"], "query": req.query, "url": req.original_url})

    res = client.get("/user/42", params={"q": "a b&c", "tag": ["x", "y"], "skip": None})
    assert res.status_code == 200
    assert res.reason == "OK"
    assert res.http_version == "1.1"
    assert res.json() == {"id": "42", "query": {"q": "a b&c", "tag": ["x", "y"]},
                          "url": "/user/42?q=a+b%26c&tag=x&tag=y"}
    assert res.url == "http://testserver/user/42?q=a+b%26c&tag=x&tag=y"
    assert res.request.method == "GET"
    assert res.headers["Content-Type"] == "application/json; charset=utf-8"


def test_params_join_an_existing_query_and_pairs_keep_order(app, client):
    app.get("/q", lambda req, res: res.send(req.original_url))
    assert client.get("/q?a=1", params=[("b", 2), ("a", 3)]).text == "/q?a=1&b=2&a=3"
    assert client.get("/q", params="x=1&y=2").text == "/q?x=1&y=2"


def test_paths_are_percent_encoded_and_escapes_kept(app, client):
    app.get("/files/*rest", lambda req, res: res.json({"rest": req.params["rest"], "url": req.original_url}))
    res = client.get("/files/a b/é%2F#fragment")
    assert res.json() == {"rest": "a b/é/", "url": "/files/a%20b/%C3%A9%2F"}


def test_base_url_gives_host_prefix_and_protocol():
    app = App()
    app.get("/api/who", lambda req, res: res.json(
        {"host": req.host, "protocol": req.protocol, "secure": req.secure, "ip": req.ip}))
    with TestClient(app, base_url="https://example.org:8443/api/") as client:
        assert client.get("/who").json() == {"host": "example.org:8443", "protocol": "https",
                                             "secure": True, "ip": "127.0.0.1"}
        # A whole URL goes to the same app, with its own Host and scheme.
        assert client.get("http://other.test/api/who").json()["protocol"] == "http"
        assert client.get("http://other.test/api/who").json()["host"] == "other.test"


def test_json_form_text_and_bytes_bodies(app, client):
    app.use(body_parser.json())
    app.use(body_parser.urlencoded())
    app.use(body_parser.text())
    app.use(body_parser.raw())
    app.post("/echo", lambda req, res: res.json({"body": req.body if not isinstance(req.body, bytes)
                                                 else req.body.hex(), "type": req.get("content-type")}))

    assert client.post("/echo", json={"a": [1, "é"]}).json() == {
        "body": {"a": [1, "é"]}, "type": "application/json"}
    assert client.post("/echo", data={"a": "1", "b": ["x", "y"]}).json() == {
        "body": {"a": "1", "b": ["x", "y"]}, "type": "application/x-www-form-urlencoded"}
    assert client.post("/echo", data="héllo", headers={"Content-Type": "text/plain; charset=utf-8"}).json() == {
        "body": "héllo", "type": "text/plain; charset=utf-8"}
    assert client.post("/echo", data=b"\x00\x01", headers={"Content-Type": "application/octet-stream"}).json() == {
        "body": "0001", "type": "application/octet-stream"}


def test_content_length_is_sent_for_bodies_and_empty_posts(app, client):
    app.all("/h", lambda req, res: res.json({"cl": req.get("content-length"), "te": req.get("transfer-encoding")}))
    assert client.get("/h").json() == {"cl": None, "te": None}
    assert client.post("/h").json() == {"cl": "0", "te": None}
    assert client.put("/h", data=b"abc").json() == {"cl": "3", "te": None}
    chunked = client.post("/h", data=b"abc", headers={"Transfer-Encoding": "chunked"})
    assert chunked.json() == {"cl": None, "te": "chunked"}
    assert chunked.request.data.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")


def test_invalid_requests_are_refused_before_sending(client):
    with pytest.raises(TypeError, match="json= or data="):
        client.post("/", json={}, data=b"")
    with pytest.raises(ValueError, match="Content-Length is set from the body"):
        client.post("/", headers={"Content-Length": "3"})
    with pytest.raises(ValueError, match="invalid character"):
        client.get("/", headers={"X-Evil": "a\r\nInjected: 1"})
    with pytest.raises(ValueError, match="invalid method"):
        client.request("GE T", "/")
    with pytest.raises(ValueError, match="OPTIONS only"):
        client.get("*")
    with pytest.raises(ValueError, match="base_url"):
        TestClient(App(), base_url="ftp://x")
    with pytest.raises(TypeError, match="unknown server setting"):
        TestClient(App(), max_bodysize=1)


def test_every_method_helper(app, client):
    app.all("/m", lambda req, res: res.set("X-Method", req.method).send(req.method))
    for name in ("get", "post", "put", "patch", "delete", "options"):
        res = getattr(client, name)("/m")
        assert res.status_code == 200
        assert res.text == name.upper()
    head = client.head("/m")
    assert head.headers["x-method"] == "HEAD"
    assert head.content == b""
    assert client.request("purge", "/m").text == "PURGE"


def test_default_headers_and_their_removal(app):
    app.get("/h", lambda req, res: res.json({k: req.get(k) for k in ("user-agent", "accept", "x-api")}))
    with TestClient(app, headers={"X-Api": "key"}) as client:
        assert client.get("/h").json() == {"user-agent": "evserve-testclient", "accept": "*/*", "x-api": "key"}
        client.headers["Accept"] = "application/json"
        assert client.get("/h", headers={"user-agent": None, "X-Api": "other"}).json() == {
            "user-agent": None, "accept": "application/json", "x-api": "other"}


def test_options_star(client):
    res = client.options("*")
    assert res.request.target == "*"
    assert res.url == "http://testserver"
    assert res.status_code == 404


# -- the response object --------------------------------------------------------------------------


def test_text_follows_the_charset_and_json_errors_say_what_came(app, client):
    app.get("/latin", lambda req, res: res.type("text/plain; charset=iso-8859-1").send("café".encode("latin-1")))
    app.get("/html", lambda req, res: res.send("<p>é</p>"))
    assert client.get("/latin").text == "café"
    res = client.get("/html")
    assert res.text == "<p>é</p>"
    with pytest.raises(ValueError, match=r"GET http://testserver/html answered 200 with a body that is not JSON"):
        res.json()


def test_repeated_headers_are_kept(app, client):
    app.get("/c", lambda req, res: res.cookie("a", "1").cookie("b", "2").append("Vary", "X").append("Vary", "Y").end())
    res = client.get("/c")
    assert res.headers.get_all("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert res.headers["vary"] == "X, Y"
    assert res.ok and not res.is_redirect


def test_404_and_error_middleware(app, client):
    @app.get("/teapot")
    def teapot(req, res):
        raise HTTPError(418, "short and stout")

    @app.get("/bug")
    def bug(req, res):
        raise RuntimeError("secret detail")

    def json_errors(err, req, res, next_):
        res.status(getattr(err, "status", 500)).json({"error": str(err) if getattr(err, "status", 500) < 500 else "oops"})

    app.use(json_errors)
    missing = client.get("/nothing/here")
    assert missing.status_code == 404
    assert "Cannot GET /nothing/here" in missing.text
    assert client.get("/teapot").json() == {"error": "short and stout"}
    assert client.get("/bug").json() == {"error": "oops"}
    assert not client.get("/bug").ok


def test_unhandled_error_is_a_500_without_the_detail(app, client, caplog):
    app.get("/bug", lambda req, res: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="evserve"):
        res = client.get("/bug")
    assert res.status_code == 500
    assert "ZeroDivisionError" not in res.text
    assert any("ZeroDivisionError" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_head_has_no_body_but_states_the_length(app, client):
    app.get("/doc", lambda req, res: res.send("x" * 100))
    res = client.head("/doc")
    assert res.status_code == 200
    assert res.content == b""
    assert res.headers["content-length"] == "100"
    assert client.get("/doc").text == "x" * 100  # the connection is still in step


def test_304_for_a_fresh_etag(app, client):
    app.get("/doc", lambda req, res: res.send("hello"))
    first = client.get("/doc")
    etag = first.headers["etag"]
    second = client.get("/doc", headers={"If-None-Match": etag})
    assert second.status_code == 304
    assert second.content == b""
    assert "content-length" not in second.headers
    assert client.get("/doc", headers={"If-None-Match": '"other"'}).status_code == 200


def test_204_and_redirects_not_followed_by_default(app, client):
    app.delete("/item", lambda req, res: res.status(204).end())
    app.get("/old", lambda req, res: res.redirect("/new"))
    assert client.delete("/item").status_code == 204
    res = client.get("/old")
    assert res.status_code == 302
    assert res.headers["location"] == "/new"
    assert res.is_redirect


def test_redirects_followed(app):
    app.get("/new", lambda req, res: res.json({"method": req.method, "body": req.get("content-length")}))
    app.post("/new", lambda req, res: res.json({"method": req.method, "body": req.get("content-length")}))
    app.get("/old", lambda req, res: res.redirect("/new"))
    app.post("/form", lambda req, res: res.redirect("/new", 303))
    app.post("/keep", lambda req, res: res.redirect("/new", 307))
    app.get("/loop", lambda req, res: res.redirect("/loop"))
    with TestClient(app, follow_redirects=True) as client:
        res = client.get("/old")
        assert res.json() == {"method": "GET", "body": None}
        assert [r.status_code for r in res.history] == [302]
        assert res.url == "http://testserver/new"
        assert client.post("/form", data={"a": "1"}).json() == {"method": "GET", "body": None}
        assert client.post("/keep", data={"a": "1"}).json() == {"method": "POST", "body": "3"}
        assert client.get("/old", follow_redirects=False).status_code == 302
        with pytest.raises(ClientError, match="more than 20 redirects"):
            client.get("/loop")


# -- cookies --------------------------------------------------------------------------------------


def test_cookies_persist_overwrite_and_delete(app, client):
    app.get("/login", lambda req, res: res.cookie("session", "abc", http_only=True).cookie("theme", "dark").end())
    app.get("/rename", lambda req, res: res.cookie("session", "xyz").end())
    app.get("/logout", lambda req, res: res.clear_cookie("session").end())
    app.get("/expire", lambda req, res: res.cookie("theme", "x", max_age=0).end())
    app.get("/me", lambda req, res: res.json(req.cookies))

    assert client.get("/me").json() == {}
    client.get("/login")
    assert client.get("/me").json() == {"session": "abc", "theme": "dark"}
    assert dict(client.cookies) == {"session": "abc", "theme": "dark"}
    client.get("/rename")
    assert client.get("/me").json() == {"session": "xyz", "theme": "dark"}
    client.get("/logout")
    assert client.get("/me").json() == {"theme": "dark"}
    client.get("/expire")
    assert client.get("/me").json() == {}
    assert len(client.cookies) == 0


def test_cookie_values_travel_as_set(app, client):
    app.get("/set", lambda req, res: res.cookie("note", "a b;c").cookie("data", {"k": 1}).end())
    app.get("/me", lambda req, res: res.json(req.cookies))
    client.get("/set")
    assert client.cookies["note"] == "a%20b%3Bc"  # as the server encoded it
    assert client.get("/me").json() == {"note": "a b;c", "data": {"k": 1}}


def test_signed_cookies_round_trip():
    app = App(cookie_secret="s3cret")
    app.get("/set", lambda req, res: res.cookie("uid", "42", signed=True).end())
    app.get("/me", lambda req, res: res.json({"signed": req.signed_cookies, "plain": req.cookies}))
    with TestClient(app) as client:
        client.get("/set")
        assert client.get("/me").json() == {"signed": {"uid": "42"}, "plain": {}}
        client.cookies.set("uid", "s:42.forged")
        assert client.get("/me").json() == {"signed": {}, "plain": {}}


def test_cookie_path_scoping_and_per_request_cookies(app, client):
    app.get("/admin/login", lambda req, res: res.cookie("admin", "1", path="/admin").end())
    app.get("/*any", lambda req, res: res.json(req.cookies))
    client.get("/admin/login")
    assert client.get("/admin/page").json() == {"admin": "1"}
    assert client.get("/administrator").json() == {}
    assert client.get("/public").json() == {}
    assert client.get("/public", cookies={"one": "off"}).json() == {"one": "off"}
    assert client.get("/admin/x", cookies={"admin": "2"}).json() == {"admin": "2"}
    assert client.get("/public").json() == {}  # per-request cookies are not kept
    assert client.get("/admin/x", headers={"Cookie": "mine=1"}).json() == {"mine": "1"}


def test_initial_cookies_and_secure_cookies_need_https():
    app = App()
    app.get("/set", lambda req, res: res.cookie("s", "1", secure=True).end())
    app.get("/me", lambda req, res: res.json(req.cookies))
    with TestClient(app, cookies={"start": "yes"}) as client:
        client.get("/set")
        assert client.get("/me").json() == {"start": "yes"}
        assert client.get("https://testserver/me").json() == {"start": "yes", "s": "1"}
    with pytest.raises(ValueError, match="invalid character"):
        TestClient(App(), cookies={"bad": "a;b"})


@pytest.mark.parametrize(
    ("set_cookie", "request_path", "sent_to", "expected"),
    [
        ("a=1", "/", "/", [("a", "1")]),
        ("a=1", "/docs/page", "/docs/other", [("a", "1")]),  # default path: the directory
        ("a=1", "/docs/page", "/", []),
        ("a=1; Path=/x", "/", "/x/y", [("a", "1")]),
        ("a=1; Path=/x", "/", "/xy", []),
        ("a=1; Path=relative", "/d/p", "/d/q", [("a", "1")]),  # a bad Path is ignored
        ("a=1; Max-Age=0", "/", "/", []),
        ("a=1; Max-Age=-5", "/", "/", []),
        ("a=1; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "/", "/", [("a", "1")]),
        ("a=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "/", "/", []),
        ("a=1; Expires=Fri, 01 Jan 2100 00:00:00 GMT", "/", "/", [("a", "1")]),
        ("a=1; Expires=garbage", "/", "/", [("a", "1")]),
        ("a=1; Domain=other.test", "/", "/", []),  # for another site: refused
        ("a=1; Domain=.TestServer", "/", "/", [("a", "1")]),
        ("novalue", "/", "/", []),
        ("=1", "/", "/", []),
        (" a = 1 ; HttpOnly", "/", "/", [("a", "1")]),
    ],
)
def test_jar_rules(set_cookie, request_path, sent_to, expected):
    jar = CookieJar("testserver", clock=lambda: 1_700_000_000.0)
    jar.receive(set_cookie, "testserver", request_path)
    assert jar.pairs_for("testserver", sent_to, secure=False) == expected


def test_jar_domain_cookies_reach_subdomains_and_host_only_do_not():
    jar = CookieJar()
    jar.receive("wide=1; Domain=example.org", "www.example.org", "/")
    jar.receive("narrow=1", "www.example.org", "/")
    assert jar.pairs_for("api.example.org", "/", False) == [("wide", "1")]
    assert jar.pairs_for("www.example.org", "/", False) == [("wide", "1"), ("narrow", "1")]
    jar.delete("wide")
    assert jar.pairs_for("www.example.org", "/", False) == [("narrow", "1")]
    jar.clear()
    assert not jar


def test_jar_expiry_by_the_clock():
    now = [1000.0]
    jar = CookieJar(clock=lambda: now[0])
    jar.receive("a=1; Max-Age=10", "h", "/")
    assert jar["a"] == "1"
    now[0] += 10
    assert "a" not in jar


# -- streaming, async, large bodies ---------------------------------------------------------------


def test_streamed_response_with_write(app, client):
    @app.get("/s")
    def s(req, res):
        res.type("text/plain")
        for i in range(3):
            res.write(f"part{i};")
        res.end("done")

    res = client.get("/s")
    assert res.headers["transfer-encoding"] == "chunked"
    assert res.text == "part0;part1;part2;done"
    assert res.raw.endswith(b"4\r\ndone\r\n0\r\n\r\n")


def test_stream_past_the_high_water_mark_meets_backpressure(app):
    unread = []

    def chunks(transport):
        for i in range(200):
            unread.append(transport.buffer_size())
            yield b"%05d" % i + b"x" * 995

    app.get("/big", lambda req, res: res.stream(chunks(req.connection.transport)))
    with TestClient(app, write_buffer_size=8192) as client:
        res = client.get("/big")
    assert len(res.content) == 200_000
    assert res.content[:5] == b"00000" and res.content[-1000:-995] == b"00199"
    # The producer is asked for more only while the client keeps up: what waits unread stays
    # within the high-water mark and a chunk.
    assert len(unread) == 200
    assert max(unread) <= 8192 + 1100
    assert unread.count(0) > 1


def test_async_handlers_sleep_and_threads(app, client):
    @app.get("/slow")
    async def slow(req, res):
        await evserve.sleep(0.01)
        name = await evserve.to_thread(lambda: threading.current_thread().name)
        res.json({"thread": name.startswith("evserve-worker")})

    assert client.get("/slow").json() == {"thread": True}


def test_answer_from_a_timer_and_from_another_thread(app, client):
    app.get("/timer", lambda req, res: req.reactor.call_later(0.01, res.send, "late"))

    def threaded(req, res):
        reactor = req.reactor
        threading.Thread(target=lambda: reactor.call_soon_threadsafe(res.send, "from a thread")).start()

    app.get("/thread", threaded)
    assert client.get("/timer").text == "late"
    assert client.get("/thread").text == "from a thread"


def test_async_stream_with_drain(app):
    @app.get("/a")
    async def gen(req, res):
        for _ in range(50):
            if not res.write(b"y" * 1000):
                await res.drain()
        res.end()

    with TestClient(app, write_buffer_size=4096) as client:
        assert client.get("/a").content == b"y" * 50_000


def test_large_request_and_response_bodies(app):
    app.use(body_parser.raw(limit="8mb"))
    app.post("/echo", lambda req, res: res.send(req.body))
    app.get("/big", lambda req, res: res.send(b"z" * 3_000_000))
    payload = bytes(range(256)) * 12_000  # 3 MB
    with TestClient(app, max_body_size=8 << 20) as client:
        res = client.post("/echo", data=payload, headers={"Content-Type": "application/octet-stream"})
        assert res.content == payload
        assert len(client.get("/big").content) == 3_000_000


def test_body_over_max_body_size_is_413_and_the_connection_closes(app):
    app.post("/up", lambda req, res: res.send("never"))
    with TestClient(app, max_body_size=1000) as client:
        res = client.post("/up", data=b"x" * 5000)
        assert res.status_code == 413
        assert res.headers["connection"] == "close"
        assert client.get("/missing").status_code == 404  # on a new connection


def test_body_parser_limit_and_malformed_json(app, client):
    app.use(body_parser.json(limit=10))
    app.post("/j", lambda req, res: res.json(req.body))
    assert client.post("/j", json=[1]).json() == [1]
    assert client.post("/j", json=["x" * 20]).status_code == 413
    assert client.post("/j", data="{bad", headers={"Content-Type": "application/json"}).status_code == 400


def test_gzip_request_body_is_inflated_by_the_parser(app, client):
    app.use(body_parser.json())
    app.post("/j", lambda req, res: res.json(req.body))
    res = client.post("/j", data=gzip.compress(b'{"z": 1}'),
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert res.json() == {"z": 1}


# -- the connection: keep-alive, close, deadlines -------------------------------------------------


def test_keep_alive_reuses_one_connection_and_close_opens_another(app, client):
    app.get("/port", lambda req, res: res.json(req.connection.peer[1]))
    app.get("/bye", lambda req, res: res.set("Connection", "close").json(req.connection.peer[1]))
    first = client.get("/port").json()
    assert client.get("/port").json() == first
    assert client.get("/bye").json() == first
    second = client.get("/port").json()
    assert second == first + 1
    assert client.get("/port", headers={"Connection": "close"}).json() == second
    assert client.get("/port").json() == second + 1


def test_an_idle_connection_past_keepalive_timeout_is_replaced(app):
    app.get("/port", lambda req, res: res.json(req.connection.peer[1]))
    with TestClient(app, keepalive_timeout=0.02) as client:
        first = client.get("/port").json()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and client.reactor.time() < client._session.conn.deadline:
            time.sleep(0.005)  # pacing: the keep-alive deadline must pass
        assert client.get("/port").json() == first + 1


def test_handler_timeout_answers_503(app, caplog):
    app.get("/never", lambda req, res: None)
    with TestClient(app, handler_timeout=0.05) as client, caplog.at_level(logging.ERROR, logger="evserve"):
        res = client.get("/never")
        assert res.status_code == 503
        assert res.headers["connection"] == "close"
        assert client.get("/never").status_code == 503
    assert "was not answered within handler_timeout" in caplog.text


def test_a_handler_that_never_answers_gives_a_clear_timeout(app):
    closed = []

    @app.get("/never")
    def never(req, res):
        res.on_finish(lambda: closed.append(req.aborted))

    app.get("/ok", lambda req, res: res.send("ok"))
    with TestClient(app, timeout=0.1) as client:
        with pytest.raises(ResponseTimeout, match=r"GET /never: no complete response within 0.1 s: "
                                                  r"the handler has not started a response"):
            client.get("/never")
        assert closed == [True]  # the client gave up: the server saw it go
        assert client.get("/ok").text == "ok"


def test_a_response_that_never_ends_gives_a_clear_timeout(app, client):
    app.get("/half", lambda req, res: res.write("started"))
    with pytest.raises(ResponseTimeout, match=r"the response started \(\d+ bytes received\) but has not ended"):
        client.get("/half", timeout=0.05)


def test_an_endless_stream_meets_the_timeout(app, client):
    app.get("/endless", lambda req, res: res.stream(itertools.repeat(b"e" * 1000)))
    with pytest.raises(ResponseTimeout, match=r"GET /endless: .* has not ended"):
        client.get("/endless", timeout=0.05)


def test_error_after_the_response_started_is_a_disconnect(app, client):
    @app.get("/broken")
    def broken(req, res):
        def chunks():
            yield b"first"
            raise RuntimeError("producer failed")

        res.stream(chunks())

    app.get("/ok", lambda req, res: res.send("ok"))
    with pytest.raises(ServerDisconnected, match=r"GET /broken: the server reset the connection before a "
                                                 r"complete response .* the reset dropped \d+ more"):
        client.get("/broken")
    assert client.get("/ok").text == "ok"


def test_a_closed_client_refuses_requests(app):
    client = TestClient(app)
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.get("/")


# -- other handlers -------------------------------------------------------------------------------


def test_plain_exchange_handler():
    def handler(exchange):
        head = exchange.head
        exchange.respond(200, [("Content-Type", "text/plain")],
                         f"{head.method} {head.target} {len(exchange.body)}".encode())

    with TestClient(handler) as client:
        res = client.post("/x?y=1", data=b"12345")
        assert res.text == "POST /x?y=1 5"
        assert res.headers["content-length"] == "13"


def test_exchange_handler_with_interim_and_stream():
    def handler(exchange):
        exchange.inform(103, [("Link", "</style.css>; rel=preload")])
        exchange.start_response(200, [("Content-Type", "text/plain")])
        exchange.write(b"a")
        exchange.end(b"b")

    with TestClient(handler) as client:
        res = client.get("/")
        assert res.text == "ab"
        assert [(i.status_code, i.headers["link"]) for i in res.interim] == [(103, "</style.css>; rel=preload")]


def test_express_function_and_router_and_app_reference():
    def plain(req, res):
        res.json({"app": req.app is None})

    with TestClient(plain) as client:
        assert client.get("/").json() == {"app": True}
    app = App()
    api = Router()
    api.get("/items/:id", lambda req, res: res.json({"id": req.params["id"], "base": req.base_url,
                                                      "is_app": req.app is app}))
    app.use("/api", api)
    with TestClient(app) as client:
        assert client.get("/api/items/7").json() == {"id": "7", "base": "/api", "is_app": True}


def test_expect_continue_is_answered_and_recorded(app, client):
    app.use(body_parser.text())
    app.post("/t", lambda req, res: res.send(req.body))
    res = client.post("/t", data="hi", headers={"Expect": "100-continue", "Content-Type": "text/plain"})
    assert res.text == "hi"
    assert [i.status_code for i in res.interim] == [100]


# -- raw bytes ------------------------------------------------------------------------------------


def test_raw_returns_what_the_connection_wrote(app, client):
    app.get("/", lambda req, res: res.set("Date", "fixed").send("hi"))
    out = client.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    one = b'HTTP/1.1 200 OK\r\nDate: fixed\r\nContent-Type: text/html; charset=utf-8\r\n'
    assert out.count(one) == 2
    assert out.endswith(b"\r\n\r\nhi")


def test_raw_malformed_request_gets_400_and_close(client):
    out = client.raw(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close\r\n" in out


def test_raw_incomplete_request_meets_the_header_timeout():
    with TestClient(App(), header_timeout=0.02) as client:
        assert client.raw(b"GET / HTTP/1.1\r\n").startswith(b"HTTP/1.1 408 ")
        with pytest.raises(ResponseTimeout, match=r"raw request b'GET / HTTP/1.1\\r\\n': not answered within 0.001 s: the server is still reading the request"):
            client.raw(b"GET / HTTP/1.1\r\n", timeout=0.001)


def test_raw_http10_stream_is_close_delimited(app, client):
    app.get("/s", lambda req, res: (res.write("a"), res.end("b")))
    out = client.raw(b"GET /s HTTP/1.0\r\n\r\n")
    assert out.endswith(b"\r\n\r\nab")
    assert b"Transfer-Encoding" not in out


def test_a_malformed_response_is_refused():
    def handler(exchange):
        exchange.connection.transport.write(b"HTTP/1.1 200 OK\r\nBad Line\r\n\r\n")

    with TestClient(handler, timeout=1) as client, pytest.raises(
            MalformedResponse, match=r"GET /: invalid header line b'Bad Line'"):
        client.get("/")


# -- the response reader --------------------------------------------------------------------------


def read_all(data: bytes, method: str = "GET", *, eof: bool = True, pieces: int = 1):
    reader = ResponseReader()
    step = max(1, -(-len(data) // pieces))
    out = []
    for start in range(0, len(data), step):
        reader.feed(data[start:start + step])
        while (res := reader.next_response(method)) is not None:
            out.append(res)
    while eof and (res := reader.next_response(method, eof=True)) is not None:
        out.append(res)
        if res.close_delimited:
            break
    return out


@pytest.mark.parametrize("pieces", [1, 3, 1000])
@pytest.mark.parametrize(
    ("data", "method", "body", "extra"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "GET", b"abc", {}),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "HEAD", b"", {}),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n1\r\nd\r\n0\r\nX-T: 1\r\n\r\n",
         "GET", b"abcd", {"trailers": [("X-T", "1")]}),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil close", "GET", b"until close", {"close_delimited": True}),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\n"
         b"HTTP/1.1 204 No Content\r\n\r\n", "POST", b"", {"interim": [(100, "Continue", []),
                                                                        (103, "Early Hints", [("Link", "<a>")])]}),
        (b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", "GET", b"", {}),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", b"", {"http_version": "1.0"}),
        (b"HTTP/1.1 599 \r\nContent-Length: 1\r\n\r\nx", "GET", b"x", {"reason": ""}),
    ],
)
def test_reader_frames(data, method, body, extra, pieces):
    (res,) = read_all(data, method, pieces=pieces)
    assert res.body == body
    assert res.raw == data
    for name, value in extra.items():
        assert getattr(res, name) == value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "bare CR or LF"),
        (b"HTTP/1.1 200\r\n\r\n", "invalid status line"),
        (b"HTTP/2 200 OK\r\n\r\n", "invalid status line"),
        (b"HTTP/1.1 200 OK\r\nName : v\r\n\r\n", "invalid header line"),
        (b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n", "obs-fold"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "both Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk-size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", "not followed by CRLF"),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", "204 response with Content-Length"),
        (b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n", "100 response with Transfer-Encoding"),
    ],
)
def test_reader_refuses(data, message):
    with pytest.raises(MalformedResponse, match=message):
        read_all(data)


def test_reader_same_content_length_twice_is_one():
    (res,) = read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
    assert res.body == b"ok"


def test_reader_waits_for_more_and_keeps_the_rest():
    reader = ResponseReader()
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
    assert reader.next_response("GET") is None
    assert reader.next_response("GET", eof=True) is None  # not close-delimited: incomplete
    reader.feed(b"cdHTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nframes")
    assert reader.next_response("GET").body == b"abcd"
    assert reader.next_response("GET").status == 101
    assert reader.take_rest() == b"frames"


def test_state_of_the_connection_after_a_response(app, client):
    app.get("/", lambda req, res: res.send("x"))
    client.get("/")
    assert client._session.conn.state is State.IDLE
