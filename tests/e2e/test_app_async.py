"""End to end: handlers that finish later (SPEC sections 2 and 8): ``async def`` handlers with
``evserve.sleep`` and ``evserve.to_thread``, timers through ``req.reactor.call_later``, other
threads through ``req.reactor.call_soon_threadsafe``, and ``next`` called late. Over real
sockets; every wait is an event or a poll with a deadline, never a bare sleep.
"""

from __future__ import annotations

import logging
import threading

import requests

import evserve
from evserve import App, Future, HTTPError

from .conftest import DEADLINE, RawClient, on_reactor, wait_until


def fetch(server, target="/", method="GET"):
    with RawClient(server) as client:
        client.request(method, target)
        return client.read_response(method)


# -- async def handlers ------------------------------------------------------------------------


def test_async_handler_with_sleep():
    app = App()

    @app.get("/")
    async def handler(req, res):
        await evserve.sleep(0.001)
        value = await evserve.sleep(0, result="slept")
        res.send(value)

    with app.run_in_thread() as server:
        assert requests.get(server.url + "/").text == "slept"


def test_async_handler_with_to_thread():
    app = App()
    threads = []

    def blocking(a, b):
        threads.append(threading.current_thread().name)
        return a + b

    @app.get("/")
    async def handler(req, res):
        total = await evserve.to_thread(blocking, 40, 2)
        res.json({"total": total, "on_reactor": req.reactor.in_reactor_thread()})

    with app.run_in_thread() as server:
        assert requests.get(server.url + "/").json() == {"total": 42, "on_reactor": True}
    assert threads and threads[0].startswith("evserve-worker")


def test_to_thread_exceptions_come_back_into_the_coroutine():
    app = App()

    def fails():
        raise LookupError("in a thread")

    @app.get("/caught")
    async def caught(req, res):
        try:
            await evserve.to_thread(fails)
        except LookupError as exc:
            res.send("caught " + str(exc))

    @app.get("/uncaught")
    async def uncaught(req, res):
        await evserve.to_thread(fails)

    app.use(lambda err, req, res, next: res.status(500).send(f"handler got {type(err).__name__}"))
    with app.run_in_thread() as server:
        assert requests.get(server.url + "/caught").text == "caught in a thread"
        assert requests.get(server.url + "/uncaught").text == "handler got LookupError"


def test_async_exceptions_before_and_after_the_first_await_become_next_err():
    app = App()

    @app.get("/before")
    async def before(req, res):
        raise HTTPError(409, "before await")

    @app.get("/after")
    async def after(req, res):
        await evserve.sleep(0)
        raise HTTPError(410, "after await")

    with app.run_in_thread() as server:
        r = requests.get(server.url + "/before")
        assert (r.status_code, r.text) == (409, "before await")
        r = requests.get(server.url + "/after")
        assert (r.status_code, r.text) == (410, "after await")


def test_async_unhandled_error_is_a_logged_500(caplog):
    app = App()

    @app.get("/")
    async def handler(req, res):
        await evserve.sleep(0)
        raise RuntimeError("async secret")

    with caplog.at_level(logging.ERROR, logger="evserve"), app.run_in_thread() as server:
        res = fetch(server)
    assert (res.status, res.text) == (500, "Internal Server Error")
    assert b"async secret" not in res.raw
    records = [r for r in caplog.records if r.name == "evserve" and r.exc_info]
    assert [str(r.exc_info[1]) for r in records] == ["async secret"]


def test_async_middleware_and_error_middleware():
    app = App()

    async def load_user(req, res, next):
        req.user = await evserve.to_thread(lambda: "tobi")
        next()

    async def fail_late(req, res, next):
        await evserve.sleep(0)
        next(ValueError("late " + req.user))

    async def on_error(err, req, res, next):
        await evserve.sleep(0)
        res.status(400).send(f"async handler saw {err}")

    app.use(load_user)
    app.get("/user", lambda req, res: res.send(req.user))
    app.get("/fail", fail_late)
    app.use(on_error)
    with app.run_in_thread() as server:
        assert requests.get(server.url + "/user").text == "tobi"
        r = requests.get(server.url + "/fail")
        assert (r.status_code, r.text) == (400, "async handler saw late tobi")


