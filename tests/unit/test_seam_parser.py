"""The parser's side of the seam: heads that cannot change once parsed."""

from __future__ import annotations

import dataclasses

import pytest

from evserve.headers import Headers
from evserve.parser import EndOfMessage, RequestHead, RequestParser

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
