"""Errors (SPEC sections 2 and 8), after Express 4's error-handling tests (``app.use`` with four
arguments, ``next(err)``, finalhandler's 404/500 pages), through the real connection code in
memory (``TestClient``). An error that cuts a started response, and the connection living on
after an error, are checked on sockets in tests/e2e/test_app_errors.py.
"""

from __future__ import annotations

import logging

import pytest

from evserve import App, HTTPError, Router
from evserve.testing import TestClient

from .conftest import exchange, parse_responses, request_bytes


def boom(message="secret detail"):
    def handler(req, res):
        raise RuntimeError(message)

    return handler


def fetch(client, target="/", method="GET", headers=None):
    """One request, byte for byte as the e2e raw client sends it, on a fresh connection."""
    return exchange(client, method, target, headers)


def evserve_errors(caplog):
    return [r for r in caplog.records if r.name == "evserve" and r.levelno >= logging.ERROR]


# -- the default error page --------------------------------------------------------------------


def test_an_unhandled_exception_is_a_500_without_the_trace(caplog):
    app = App()
    app.get("/", boom())
    with caplog.at_level(logging.ERROR, logger="evserve"), TestClient(app) as client:
        res = fetch(client)
    assert res.status == 500
    assert res.text == "Internal Server Error"
    assert res.header("Content-Type") == "text/plain; charset=utf-8"
    assert b"secret detail" not in res.raw and b"Traceback" not in res.raw
    records = evserve_errors(caplog)
    assert len(records) == 1
    exc_type, exc, tb = records[0].exc_info
    assert (exc_type, str(exc)) == (RuntimeError, "secret detail")
    assert tb is not None
    assert "secret detail" in caplog.text and "Traceback" in caplog.text


@pytest.mark.parametrize(("error", "status", "body"), [
    (HTTPError(404, "no such user"), 404, "no such user"),
    (HTTPError(400), 400, "Bad Request"),
    (HTTPError(503, "database password is hunter2"), 503, "Service Unavailable"),
    (HTTPError(500, "internal detail"), 500, "Internal Server Error"),
])
def test_http_error_status_and_message(error, status, body):
    app = App()

    def handler(req, res):
        raise error

    app.get("/", handler)
    with TestClient(app) as client:
        res = fetch(client)
    assert (res.status, res.text) == (status, body)


def test_http_error_headers_are_sent():
    app = App()

    def handler(req, res):
        raise HTTPError(429, "slow down", {"Retry-After": "30"})

    def listed(req, res):
        raise HTTPError(401, headers=[("WWW-Authenticate", 'Basic realm="x"')])

    app.get("/", handler)
    app.get("/auth", listed)
    with TestClient(app) as client:
        res = fetch(client)
        assert (res.status, res.text, res.header("Retry-After")) == (429, "slow down", "30")
        res = fetch(client, "/auth")
        assert (res.status, res.text, res.header("WWW-Authenticate")) == (401, "Unauthorized", 'Basic realm="x"')


class WithStatus(Exception):
    def __init__(self, status, message="custom message"):
        super().__init__(message)
        self.status = status


@pytest.mark.parametrize(("status", "expected"), [
    (422, 422), (400, 400), (599, 599), (503, 503),
    (200, 500), (302, 500), (600, 500), ("404", 500), (True, 500), (None, 500),
])
def test_any_exception_with_an_int_status_uses_it(status, expected):
    app = App()

    def handler(req, res):
        raise WithStatus(status)

    app.get("/", handler)
    with TestClient(app) as client:
        res = fetch(client)
    assert res.status == expected
    assert res.text == ("custom message" if expected < 500 else
                        {500: "Internal Server Error", 503: "Service Unavailable", 599: "599"}[expected])


def test_only_5xx_are_logged_as_errors(caplog):
    app = App()

    def not_found(req, res):
        raise HTTPError(404)

    app.get("/404", not_found)
    app.get("/500", boom())
    with caplog.at_level(logging.DEBUG, logger="evserve"), TestClient(app) as client:
        assert fetch(client, "/404").status == 404
        assert evserve_errors(caplog) == []
        assert fetch(client, "/500").status == 500
    assert len(evserve_errors(caplog)) == 1


def test_the_error_page_drops_headers_describing_another_body():
    app = App()

    def handler(req, res):
        res.set("Content-Disposition", "attachment").set("ETag", '"x"').set("Content-Encoding", "gzip")
        res.set("X-Kept", "yes").type("png")
        raise RuntimeError("late")

    app.get("/", handler)
    with TestClient(app) as client:
        res = fetch(client)
    assert res.status == 500
    assert res.header("Content-Type") == "text/plain; charset=utf-8"
    for name in ("Content-Disposition", "Content-Encoding"):
        assert res.header(name) is None
    assert res.header("ETag") != '"x"'
    assert res.header("X-Kept") == "yes"


