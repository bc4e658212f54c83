"""A careless handler: HEAD on streaming routes, values returned instead of sent, requests left
unanswered (handler_timeout), and redirects "back" to a Referer from another origin."""

from __future__ import annotations

import inspect
import itertools
import logging

import pytest
import requests

import evserve
from evserve import App, logger

from .conftest import DEADLINE, RawClient, wait_idle, wait_until

# -- HEAD on routes that stream: a head, no body, the generator closed, the reactor free ----------


def streaming_app(closed: list[str], pulled: list[int]) -> App:
    app = App()

    @app.get("/gen")
    def gen(req, res):
        def endless():
            try:
                for i in itertools.count():
                    pulled.append(i)
                    yield b"x" * 1024
            finally:
                closed.append("gen")

        closed.append(endless())  # closed unstarted: its state says so (no finally runs)
        res.stream(closed[-1])

    @app.get("/write-loop")
    def write_loop(req, res):
        res.type("text")

        def tick():
            # The loop of the docs: write while the transport takes it, then wait for a drain.
            while res.write("y" * 1024):
                pulled.append(1)
            res.on_drain(tick)

        tick()

    @app.get("/flushed")
    def flushed(req, res):
        res.set("Content-Type", "text/event-stream")
        res.flush_headers()

        def tick():
            if not res.finished:
                res.write("data: 1\n\n")
                req.reactor.call_later(0.01, tick)
            else:
                closed.append("flushed")

        tick()

    @app.get("/async-loop")
    async def async_loop(req, res):
        try:
            while True:
                if not res.write("z" * 1024):
                    await res.drain()
        finally:
            closed.append("async")

    @app.get("/no-content")
    def no_content(req, res):
        res.status(204)

        def endless():
            try:
                while True:
                    pulled.append(2)
                    yield b"never"
            finally:
                closed.append("204")

        closed.append(endless())
        res.stream(closed[-1])

    @app.get("/ok")
    def ok(req, res):
        res.send("ok")

    return app


@pytest.mark.parametrize("path", ["/gen", "/write-loop", "/flushed", "/async-loop", "/no-content"])
def test_head_on_a_streaming_route_is_a_head_and_frees_the_reactor(path):
    closed: list[str] = []
    pulled: list[int] = []
    app = streaming_app(closed, pulled)
    with app.run_in_thread(write_buffer_size=16384) as server, RawClient(server) as client:
        # Twice on one connection: the first HEAD ended cleanly and kept the connection.
        for _ in range(2):
            client.request("HEAD", path)
            res = client.read_response("HEAD")
            assert res.status in (200, 204)
            assert res.body == b""
            assert res.header("Transfer-Encoding") is None or res.status == 200
        client.request("GET", "/ok")
        assert client.read_response().text == "ok"
        assert requests.get(server.url + "/ok", timeout=DEADLINE).text == "ok"
        if path in ("/gen", "/no-content"):
            assert [inspect.getgeneratorstate(g) for g in closed] == [inspect.GEN_CLOSED] * 2
            assert pulled == []  # never pulled: nothing would carry its chunks
        if path in ("/flushed", "/async-loop"):
            wait_until(lambda: len(closed) == 2)
        assert not client.has_data(0.05)  # no stray body bytes after the heads


def test_get_on_the_same_streaming_routes_still_streams():
    app = streaming_app([], [])
    with app.run_in_thread() as server, RawClient(server) as client:
        client.request("GET", "/flushed")
        assert b"data: 1" in client.read_until(b"data: 1\n\n")


def test_a_generator_is_closed_when_the_client_goes_away_mid_stream():
    closed: list[str] = []
    pulled: list[int] = []
    app = streaming_app(closed, pulled)
    with app.run_in_thread(write_buffer_size=16384) as server:
        client = RawClient(server, rcvbuf=4096)
        client.request("GET", "/gen")
        client.read_until(b"xxxx")
        client.close_with_reset()
        wait_until(lambda: closed[1:] == ["gen"])  # pulled, then closed: its finally ran
        wait_idle(server)


