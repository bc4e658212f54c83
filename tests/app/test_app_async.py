"""Handlers that finish later (SPEC sections 2 and 8): ``async def`` handlers with
``evserve.sleep`` and ``evserve.to_thread``, timers through ``req.reactor.call_later``, and
``next`` called late, through the real connection code in memory (``TestClient``, whose reactor
turns while it waits for a response). What needs sockets or the reactor on its own thread
(other threads waking it, concurrent connections, pipelining, a lost connection) is in
tests/e2e/test_app_async.py.
"""

from __future__ import annotations

import logging
import threading

import evserve
from evserve import App, HTTPError
from evserve.testing import TestClient

# -- async def handlers ------------------------------------------------------------------------


def test_async_handler_with_sleep():
    app = App()

    @app.get("/")
    async def handler(req, res):
        await evserve.sleep(0.001)
        value = await evserve.sleep(0, result="slept")
        res.send(value)

    with TestClient(app) as client:
        assert client.get("/").text == "slept"


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

    with TestClient(app) as client:
        assert client.get("/").json() == {"total": 42, "on_reactor": True}
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
    with TestClient(app) as client:
        assert client.get("/caught").text == "caught in a thread"
        assert client.get("/uncaught").text == "handler got LookupError"


def test_async_exceptions_before_and_after_the_first_await_become_next_err():
    app = App()

    @app.get("/before")
    async def before(req, res):
        raise HTTPError(409, "before await")

    @app.get("/after")
    async def after(req, res):
        await evserve.sleep(0)
        raise HTTPError(410, "after await")

    with TestClient(app) as client:
        r = client.get("/before")
        assert (r.status_code, r.text) == (409, "before await")
        r = client.get("/after")
        assert (r.status_code, r.text) == (410, "after await")


def test_async_unhandled_error_is_a_logged_500(caplog):
    app = App()

    @app.get("/")
    async def handler(req, res):
        await evserve.sleep(0)
        raise RuntimeError("async secret")

    with caplog.at_level(logging.ERROR, logger="evserve"), TestClient(app) as client:
        res = client.get("/")
    assert (res.status_code, res.text) == (500, "Internal Server Error")
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
    with TestClient(app) as client:
        assert client.get("/user").text == "tobi"
        r = client.get("/fail")
        assert (r.status_code, r.text) == (400, "async handler saw late tobi")


def test_async_callable_object_and_next_route_from_async():
    class Handler:
        async def __call__(self, req, res, next):
            await evserve.sleep(0)
            next("route")

    app = App()
    app.get("/", Handler(), lambda req, res: res.send("skipped"))
    app.get("/", lambda req, res: res.send("next route"))
    with TestClient(app) as client:
        assert client.get("/").text == "next route"


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

    with TestClient(app) as client:
        assert client.get("/").text == "refused: True"


# -- finishing later from timers ---------------------------------------------------------------


def test_finish_from_a_timer():
    app = App()
    app.get("/", lambda req, res: req.reactor.call_later(0.005, lambda: res.status(202).send("from a timer")))
    with TestClient(app) as client:
        r = client.get("/")
    assert (r.status_code, r.text) == (202, "from a timer")


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
    with TestClient(app) as client:
        assert client.get("/").text == "after two timers"
        r = client.get("/err")
        assert (r.status_code, r.text) == (423, "locked later")
        assert client.get("/route").text == "next route, later"


def test_late_next_in_a_mount_restores_urls():
    app = App()
    sub = App()
    sub.use(lambda req, res, next: req.reactor.call_later(0.001, next))
    app.use("/sub", sub)
    app.use(lambda req, res: res.send(f"{req.url} {req.base_url!r} {req.app is app}"))
    with TestClient(app) as client:
        assert client.get("/sub/x?y=1").text == "/sub/x?y=1 '' True"


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
    with TestClient(app) as client:
        res = client.get("/")
    assert (res.text, res.headers["Transfer-Encoding"]) == ("abc", "chunked")


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
    with TestClient(app) as client:
        assert client.get("/").text == "once"
        # the client's reactor turns only while it waits: one more turn runs the call_soon
        client.reactor.run_once(0)
    assert outcomes == ["raised"]
