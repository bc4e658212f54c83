"""Response framing checked against h11, without sockets.

For a table of requests (method, version, keep-alive) and responses (status, body length known
or streamed), the bytes evserve produces are fed to an h11 client that sent that request: h11
must read the same status and body (none for HEAD, 204 and 304), find nothing after it, and
agree on whether the connection persists. Checked twice: on the head ``writer.frame_response``
decides alone, and on what a real ``Connection`` writes when a ``fn(exchange)`` handler answers
through ``respond`` or ``start_response``/``write``/``end``.

h11 sends only HTTP/1.1 requests; framing a response does not depend on the request's version
beyond what ``frame_response`` is told, so the HTTP/1.0 cases are read by a 1.1 client.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest

from evserve.config import Config
from evserve.connection import Connection, State
from evserve.exchange import Exchange
from evserve.handlers import FunctionHandler
from evserve.writer import Framing, frame_response, status_line

METHODS = ("GET", "HEAD", "POST")
VERSIONS = ("1.1", "1.0")
STATUSES = (200, 201, 204, 304, 404, 500)
LENGTHS = (None, 0, 5)
NO_BODY_STATUSES = (204, 304)


def body_of(length: int | None) -> bytes:
    """The body a response of ``length`` carries (a streamed one when None)."""
    return b"streamed body" if length is None else b"x" * length


def carries_body(method: str, status: int) -> bool:
    return method != "HEAD" and status not in NO_BODY_STATUSES


@dataclass
class H11View:
    """What an h11 client read from a response."""

    response: Any = None
    body: bytes = b""
    ended: bool = False
    their_state: Any = None
    trailing: bytes = b""
    informational: list[Any] = field(default_factory=list)


def h11_reads(method: str, data: bytes, *, closed: bool) -> H11View:
    """Feed ``data`` (then the end of the connection when ``closed``) to an h11 client that
    sent ``method /``; raises h11's errors when it cannot read a response from it."""
    client = h11.Connection(h11.CLIENT)
    headers = [("Host", "test")] + ([("Content-Length", "0")] if method == "POST" else [])
    client.send(h11.Request(method=method, target="/", headers=headers))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    if closed:
        client.receive_data(b"")
    view = H11View()
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            break
        if isinstance(event, h11.InformationalResponse):
            view.informational.append(event)
        elif isinstance(event, h11.Response):
            view.response = event
        elif isinstance(event, h11.Data):
            view.body += event.data
        elif isinstance(event, h11.EndOfMessage):
            view.ended = True
            break
    view.their_state = client.their_state
    view.trailing = client.trailing_data[0]
    return view


def check_h11_agrees(view: H11View, method: str, status: int, body: bytes, keep_alive: bool) -> None:
    assert view.response is not None, "h11 read no response"
    assert view.response.status_code == status
    assert view.ended, "h11 did not find the end of the response"
    assert view.body == (body if carries_body(method, status) else b"")
    assert view.trailing == b"", "bytes after the response"
    assert view.their_state is (h11.DONE if keep_alive else h11.MUST_CLOSE)


# -- frame_response alone ----------------------------------------------------------------------

CASES = list(itertools.product(METHODS, VERSIONS, STATUSES, LENGTHS, (True, False)))


def encode(framing: Framing, body: bytes) -> bytes:
    """The body on the wire under ``framing`` (written here independently of the writer)."""
    if framing is Framing.NO_BODY:
        return b""
    if framing is Framing.CHUNKED:
        return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    return body


@pytest.mark.parametrize(("method", "version", "status", "length", "keep_alive"), CASES)
def test_frame_response_agrees_with_h11(
        method: str, version: str, status: int, length: int | None, keep_alive: bool) -> None:
    framing, lines, persists = frame_response(method, version, status, length, keep_alive)
    body = body_of(length)
    data = f"{status_line(status, None)}{lines}\r\n".encode("latin-1") + encode(framing, body)
    # Expected framing, from RFC 9112 section 6.3 read independently.
    if not carries_body(method, status):
        assert framing is Framing.NO_BODY
    elif length is not None:
        assert framing is Framing.LENGTH
    else:
        assert framing is (Framing.CHUNKED if version == "1.1" else Framing.CLOSE)
    assert persists == (keep_alive and framing is not Framing.CLOSE)
    check_h11_agrees(h11_reads(method, data, closed=not persists), method, status, body, persists)