def test_an_async_write_loop_ends_when_the_client_goes_away(caplog):
    closed: list[str] = []
    app = streaming_app(closed, [])
    with caplog.at_level(logging.DEBUG, logger="evserve"), app.run_in_thread(write_buffer_size=16384) as server:
        client = RawClient(server, rcvbuf=4096)
        client.request("GET", "/async-loop")
        client.read_until(b"zzzz")
        client.close_with_reset()
        wait_until(lambda: closed == ["async"])
        assert requests.get(server.url + "/ok", timeout=DEADLINE).text == "ok"
    # How a streaming loop is meant to end: not reported as the handler's error.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_head_with_res_write_then_end_in_one_handler():
    app = App()

    @app.get("/")
    def handler(req, res):
        assert res.write("a") is (req.method != "HEAD")
        res.write("b")
        res.end("c")
        res.end()  # a second end after a HEAD ended the response is quiet too

    with app.run_in_thread() as server:
        head = requests.head(server.url + "/", timeout=DEADLINE)
        assert (head.status_code, head.content) == (200, b"")
        assert requests.get(server.url + "/", timeout=DEADLINE).text == "abc"


# -- a handler that returns a value instead of answering -----------------------------------------


def test_a_sync_handler_returning_a_value_is_logged_as_a_mistake(caplog):
    app = App()
    app.get("/dict", lambda req, res: {"flask": "habit"})
    app.get("/str", lambda req, res: "hello")
    app.get("/chain", lambda req, res: res.status(201))
    app.get("/timer", lambda req, res: req.reactor.call_later(0.01, res.send, "late"))
    app.get("/answered", lambda req, res: res.send("sent") or "ignored")

    def middleware(req, res, next):
        return ["not", "sent"]

    app.use("/mw", middleware)

    @app.get("/async")
    async def async_dict(req, res):
        await evserve.sleep(0)
        return {"async": True}

    with caplog.at_level(logging.ERROR, logger="evserve"), \
            app.run_in_thread(handler_timeout=0.2) as server:
        for path in ("/dict", "/str", "/chain", "/mw/x", "/async"):
            assert requests.get(server.url + path, timeout=DEADLINE).status_code == 503
        assert requests.get(server.url + "/timer", timeout=DEADLINE).text == "late"
        assert requests.get(server.url + "/answered", timeout=DEADLINE).text == "sent"
    mistakes = [r.getMessage() for r in caplog.records if "without answering" in r.getMessage()]
    assert len(mistakes) == 5, mistakes
    assert "{'flask': 'habit'}" in mistakes[0] and "res.json" in mistakes[0]
    assert any("{'async': True}" in m for m in mistakes)


# -- handler_timeout ---------------------------------------------------------------------------------


def test_handler_timeout_answers_503_and_logs(caplog):
    app = App()
    app.use(logger())
    held = []
    app.get("/never", lambda req, res: held.append(res))
    app.get("/slow-but-started", lambda req, res: (res.write("started"), held.append(res)))
    app.get("/ok", lambda req, res: res.send("ok"))
    with caplog.at_level(logging.INFO, logger="evserve"), \
            app.run_in_thread(handler_timeout=0.2) as server:
        res = requests.get(server.url + "/never", timeout=DEADLINE)
        assert res.status_code == 503
        # The handler answers late: dropped quietly, nothing else on the wire.
        server.reactor.call_soon_threadsafe(held[0].send, "too late")
        # A response already started is not cut by the handler timeout.
        with RawClient(server) as client:
            client.request("GET", "/slow-but-started")
            assert client.read_until(b"started\r\n").startswith(b"HTTP/1.1 200 OK")
            assert not client.has_data(0.5)  # well past handler_timeout: not cut, not closed
            server.reactor.call_soon_threadsafe(held[1].end)
            assert client.read_until(b"0\r\n\r\n") == b"0\r\n\r\n"
        assert requests.get(server.url + "/ok", timeout=DEADLINE).text == "ok"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("GET /never" in m and "handler_timeout" in m for m in errors), errors
    access = [r.getMessage() for r in caplog.records if r.name == "evserve.access"]
    assert any(line.startswith("GET /never 503") for line in access), access


def test_handler_timeout_is_off_by_default():
    app = App()
    held = []
    app.get("/", lambda req, res: held.append(res))
    with app.run_in_thread() as server, RawClient(server) as client:
        assert server.config.handler_timeout is None
        client.request("GET", "/")
        assert not client.has_data(0.3)
        server.reactor.call_soon_threadsafe(held[0].send, "answered")
        assert client.read_response().text == "answered"


@pytest.mark.parametrize("value", [0, -1, float("nan"), "1", True])
def test_handler_timeout_is_validated(value):
    with pytest.raises((TypeError, ValueError), match="handler_timeout"):
        evserve.Config(handler_timeout=value)


# -- redirect("back") only to the same origin ----------------------------------------------------


