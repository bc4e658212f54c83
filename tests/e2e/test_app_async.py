"""End to end: handlers that finish later (SPEC sections 2 and 8), where the sockets and the
reactor's own thread matter: other threads through ``req.reactor.call_soon_threadsafe``, a
handler waiting while other connections are served, pipelined requests behind a late answer, a
late answer after the connection was lost. Over real sockets; every wait is an event or a poll
with a deadline, never a bare sleep. The rest (``async def`` handlers, timers, ``next`` called
late) runs through TestClient in tests/app/test_app_async.py.
"""

from __future__ import annotations

import logging
import threading

import requests

import evserve
from evserve import App, Future, HTTPError

from .conftest import DEADLINE, RawClient, on_reactor, wait_until

# -- async def handlers beside other connections -----------------------------------------------


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


# -- finishing later from other threads, pipelining, a lost connection ------------------------


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


