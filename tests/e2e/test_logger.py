"""End to end: the access logger (SPEC sections 5 and 8), after morgan's tests, over real sockets:
one line per response on ``evserve.access`` at INFO, in the dev, common and combined formats or a
custom one, written when the response finishes, aborted responses included."""

from __future__ import annotations

import base64
import logging
import re
import time

import pytest
import requests

from evserve import App, Router
from evserve.headers import Headers
from evserve.middleware.logger import logger
from evserve.parser import RequestHead
from evserve.request import Request
from evserve.response import Response

from .conftest import DEADLINE, RawClient, wait_until

MS = r"\d+\.\d{3}"
CLF_DATE = r"\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} \+0000"


@pytest.fixture
def access(caplog):
    """``access(n)`` waits for and returns the first ``n`` access-log lines of the test."""
    caplog.set_level(logging.INFO, logger="evserve.access")

    def lines(count: int = 1) -> list[str]:
        def ready():
            found = [r for r in caplog.records if r.name == "evserve.access"]
            return found if len(found) >= count else None

        records = wait_until(ready, message=f"fewer than {count} access-log lines")
        assert all(r.levelno == logging.INFO for r in records)
        return [r.getMessage() for r in records]

    return lines


def make_app(*middleware) -> App:
    app = App()
    for fn in middleware:
        app.use(fn)
    app.get("/hello", lambda req, res: res.send("hello"))

    @app.get("/declared")
    def declared(req, res):
        res.set("Content-Length", "10")
        res.write("01234")
        res.end("56789")

    @app.get("/chunked")
    def chunked(req, res):
        res.write("part one, ")
        res.end("part two")

    @app.get("/slow")
    def slow(req, res):
        req.reactor.call_later(0.1, res.send, "late")

    @app.get("/stream-forever")
    def stream_forever(req, res):
        res.write("start\n")

        def tick():
            if not res.finished:
                res.write("x" * 4096)
                req.reactor.call_later(0.01, tick)

        req.reactor.call_later(0.01, tick)

    return app


def _send_records_content_length() -> bool:
    """Whether ``res.send`` leaves the body size in the response's Content-Length header."""
    head = RequestHead("GET", "/", "1.1", Headers([]), True, False, None, False)
    req = Request(None, head)
    res = Response(None, req)
    req.res = res
    res.send("12345")
    return res.get("Content-Length") == "5"


# -- dev ----------------------------------------------------------------------------------------------


def test_dev_line_has_method_url_status_ms_and_declared_bytes(access):
    with make_app(logger()).run_in_thread() as server:
        assert requests.get(server.url + "/declared?x=1&y=%20").text == "0123456789"
        (line,) = access(1)
    assert re.fullmatch(rf"GET /declared\?x=1&y=%20 200 {MS} ms - 10", line), line


@pytest.mark.skipif(not _send_records_content_length(),
                    reason="evserve.response: send() does not record Content-Length on the response yet")
def test_dev_line_counts_the_bytes_of_send(access):
    with make_app(logger()).run_in_thread() as server:
        requests.get(server.url + "/hello")
        (line,) = access(1)
    assert re.fullmatch(rf"GET /hello 200 {MS} ms - 5", line), line


def test_dev_unknown_size_is_a_dash(access):
    with make_app(logger()).run_in_thread() as server:
        assert requests.get(server.url + "/chunked").text == "part one, part two"
        (line,) = access(1)
    assert re.fullmatch(rf"GET /chunked 200 {MS} ms - -", line), line


def test_dev_status_of_errors_head_and_404(access):
    app = make_app(logger())
    app.get("/boom", lambda req, res: 1 / 0)
    with app.run_in_thread() as server:
        requests.head(server.url + "/declared")
        requests.get(server.url + "/nope?q")
        requests.get(server.url + "/boom")
        lines = access(3)
    assert re.fullmatch(rf"HEAD /declared 200 {MS} ms - 10", lines[0]), lines
    assert re.fullmatch(rf"GET /nope\?q 404 {MS} ms - (\d+|-)", lines[1]), lines
    assert re.fullmatch(rf"GET /boom 500 {MS} ms - (\d+|-)", lines[2]), lines


