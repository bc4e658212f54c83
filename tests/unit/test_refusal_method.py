"""A request refused while its body is read is answered for its own method: a HEAD gets the
error page's head only (the page's length, no bytes), whichever event carried the error."""

from __future__ import annotations

import pytest

from evserve.errors import ParseError
from evserve.parser import RequestParser
from evserve.testing import TestClient

BAD_BODIES = [
    b"Transfer-Encoding: chunked\r\n\r\n\x000\r\n\r\n",  # a bad chunk-size line, first thing
    b"Transfer-Encoding: chunked\r\n\r\n1\r\n\x00\x00\r\n0\r\n\r\n",  # after a chunk's data
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
]


@pytest.mark.parametrize("body", BAD_BODIES)
@pytest.mark.parametrize("method", ["HEAD", "POST"])
def test_the_parse_error_names_the_method_of_the_request_being_read(method: str, body: bytes) -> None:
    parser = RequestParser()
    parser.receive_data(f"{method} /x HTTP/1.1\r\nHost: t\r\n".encode() + body)
    with pytest.raises(ParseError) as caught:
        while parser.next_event() is not None:
            pass
    assert caught.value.status == 400
    assert caught.value.method == method or (caught.value.head is not None and caught.value.head.method == method)


@pytest.mark.parametrize("body", BAD_BODIES)
def test_a_head_refused_in_its_body_gets_no_page_bytes(body: bytes) -> None:
    def handler(exchange):  # never called: the request is refused
        raise AssertionError("a refused request reached the handler")

    with TestClient(handler) as client:
        wire = client.raw(b"HEAD /x HTTP/1.1\r\nHost: t\r\n" + body)
    head, _, rest = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nContent-Length: " in head and b"\r\nConnection: close" in head
    assert rest == b""
