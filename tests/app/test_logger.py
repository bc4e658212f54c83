"""The access logger (SPEC sections 5 and 8), after morgan's tests, through the real connection
code in memory (``TestClient``): one line per response on ``evserve.access`` at INFO, in the dev,
common and combined formats or a custom one, written when the response finishes, requests the
server refuses after their head included. A response the client resets midway, and a body
timeout, are checked on sockets in tests/e2e/test_logger.py."""

from __future__ import annotations

import base64
import logging
import re

import pytest

from evserve import App, Router
from evserve.headers import Headers
from evserve.middleware.logger import logger
from evserve.parser import RequestHead
from evserve.request import Request
from evserve.response import Response
from evserve.testing import TestClient

from .conftest import parse_responses, request_bytes

MS = r"\d+\.\d{3}"
CLF_DATE = r"\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} \+0000"


@pytest.fixture
def access(caplog):
    """``access(n)`` returns the access-log lines of the test, at least ``n`` of them (a line is
    written as its response ends, so before the client has the response)."""
    caplog.set_level(logging.INFO, logger="evserve.access")

    def lines(count: int = 1) -> list[str]:
        records = [r for r in caplog.records if r.name == "evserve.access"]
        assert len(records) >= count, f"fewer than {count} access-log lines: {records}"
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
    with TestClient(make_app(logger())) as client:
        assert client.get("/declared?x=1&y=%20").text == "0123456789"
        (line,) = access(1)
    assert re.fullmatch(rf"GET /declared\?x=1&y=%20 200 {MS} ms - 10", line), line


@pytest.mark.skipif(not _send_records_content_length(),
                    reason="evserve.response: send() does not record Content-Length on the response yet")
def test_dev_line_counts_the_bytes_of_send(access):
    with TestClient(make_app(logger())) as client:
        client.get("/hello")
        (line,) = access(1)
    assert re.fullmatch(rf"GET /hello 200 {MS} ms - 5", line), line


def test_dev_unknown_size_is_a_dash(access):
    with TestClient(make_app(logger())) as client:
        assert client.get("/chunked").text == "part one, part two"
        (line,) = access(1)
    assert re.fullmatch(rf"GET /chunked 200 {MS} ms - -", line), line


def test_dev_status_of_errors_head_and_404(access):
    app = make_app(logger())
    app.get("/boom", lambda req, res: 1 / 0)
    with TestClient(app) as client:
        client.head("/declared")
        client.get("/nope?q")
        client.get("/boom")
        lines = access(3)
    assert re.fullmatch(rf"HEAD /declared 200 {MS} ms - 10", lines[0]), lines
    assert re.fullmatch(rf"GET /nope\?q 404 {MS} ms - (\d+|-)", lines[1]), lines
    assert re.fullmatch(rf"GET /boom 500 {MS} ms - (\d+|-)", lines[2]), lines


def test_the_time_runs_from_the_middleware_to_the_end_of_the_response(access):
    with TestClient(make_app(logger())) as client:
        assert client.get("/slow").text == "late"
        (line,) = access(1)
    ms = float(re.fullmatch(rf"GET /slow 200 ({MS}) ms - (\d+|-)", line).group(1))
    assert 100 <= ms < 5000


def test_the_url_is_the_original_url_inside_a_mount(access):
    api = Router()
    api.use(logger())
    api.get("/items/:id", lambda req, res: res.json({"id": req.params["id"]}))
    app = App()
    app.use("/api/v1", api)
    with TestClient(app) as client:
        assert client.get("/api/v1/items/7").json() == {"id": "7"}
        (line,) = access(1)
    assert line.startswith("GET /api/v1/items/7 200 ")


def test_one_line_per_response_in_order_on_a_keep_alive_connection(access):
    with TestClient(make_app(logger())) as client:
        wire = client.raw(b"".join(
            f"GET /declared?n={i} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for i in range(3)
        ))
        assert [r.body for r in parse_responses(wire, ["GET"] * 3)] == [b"0123456789"] * 3
        lines = access(3)
    assert [line.split(" ")[1] for line in lines] == ["/declared?n=0", "/declared?n=1", "/declared?n=2"]


# -- common and combined --------------------------------------------------------------------------------