def test_next_with_a_non_exception_is_an_error_too():
    app = App()
    app.get("/", lambda req, res, next: next("a string"))
    with TestClient(app) as client:
        res = fetch(client)
    assert (res.status, res.text) == (500, "Internal Server Error")


def test_an_error_after_the_response_was_sent_changes_nothing(caplog):
    app = App()

    def handler(req, res):
        res.send("already sent")
        raise RuntimeError("too late")

    app.get("/", handler)
    app.get("/next", lambda req, res: res.send("next"))
    with caplog.at_level(logging.ERROR, logger="evserve"), TestClient(app) as client:
        # one connection, two requests: nothing follows the first response but the second
        wire = client.raw(request_bytes("GET", "/") + request_bytes("GET", "/next"))
        first, second = parse_responses(wire, ["GET", "GET"])
    assert (first.status, first.text, second.text) == (200, "already sent", "next")
    assert len(evserve_errors(caplog)) == 1


# -- error middleware by arity -----------------------------------------------------------------


def test_error_middleware_is_chosen_by_arity():
    app = App()
    calls = []

    def normal(req, res, next):
        calls.append("normal")
        next()

    def on_error(err, req, res, next):
        calls.append(f"error:{err}")
        res.status(getattr(err, "status", 500)).json({"error": str(err)})

    app.use(on_error)  # never called: no error yet
    app.use(normal)
    app.get("/", boom("kaboom"))
    app.use(normal)  # skipped: an error is pending
    app.get("/", lambda req, res: calls.append("route after error"))
    app.use(on_error)
    with TestClient(app) as client:
        r = client.get("/")
    assert (r.status_code, r.json()) == (500, {"error": "kaboom"})
    assert calls == ["normal", "error:kaboom"]


def test_error_middleware_can_pass_on_replace_or_recover():
    app = App()

    def fail(req, res, next):
        next(ValueError("first"))

    def rethrow(err, req, res, next):
        raise HTTPError(409, f"replaced {err}")

    def passes(err, req, res, next):
        req.seen = f"{err.status}:{err.message}"
        next(err)

    def recovers(err, req, res, next):
        req.recovered = req.seen
        next()

    app.use("/recover", fail, rethrow, passes, recovers)
    app.use("/recover", lambda req, res: res.send("recovered from " + req.recovered))
    app.use("/final", fail, rethrow, passes)
    with TestClient(app) as client:
        assert client.get("/recover").text == "recovered from 409:replaced first"
        r = client.get("/final")
        assert (r.status_code, r.text) == (409, "replaced first")


def test_an_error_handler_in_a_route_stack():
    app = App()

    def handled(err, req, res, next):
        res.status(400).send("route caught " + str(err))

    app.get("/", boom("in route"), handled)
    app.get("/skip", lambda req, res, next: next(), handled, lambda req, res: res.send("no error"))
    with TestClient(app) as client:
        r = client.get("/")
        assert (r.status_code, r.text) == (400, "route caught in route")
        assert client.get("/skip").text == "no error"


def test_errors_in_a_router_reach_its_error_middleware_then_the_parents():
    app = App()
    inner = Router()
    inner.get("/handled", boom("inner"))
    inner.get("/passed", boom("outer"))

    def inner_handler(err, req, res, next):
        if str(err) == "inner":
            res.send(f"inner handler at {req.base_url} {req.url}")
        else:
            next(err)

    inner.use(inner_handler)
    app.use("/r", inner)
    app.use(lambda err, req, res, next: res.status(502).send(f"outer handler {err} {req.url}"))
    with TestClient(app) as client:
        assert client.get("/r/handled").text == "inner handler at /r /handled"
        r = client.get("/r/passed")
        assert (r.status_code, r.text) == (502, "outer handler outer /r/passed")


def test_a_404_does_not_call_error_middleware():
    app = App()
    app.use(lambda err, req, res, next: res.send("should not run"))
    with TestClient(app) as client:
        r = client.get("/nowhere")
    assert (r.status_code, r.text) == (404, "Cannot GET /nowhere")


def test_a_mounted_router_is_skipped_while_an_error_is_pending():
    app = App()
    router = Router()
    router.use(lambda req, res: res.send("router ran"))
    router.use(lambda err, req, res, next: res.send("router error handler ran"))
    app.get("/", boom("x"))
    app.use(router)
    app.use(lambda err, req, res, next: res.status(500).send("app error handler"))
    with TestClient(app) as client:
        assert client.get("/").text == "app error handler"