@pytest.mark.parametrize(("referer", "expected"), [
    (None, "/"),
    ("", "/"),
    ("/here?x=1", "/here?x=1"),
    ("page", "page"),
    ("http://test/from", "http://test/from"),
    ("HTTP://TEST/from", "HTTP://TEST/from"),
    ("http://test:80/from", "http://test:80/from"),
    ("http://evil.example/", "/"),
    ("https://test/from", "/"),  # another scheme is another origin
    ("http://test:8080/", "/"),
    ("//evil.example/x", "/"),
    ("/\\evil.example/x", "/"),
    ("\\\\evil.example", "/"),
    ("\t//evil.example", "/"),
    ("/\t/evil.example", "/"),
    ("http://test@evil.example/", "/"),
    ("http://evil.example@test/", "/"),
    ("javascript:alert(1)", "/"),
    ("data:text/html,x", "/"),
    ("http:evil.example", "/"),
    ("http://[::1/", "/"),
    # Checked as a browser reads it ("\\" is "/") and sent in that form: percent-encoding the
    # raw text would turn "\\@" into "%5C@" and make evil.example the host.
    ("http://test\\@evil.example/", "http://test/@evil.example/"),
    ("//test\\@evil.example/", "//test/@evil.example/"),
    ("/a\\b", "/a/b"),
    ("http://test:99999/", "/"),
])
def test_back_uses_only_a_same_origin_referer(referer, expected):
    app = App()
    app.get("/go", lambda req, res: res.redirect("back"))
    app.get("/loc", lambda req, res: res.location("back").end())
    with app.run_in_thread() as server, RawClient(server) as client:
        headers = {} if referer is None else {"Referer": referer}
        for path in ("/go", "/loc"):
            client.request("GET", path, headers=headers)
            res = client.read_response()
            assert res.header("Location") == expected.replace("\\", "%5C")


def test_back_follows_the_trusted_proxy_origin():
    app = App(trust_proxy=True)
    app.get("/go", lambda req, res: res.redirect("back"))
    with app.run_in_thread() as server, RawClient(server) as client:
        client.request("GET", "/go", headers={
            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example",
            "Referer": "https://shop.example/cart"})
        assert client.read_response().header("Location") == "https://shop.example/cart"


def test_head_on_an_async_loop_that_ends_before_suspending_is_quiet(caplog):
    app = App()

    @app.get("/loop")
    async def loop(req, res):
        while True:  # for a HEAD, write() and drain() refuse at once: no await suspends
            res.write("x")
            await res.drain()

    with caplog.at_level(logging.DEBUG, logger="evserve"), app.run_in_thread() as server:
        for _ in range(2):
            res = requests.head(server.url + "/loop", timeout=DEADLINE)
            assert (res.status_code, res.content) == (200, b"")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("value", [5, 10**10, 1.5, ["a"], {"a": 1}])
def test_write_and_end_take_only_text_or_bytes(value):
    app = App()
    outcomes = []

    @app.get("/write")
    def write(req, res):
        try:
            res.write(value)
        except TypeError as exc:
            outcomes.append(str(exc))
            raise

    @app.get("/end")
    def end(req, res):
        res.end(value)

    with app.run_in_thread() as server:
        assert requests.get(server.url + "/write", timeout=DEADLINE).status_code == 500
        assert requests.get(server.url + "/end", timeout=DEADLINE).status_code == 500
    assert "write() takes str or bytes" in outcomes[0]


def test_a_failing_body_iterable_is_logged(caplog):
    app = App()

    def body(fail_first):
        if fail_first:
            raise RuntimeError("boom before anything")
        yield b"a"
        raise RuntimeError("boom mid-stream")

    app.get("/first", lambda req, res: res.stream(body(True)))
    app.get("/later", lambda req, res: res.stream(body(False)))
    with caplog.at_level(logging.ERROR, logger="evserve"), app.run_in_thread() as server:
        # Nothing sent yet: the handler's error, so a 500 page.
        assert requests.get(server.url + "/first", timeout=DEADLINE).status_code == 500
        with RawClient(server) as client:
            client.request("GET", "/later")
            assert client.wait_closed()  # the head was sent: the only honest end is a cut
    messages = [r.getMessage() + str(r.exc_info) for r in caplog.records]
    assert any("boom mid-stream" in m for m in messages), messages


@pytest.mark.parametrize("status", [204, 304])
def test_a_streamed_204_or_304_describes_no_content(status):
    app = App()

    @app.get("/")
    def handler(req, res):
        res.status(status).type("json")
        res.write("ignored")
        res.end()

    with app.run_in_thread() as server, RawClient(server) as client:
        client.request("GET", "/")
        res = client.read_response()
        assert res.status == status and res.body == b""
        assert res.header("Content-Type") is None and res.header("Transfer-Encoding") is None
