"""The parser's side of the seam: heads that cannot change once parsed, and the hand-over of a
connection's bytes to another protocol (``switch_protocol``)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evserve.errors import ParseError
from evserve.headers import Headers
from evserve.parser import BodyChunk, EndOfMessage, RequestHead, RequestParser
from tests.strategies import GenRequest, requests, split_at

HEAD = (
    b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Cookie: a=1\r\nCookie: b=2\r\nAccept: text/html\r\n\r\n"
)
FIELDS = ("method", "target", "http_version", "headers", "keep_alive", "expect_continue",
          "content_length", "chunked")


def head_of(data: bytes, parser: RequestParser | None = None) -> RequestHead:
    """The head of the one request in ``data`` (read to its end, so ``parser`` can go on)."""
    p = parser if parser is not None else RequestParser()
    p.receive_data(data)
    event = p.next_event()
    assert isinstance(event, RequestHead)
    assert type(p.next_event()) is EndOfMessage
    return event


def events_until_end(p: RequestParser) -> list[object]:
    out: list[object] = []
    while (event := p.next_event()) is not None:
        out.append(event)
        if type(event) is EndOfMessage:
            break
    return out


# -- immutable heads ----------------------------------------------------------------------


def test_a_request_head_keeps_its_field_names_and_refuses_changes() -> None:
    head = head_of(HEAD)
    assert RequestHead._fields == FIELDS
    assert (head.method, head.target, head.http_version) == ("GET", "/chat", "1.1")
    assert (head.keep_alive, head.expect_continue, head.content_length, head.chunked) == (True, False, None, False)
    for name in FIELDS:
        with pytest.raises(AttributeError):
            setattr(head, name, getattr(head, name))
    with pytest.raises(TypeError):
        dataclasses.replace(head, method="POST")  # type: ignore[type-var]
    # A changed copy is a new head; the parsed one stays as it was.
    assert head._replace(method="POST").method == "POST" and head.method == "GET"


def test_a_request_head_is_built_like_before() -> None:
    headers = Headers([("Host", "h")])
    by_position = RequestHead("GET", "/", "1.1", headers, True, False, None, False)
    by_name = RequestHead(method="GET", target="/", http_version="1.1", headers=headers, keep_alive=True,
                          expect_continue=False, content_length=None, chunked=False)
    assert by_position == by_name and type(by_position) is RequestHead
    assert head_of(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n") == by_position


def test_headers_give_nothing_that_changes_them() -> None:
    headers = head_of(HEAD).headers
    before = list(headers.raw_items())
    raw = headers.raw_items()
    assert isinstance(raw, tuple) and all(isinstance(line, tuple) for line in raw)
    with pytest.raises(TypeError):
        raw[0] = ("host", "evil")  # type: ignore[index]
    items = headers.items()
    items.append(("x-evil", "1"))
    items[0] = ("host", "evil")
    headers.get_all("cookie").append("c=3")
    lowered = headers.lowered
    with pytest.raises(TypeError):
        lowered["host"] = "evil"  # type: ignore[index]
    with pytest.raises(TypeError):
        del lowered["host"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        headers["host"] = "evil"  # type: ignore[index]
    with pytest.raises(AttributeError):
        headers.lowered = {}  # type: ignore[misc]
    with pytest.raises(AttributeError):
        headers.extra = 1  # type: ignore[attr-defined]
    assert list(headers.raw_items()) == before
    assert headers["host"] == "example.com" and headers.get_all("cookie") == ["a=1", "b=2"]
    assert headers["cookie"] == "a=1; b=2" and "x-evil" not in headers


def test_lowered_is_the_mapping_without_case_folding() -> None:
    headers = head_of(HEAD).headers
    assert dict(headers.lowered) == dict(headers.items()) | {"cookie": "a=1; b=2"}
    assert "upgrade" in headers.lowered and "Upgrade" not in headers.lowered
    assert "Upgrade" in headers and headers.get("UPGRADE") == "websocket"
    built = Headers([("Content-Length", "3"), ("X-A", "1"), ("x-a", "2")])
    assert built.lowered == {"content-length": "3", "x-a": "1, 2"}
    assert built.raw_items() == (("content-length", "3"), ("x-a", "1"), ("x-a", "2"))


def test_headers_built_by_hand_are_immutable_and_equal_to_parsed_ones() -> None:
    lines = [("Host", "example.com")]
    headers = Headers(lines)
    lines.append(("x", "y"))  # the caller's list is not kept
    assert headers.raw_items() == (("host", "example.com"),)
    assert headers == head_of(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").headers
    assert headers == {"HOST": "example.com"} and repr(headers) == "Headers([('host', 'example.com')])"
    given_index = Headers([("host", "a")], {"host": "a"})
    assert isinstance(given_index.raw_items(), tuple) and given_index["Host"] == "a"


def test_a_shared_head_cannot_carry_one_request_into_another() -> None:
    # The same head on one connection, then on another: whatever the handler of one request
    # tried on its head, the others see exactly what their client sent.
    data = HEAD.replace(b"/chat", b"/chat/shared")
    one = RequestParser()
    head_of(data, one)
    shared = head_of(data, one)  # seen twice: kept, and handed out again from now on
    shared.headers.items().append(("x-evil", "1"))
    shared.headers.get_all("host").clear()
    with pytest.raises(AttributeError):
        shared.keep_alive = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        shared.headers.lowered["x-evil"] = "1"  # type: ignore[index]
    for later in (head_of(data, one), head_of(data)):
        assert later is shared
        assert later.keep_alive and "x-evil" not in later.headers and later.headers["host"] == "example.com"
        assert later.headers.raw_items() == head_of(HEAD).headers.raw_items()


@pytest.mark.parametrize("request_", [
    b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n\r\n",
])
def test_a_parser_between_requests_holds_no_bytes(request_: bytes) -> None:
    p = RequestParser()
    p.receive_data(request_)
    events_until_end(p)
    assert p._buf == b""  # the request's bytes are not kept alive by an idle connection
    p.receive_data(request_ + request_[:5])  # a pipelined start stays, of course
    events_until_end(p)
    assert p.buffered == 5 and p.in_message


# -- switch_protocol ----------------------------------------------------------------------


def test_switch_protocol_hands_back_what_followed_the_request_and_parses_no_more() -> None:
    p = RequestParser()
    frames = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # a masked WebSocket text frame
    p.receive_data(HEAD + frames)
    assert [type(e) for e in events_until_end(p)] == [RequestHead, EndOfMessage]
    assert p.switch_protocol() == frames
    assert p.next_event() is None and p.buffered == 0
    assert not p.in_message and p.is_done
    p.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")  # dropped: never parsed as HTTP
    p.receive_data(b"")
    assert p.next_event() is None and p.buffered == 0 and not p.in_message
    assert p.switch_protocol() == b""


def test_switch_protocol_copies_nothing_it_need_not() -> None:
    p = RequestParser()
    p.receive_data(HEAD)
    events_until_end(p)
    later = b"\x88\x80\x00\x00\x00\x00"
    p.receive_data(later)
    assert p.switch_protocol() is later  # received after the request: handed back as is


@pytest.mark.parametrize("trailing", [b"", b"\x00", b"\r\n", b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"])
def test_switch_protocol_after_bodies(trailing: bytes) -> None:
    sized = b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    chunked = b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
    for request in (sized, chunked, HEAD):
        p = RequestParser()
        p.receive_data(request[:20])
        assert p.next_event() is None
        p.receive_data(request[20:] + trailing)
        events = events_until_end(p)
        assert type(events[-1]) is EndOfMessage
        assert b"".join(e.data for e in events if type(e) is BodyChunk) == (b"abc" if request != HEAD else b"")
        assert p.switch_protocol() == trailing
        assert p.next_event() is None


def test_switch_protocol_before_the_end_of_message_starts_after_the_last_event() -> None:
    p = RequestParser()
    p.receive_data(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n\x16\x03\x01")
    assert type(p.next_event()) is RequestHead
    assert p.switch_protocol() == b"\x16\x03\x01"  # EndOfMessage was due, not yet returned
    assert p.next_event() is None


def test_switch_protocol_ends_a_parse_error_and_never_raises() -> None:
    p = RequestParser()
    p.receive_data(b"BAD\r\n\r\nrest")
    with pytest.raises(ParseError):
        p.next_event()
    assert p.switch_protocol() == b"BAD\r\n\r\nrest"  # nothing was consumed
    assert p.next_event() is None and p.is_done
    fresh = RequestParser()
    assert fresh.switch_protocol() == b"" and fresh.next_event() is None


def test_switch_protocol_after_the_peer_closed() -> None:
    p = RequestParser()
    p.receive_data(HEAD + b"bye")
    p.receive_data(b"")
    events_until_end(p)
    assert p.switch_protocol() == b"bye" and p.next_event() is None


@given(
    request=requests(),
    trailing=st.one_of(st.binary(max_size=64), st.just(HEAD), st.binary(max_size=8).map(lambda b: HEAD + b)),
    later=st.lists(st.binary(min_size=1, max_size=16), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_switch_protocol_hands_back_exactly_the_trailing_bytes(
    request: GenRequest, trailing: bytes, later: list[bytes], cuts: list[int]
) -> None:
    """However ``request + trailing`` is split into receives, switching right after the
    request's EndOfMessage hands back the part of ``trailing`` received by then, each byte once,
    and nothing received afterwards is parsed."""
    p = RequestParser()
    pieces = split_at(request.raw + trailing, cuts)
    events: list[object] = []
    fed = 0
    for piece in pieces:
        p.receive_data(piece)
        fed += len(piece)
        events += events_until_end(p)
        if events and type(events[-1]) is EndOfMessage:
            break
    assert [type(e) for e in events if type(e) is not BodyChunk] == [RequestHead, EndOfMessage]
    assert fed >= len(request.raw)
    handed_back = p.switch_protocol()
    assert handed_back == (request.raw + trailing)[len(request.raw) : fed]
    rest = (request.raw + trailing)[fed:]
    for piece in [rest, *later]:
        if piece:
            p.receive_data(piece)
        assert p.next_event() is None and p.buffered == 0 and not p.in_message
    assert handed_back + rest == trailing
    assert p.switch_protocol() == b""