def test_exceptions_from_every_role_become_next_err():
    app = App()

    def bad_middleware(req, res, next):
        raise KeyError("mw")

    def bad_error_handler(err, req, res, next):
        raise LookupError(f"from handler of {err!r}")

    app.use("/mw", bad_middleware)
    app.get("/route", boom("route"))
    app.use("/eh", lambda req, res, next: next(OSError("orig")), bad_error_handler)
    app.use(lambda err, req, res, next: res.status(500).send(f"{type(err).__name__}: {err}"))
    with TestClient(app) as client:
        assert client.get("/mw").text == "KeyError: 'mw'"
        assert client.get("/route").text == "RuntimeError: route"
        assert client.get("/eh").text == "LookupError: from handler of OSError('orig')"


def test_error_in_a_sub_app_goes_through_the_sub_apps_own_handlers_first():
    app = App()
    sub = App()
    sub.get("/", boom("sub"))
    sub.use(lambda err, req, res, next: next(HTTPError(418, f"sub saw {err}")))
    app.use("/sub", sub)
    with TestClient(app) as client:
        r = client.get("/sub")
    assert (r.status_code, r.text) == (418, "sub saw sub")


def test_a_bad_header_on_an_error_is_dropped_not_fatal(caplog):
    bad = {"X-Bad": "a\r\nInjected: 1", "X-Good": "kept"}

    class WithHeaders(WithStatus):
        headers = bad

    app = App()

    def now(req, res):
        raise HTTPError(400, "bad request", bad)

    def later(req, res, next):
        # from a timer: nobody above would turn an exception here into a response
        req.reactor.call_later(0.001, next, WithHeaders(409, "conflict"))

    app.get("/now", now)
    app.get("/later", later)
    with caplog.at_level(logging.WARNING, logger="evserve"), TestClient(app) as client:
        for path, status, text in (("/now", 400, "bad request"), ("/later", 409, "conflict")):
            res = fetch(client, path)
            assert (res.status, res.text, res.header("X-Good")) == (status, text, "kept")
            assert res.header("X-Bad") is None and b"Injected" not in res.raw
    assert len([r for r in caplog.records if "X-Bad" in r.getMessage()]) == 2


# -- HTTPError's headers -------------------------------------------------------------------------


def test_httperror_headers_is_the_mapping_given_and_lines_keep_repeats():
    err = HTTPError(401, headers={"WWW-Authenticate": "Basic"})
    assert err.headers["WWW-Authenticate"] == "Basic"
    err = HTTPError(429, headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Retry-After", "5")])
    assert err.header_lines == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Retry-After", "5")]
    assert err.headers == {"Set-Cookie": "b=2", "Retry-After": "5"}


def test_repeated_error_headers_are_all_sent():
    app = App()

    @app.get("/")
    def limited(req, res):
        raise HTTPError(429, headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Retry-After", "5")])

    with TestClient(app) as client:
        res = fetch(client)
    assert res.status == 429
    assert [v for n, v in res.headers if n.lower() == "set-cookie"] == ["a=1", "b=2"]


def test_an_error_status_outside_4xx_5xx_is_a_500_without_the_errors_headers():
    # As Express's finalhandler: the error's headers go out only with the error's own status.
    app = App()

    @app.get("/")
    def redirecting(req, res):
        raise HTTPError(302, headers={"Location": "/login"})

    with TestClient(app) as client:
        res = fetch(client)
    assert res.status == 500
    assert res.header("Location") is None


def test_headers_added_to_an_httperror_after_it_was_made_are_sent():
    app = App()

    @app.get("/")
    def challenge(req, res):
        err = HTTPError(401)
        err.headers["WWW-Authenticate"] = 'Basic realm="x"'
        raise err

    @app.get("/replaced")
    def replaced(req, res):
        err = HTTPError(503, headers=[("Retry-After", "1"), ("Retry-After", "2")])
        err.headers = {"Retry-After": "5"}
        raise err

    with TestClient(app) as client:
        assert fetch(client).header("WWW-Authenticate") == 'Basic realm="x"'
        assert fetch(client, "/replaced").header("Retry-After") == "5"


def test_an_error_header_with_a_non_str_name_does_not_cost_the_error_page():
    class Unavailable(Exception):
        status = 503
        headers = {1: "x", "Retry-After": "5"}

    app = App()

    @app.get("/")
    def later(req, res, next_):
        req.reactor.call_later(0.01, next_, Unavailable())

    with TestClient(app) as client:
        res = fetch(client)
    assert res.status == 503
    assert res.header("Retry-After") == "5"