def test_async_callable_object_and_next_route_from_async():
    class Handler:
        async def __call__(self, req, res, next):
            await evserve.sleep(0)
            next("route")

    app = App()
    app.get("/", Handler(), lambda req, res: res.send("skipped"))
    app.get("/", lambda req, res: res.send("next route"))
    with app.run_in_thread() as server:
        assert requests.get(server.url + "/").text == "next route"


def test_awaiting_something_foreign_is_a_type_error_inside_the_coroutine():
    class Foreign:
        def __await__(self):
            yield "an object of another event loop"

    app = App()

    @app.get("/")
    async def handler(req, res):
        try:
            await Foreign()
        except TypeError as exc:
            res.send("refused: " + repr("evserve cannot await" in str(exc)))
        else:
            res.send("not refused")

    with app.run_in_thread() as server:
        assert requests.get(server.url + "/").text == "refused: True"


def test_an_async_handler_does_not_block_other_requests():
    app = App()
    waiting = []

    @app.get("/wait")
    async def wait(req, res):
        future = Future()
        waiting.append(future)
        res.send("released by " + await future)

    @app.get("/release")
    def release(req, res):
        waiting[0].set_result("another request")
        res.send("released")

    with app.run_in_thread() as server, RawClient(server) as first:
        first.request("GET", "/wait")
        wait_until(lambda: waiting)
        assert requests.get(server.url + "/release").text == "released"
        assert first.read_response().text == "released by another request"


def test_to_thread_does_not_block_the_reactor():
    app = App()
    gate = threading.Event()

    @app.get("/blocked")
    async def blocked(req, res):
        opened = await evserve.to_thread(gate.wait, DEADLINE)
        res.send(f"gate opened: {opened}")

    @app.get("/open")
    def open_gate(req, res):
        gate.set()
        res.send("opened")

    with app.run_in_thread() as server, RawClient(server) as first:
        first.request("GET", "/blocked")
        assert requests.get(server.url + "/open").text == "opened"
        assert first.read_response().text == "gate opened: True"


# -- finishing later from timers and threads ---------------------------------------------------


def test_finish_from_a_timer():
    app = App()
    app.get("/", lambda req, res: req.reactor.call_later(0.005, lambda: res.status(202).send("from a timer")))
    with app.run_in_thread() as server:
        r = requests.get(server.url + "/")
    assert (r.status_code, r.text) == (202, "from a timer")


def test_finish_from_another_thread():
    app = App()
    seen = {}

    def handler(req, res):
        def work():
            seen["thread"] = threading.current_thread().name
            req.reactor.call_soon_threadsafe(res.json, {"from": "thread"})

        threading.Thread(target=work, name="worker-x").start()

    app.get("/", handler)
    with app.run_in_thread() as server:
        assert requests.get(server.url + "/").json() == {"from": "thread"}
        assert seen["thread"] == "worker-x"


def test_req_reactor_is_the_servers():
    app = App()
    seen = []
    app.get("/", lambda req, res: (seen.append(req.reactor), res.send("ok")))
    with app.run_in_thread() as server:
        requests.get(server.url + "/")
        assert seen == [server.reactor]