@pytest.mark.parametrize("status", [204, 304])
def test_no_content_length_on_204_and_304(status: int) -> None:
    for method, length in itertools.product(METHODS, LENGTHS):
        _, lines, _ = frame_response(method, "1.1", status, length, True)
        assert "Content-Length" not in lines and "Transfer-Encoding" not in lines


def test_a_head_response_states_the_length_a_get_would_carry() -> None:
    framing, lines, _ = frame_response("HEAD", "1.1", 200, 1234, True)
    assert framing is Framing.NO_BODY and lines == "Content-Length: 1234\r\n"
    _, lines, _ = frame_response("HEAD", "1.1", 200, None, True)
    assert lines == ""  # unknown: nothing is stated (never chunked for a HEAD)


# -- through a Connection and its Exchange -----------------------------------------------------


class RecordingTransport:
    """A transport that keeps what is written and reads files at once."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.out += data

    def send_file(self, file: Any, offset: int, count: int) -> None:
        file.seek(offset)
        self.out += file.read(count)
        file.close()

    def buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def request_bytes(method: str, version: str, keep_alive: bool) -> bytes:
    lines = [f"{method} / HTTP/{version}", "Host: test"]
    if version == "1.0" and keep_alive:
        lines.append("Connection: keep-alive")
    if version == "1.1" and not keep_alive:
        lines.append("Connection: close")
    if method == "POST":
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(mode: str, status: int, length: int | None) -> Any:
    """A ``fn(exchange)`` answering ``status`` with ``body_of(length)`` the way ``mode`` says."""
    body = body_of(length)

    def handler(exchange: Exchange) -> None:
        if mode == "respond":
            exchange.respond(status, [("Content-Type", "text/plain")], body)
            return
        if exchange.start_response(status, [("Content-Type", "text/plain")], content_length=length):
            half = len(body) // 2
            exchange.write(body[:half])
            exchange.write(body[half:])
            exchange.end()

    return handler


EXCHANGE_CASES = [
    (mode, method, version, status, length, keep_alive)
    for mode, method, version, status, length, keep_alive
    in itertools.product(("respond", "stream"), METHODS, VERSIONS, STATUSES, LENGTHS, (True, False))
    if not (mode == "respond" and length is None)
]


@pytest.mark.parametrize(("mode", "method", "version", "status", "length", "keep_alive"), EXCHANGE_CASES)
def test_what_an_exchange_writes_agrees_with_h11(
        mode: str, method: str, version: str, status: int, length: int | None, keep_alive: bool) -> None:
    transport = RecordingTransport()
    conn = Connection(FunctionHandler(answer(mode, status, length)), Config(), transport,
                      clock=lambda: 0.0)
    conn.data_received(request_bytes(method, version, keep_alive))
    persists = not transport.closed
    assert conn.state is (State.IDLE if persists else State.CLOSING)
    assert conn.requests_served == 1 and not transport.aborted
    if persists:
        # What the request asked for, unless the body must end with the connection.
        assert keep_alive and not (length is None and version == "1.0" and carries_body(method, status))
    view = h11_reads(method, bytes(transport.out), closed=not persists)
    check_h11_agrees(view, method, status, body_of(length), persists)
    # One Date, added by the exchange.
    head = bytes(transport.out).split(b"\r\n\r\n", 1)[0].lower()
    assert head.count(b"\r\ndate: ") == 1


def test_interim_responses_come_before_the_final_one_for_h11() -> None:
    def handler(exchange: Exchange) -> None:
        exchange.inform(103, [("Link", "</a.css>; rel=preload")])
        exchange.inform(100)
        exchange.respond(200, (), b"page")

    transport = RecordingTransport()
    conn = Connection(FunctionHandler(handler), Config(), transport, clock=lambda: 0.0)
    conn.data_received(request_bytes("GET", "1.1", True))
    view = h11_reads("GET", bytes(transport.out), closed=False)
    assert [event.status_code for event in view.informational] == [103, 100]
    check_h11_agrees(view, "GET", 200, b"page", True)
