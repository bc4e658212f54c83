"""A plain ``fn(exchange)`` handler misusing the exchange: refused with a clear error at the call,
never a poisoned connection, an ill-framed response or a leaked socket (real sockets)."""

from __future__ import annotations

import array
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h11
import pytest

from evserve import App
from evserve.errors import ClientError, ResponseStateError
from evserve.exchange import Exchange
from evserve.server import Server
from evserve.testing import TestClient

from .conftest import DEADLINE, RawClient, wait_idle

Serve = Callable[..., Server]
Clients = Callable[..., RawClient]


def read_with_h11(server: Server, targets: list[str], body: bytes = b"") -> list[tuple[int, bytes]]:
    """GET each of ``targets`` in turn on one connection, reading each response strictly with
    h11's client (so bytes past a response's framing fail the next one)."""
    conn = h11.Connection(h11.CLIENT)
    out: list[tuple[int, bytes]] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        for target in targets:
            if out:
                conn.start_next_cycle()
            sock.sendall(conn.send(h11.Request(method="GET", target=target, headers=[("Host", "t")]))
                         + conn.send(h11.EndOfMessage()))
            status = 0
            data = bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    data += event.data
                elif isinstance(event, h11.EndOfMessage):
                    out.append((status, bytes(data)))
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return out
    return out


@pytest.mark.parametrize("call", ["write", "end", "respond-small", "respond-big"])
def test_a_str_body_is_refused_at_the_call_and_the_connection_is_freed(
        serve: Serve, clients: Clients, call: str) -> None:
    errors: list[BaseException] = []

    def handler(exchange: Exchange) -> None:
        try:
            if call == "write":
                exchange.start_response(200, [], content_length=5)
                exchange.write("hello")  # type: ignore[arg-type]
            elif call == "end":
                exchange.start_response(200, [])
                exchange.end("hello")  # type: ignore[arg-type]
            else:
                size = 10 if call == "respond-small" else 70000
                exchange.respond(200, [], "x" * size)  # type: ignore[arg-type]
        except TypeError as exc:
            errors.append(exc)
            raise

    server = serve(handler, graceful_timeout=1)
    client = clients(server)
    client.request()
    # Nothing was written before the refusal: a 500, or the stream already started is cut.
    try:
        res = client.read_response()
        assert res.status == 500
    except ConnectionError:
        assert call in ("write", "end")
    assert len(errors) == 1 and "bytes" in str(errors[0])
    client.close()
    wait_idle(server)


def test_a_wide_memoryview_is_counted_in_bytes(serve: Serve) -> None:
    wide = memoryview(array.array("i", [0x41414141, 0x42424242]))  # 8 bytes, len() == 2

    def handler(exchange: Exchange) -> None:
        target = exchange.head.target
        if target == "/length":
            exchange.start_response(200, [], content_length=8)
            exchange.write(wide)
            exchange.end()
        elif target == "/chunked":
            exchange.start_response(200, [])
            exchange.write(wide)
            exchange.end(wide)
        else:
            exchange.respond(200, [], wide)

    server = serve(handler)
    for target, body in (("/length", b"AAAABBBB"), ("/chunked", b"AAAABBBB" * 2), ("/whole", b"AAAABBBB")):
        assert read_with_h11(server, [target, target]) == [(200, body), (200, body)]


def test_a_declared_length_cannot_be_passed_with_a_wide_view(serve: Serve, clients: Clients) -> None:
    refused: list[str] = []

    def handler(exchange: Exchange) -> None:
        exchange.start_response(200, [], content_length=2)
        try:
            exchange.write(memoryview(array.array("i", [1, 2])))
        except ValueError:
            refused.append("write")
        exchange.end(b"ok")

    server = serve(handler)
    assert read_with_h11(server, ["/"]) == [(200, b"ok")]
    assert refused == ["write"]


def test_header_lines_are_pairs_a_formatted_block_is_only_validated_lines(serve: Serve) -> None:
    seen: list[str] = []

    def handler(exchange: Exchange) -> None:
        try:
            exchange.respond(200, "X-A: 1\r\nContent-Length: 0\r\n", b"")  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            seen.append(type(exc).__name__)
        exchange.respond(200, validated_lines="X-B: 2\r\n", body=b"fine")

    server = serve(handler)
    assert read_with_h11(server, ["/"]) == [(200, b"fine")]
    assert seen and seen[0] in ("ValueError", "TypeError")


