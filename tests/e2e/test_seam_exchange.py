"""The exchange API end to end: a plain ``fn(exchange)`` handler on a real server, spoken to with
raw sockets on 127.0.0.1.

Everything a handler can do with an exchange is here: a whole response, a streamed one (chunked,
close-delimited, with a length), files, 1xx, closing, aborting, raising, answering later, flow
control, loss of the peer, the refusals of bad header pairs, a refused body, and the switch to
another protocol after a 101. Handlers run on the reactor thread; what they see is handed to the
test through lists and ``threading.Event``s, and every wait is bounded.
"""

from __future__ import annotations

import email.utils
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evserve.errors import ResponseStateError
from evserve.exchange import Exchange
from evserve.handlers import FunctionHandler, as_handler
from evserve.reactor import Reactor
from evserve.server import Server

from .conftest import DEADLINE, RawClient, on_reactor, parse_response, wait_idle, wait_until

Serve = Callable[..., Server]
Clients = Callable[..., RawClient]



def only_header(res: Any, name: str) -> str:
    """The one line ``name`` of ``res`` (fails when there is none or more than one)."""
    values: list[str] = [v for k, v in res.headers if k.lower() == name.lower()]
    assert len(values) == 1, f"{name}: {values!r} in {res.headers!r}"
    return values[0]


def has_header(res: Any, name: str) -> bool:
    return any(k.lower() == name.lower() for k, _ in res.headers)


# -- respond: a whole response -----------------------------------------------------------------