def test_next_called_later_from_a_timer():
    app = App()

    def later(req, res, next):
        req.reactor.call_later(0.001, next)

    def later_error(req, res, next):
        req.reactor.call_later(0.001, next, HTTPError(423, "locked later"))

    app.use(later)
    app.get("/", later, lambda req, res: res.send("after two timers"))
    app.get("/err", later_error)
    app.get("/route", lambda req, res, next: req.reactor.call_later(0.001, next, "route"),
            lambda req, res: res.send("skipped"))
    app.get("/route", lambda req, res: res.send("next route, later"))
    with app.run_in_thread() as server:
        assert requests.get(server.url + "/").text == "after two timers"
        r = requests.get(server.url + "/err")
        assert (r.status_code, r.text) == (423, "locked later")
        assert requests.get(server.url + "/route").text == "next route, later"


def test_late_next_in_a_mount_restores_urls():
    app = App()
    sub = App()
    sub.use(lambda req, res, next: req.reactor.call_later(0.001, next))
    app.use("/sub", sub)
    app.use(lambda req, res: res.send(f"{req.url} {req.base_url!r} {req.app is app}"))
    with app.run_in_thread() as server:
        assert requests.get(server.url + "/sub/x?y=1").text == "/sub/x?y=1 '' True"


def test_late_404_and_late_error_from_a_thread():
    app = App()

    def to_404(req, res, next):
        threading.Thread(target=req.reactor.call_soon_threadsafe, args=(next,)).start()

    def to_error(req, res, next):
        threading.Thread(target=req.reactor.call_soon_threadsafe,
                         args=(next, HTTPError(400, "bad, from a thread"))).start()

    app.get("/404", to_404)
    app.get("/err", to_error)
    with app.run_in_thread() as server:
        r = requests.get(server.url + "/404")
        assert (r.status_code, r.text) == (404, "Cannot GET /404")
        r = requests.get(server.url + "/err")
        assert (r.status_code, r.text) == (400, "bad, from a thread")


def test_pipelined_requests_are_answered_in_order_when_the_first_is_late():
    app = App()
    app.get("/slow", lambda req, res: req.reactor.call_later(0.01, res.send, "slow"))
    app.get("/fast", lambda req, res: res.send("fast"))
    with app.run_in_thread() as server, RawClient(server) as client:
        client.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
        assert [r.text for r in client.read_responses(2)] == ["slow", "fast"]


def test_streaming_from_a_timer():
    app = App()

    def handler(req, res):
        res.type("txt")
        parts = iter(["a", "b", "c"])

        def tick():
            part = next(parts, None)
            if part is None:
                res.end()
            else:
                res.write(part)
                req.reactor.call_later(0.001, tick)

        tick()

    app.get("/", handler)
    with app.run_in_thread() as server:
        res = fetch(server)
    assert (res.text, res.header("Transfer-Encoding")) == ("abc", "chunked")


def test_a_late_answer_after_the_connection_was_lost_is_dropped_quietly(caplog):
    app = App()
    pending = []
    outcomes = []
    app.get("/", lambda req, res: pending.append((req, res)))

    def late():
        req, res = pending[0]
        try:
            res.status(201).set("X-Late", "1").json({"late": True})
            res.write("more")
            res.end()
            outcomes.append(("quiet", req.aborted, res.finished))
        except Exception as exc:
            outcomes.append(repr(exc))

    with caplog.at_level(logging.DEBUG, logger="evserve"), app.run_in_thread() as server, \
            RawClient(server) as client:
        client.request("GET", "/")
        wait_until(lambda: pending)
        on_reactor(server, pending[0][0].connection.abort)  # dropped, as by a write timeout
        on_reactor(server, late)
        assert client.wait_closed()
    assert outcomes == [("quiet", True, True)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_sending_twice_still_raises_when_the_client_is_there():
    app = App()
    outcomes = []

    def handler(req, res):
        res.send("once")

        def again():
            try:
                res.send("twice")
            except evserve.ResponseStateError:
                outcomes.append("raised")

        req.reactor.call_soon(again)

    app.get("/", handler)
    with app.run_in_thread() as server:
        assert requests.get(server.url + "/").text == "once"
        wait_until(lambda: outcomes)
    assert outcomes == ["raised"]