def test_the_time_runs_from_the_middleware_to_the_end_of_the_response(access):
    with make_app(logger()).run_in_thread() as server:
        assert requests.get(server.url + "/slow").text == "late"
        (line,) = access(1)
    ms = float(re.fullmatch(rf"GET /slow 200 ({MS}) ms - (\d+|-)", line).group(1))
    assert 100 <= ms < 5000


def test_the_url_is_the_original_url_inside_a_mount(access):
    api = Router()
    api.use(logger())
    api.get("/items/:id", lambda req, res: res.json({"id": req.params["id"]}))
    app = App()
    app.use("/api/v1", api)
    with app.run_in_thread() as server:
        assert requests.get(server.url + "/api/v1/items/7").json() == {"id": "7"}
        (line,) = access(1)
    assert line.startswith("GET /api/v1/items/7 200 ")


def test_one_line_per_response_in_order_on_a_keep_alive_connection(access):
    with make_app(logger()).run_in_thread() as server, RawClient(server) as client:
        client.send(b"".join(
            f"GET /declared?n={i} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for i in range(3)
        ))
        assert [r.body for r in client.read_responses(3)] == [b"0123456789"] * 3
        lines = access(3)
    assert [line.split(" ")[1] for line in lines] == ["/declared?n=0", "/declared?n=1", "/declared?n=2"]


def test_an_aborted_response_is_logged_and_marked(access):
    with make_app(logger()).run_in_thread() as server:
        client = RawClient(server)
        try:
            client.request("GET", "/stream-forever")
            deadline = time.monotonic() + DEADLINE
            while b"start" not in client.buffer:  # the head and the first chunk arrived
                client.buffer += client._recv(deadline)
        finally:
            client.close_with_reset()
        (line,) = access(1)
    assert re.fullmatch(rf"GET /stream-forever 200 {MS} ms - - \(aborted\)", line), line


# -- common and combined --------------------------------------------------------------------------------


def test_combined_format(access):
    with make_app(logger("combined")).run_in_thread() as server:
        requests.get(server.url + "/declared?a=b", headers={
            "Referer": "http://ref.example/page",
            "User-Agent": "agent/1.0 (test)",
        })
        (line,) = access(1)
    pattern = (
        rf'127\.0\.0\.1 - - \[{CLF_DATE}\] "GET /declared\?a=b HTTP/1\.1" 200 10 '
        r'"http://ref\.example/page" "agent/1\.0 \(test\)"'
    )
    assert re.fullmatch(pattern, line), line


def test_combined_format_without_referer_and_agent_and_with_quotes(access):
    with make_app(logger("combined")).run_in_thread() as server, RawClient(server) as client:
        client.request("GET", "/chunked", version="1.0")
        client.read_until_close()
        client2 = RawClient(server)
        with client2:
            client2.request("GET", "/declared", {"User-Agent": 'evil" agent\\'})
            client2.read_response()
        lines = access(2)
    assert re.fullmatch(rf'127\.0\.0\.1 - - \[{CLF_DATE}\] "GET /chunked HTTP/1\.0" 200 - "-" "-"', lines[0]), lines
    assert lines[1].endswith(r'"GET /declared HTTP/1.1" 200 10 "-" "evil\" agent\\"'), lines


def test_common_format_with_a_basic_auth_user(access):
    credentials = base64.b64encode(b"tobi:ferret").decode()
    with make_app(logger("common")).run_in_thread() as server:
        requests.get(server.url + "/declared", headers={"Authorization": f"Basic {credentials}"})
        requests.get(server.url + "/declared", headers={"Authorization": "Basic !!!"})
        lines = access(2)
    assert re.fullmatch(rf'127\.0\.0\.1 - tobi \[{CLF_DATE}\] "GET /declared HTTP/1\.1" 200 10', lines[0]), lines
    assert re.fullmatch(rf'127\.0\.0\.1 - - \[{CLF_DATE}\] "GET /declared HTTP/1\.1" 200 10', lines[1]), lines