def test_respond_sends_length_one_date_and_the_body(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.respond(200, [("Content-Type", "text/plain")], b"hello")

    client = clients(serve(handler))
    client.request()
    res = client.read_response()
    assert (res.status, res.reason, res.body) == (200, "OK", b"hello")
    assert only_header(res, "Content-Length") == "5"
    assert email.utils.parsedate_to_datetime(only_header(res, "Date")) is not None
    assert not has_header(res, "Transfer-Encoding")
    assert not has_header(res, "Connection")  # HTTP/1.1 persists without saying so
    client.request()  # the connection carries the next request
    assert client.read_response().body == b"hello"


def test_a_date_the_handler_gives_is_kept_and_not_doubled(serve: Serve, clients: Clients) -> None:
    fixed = "Tue, 01 Jan 2030 00:00:00 GMT"

    def handler(exchange: Exchange) -> None:
        exchange.respond(200, [("Date", fixed)], b"x")

    client = clients(serve(handler))
    client.request()
    assert only_header(client.read_response(), "Date") == fixed


def test_add_date_false_sends_no_date(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.respond(200, (), b"x", add_date=False)

    client = clients(serve(handler))
    client.request()
    assert not has_header(client.read_response(), "Date")


def test_a_head_response_states_the_length_and_sends_no_body(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.respond(200, [("Content-Type", "text/plain")], b"hello")

    client = clients(serve(handler))
    client.request("HEAD")
    res = client.read_response("HEAD")
    assert only_header(res, "Content-Length") == "5"
    # Had body bytes followed the head, they would be read as the start of the next response.
    client.request("GET")
    res = client.read_response()
    assert (res.status, res.body) == (200, b"hello")
    assert not client.buffer


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_carry_no_body_and_no_length(serve: Serve, clients: Clients, status: int) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.respond(status, [("ETag", '"v1"')], b"not sent")

    client = clients(serve(handler))
    client.request()
    res = client.read_response()
    assert res.status == status
    assert not has_header(res, "Content-Length")
    assert not has_header(res, "Transfer-Encoding")
    client.request()  # nothing of "not sent" stands between the two responses
    assert client.read_response().status == status
    assert not client.buffer


def test_a_custom_reason_phrase_is_sent(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.respond(299, (), b"", reason="Fine By Me")

    client = clients(serve(handler))
    client.request()
    res = client.read_response()
    assert res.raw.startswith(b"HTTP/1.1 299 Fine By Me\r\n")


# -- start_response, write, end ----------------------------------------------------------------


def test_a_streamed_body_is_chunked_on_http_1_1(serve: Serve, clients: Clients) -> None:
    results: list[Any] = []

    def handler(exchange: Exchange) -> None:
        results.append(exchange.start_response(200, [("Content-Type", "text/plain")]))
        results.append(exchange.write(b"one "))
        exchange.write(b"")  # nothing: not a last-chunk
        exchange.write(b"two ")
        exchange.end(b"three")

    client = clients(serve(handler))
    client.request()
    res = client.read_response()
    assert results[0] is True
    assert only_header(res, "Transfer-Encoding") == "chunked"
    assert not has_header(res, "Content-Length")
    assert res.body == b"one two three"
    assert res.raw.endswith(b"5\r\nthree\r\n0\r\n\r\n")
    client.request()
    assert client.read_response().body == b"one two three"


def test_a_streamed_body_ends_with_the_connection_on_http_1_0(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.start_response(200, [("Content-Type", "text/plain")])
        exchange.write(b"to the ")
        exchange.end(b"end")

    client = clients(serve(handler))
    client.request(version="1.0")
    data = client.read_until_close()
    res, used = parse_response(data, eof=True)
    assert only_header(res, "Connection") == "close"
    assert not has_header(res, "Transfer-Encoding") and not has_header(res, "Content-Length")
    assert res.body == b"to the end"
    assert used == len(data)


def test_a_streamed_body_with_a_length_is_not_chunked(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.start_response(200, (), content_length=9)
        exchange.write(b"four")
        exchange.end(b"+five")

    client = clients(serve(handler))
    client.request()
    res = client.read_response()
    assert only_header(res, "Content-Length") == "9"
    assert not has_header(res, "Transfer-Encoding")
    assert res.body == b"four+five"
    client.request(version="1.0", headers={"Connection": "keep-alive"})
    res = client.read_response()
    assert res.body == b"four+five" and only_header(res, "Connection") == "keep-alive"


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_start_response_without_a_body_completes_the_exchange(
        serve: Serve, clients: Clients, method: str, status: int) -> None:
    seen: list[Any] = []

    def handler(exchange: Exchange) -> None:
        seen.append(exchange.start_response(status, (), content_length=3))
        seen.append(exchange.state.name)
        seen.append(exchange.write(b"abc"))  # over: ignored
        exchange.end()  # over: ignored

    client = clients(serve(handler))
    client.request(method)
    res = client.read_response(method)
    assert seen == [False, "DONE", False]
    assert res.status == status
    assert has_header(res, "Content-Length") == (method == "HEAD")
    client.request()
    assert client.read_response().status == status
    assert not client.buffer


def test_answers_after_the_response_are_ignored_and_a_second_response_raises(
        serve: Serve, clients: Clients) -> None:
    seen: list[str] = []

    def handler(exchange: Exchange) -> None:
        exchange.start_response(200, (), content_length=2)
        try:
            exchange.respond(500, (), b"no")
        except ResponseStateError:
            seen.append("second response refused")
        exchange.end(b"ok")
        exchange.respond(500, (), b"ignored")  # the exchange is over: ignored, not raised
        seen.append(str(exchange.write(b"late")))
        exchange.abort()  # over: does not cut the connection

    client = clients(serve(handler))
    client.request()
    assert client.read_response().body == b"ok"
    assert seen == ["second response refused", "False"]
    client.request()
    assert client.read_response().body == b"ok"
    assert not client.buffer


def test_write_before_start_response_raises(serve: Serve, clients: Clients) -> None:
    seen: list[str] = []

    def handler(exchange: Exchange) -> None:
        for call in (lambda: exchange.write(b"x"), exchange.end):
            try:
                call()
            except ResponseStateError:
                seen.append("refused")
        exchange.respond(200, (), b"fine")

    client = clients(serve(handler))
    client.request()
    assert client.read_response().body == b"fine"
    assert seen == ["refused", "refused"]


def test_a_body_shorter_than_its_declared_length_is_not_left_for_the_peer_to_wait_on(
        serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.start_response(200, (), content_length=10)
        exchange.write(b"12345")
        try:
            exchange.end()
        except (ValueError, ResponseStateError):
            exchange.abort()

    client = clients(serve(handler))
    client.request()
    # Either way the peer must learn that the response is cut: the connection closes.
    assert client.wait_closed(timeout=2.0)
    with pytest.raises(ConnectionError):
        client.read_response()


def test_bytes_past_the_declared_length_never_reach_the_peer(serve: Serve, clients: Clients) -> None:
    refused: list[str] = []

    def handler(exchange: Exchange) -> None:
        if exchange.head.target == "/long":
            exchange.start_response(200, (), content_length=5)
            try:
                exchange.write(b"12345HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
            except (ValueError, ResponseStateError):
                refused.append("write")
                exchange.write(b"12345")
            exchange.end()
        else:
            exchange.respond(200, (), b"good")

    client = clients(serve(handler), timeout=2.0)
    client.request("GET", "/long")
    try:
        assert client.read_response().body == b"12345"
        client.request("GET", "/next")
        res = client.read_response()
    except ConnectionError:
        return  # cut: the excess was not passed off as a response
    assert res.body == b"good", "bytes past Content-Length were read as the next response"


# -- files -------------------------------------------------------------------------------------


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(300_000) + b"end"
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    return path, data


def test_send_file_with_a_length(serve: Serve, clients: Clients, blob: tuple[Path, bytes]) -> None:
    path, data = blob
    files: list[Any] = []

    def handler(exchange: Exchange) -> None:
        file = path.open("rb")
        files.append(file)
        exchange.start_response(200, [("Content-Type", "application/octet-stream")],
                                content_length=len(data))
        exchange.send_file(file, 0, len(data))
        exchange.end()

    client = clients(serve(handler))
    client.request()
    res = client.read_response()
    assert only_header(res, "Content-Length") == str(len(data))
    assert res.body == data
    wait_until(lambda: files[0].closed, message="the transport did not close the file")
    client.request()
    assert client.read_response().body == data


def test_send_file_inside_a_chunked_body(serve: Serve, clients: Clients, blob: tuple[Path, bytes]) -> None:
    path, data = blob
    offset, count = 1000, 200_000

    def handler(exchange: Exchange) -> None:
        exchange.start_response(200)
        exchange.write(b"<<")
        exchange.send_file(path.open("rb"), offset, count)
        exchange.send_file(path.open("rb"), 0, 0)  # nothing: no empty chunk (a last-chunk)
        exchange.end(b">>")

    client = clients(serve(handler))
    client.request()
    res = client.read_response()
    assert only_header(res, "Transfer-Encoding") == "chunked"
    assert res.body == b"<<" + data[offset:offset + count] + b">>"
    client.request()
    assert client.read_response().body == b"<<" + data[offset:offset + count] + b">>"


# -- 1xx, closing, aborting --------------------------------------------------------------------


def test_inform_sends_103_before_the_final_response(serve: Serve, clients: Clients) -> None:
    link = "</style.css>; rel=preload; as=style"

    def handler(exchange: Exchange) -> None:
        exchange.inform(103, [("Link", link)])
        exchange.respond(200, [("Link", link)], b"page")

    client = clients(serve(handler))
    client.request()
    hints = client.read_response()
    assert (hints.status, hints.reason, only_header(hints, "Link")) == (103, "Early Hints", link)
    assert hints.raw.endswith(b"\r\n\r\n") and not has_header(hints, "Content-Length")
    final = client.read_response()
    assert (final.status, final.body) == (200, b"page")


def test_inform_refuses_101_and_final_statuses(serve: Serve, clients: Clients) -> None:
    refused: list[int] = []

    def handler(exchange: Exchange) -> None:
        for status in (99, 101, 200, 204):
            try:
                exchange.inform(status)
            except ValueError:
                refused.append(status)
        exchange.respond(200, (), b"ok")

    client = clients(serve(handler))
    client.request()
    assert client.read_response().status == 200
    assert refused == [99, 101, 200, 204]


def test_inform_sends_nothing_to_an_http_1_0_client(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.inform(103, [("Link", "</a.css>; rel=preload")])
        exchange.respond(200, (), b"page")

    client = clients(serve(handler), timeout=2.0)
    client.request(version="1.0")
    assert client.read_response().status == 200


@pytest.mark.parametrize("status", [100, 101, 103, 199])
def test_a_final_response_cannot_be_informational(serve: Serve, clients: Clients, status: int) -> None:
    refused: list[str] = []
    ran = threading.Event()

    def handler(exchange: Exchange) -> None:
        for name, call in (("respond", lambda: exchange.respond(status, (), b"")),
                           ("start_response", lambda: exchange.start_response(status))):
            try:
                call()
            except ValueError:
                refused.append(name)
        exchange.respond(200, (), b"final")
        ran.set()

    client = clients(serve(handler), timeout=2.0)
    client.request()
    assert ran.wait(DEADLINE)
    assert refused == ["respond", "start_response"]
    res = client.read_response()
    while res.status < 200:
        res = client.read_response()
    assert (res.status, res.body) == (200, b"final")


def test_close_after_says_connection_close_and_closes(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.close_after()
        exchange.respond(200, (), b"bye")

    server = serve(handler)
    client = clients(server)
    client.request()
    res = client.read_response()
    assert only_header(res, "Connection") == "close"
    assert res.body == b"bye"
    assert client.wait_closed()
    wait_idle(server)


def test_a_connection_close_pair_closes_and_is_sent_once(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.respond(200, [("Connection", "close")], b"bye")

    client = clients(serve(handler))
    client.request()
    res = client.read_response()
    assert only_header(res, "Connection") == "close"
    assert client.wait_closed()


def test_abort_mid_stream_cuts_the_response(serve: Serve, clients: Clients) -> None:
    streams: list[Exchange] = []

    def handler(exchange: Exchange) -> None:
        exchange.start_response(200)
        exchange.write(b"partial")
        streams.append(exchange)

    server = serve(handler)
    client = clients(server)
    client.request()
    client.read_until(b"7\r\npartial\r\n")  # the head and the first chunk arrived
    on_reactor(server, streams[0].abort)
    assert client.wait_closed()
    with pytest.raises(ConnectionError):
        client.read_response()  # no last-chunk: the client knows the body was cut
    assert streams[0].state.name == "LOST"
    wait_idle(server)


def test_a_handler_that_raises_gets_a_plain_500_and_a_close(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        raise RuntimeError("secret detail")

    server = serve(handler)
    client = clients(server)
    client.request()
    res = client.read_response()
    assert res.status == 500
    assert only_header(res, "Content-Type") == "text/plain; charset=utf-8"
    assert only_header(res, "Connection") == "close"
    assert res.body == b"500 Internal Server Error\n"
    assert client.wait_closed()
    wait_idle(server)


def test_a_handler_that_raises_after_start_response_cuts_the_connection(
        serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        exchange.start_response(200)
        exchange.write(b"some")
        raise RuntimeError("mid-stream")

    server = serve(handler)
    client = clients(server)
    client.request()
    assert client.wait_closed()
    data = bytes(client.buffer)
    assert b"500" not in data.split(b"\r\n", 1)[0]
    with pytest.raises(ConnectionError):
        client.read_response()
    wait_idle(server)


# -- answering later, flow control, loss -------------------------------------------------------


def test_an_answer_from_a_reactor_timer(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        reactor = exchange.reactor
        assert isinstance(reactor, Reactor)
        reactor.call_later(0.01, exchange.respond, 200, (), b"later")

    client = clients(serve(handler))
    client.request()
    client.request()  # pipelined: waits in the parser until the first is answered
    assert [r.body for r in client.read_responses(2)] == [b"later", b"later"]


def test_an_answer_from_another_thread(serve: Serve, clients: Clients) -> None:
    def handler(exchange: Exchange) -> None:
        reactor = exchange.reactor
        assert reactor is not None

        def work() -> None:
            reactor.call_soon_threadsafe(exchange.respond, 200, (), b"from a thread")

        threading.Thread(target=work, daemon=True).start()

    client = clients(serve(handler))
    client.request()
    assert client.read_response().body == b"from a thread"


def test_on_drained_paces_a_stream_to_a_slow_reader(serve: Serve, clients: Clients) -> None:
    total = 8 << 20
    piece = b"z" * 65536
    high_water = 16384
    blocked = threading.Event()
    stats = {"sent": 0, "drained": 0, "max_queued": 0, "blocked": 0}

    def handler(exchange: Exchange) -> None:
        transport = exchange.connection.transport

        def pump() -> None:
            while stats["sent"] < total:
                more = exchange.write(piece)
                stats["sent"] += len(piece)
                stats["max_queued"] = max(stats["max_queued"], transport.buffer_size())
                if not more:
                    assert exchange.write_blocked
                    stats["blocked"] += 1
                    blocked.set()
                    return
            exchange.end()

        def drained() -> None:
            stats["drained"] += 1
            pump()

        exchange.on_drained = drained
        exchange.start_response(200, (), content_length=total)
        pump()

    client = clients(serve(handler, write_buffer_size=high_water), rcvbuf=4096)
    client.request()
    assert blocked.wait(DEADLINE)  # the reader has not read a byte yet
    res = client.read_response()
    assert len(res.body) == total and set(res.body) == {ord("z")}
    assert stats["drained"] >= 1 and stats["blocked"] >= 1
    # The writer waited each time: what it queued never ran past the mark by more than a piece.
    assert stats["max_queued"] <= high_water + len(piece)


def test_on_lost_is_called_when_the_client_resets_before_the_answer(
        serve: Serve, clients: Clients) -> None:
    lost = threading.Event()
    held: list[Exchange] = []

    def handler(exchange: Exchange) -> None:
        held.append(exchange)
        exchange.on_lost = lost.set  # and no answer

    server = serve(handler)
    client = clients(server)
    client.request()
    wait_until(lambda: held)
    client.close_with_reset()
    assert lost.wait(DEADLINE)
    assert held[0].state.name == "LOST"
    wait_idle(server)
    on_reactor(server, held[0].respond, 200, (), b"too late")  # ignored, not raised


def test_on_lost_is_not_called_once_the_response_is_complete(serve: Serve, clients: Clients) -> None:
    calls: list[str] = []

    def handler(exchange: Exchange) -> None:
        exchange.on_lost = lambda: calls.append("lost")
        exchange.respond(200, (), b"done")

    server = serve(handler)
    client = clients(server)
    client.request()
    client.read_response()
    client.close_with_reset()
    wait_idle(server)
    assert calls == []


# -- refused header pairs ------------------------------------------------------------------------


@pytest.mark.parametrize("pair", [
    ("Content-Length", "5"), ("content-length", "5"), ("Transfer-Encoding", "chunked"),
    ("TRANSFER-ENCODING", "gzip, chunked"),
])
def test_framing_pairs_are_refused(serve: Serve, clients: Clients, pair: tuple[str, str]) -> None:
    refused: list[str] = []

    def handler(exchange: Exchange) -> None:
        for name, call in (("respond", lambda: exchange.respond(200, [pair], b"hello")),
                           ("start_response", lambda: exchange.start_response(200, [pair]))):
            try:
                call()
            except ValueError:
                refused.append(name)
        assert exchange.state.name == "FRESH"  # nothing was sent: the handler may still answer
        exchange.respond(200, (), b"fine")

    client = clients(serve(handler))
    client.request()
    res = client.read_response()
    assert refused == ["respond", "start_response"]
    assert (res.body, only_header(res, "Content-Length")) == (b"fine", "4")


@pytest.mark.parametrize("pair", [
    ("X-Evil", "a\r\nSet-Cookie: session=stolen"), ("X-Evil", "a\nb"), ("X-Evil", "a\rb"),
    ("X-Evil\r\nSet-Cookie", "x"), ("X Evil", "x"), ("", "x"), ("X-Evil", "nul\x00"),
])
def test_header_injection_is_refused(serve: Serve, clients: Clients, pair: tuple[str, str]) -> None:
    refused: list[str] = []

    def handler(exchange: Exchange) -> None:
        for name, call in (
            ("respond", lambda: exchange.respond(200, [pair], b"")),
            ("start_response", lambda: exchange.start_response(200, [pair])),
            ("inform", lambda: exchange.inform(103, [pair])),
        ):
            try:
                call()
            except ValueError:
                refused.append(name)
        exchange.respond(200, (), b"clean")

    client = clients(serve(handler))
    client.request()
    res = client.read_response()
    assert refused == ["respond", "start_response", "inform"]
    assert res.status == 200 and res.body == b"clean"
    assert b"stolen" not in res.raw and not has_header(res, "Set-Cookie")


def test_a_bad_reason_is_refused(serve: Serve, clients: Clients) -> None:
    refused: list[str] = []

    def handler(exchange: Exchange) -> None:
        try:
            exchange.respond(200, (), b"", reason="OK\r\nSet-Cookie: a=b")
        except ValueError:
            refused.append("reason")
        exchange.respond(200, (), b"clean")

    client = clients(serve(handler))
    client.request()
    assert client.read_response().body == b"clean"
    assert refused == ["reason"]


# -- refusals and handlers -----------------------------------------------------------------------


def test_a_body_over_max_body_size_gets_the_plain_413(serve: Serve, clients: Clients) -> None:
    called: list[str] = []

    def handler(exchange: Exchange) -> None:
        called.append(exchange.head.target)
        exchange.respond(200, (), b"should not run")

    server = serve(handler, max_body_size=10)
    client = clients(server)
    client.request("POST", "/upload", body=b"x" * 100)
    res = client.read_response()
    assert res.status == 413
    assert only_header(res, "Content-Type") == "text/plain; charset=utf-8"
    assert only_header(res, "Connection") == "close"
    assert res.body.startswith(b"413 Content Too Large")
    assert called == []
    assert client.wait_closed()


def test_function_handler_is_what_a_one_argument_function_becomes() -> None:
    def handler(exchange: Exchange) -> None:
        pass

    made = as_handler(handler)
    assert isinstance(made, FunctionHandler) and made.fn is handler
    assert as_handler(made) is made  # a handler is served as it is


@pytest.mark.parametrize("target", [
    lambda a, b, c: None,  # Express middleware (req, res, next): not a whole handler
    lambda a, b, c, d: None,
    lambda: None,
    3,
    "app",
    None,
])
def test_as_handler_refuses_what_it_cannot_serve(target: Any) -> None:
    with pytest.raises(TypeError, match="cannot serve"):
        as_handler(target)


def test_a_server_refuses_what_it_cannot_serve() -> None:
    reactor = Reactor()
    try:
        with pytest.raises(TypeError, match="cannot serve"):
            Server(reactor, lambda a, b, c: None, "127.0.0.1", 0)
    finally:
        reactor.close()


# -- upgrade: the connection handed to another protocol -----------------------------------------


class EchoProtocol:
    """Echoes every byte; says ``bye`` and closes when the server asks it to shut down."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.received = bytearray()
        self.made = threading.Event()
        self.shutdown_called = threading.Event()
        self.lost = threading.Event()
        self.events: list[str] = []

    def connection_made(self, transport: Any) -> None:
        self.events.append("made")
        self.transport = transport
        self.made.set()

    def data_received(self, data: bytes) -> None:
        self.events.append("data")
        self.received += data
        self.transport.write(data)

    def eof_received(self) -> None:
        self.events.append("eof")
        self.transport.close()

    def drained(self) -> None:
        pass

    def connection_lost(self) -> None:
        self.events.append("lost")
        self.lost.set()

    def shutdown(self) -> None:
        self.events.append("shutdown")
        self.shutdown_called.set()
        self.transport.write(b"bye")
        self.transport.close()


UPGRADE_REQUEST = (b"GET /chat HTTP/1.1\r\nHost: test\r\nUpgrade: echo\r\n"
                   b"Connection: Upgrade\r\n\r\n")
UPGRADE_HEADERS = [("Upgrade", "echo"), ("Connection", "Upgrade")]


def test_upgrade_hands_the_connection_and_the_bytes_after_the_request_to_the_protocol(
        serve: Serve, clients: Clients) -> None:
    protocols: list[EchoProtocol] = []

    def handler(exchange: Exchange) -> None:
        protocol = EchoProtocol()
        protocols.append(protocol)
        exchange.upgrade(protocol, UPGRADE_HEADERS)

    server = serve(handler)
    try:
        client = clients(server)
        client.send(UPGRADE_REQUEST + b"HELLO")  # the first protocol bytes in the request's segment
        res = client.read_response()
        assert (res.status, res.reason) == (101, "Switching Protocols")
        assert only_header(res, "Upgrade") == "echo" and only_header(res, "Connection") == "Upgrade"
        assert not has_header(res, "Content-Length") and not has_header(res, "Transfer-Encoding")
        assert client.read_until(b"HELLO") == b"HELLO"
        client.send(b"more bytes")
        assert client.read_until(b"more bytes") == b"more bytes"
        protocol = protocols[0]
        assert protocol.received == b"HELLOmore bytes"
        assert server.connection_count == 1  # the switched connection still counts
        # Shutting the server down asks the protocol to end its session.
        server.shutdown(5.0)
        assert protocol.shutdown_called.is_set()
        assert client.read_until_close().endswith(b"bye")
        assert protocol.lost.wait(DEADLINE)
        assert server.connection_count == 0 and server.is_closed
        assert protocol.events[0] == "made" and protocol.events[-1] == "lost"
    finally:
        server.close()


def test_upgrade_answered_later_gets_the_bytes_sent_meanwhile(serve: Serve, clients: Clients) -> None:
    held: list[Exchange] = []
    protocol = EchoProtocol()

    def handler(exchange: Exchange) -> None:
        held.append(exchange)  # answered from the test, below

    server = serve(handler)
    try:
        client = clients(server)
        client.send(UPGRADE_REQUEST)
        wait_until(lambda: held)
        client.send(b"EARLY")  # before the 101: it waits in the connection's input
        on_reactor(server, held[0].upgrade, protocol, UPGRADE_HEADERS)
        assert client.read_response().status == 101
        assert client.read_until(b"EARLY") == b"EARLY"
        client.sock.shutdown(socket.SHUT_WR)  # the peer's EOF reaches the protocol, which closes
        assert client.wait_closed()
        assert protocol.lost.wait(DEADLINE)
        assert "eof" in protocol.events
        wait_idle(server)
    finally:
        server.close()


class FailingProtocol(EchoProtocol):
    """Raises in one of its methods (``fails_in``)."""

    def __init__(self, fails_in: str) -> None:
        super().__init__()
        self.fails_in = fails_in

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.fails_in == "connection_made":
            raise RuntimeError("protocol failed to start")

    def shutdown(self) -> None:
        self.events.append("shutdown")
        if self.fails_in == "shutdown":
            raise RuntimeError("protocol failed to stop")
        super().shutdown()


def test_a_protocol_that_fails_to_start_gets_its_connection_dropped(
        serve: Serve, clients: Clients) -> None:

    def handler(exchange: Exchange) -> None:
        exchange.upgrade(FailingProtocol("connection_made"), UPGRADE_HEADERS)

    server = serve(handler)
    try:
        client = clients(server, timeout=3.0)
        client.send(UPGRADE_REQUEST)
        # The 101 may or may not have gone out before the drop; the connection must close.
        assert client.wait_closed()
        assert not client.buffer or client.buffer.startswith(b"HTTP/1.1 101 ")
        wait_idle(server, 3.0)
    finally:
        server.close()


def test_a_protocol_that_fails_to_stop_does_not_stop_the_shutdown(
        serve: Serve, clients: Clients) -> None:
    held: list[Exchange] = []

    def handler(exchange: Exchange) -> None:
        if exchange.head.target == "/chat":
            exchange.upgrade(FailingProtocol("shutdown"), UPGRADE_HEADERS)
        else:
            held.append(exchange)  # answered below, during the shutdown

    server = serve(handler)
    try:
        switched = clients(server, timeout=3.0)
        switched.send(UPGRADE_REQUEST)
        assert switched.read_response().status == 101
        waiting = clients(server, timeout=3.0)
        waiting.request("GET", "/slow")
        wait_until(lambda: held)
        stopper = threading.Thread(target=server.shutdown, args=(1.0,), daemon=True)
        stopper.start()
        # The other connection is told: its response in flight is the last.
        wait_until(lambda: on_reactor(server, lambda: not held[0].keep_alive), 3.0)
        on_reactor(server, held[0].respond, 200, (), b"last")
        res = waiting.read_response()
        assert only_header(res, "Connection") == "close"
        stopper.join(3.0)
        assert server.is_closed
        assert switched.wait_closed()
    finally:
        server.close()


@pytest.mark.parametrize(("request_bytes", "before"), [
    (b"GET /chat HTTP/1.0\r\nHost: test\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n", None),
    (UPGRADE_REQUEST, "close_after"),
    (UPGRADE_REQUEST, "start_response"),
])
def test_upgrade_is_refused_when_the_connection_cannot_switch(
        serve: Serve, clients: Clients, request_bytes: bytes, before: str | None) -> None:
    refused: list[str] = []

    def handler(exchange: Exchange) -> None:
        if before == "close_after":
            exchange.close_after()
        elif before == "start_response":
            exchange.start_response(200, (), content_length=2)
        try:
            exchange.upgrade(EchoProtocol(), UPGRADE_HEADERS)
        except ResponseStateError:
            refused.append("upgrade")
        if exchange.state.name == "STREAMING":
            exchange.end(b"no")
        else:
            exchange.respond(200, (), b"no")

    client = clients(serve(handler))
    client.send(request_bytes)
    res = client.read_response()
    assert (res.status, res.body) == (200, b"no")
    assert refused == ["upgrade"]
