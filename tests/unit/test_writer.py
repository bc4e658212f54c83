"""Tests of the response writer: status line, header validation, framing decisions, Date."""

from __future__ import annotations

import email.utils
import http.client
import io
import string

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evserve import writer as writer_module
from evserve.parser import BodyChunk, RequestParser
from evserve.writer import (
    LAST_CHUNK,
    ResponseWriter,
    body_allowed,
    frame_chunk,
    http_date,
    serialize_head,
    status_line,
    validate_header,
    validate_reason,
)


def parse_head(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Split a serialized head into its status line and header lines (checking CRLFs)."""
    assert data.endswith(b"\r\n\r\n")
    text = data[:-4].decode("latin-1")
    assert "\n" not in text.replace("\r\n", "")
    assert "\r" not in text.replace("\r\n", "")
    status_line, *lines = text.split("\r\n")
    pairs = []
    for line in lines:
        name, _, value = line.partition(": ")
        pairs.append((name, value))
    return status_line, pairs


# -- status line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "line"),
    [
        (200, "HTTP/1.1 200 OK"),
        (201, "HTTP/1.1 201 Created"),
        (304, "HTTP/1.1 304 Not Modified"),
        (404, "HTTP/1.1 404 Not Found"),
        (418, "HTTP/1.1 418 I'm a Teapot"),
        (500, "HTTP/1.1 500 Internal Server Error"),
        (100, "HTTP/1.1 100 Continue"),
    ],
)
def test_status_line_standard_reason(code: int, line: str) -> None:
    assert parse_head(serialize_head(code, []))[0] == line


def test_status_line_unknown_code_and_custom_reason() -> None:
    status_line = parse_head(serialize_head(299, []))[0]
    assert status_line.startswith("HTTP/1.1 299 ")
    assert parse_head(serialize_head(200, [], "Fine\tthanks"))[0] == "HTTP/1.1 200 Fine\tthanks"
    assert parse_head(serialize_head(599, [], ""))[0] == "HTTP/1.1 599 "
    assert serialize_head(200, [], "caf\xe9").startswith(b"HTTP/1.1 200 caf\xe9\r\n")


@pytest.mark.parametrize("code", [0, 99, 1000, -200])
@pytest.mark.parametrize("reason", [None, "X"])
def test_status_out_of_range(code: int, reason: str | None) -> None:
    with pytest.raises(ValueError):
        serialize_head(code, [], reason)


def test_headers_are_written_in_order() -> None:
    data = serialize_head(200, [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    assert data == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
    )


# -- validation: nothing malformed reaches the wire -------------------------------------------

CONTROL = [chr(c) for c in range(0x20) if c != 0x09] + ["\x7f"]


@pytest.mark.parametrize("ch", CONTROL, ids=[f"{ord(c):#04x}" for c in CONTROL])
def test_control_characters_in_value_raise(ch: str) -> None:
    with pytest.raises(ValueError):
        validate_header("X-Test", f"a{ch}b")
    with pytest.raises(ValueError):
        validate_header("X-Test", ch)
    with pytest.raises(ValueError):
        serialize_head(200, [("X-Test", f"value{ch}")])


@pytest.mark.parametrize("ch", [*CONTROL, " ", "\t", ":", "(", '"', "\xe9", "é"])
def test_bad_characters_in_name_raise(ch: str) -> None:
    with pytest.raises(ValueError):
        validate_header(f"X{ch}Y", "v")
    with pytest.raises(ValueError):
        serialize_head(200, [(f"X{ch}Y", "v")])


@pytest.mark.parametrize("ch", CONTROL, ids=[f"{ord(c):#04x}" for c in CONTROL])
def test_control_characters_in_reason_raise(ch: str) -> None:
    with pytest.raises(ValueError):
        validate_reason(f"OK{ch}")
    with pytest.raises(ValueError):
        serialize_head(200, [], f"O{ch}K")
    with pytest.raises(ValueError):
        ResponseWriter("GET", "1.1", True).head(200, [], reason=f"O{ch}K")


def test_response_splitting_is_impossible() -> None:
    for value in ["x\r\nSet-Cookie: evil=1", "x\nLocation: /evil", "x\rY: z", "\r\n\r\n<html>"]:
        with pytest.raises(ValueError):
            ResponseWriter("GET", "1.1", True).head(302, [("Location", value)], content_length=0)


def test_non_latin1_and_non_str_are_refused() -> None:
    with pytest.raises(ValueError):
        validate_header("X", "snow \u2603")
    with pytest.raises(ValueError):
        validate_reason("\u2603")
    with pytest.raises(ValueError):
        validate_header("", "v")
    with pytest.raises(ValueError):
        validate_header("X", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        validate_header(b"X", "v")  # type: ignore[arg-type]


def test_valid_values_pass() -> None:
    validate_header("X-Ok", "")
    validate_header("X-Ok", "a\tb c")
    validate_header("X-Ok", "obs-text \x80\xff")
    validate_header("!#$%&'*+-.^_`|~09azAZ", "v")
    validate_reason("")
    validate_reason("Tout va bien\t!")


def test_validate_false_skips_checks() -> None:
    assert serialize_head(200, [("X", "a")], validate=False) == b"HTTP/1.1 200 OK\r\nX: a\r\n\r\n"


# -- framing decisions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "code", "allowed"),
    [
        ("GET", 200, True),
        ("POST", 201, True),
        ("GET", 404, True),
        ("HEAD", 200, False),
        ("HEAD", 404, False),
        ("GET", 100, False),
        ("GET", 101, False),
        ("GET", 103, False),
        ("GET", 204, False),
        ("GET", 304, False),
        ("POST", 304, False),
    ],
)
def test_body_allowed(method: str, code: int, allowed: bool) -> None:
    assert body_allowed(method, code) is allowed


def framing(w: ResponseWriter, code: int, content_length: int | None, body: bytes = b"hello") -> tuple[dict[str, str], bytes]:
    head = w.head(code, [("X-App", "1")], content_length=content_length)
    _, pairs = parse_head(head)
    names = [n.lower() for n, _ in pairs]
    assert len(names) == len(set(names)), pairs  # the writer never duplicates a header
    wire = w.body(body) + w.end()
    return {n.lower(): v for n, v in pairs}, wire


def test_known_length_gets_content_length() -> None:
    w = ResponseWriter("GET", "1.1", True)
    headers, wire = framing(w, 200, 5)
    assert headers == {"x-app": "1", "content-length": "5"}
    assert wire == b"hello" and not w.chunked and w.has_body and w.keep_alive


def test_streamed_body_is_chunked_on_http11() -> None:
    w = ResponseWriter("GET", "1.1", True)
    headers, _ = framing(w, 200, None, b"")
    assert headers == {"x-app": "1", "transfer-encoding": "chunked"} and w.chunked
    w = ResponseWriter("GET", "1.1", True)
    w.head(200, [])
    wire = w.body(b"hello") + w.body(b"") + w.body(b" world!") + w.end(b"bye")
    assert wire == b"5\r\nhello\r\n7\r\n world!\r\n3\r\nbye\r\n0\r\n\r\n"
    assert w.keep_alive
    # The client side of the same framing reads it back.
    p = RequestParser()
    p.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + wire)
    events = []
    while (e := p.next_event()) is not None:
        events.append(e)
    assert b"".join(e.data for e in events if isinstance(e, BodyChunk)) == b"hello world!bye"


def test_streamed_body_is_close_delimited_on_http10() -> None:
    w = ResponseWriter("GET", "1.0", True)
    headers, wire = framing(w, 200, None)
    assert headers == {"x-app": "1", "connection": "close"}
    assert wire == b"hello" and not w.chunked and not w.keep_alive


def test_http10_keep_alive_with_known_length() -> None:
    w = ResponseWriter("GET", "1.0", True)
    headers, _ = framing(w, 200, 5)
    assert headers == {"x-app": "1", "content-length": "5", "connection": "keep-alive"}
    assert w.keep_alive
    w = ResponseWriter("GET", "1.0", False)
    headers, _ = framing(w, 200, 5)
    assert headers == {"x-app": "1", "content-length": "5", "connection": "close"}


def test_not_keep_alive_on_http11_says_close() -> None:
    w = ResponseWriter("GET", "1.1", False)
    headers, _ = framing(w, 200, 5)
    assert headers["connection"] == "close" and not w.keep_alive
    w = ResponseWriter("GET", "1.1", True)
    headers, _ = framing(w, 200, 5)
    assert "connection" not in headers


@pytest.mark.parametrize(
    ("method", "code", "content_length", "expected"),
    [
        ("HEAD", 200, 5, {"content-length": "5"}),  # what GET would have sent
        ("HEAD", 200, None, {}),
        ("GET", 204, 5, {}),  # RFC 9110 section 8.6: no Content-Length in a 204
        ("GET", 204, None, {}),
        ("GET", 304, 5, {}),
        ("GET", 304, None, {}),
        ("HEAD", 304, None, {}),
    ],
)
def test_no_body_responses(method: str, code: int, content_length: int | None, expected: dict[str, str]) -> None:
    w = ResponseWriter(method, "1.1", True)
    headers, wire = framing(w, code, content_length)
    headers.pop("x-app")
    assert headers == expected
    assert wire == b""  # body bytes passed in are dropped, and no last-chunk either
    assert not w.has_body and not w.chunked and w.keep_alive


def test_interim_responses_then_final() -> None:
    w = ResponseWriter("POST", "1.1", True)
    interim = w.head(100, [])
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"  # no framing headers on a 1xx
    assert w.body(b"x") == b"" and not w.has_body
    assert w.head(103, [("Link", "</s.css>; rel=preload")]) == (
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    )
    final = w.head(200, [], content_length=2)
    assert final.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 2\r\n" in final
    assert w.has_body and w.body(b"ok") == b"ok"


def test_head_twice_raises() -> None:
    w = ResponseWriter("GET", "1.1", True)
    w.head(200, [], content_length=0)
    with pytest.raises(RuntimeError):
        w.head(200, [], content_length=0)


def test_frame_chunk() -> None:
    assert frame_chunk(b"") == b""
    assert frame_chunk(b"a") == b"1\r\na\r\n"
    assert frame_chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert frame_chunk(memoryview(b"abc")) == b"3\r\nabc\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"


# -- Date -------------------------------------------------------------------------------------


def test_http_date_format() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110 section 5.6.7
    assert email.utils.parsedate_to_datetime(http_date(1700000000)).timestamp() == 1700000000


def test_http_date_is_computed_once_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    real = email.utils.formatdate

    def counting(timeval: float, localtime: bool = False, usegmt: bool = False) -> str:
        calls.append(timeval)
        return real(timeval, localtime, usegmt)

    monkeypatch.setattr(writer_module, "formatdate", counting)
    first = http_date(1_800_000_000)
    for _ in range(100):
        assert http_date(1_800_000_000) == first
    assert calls == [1_800_000_000]
    second = http_date(1_800_000_001)
    assert second != first and calls == [1_800_000_000, 1_800_000_001]
    assert http_date(1_800_000_001) == second and len(calls) == 2


def test_date_header_is_added() -> None:
    w = ResponseWriter("GET", "1.1", True)
    _, pairs = parse_head(w.head(200, [], content_length=0, date=http_date(0)))
    assert ("Date", "Thu, 01 Jan 1970 00:00:00 GMT") in pairs


# -- property: what the writer frames, HTTP clients read back ---------------------------------


class _FakeSocket:
    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def makefile(self, mode: str, *args: object, **kwargs: object) -> io.BytesIO:
        return self._file


def check_clients_read_what_was_written(
    method: str,
    version: str,
    keep_alive: bool,
    status: int,
    headers: list[tuple[str, str]],
    parts: list[bytes],
    known_length: bool,
) -> None:
    """A response framed by ResponseWriter reads back, through h11 and http.client, with the
    same status, headers and body, and the same verdict on keeping the connection open."""
    body = b"".join(parts)
    w = ResponseWriter(method, version, keep_alive)
    wire = w.head(status, headers, content_length=len(body) if known_length else None)
    for part in parts:
        wire += w.body(part)
    wire += w.end()
    sent_body = body if w.has_body else b""

    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "a")]))
    client.send(h11.EndOfMessage())
    client.receive_data(wire)
    if not w.keep_alive:
        client.receive_data(b"")  # the server closes after a response that does not persist
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == status
    got = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers.raw_items()]
    framing = {"content-length", "transfer-encoding", "connection"}
    assert [(n, v) for n, v in got if n.lower() not in framing] == headers
    received = b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Data):
            received += bytes(event.data)
        else:
            assert isinstance(event, h11.EndOfMessage), event
            break
    assert received == sent_body
    assert (client.their_state is h11.MUST_CLOSE) == (not w.keep_alive)

    reply = http.client.HTTPResponse(_FakeSocket(wire), method=method)  # type: ignore[arg-type]
    reply.begin()
    assert reply.status == status
    assert reply.read() == sent_body
    assert reply.will_close == (not w.keep_alive)


_names = st.text(alphabet="!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits, min_size=1, max_size=10).filter(
    lambda n: n.lower() not in {"content-length", "transfer-encoding", "connection", "date"}
)
_values = st.text(alphabet="".join(chr(c) for c in range(0x21, 0x7F)) + "\x80\xe9\xff", max_size=12).map(
    lambda v: v.strip()
)
responses = st.tuples(
    st.sampled_from(["GET", "POST", "HEAD"]),
    st.sampled_from(["1.1", "1.0"]),
    st.booleans(),
    st.sampled_from([200, 201, 204, 206, 301, 304, 400, 404, 418, 500, 503, 299, 599]),
    st.lists(st.tuples(_names, _values), max_size=5),
    st.lists(st.binary(min_size=0, max_size=50), max_size=5),
    st.booleans(),
)


@given(responses)
def test_clients_read_what_was_written(args: tuple) -> None:  # type: ignore[type-arg]
    check_clients_read_what_was_written(*args)


def test_status_line() -> None:
    assert status_line(200) == "HTTP/1.1 200 OK\r\n"
    assert status_line(404, "Nope") == "HTTP/1.1 404 Nope\r\n"
    assert status_line(299).startswith("HTTP/1.1 299 ") and status_line(299).endswith("\r\n")
    for code in (99, 1000):
        with pytest.raises(ValueError):
            status_line(code)
    with pytest.raises(ValueError):
        status_line(200, "OK\r\nX: y")