def test_the_client_address_honours_trust_proxy(access):
    app = make_app(logger("common"))
    app.settings["trust_proxy"] = True
    with app.run_in_thread() as server:
        requests.get(server.url + "/declared", headers={"X-Forwarded-For": "203.0.113.9"})
        (line,) = access(1)
    assert line.startswith("203.0.113.9 - - ["), line


# -- custom formats and options ---------------------------------------------------------------------------


def test_a_callable_format_writes_its_line_or_nothing(access):
    def fmt(req, res, elapsed_ms):
        if req.path == "/hello":
            return None
        assert isinstance(elapsed_ms, float) and elapsed_ms >= 0
        return f"{req.method}|{req.original_url}|{res.status_code}|{req.aborted}"

    with make_app(logger(fmt)).run_in_thread() as server:
        requests.get(server.url + "/hello")
        requests.get(server.url + "/declared")
        (line,) = access(1)
    assert line == "GET|/declared|200|False"


def test_skip(access):
    def skip(req, res):
        return res.status_code < 400

    with make_app(logger(skip=skip)).run_in_thread() as server:
        requests.get(server.url + "/declared")
        requests.get(server.url + "/missing")
        (line,) = access(1)
    assert line.startswith("GET /missing 404 ")


def test_nothing_is_logged_below_info(caplog):
    caplog.set_level(logging.WARNING, logger="evserve.access")
    calls = []

    def fmt(req, res, elapsed_ms):
        calls.append(1)
        return "line"

    with make_app(logger(), logger(fmt)).run_in_thread() as server:
        for _ in range(3):
            assert requests.get(server.url + "/declared").status_code == 200
    assert [r for r in caplog.records if r.name == "evserve.access"] == []
    assert calls == []


def test_lines_are_lazy_logging_records(access, caplog):
    with make_app(logger()).run_in_thread() as server:
        requests.get(server.url + "/declared")
        access(1)
    (record,) = [r for r in caplog.records if r.name == "evserve.access"]
    assert record.msg == "%s %s %d %.3f ms - %s" and record.args[:3] == ("GET", "/declared", 200)


def test_bad_options_raise_at_construction():
    with pytest.raises(ValueError):
        logger("fancy")
    with pytest.raises(TypeError):
        logger(42)


@pytest.mark.parametrize(("head", "status"), [
    (b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n" + b"x" * 50, 413),
    (b"POST /hello HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab", 408),  # body timeout
])
def test_a_request_the_server_refuses_after_its_head_is_logged(serve, clients, access, head, status):
    server = serve(make_app(logger()), max_body_size=10, body_timeout=0.2)
    client = clients(server)
    client.send(head)
    assert client.read_response().status == status
    (line,) = access(1)
    assert re.fullmatch(rf"POST /hello {status} {MS} ms - \d+", line), line


def test_a_refusal_under_a_mount_the_logger_does_not_cover_is_not_logged(serve, clients, caplog):
    caplog.set_level(logging.INFO, logger="evserve.access")
    app = App()
    app.use("/api", logger())
    server = serve(app, max_body_size=10)
    client = clients(server)
    client.send(b"POST /other HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n" + b"x" * 50)
    assert client.read_response().status == 413
    assert [r for r in caplog.records if r.name == "evserve.access"] == []


def test_a_logger_inside_a_mounted_router_logs_a_refusal_under_its_mount(serve, clients, access):
    api = Router()
    api.use(logger())
    api.post("/upload", lambda req, res: res.send("ok"))
    app = App()
    app.use("/api", api)
    server = serve(app, max_body_size=10)
    client = clients(server)
    client.send(b"POST /api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n" + b"x" * 50)
    assert client.read_response().status == 413
    (line,) = access(1)
    assert re.fullmatch(rf"POST /api/upload 413 {MS} ms - \d+", line), line