def test_combined_format(access):
    with TestClient(make_app(logger("combined"))) as client:
        client.get("/declared?a=b", headers={
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
    with TestClient(make_app(logger("combined"))) as client:
        client.raw(request_bytes("GET", "/chunked", version="1.0"))  # read until the close
        wire = client.raw(request_bytes("GET", "/declared", {"User-Agent": 'evil" agent\\'}))
        parse_responses(wire, ["GET"])
        lines = access(2)
    assert re.fullmatch(rf'127\.0\.0\.1 - - \[{CLF_DATE}\] "GET /chunked HTTP/1\.0" 200 - "-" "-"', lines[0]), lines
    assert lines[1].endswith(r'"GET /declared HTTP/1.1" 200 10 "-" "evil\" agent\\"'), lines


def test_common_format_with_a_basic_auth_user(access):
    credentials = base64.b64encode(b"tobi:ferret").decode()
    with TestClient(make_app(logger("common"))) as client:
        client.get("/declared", headers={"Authorization": f"Basic {credentials}"})
        client.get("/declared", headers={"Authorization": "Basic !!!"})
        lines = access(2)
    assert re.fullmatch(rf'127\.0\.0\.1 - tobi \[{CLF_DATE}\] "GET /declared HTTP/1\.1" 200 10', lines[0]), lines
    assert re.fullmatch(rf'127\.0\.0\.1 - - \[{CLF_DATE}\] "GET /declared HTTP/1\.1" 200 10', lines[1]), lines


def test_the_client_address_honours_trust_proxy(access):
    app = make_app(logger("common"))
    app.settings["trust_proxy"] = True
    with TestClient(app) as client:
        client.get("/declared", headers={"X-Forwarded-For": "203.0.113.9"})
        (line,) = access(1)
    assert line.startswith("203.0.113.9 - - ["), line


# -- custom formats and options ---------------------------------------------------------------------------


def test_a_callable_format_writes_its_line_or_nothing(access):
    def fmt(req, res, elapsed_ms):
        if req.path == "/hello":
            return None
        assert isinstance(elapsed_ms, float) and elapsed_ms >= 0
        return f"{req.method}|{req.original_url}|{res.status_code}|{req.aborted}"

    with TestClient(make_app(logger(fmt))) as client:
        client.get("/hello")
        client.get("/declared")
        (line,) = access(1)
    assert line == "GET|/declared|200|False"


def test_skip(access):
    def skip(req, res):
        return res.status_code < 400

    with TestClient(make_app(logger(skip=skip))) as client:
        client.get("/declared")
        client.get("/missing")
        (line,) = access(1)
    assert line.startswith("GET /missing 404 ")


def test_nothing_is_logged_below_info(caplog):
    caplog.set_level(logging.WARNING, logger="evserve.access")
    calls = []

    def fmt(req, res, elapsed_ms):
        calls.append(1)
        return "line"

    with TestClient(make_app(logger(), logger(fmt))) as client:
        for _ in range(3):
            assert client.get("/declared").status_code == 200
    assert [r for r in caplog.records if r.name == "evserve.access"] == []
    assert calls == []


def test_lines_are_lazy_logging_records(access, caplog):
    with TestClient(make_app(logger())) as client:
        client.get("/declared")
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
])
def test_a_request_the_server_refuses_after_its_head_is_logged(client_for, access, head, status):
    client = client_for(make_app(logger()), max_body_size=10, body_timeout=0.2)
    assert parse_responses(client.raw(head), ["POST"])[0].status == status
    (line,) = access(1)
    assert re.fullmatch(rf"POST /hello {status} {MS} ms - \d+", line), line


def test_a_refusal_under_a_mount_the_logger_does_not_cover_is_not_logged(client_for, caplog):
    caplog.set_level(logging.INFO, logger="evserve.access")
    app = App()
    app.use("/api", logger())
    client = client_for(app, max_body_size=10)
    wire = client.raw(b"POST /other HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n" + b"x" * 50)
    assert parse_responses(wire, ["POST"])[0].status == 413
    assert [r for r in caplog.records if r.name == "evserve.access"] == []


def test_a_logger_inside_a_mounted_router_logs_a_refusal_under_its_mount(client_for, access):
    api = Router()
    api.use(logger())
    api.post("/upload", lambda req, res: res.send("ok"))
    app = App()
    app.use("/api", api)
    client = client_for(app, max_body_size=10)
    wire = client.raw(b"POST /api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n" + b"x" * 50)
    assert parse_responses(wire, ["POST"])[0].status == 413
    (line,) = access(1)
    assert re.fullmatch(rf"POST /api/upload 413 {MS} ms - \d+", line), line