@pytest.mark.parametrize("kind", ["exchange", "express"])
def test_an_async_handler_served_directly_runs(serve: Serve, kind: str) -> None:
    if kind == "exchange":
        async def handler(exchange: Exchange) -> None:
            exchange.respond(200, [], b"from a coroutine")
    else:
        async def handler(req: Any, res: Any) -> None:  # type: ignore[misc]
            res.send("from a coroutine")

    server = serve(handler)
    assert read_with_h11(server, ["/"]) == [(200, b"from a coroutine")]
    with TestClient(handler) as client:
        assert client.get("/").text == "from a coroutine"


def test_an_async_handler_that_fails_after_suspending_answers_500(serve: Serve) -> None:
    from evserve import sleep

    async def handler(exchange: Exchange) -> None:
        await sleep(0.01)
        raise RuntimeError("late failure")

    server = serve(handler)
    assert read_with_h11(server, ["/"])[0][0] == 500


@pytest.mark.parametrize(("call", "error"), [
    (lambda ex, f: ex.start_response(200, [], content_length=True), TypeError),
    (lambda ex, f: ex.start_response(200, [], content_length=2.0), TypeError),
    (lambda ex, f: (ex.start_response(200, []), ex.send_file(f, 0, -1)), ValueError),
    (lambda ex, f: (ex.start_response(200, []), ex.send_file(f, -1, 1)), ValueError),
    (lambda ex, f: (ex.start_response(200, []), ex.inform(103)), ResponseStateError),
    (lambda ex, f: ex.inform(103, [("Connection", "close")]), ValueError),
    (lambda ex, f: ex.inform(103, [("Content-Length", "1")]), ValueError),
])
def test_misuse_raises_at_the_call(serve: Serve, tmp_path: Path, call: Any, error: type[Exception]) -> None:
    (tmp_path / "f.bin").write_bytes(b"0123456789")
    raised: list[type[BaseException]] = []

    def handler(exchange: Exchange) -> None:
        with open(tmp_path / "f.bin", "rb") as f:
            try:
                call(exchange, f)
            except Exception as exc:
                raised.append(type(exc))
        if exchange.headers_sent:
            exchange.end()
        else:
            exchange.respond(200, [], b"after")

    server = serve(handler)
    (status, _), = read_with_h11(server, ["/"])
    assert status == 200
    assert raised and issubclass(raised[0], error)


def test_a_text_file_is_refused(serve: Serve, tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("text")
    raised: list[BaseException] = []

    def handler(exchange: Exchange) -> None:
        exchange.start_response(200, [], content_length=4)
        try:
            exchange.send_file(open(tmp_path / "t.txt"), 0, 4)  # noqa: SIM115 - closed by send_file
        except TypeError as exc:
            raised.append(exc)
        exchange.end(b"text")

    server = serve(handler)
    assert read_with_h11(server, ["/"]) == [(200, b"text")]
    assert raised and "binary" in str(raised[0])


def test_no_second_100_continue(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.inform(100)  # the connection already sent it
        exchange.respond(200, [], exchange.body)

    client = clients(serve(handler))
    client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    interim = client.read_response()
    assert interim.status == 100
    client.send(b"ok")
    res = client.read_response()
    assert res.status == 200 and res.body == b"ok"


def test_the_test_client_refuses_workers_and_caps_a_response() -> None:
    app = App()
    with pytest.raises(TypeError, match="workers"):
        TestClient(app, workers=2)

    @app.get("/endless")
    def endless(req: Any, res: Any) -> None:
        def chunks():
            while True:
                yield b"x" * 65536

        res.stream(chunks())

    app.get("/small", lambda req, res: res.send("small"))
    with TestClient(app, max_response_size=1 << 20) as client:
        with pytest.raises(ClientError, match="max_response_size"):
            client.get("/endless")
        assert client.get("/small").text == "small"
