"""Table-driven tests of the request parser against SPEC section 7 and RFC 9112.

Every invalid case is fed twice, whole and one byte at a time, and must give the same status
both ways. Linear cost is checked by counting work, never by timing.
"""

from __future__ import annotations

import sys

import pytest

from evserve import parser as parser_module
from evserve.errors import ParseError
from evserve.parser import BodyChunk, EndOfMessage, RequestHead, RequestParser
from tests.strategies import Outcome, parse_stream

HOST = b"Host: example.com\r\n"


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def outcome(data: bytes, *, split: bool = False, eof: bool = True, **limits: int) -> Outcome:
    chunks = bytewise(data) if split else [data]
    return parse_stream(chunks, eof=eof, parser=RequestParser(**limits))


def status(data: bytes, **limits: int) -> int | None:
    """The error status for ``data``, checked to be the same fed whole and fed bytewise."""
    whole = outcome(data, **limits)
    split = outcome(data, split=True, **limits)
    assert whole.error == split.error, (whole, split)
    assert whole.events == split.events
    return whole.error


def only_head(data: bytes, **limits: int) -> RequestHead:
    p = RequestParser(**limits)
    p.receive_data(data)
    event = p.next_event()
    assert isinstance(event, RequestHead), event
    return event


def body_of(data: bytes, **limits: int) -> tuple[bytes, list[tuple[str, str]]]:
    """Body and trailers of the single request in ``data`` (fed whole and bytewise: same)."""
    results = []
    for split in (False, True):
        out = outcome(data, split=split, **limits)
        assert out.error is None, out
        assert out.events[0][0] == "head" and out.events[-1][0] == "end", out.events
        body = b"".join(e[1] for e in out.events if e[0] == "body")  # type: ignore[misc]
        results.append((body, list(out.events[-1][1])))  # type: ignore[call-overload]
    assert results[0] == results[1]
    return results[0]


# -- valid requests: fields ---------------------------------------------------------------------


def test_simple_get() -> None:
    p = RequestParser()
    p.receive_data(b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n")
    head = p.next_event()
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.http_version) == ("GET", "/a/b?c=d", "1.1")
    assert head.headers.items() == [("host", "example.com"), ("accept", "*/*")]
    assert head.headers["ACCEPT"] == "*/*"
    assert head.keep_alive and not head.expect_continue and not head.chunked
    assert head.content_length is None
    assert isinstance(p.next_event(), EndOfMessage)
    assert p.next_event() is None
    assert not p.in_message and not p.is_done


def test_header_values_are_ows_stripped_and_latin1_kept() -> None:
    head = only_head(
        b"GET / HTTP/1.1\r\nHost:example.com\r\nX-A: \t a  b\t \r\nX-B:\r\nX-C: caf\xe9\r\n\r\n"
    )
    assert head.headers.items() == [
        ("host", "example.com"),
        ("x-a", "a  b"),
        ("x-b", ""),
        ("x-c", "caf\xe9"),
    ]


def test_repeated_headers_are_kept_in_order_and_joined() -> None:
    head = only_head(b"GET / HTTP/1.1\r\n" + HOST + b"Accept: a\r\nX: 1\r\naccept: b\r\n\r\n")
    assert head.headers.get_all("accept") == ["a", "b"]
    assert head.headers["accept"] == "a, b"
    assert [n for n, _ in head.headers.items()] == ["host", "accept", "x", "accept"]


def test_method_case_is_preserved_and_any_token_is_a_method() -> None:
    assert only_head(b"get / HTTP/1.1\r\n" + HOST + b"\r\n").method == "get"
    assert only_head(b"M-SEARCH /x HTTP/1.1\r\n" + HOST + b"\r\n").method == "M-SEARCH"
    assert only_head(b"X!#$%&'*+.^_`|~1 / HTTP/1.1\r\n" + HOST + b"\r\n").method == "X!#$%&'*+.^_`|~1"


def test_http_10_without_host_is_accepted() -> None:
    head = only_head(b"GET / HTTP/1.0\r\n\r\n")
    assert head.http_version == "1.0" and not head.keep_alive


def test_empty_host_is_accepted() -> None:
    # RFC 9112 section 3.2: a client sends an empty Host when the target URI has no authority.
    assert only_head(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").headers["host"] == ""


@pytest.mark.parametrize(
    "host",
    [b"example.com", b"example.com:8080", b"127.0.0.1:1", b"[::1]", b"[::1]:443", b"xn--bcher-kva.example", b"a_b~c"],
)
def test_valid_hosts(host: bytes) -> None:
    assert only_head(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").headers["host"] == host.decode()


def test_leading_empty_lines_are_ignored() -> None:
    # RFC 9112 section 2.2: a server SHOULD ignore at least one empty line before the request line.
    out = outcome(b"\r\n\r\nGET / HTTP/1.1\r\n" + HOST + b"\r\n")
    assert out.error is None and out.events[0][1:3] == ("GET", "/")
    p = RequestParser()
    p.receive_data(b"\r\n")
    assert p.next_event() is None
    p.receive_data(b"")
    assert p.next_event() is None  # blank lines then EOF: a clean close, not an error


# -- request-target forms (RFC 9112 section 3.2) -----------------------------------------------


@pytest.mark.parametrize(
    ("line", "target"),
    [
        (b"GET /where?q=now HTTP/1.1", "/where?q=now"),
        (b"GET /%7Euser/a%20b HTTP/1.1", "/%7Euser/a%20b"),
        (b"GET //double//slash HTTP/1.1", "//double//slash"),
        (b"GET http://www.example.org/pub/WWW/TheProject.html HTTP/1.1", "http://www.example.org/pub/WWW/TheProject.html"),
        (b"GET HTTPS://EXAMPLE.COM HTTP/1.1", "HTTPS://EXAMPLE.COM"),
        (b"GET coap+tcp://h/x HTTP/1.1", "coap+tcp://h/x"),
        (b"CONNECT www.example.com:80 HTTP/1.1", "www.example.com:80"),
        (b"CONNECT [::1]:443 HTTP/1.1", "[::1]:443"),
        (b"OPTIONS * HTTP/1.1", "*"),
    ],
)
def test_target_forms_accepted(line: bytes, target: str) -> None:
    assert only_head(line + b"\r\n" + HOST + b"\r\n").target == target


@pytest.mark.parametrize(
    "line",
    [
        b"GET * HTTP/1.1",  # asterisk-form is for OPTIONS only
        b"POST * HTTP/1.1",
        b"OPTIONS *x HTTP/1.1",
        b"GET example.com HTTP/1.1",  # neither origin nor absolute form
        b"GET example.com:80 HTTP/1.1",  # authority-form is for CONNECT only
        b"GET http:/x HTTP/1.1",
        b"GET 1http://x HTTP/1.1",
        b"CONNECT / HTTP/1.1",  # CONNECT takes only the authority-form
        b"CONNECT http://example.com:80/ HTTP/1.1",
        b"CONNECT example.com HTTP/1.1",
        b"CONNECT example.com: HTTP/1.1",
        b"CONNECT * HTTP/1.1",
    ],
)
def test_target_forms_rejected(line: bytes) -> None:
    assert status(line + b"\r\n" + HOST + b"\r\n") == 400


# -- persistence (RFC 9112 section 9.3) --------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"Close", False),
        (b"1.1", b"keep-alive", True),
        (b"1.1", b"keep-alive, close", False),
        (b"1.1", b"foo ,\tCLOSE", False),
        (b"1.1", b"closed", True),
        (b"1.1", b"upgrade", True),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"Keep-Alive", True),
        (b"1.0", b"foo, keep-alive", True),
        (b"1.0", b"close", False),
        (b"1.0", b"keep-alive, close", False),  # "close" wins whatever the version
        (b"1.0", b"keep-alives", False),
    ],
)
def test_keep_alive(version: bytes, connection: bytes | None, keep_alive: bool) -> None:
    data = b"GET / HTTP/" + version + b"\r\n" + HOST
    if connection is not None:
        data += b"Connection: " + connection + b"\r\n"
    assert only_head(data + b"\r\n").keep_alive is keep_alive


def test_connection_options_on_several_lines() -> None:
    data = b"GET / HTTP/1.1\r\n" + HOST + b"Connection: keep-alive\r\nConnection: close\r\n\r\n"
    assert only_head(data).keep_alive is False


def test_pipelined_requests_come_out_in_order() -> None:
    data = (
        b"GET /1 HTTP/1.1\r\n" + HOST + b"\r\n"
        b"POST /2 HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n\r\nabc"
        b"PUT /3 HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
        b"GET /4 HTTP/1.0\r\n\r\n"
    )
    for split in (False, True):
        out = outcome(data, split=split)
        assert out.error is None
        assert [e[0] for e in out.events] == ["head", "end", "head", "body", "end", "head", "body", "end", "head", "end"]
        assert [e[2] for e in out.events if e[0] == "head"] == ["/1", "/2", "/3", "/4"]
        assert [e[1] for e in out.events if e[0] == "body"] == [b"abc", b"de"]


def test_nothing_after_a_request_that_closes_the_connection() -> None:
    p = RequestParser()
    p.receive_data(b"GET / HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\nGET /next HTTP/1.1\r\n")
    assert isinstance(p.next_event(), RequestHead)
    assert not p.is_done and p.in_message
    assert isinstance(p.next_event(), EndOfMessage)
    assert p.is_done and not p.in_message
    assert p.next_event() is None
    p.receive_data(b"garbage\r\n\r\n")
    assert p.next_event() is None  # whatever follows is never parsed (nor rejected)


def test_in_message_and_buffered() -> None:
    p = RequestParser()
    assert not p.in_message and p.buffered == 0
    p.receive_data(b"POST / HTTP/1.1\r\n")
    assert p.next_event() is None and p.in_message and p.buffered == 17
    p.receive_data(HOST + b"Content-Length: 4\r\n\r\nab")
    assert isinstance(p.next_event(), RequestHead)
    assert p.next_event() == BodyChunk(b"ab") and p.in_message and p.buffered == 0
    p.receive_data(b"cd")
    assert p.next_event() == BodyChunk(b"cd")
    assert isinstance(p.next_event(), EndOfMessage) and not p.in_message


# -- Expect: 100-continue (RFC 9110 section 10.1.1) -------------------------------------------


@pytest.mark.parametrize(
    ("version", "expect", "expected"),
    [
        (b"1.1", b"100-continue", True),
        (b"1.1", b"100-Continue", True),
        (b"1.1", b"100-continue, ", True),
        (b"1.1", None, False),
        (b"1.0", b"100-continue", False),  # an HTTP/1.0 client cannot wait for a 100
        (b"1.0", b"foo", False),  # and its other expectations are ignored too (RFC 9110 10.1.1)
    ],
)
def test_expect_continue(version: bytes, expect: bytes | None, expected: bool) -> None:
    data = b"POST / HTTP/" + version + b"\r\n" + HOST + b"Content-Length: 2\r\n"
    if expect is not None:
        data += b"Expect: " + expect + b"\r\n"
    p = RequestParser()
    p.receive_data(data + b"\r\n")
    head = p.next_event()
    assert isinstance(head, RequestHead) and head.expect_continue is expected
    assert p.next_event() is None  # the body has not been sent: nothing more until it is
    p.receive_data(b"ok")
    assert p.next_event() == BodyChunk(b"ok")
    assert isinstance(p.next_event(), EndOfMessage)


@pytest.mark.parametrize("expect", [b"foo", b"foo, 100-continue", b"100-continuex", b"100-continue=1"])
def test_an_expectation_other_than_100_continue_is_417(expect: bytes) -> None:
    # RFC 9110 section 10.1.1: a server MAY answer 417 to an expectation it cannot meet; Node
    # (so Express) does. The error carries the head, so the app can render the page.
    p = RequestParser()
    p.receive_data(b"POST /x HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\nExpect: " + expect + b"\r\n\r\n")
    with pytest.raises(ParseError) as info:
        p.next_event()
    assert info.value.status == 417
    assert info.value.head is not None and info.value.head.target == "/x"



# -- bodies and framing (RFC 9112 section 6, 7) -------------------------------------------------


@pytest.mark.parametrize(
    ("cl", "length"),
    [(b"0", 0), (b"5", 5), (b"005", 5), (b"5, 5", 5), (b"5 ,5", 5), (b"0000000000000000000000005", 5)],
)
def test_content_length_values(cl: bytes, length: int) -> None:
    data = b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: " + cl + b"\r\n\r\n" + b"x" * length
    assert only_head(data).content_length == length
    assert body_of(data) == (b"x" * length, [])


def test_content_length_repeated_identical_lines() -> None:
    data = b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\ncontent-length: 3\r\n\r\nabc"
    assert body_of(data) == (b"abc", [])


def test_no_framing_headers_means_no_body() -> None:
    p = RequestParser()
    p.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"\r\nGET")
    assert isinstance(p.next_event(), RequestHead)
    assert isinstance(p.next_event(), EndOfMessage)
    assert p.next_event() is None


def test_content_length_body_split_across_receives() -> None:
    p = RequestParser()
    p.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\n0123")
    assert isinstance(p.next_event(), RequestHead)
    assert p.next_event() == BodyChunk(b"0123")
    assert p.next_event() is None
    p.receive_data(b"456789GET / HTTP/1.1\r\n")
    assert p.next_event() == BodyChunk(b"456789")  # never more than Content-Length
    assert isinstance(p.next_event(), EndOfMessage)


CHUNKED = b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("chunks", "body"),
    [
        (b"0\r\n\r\n", b""),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"0005\r\nhello\r\n000\r\n\r\n", b"hello"),
        (b"00000000000000000000005\r\nhello\r\n0000000000000000000\r\n\r\n", b"hello"),
        (b"5;name\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5;name=value\r\nhello\r\n0;last\r\n\r\n", b"hello"),
        (b'5;n="quoted \\" ;=value"\r\nhello\r\n0\r\n\r\n', b"hello"),
        (b"5 ; a = b ;\tc\r\nhello\r\n0\r\n\r\n", b"hello"),  # BWS around ";" and "="
        (b"3\r\n\r\n\r\r\n0\r\n\r\n", b"\r\n\r"),  # chunk data is opaque
    ],
)
def test_chunked_bodies(chunks: bytes, body: bytes) -> None:
    head = only_head(CHUNKED + chunks)
    assert head.chunked and head.content_length is None
    assert body_of(CHUNKED + chunks) == (body, [])


@pytest.mark.parametrize("te", [b"chunked", b"Chunked", b"CHUNKED", b" chunked ", b", chunked", b"chunked,"])
def test_transfer_encoding_chunked_spellings(te: bytes) -> None:
    data = b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: " + te + b"\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    assert only_head(data).chunked
    assert body_of(data) == (b"x", [])


def test_trailers_are_accepted_and_reported() -> None:
    data = CHUNKED + b"2\r\nhi\r\n0\r\nX-Checksum: abc \r\nExpires:\tnever\r\n\r\n"
    assert body_of(data) == (b"hi", [("x-checksum", "abc"), ("expires", "never")])


def test_chunked_then_pipelined_request() -> None:
    data = CHUNKED + b"1\r\nx\r\n0\r\nT: v\r\n\r\nGET /next HTTP/1.1\r\n" + HOST + b"\r\n"
    for split in (False, True):
        out = outcome(data, split=split)
        assert out.error is None
        assert [e[0] for e in out.events] == ["head", "body", "end", "head", "end"]
        assert out.events[3][2] == "/next"


# -- invalid requests: the status for each rule ----------------------------------------------

GET = b"GET / HTTP/1.1\r\n"
POST = b"POST / HTTP/1.1\r\n"

INVALID: list[tuple[str, bytes, int]] = [
    # malformed request line (RFC 9112 section 3)
    ("empty request line", b"\r\n\r\n" + b" \r\n" + HOST + b"\r\n", 400),
    ("leading space", b" GET / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("two spaces after method", b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("two spaces before version", b"GET /  HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("trailing space", b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n", 400),
    ("tab separator", b"GET\t/ HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("missing target", b"GET HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("missing version", b"GET /\r\n" + HOST + b"\r\n", 400),
    ("extra word", b"GET / HTTP/1.1 x\r\n" + HOST + b"\r\n", 400),
    ("lowercase http", b"GET / http/1.1\r\n" + HOST + b"\r\n", 400),
    ("version without minor", b"GET / HTTP/1\r\n" + HOST + b"\r\n", 400),
    ("two-digit minor", b"GET / HTTP/1.10\r\n" + HOST + b"\r\n", 400),
    ("two-digit major", b"GET / HTTP/11.1\r\n" + HOST + b"\r\n", 400),
    ("non-token method", b"GE(T / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("non-ascii method", b"G\xc9T / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("DEL in target", b"GET /\x7f HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("NUL in target", b"GET /\x00 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("obs-text in target", b"GET /caf\xe9 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("TLS handshake", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\r\n\r\n", 400),
    # unsupported versions
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", 505),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n" + HOST + b"\r\n", 505),
    ("HTTP/0.9", b"GET / HTTP/0.9\r\n" + HOST + b"\r\n", 505),
    ("HTTP/3.0", b"GET / HTTP/3.0\r\n\r\n", 505),
    # bare CR / bare LF anywhere in the head (SPEC section 7)
    ("LF request line", b"GET / HTTP/1.1\n" + HOST + b"\r\n", 400),
    ("LF header line", GET + b"Host: example.com\n\r\n", 400),
    ("LF-only head", b"GET / HTTP/1.1\nHost: example.com\n\n", 400),
    ("LF empty line", GET + HOST + b"\n", 400),
    ("LF mid value", GET + HOST + b"X: a\nb\r\n\r\n", 400),
    ("LF before request line", b"\nGET / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("CR in request line", b"GET /\r HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("CR mid value", GET + HOST + b"X: a\rb\r\n\r\n", 400),
    ("CR CR LF", GET + HOST + b"X: a\r\r\n\r\n", 400),
    ("CR before request line", b"\rGET / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("CR empty line", GET + HOST + b"\r\r\n", 400),
    # header field syntax (RFC 9112 section 5)
    ("obs-fold SP", GET + HOST + b"X: a\r\n b\r\n\r\n", 400),
    ("obs-fold HTAB", GET + HOST + b"X: a\r\n\tb\r\n\r\n", 400),
    ("whitespace before first header", GET + b" " + HOST + b"\r\n", 400),
    ("space before colon", GET + b"Host : example.com\r\n\r\n", 400),
    ("tab before colon", GET + HOST + b"X\t: a\r\n\r\n", 400),
    ("no colon", GET + HOST + b"X a\r\n\r\n", 400),
    ("empty name", GET + HOST + b": a\r\n\r\n", 400),
    ("non-token name", GET + HOST + b"X(y): a\r\n\r\n", 400),
    ("non-ascii name", GET + HOST + b"\xe9: a\r\n\r\n", 400),
    ("NUL in value", GET + HOST + b"X: a\x00b\r\n\r\n", 400),
    ("SOH in value", GET + HOST + b"X: a\x01b\r\n\r\n", 400),
    ("DEL in value", GET + HOST + b"X: a\x7fb\r\n\r\n", 400),
    ("VT in value", GET + HOST + b"X: a\x0bb\r\n\r\n", 400),
    # Host (RFC 9112 section 3.2)
    ("missing Host on 1.1", GET + b"Accept: */*\r\n\r\n", 400),
    ("repeated Host on 1.1", GET + HOST + HOST + b"\r\n", 400),
    ("repeated different Host on 1.1", GET + b"Host: a\r\nHost: b\r\n\r\n", 400),
    ("repeated Host on 1.0", b"GET / HTTP/1.0\r\n" + HOST + HOST + b"\r\n", 400),
    ("Host with space", GET + b"Host: a b\r\n\r\n", 400),
    ("Host with slash", GET + b"Host: a/b\r\n\r\n", 400),
    ("Host with userinfo", GET + b"Host: u@a\r\n\r\n", 400),
    ("Host with non-digit port", GET + b"Host: a:b\r\n\r\n", 400),
    ("Host unclosed IPv6", GET + b"Host: [::1\r\n\r\n", 400),
    ("Host list", GET + b"Host: a, b\r\n\r\n", 400),
    # Content-Length (RFC 9110 section 8.6, RFC 9112 section 6.3)
    ("CL letters", POST + HOST + b"Content-Length: abc\r\n\r\n", 400),
    ("CL negative", POST + HOST + b"Content-Length: -1\r\n\r\n", 400),
    ("CL plus", POST + HOST + b"Content-Length: +1\r\n\r\n", 400),
    ("CL hex", POST + HOST + b"Content-Length: 0x10\r\n\r\n", 400),
    ("CL decimal point", POST + HOST + b"Content-Length: 1.0\r\n\r\n", 400),
    ("CL inner space", POST + HOST + b"Content-Length: 1 2\r\n\r\n", 400),
    ("CL empty", POST + HOST + b"Content-Length:\r\n\r\n", 400),
    ("CL non-ascii digit", POST + HOST + b"Content-Length: \xb2\r\n\r\n", 400),
    ("CL conflicting list", POST + HOST + b"Content-Length: 1, 2\r\n\r\n", 400),
    ("CL empty list member", POST + HOST + b"Content-Length: 1,\r\n\r\n", 400),
    ("CL conflicting lines", POST + HOST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    # Transfer-Encoding (RFC 9112 section 6.1, 6.3)
    ("CL and TE", POST + HOST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE and CL", POST + HOST + b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n", 400),
    ("TE on 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE not ending in chunked", POST + HOST + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("TE chunked then gzip", POST + HOST + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("TE chunked twice", POST + HOST + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    ("TE chunked on two lines", POST + HOST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("TE empty", POST + HOST + b"Transfer-Encoding:\r\n\r\n", 400),
    ("TE only commas", POST + HOST + b"Transfer-Encoding: , ,\r\n\r\n", 400),
    ("TE unknown", POST + HOST + b"Transfer-Encoding: foo\r\n\r\n", 501),
    ("TE unknown then chunked", POST + HOST + b"Transfer-Encoding: foo, chunked\r\n\r\n", 501),
    ("TE identity", POST + HOST + b"Transfer-Encoding: identity\r\n\r\n", 501),
    ("TE gzip then chunked", POST + HOST + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("TE deflate then chunked", POST + HOST + b"Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    # chunk lines (RFC 9112 section 7.1)
    ("chunk size missing", CHUNKED + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size not hex", CHUNKED + b"g\r\n", 400),
    ("chunk size 0x", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size negative", CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size plus", CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size leading space", CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size trailing space", CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext without name", CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext without value", CHUNKED + b"5;a=\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext bad name", CHUNKED + b"5;(a)\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext unterminated quote", CHUNKED + b'5;a="b\r\nhello\r\n0\r\n\r\n', 400),
    ("chunk ext control char", CHUNKED + b"5;a=\x01\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext quoted CTL", CHUNKED + b'5;a="\x01"\r\nhello\r\n0\r\n\r\n', 400),
    ("chunk data too long", CHUNKED + b"5\r\nhello!\r\n0\r\n\r\n", 400),
    ("chunk data too short", CHUNKED + b"5\r\nhell\r\n0\r\n\r\n", 400),
    ("chunk line too long", CHUNKED + b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("LF chunk line", CHUNKED + b"5\nhello\r\n0\r\n\r\n", 400),
    ("CR chunk line", CHUNKED + b"5\rhello\r\n0\r\n\r\n", 400),
    ("CR inside chunk line", CHUNKED + b"5;a\rb\r\nhello\r\n0\r\n\r\n", 400),
    ("LF after chunk data", CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400),
    ("CR after chunk data", CHUNKED + b"5\r\nhello\r0\r\n\r\n", 400),
    ("LF last chunk", CHUNKED + b"0\n\r\n", 400),
    ("LF end of trailers", CHUNKED + b"0\r\n\n", 400),
    ("LF trailer line", CHUNKED + b"0\r\nX: y\n\r\n", 400),
    ("CR trailer value", CHUNKED + b"0\r\nX: y\rz\r\n\r\n", 400),
    ("CR end of trailers", CHUNKED + b"0\r\nX: y\r\n\r\r\n", 400),
    ("obs-fold trailer", CHUNKED + b"0\r\nX: y\r\n z\r\n\r\n", 400),
    ("bad trailer name", CHUNKED + b"0\r\nX y: z\r\n\r\n", 400),
    # EOF in the middle of a message
    ("EOF mid request line", b"GET / HT", 400),
    ("EOF mid headers", GET + HOST, 400),
    ("EOF mid CRLFCRLF", GET + HOST + b"\r", 400),
    ("EOF mid body", POST + HOST + b"Content-Length: 5\r\n\r\nhel", 400),
    ("EOF before body", POST + HOST + b"Content-Length: 5\r\n\r\n", 400),
    ("EOF before chunk size", CHUNKED, 400),
    ("EOF mid chunk size", CHUNKED + b"5", 400),
    ("EOF mid chunk data", CHUNKED + b"5\r\nhel", 400),
    ("EOF before chunk CRLF", CHUNKED + b"5\r\nhello", 400),
    ("EOF mid chunk CRLF", CHUNKED + b"5\r\nhello\r", 400),
    ("EOF after last chunk", CHUNKED + b"5\r\nhello\r\n0\r\n", 400),
    ("EOF mid last CRLF", CHUNKED + b"0\r\n\r", 400),
    ("EOF mid trailers", CHUNKED + b"0\r\nX: y\r\n", 400),
    ("EOF mid second request", GET + HOST + b"\r\nGET / HTTP/1.1\r\n", 400),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_requests(data: bytes, expected: int) -> None:
    assert status(data) == expected


def test_error_is_sticky_and_is_the_only_exception() -> None:
    p = RequestParser()
    p.receive_data(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n")
    with pytest.raises(ParseError) as first:
        p.next_event()
    assert first.value.status == 400 and first.value.reason
    p.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    with pytest.raises(ParseError) as second:
        p.next_event()
    assert second.value is first.value


def test_errors_are_found_before_the_head_is_complete() -> None:
    # A bare LF, an over-long request line or header section fails without waiting for more.
    for data, code, limits in [
        (b"GET / HTTP/1.1\n", 400, {}),
        (GET + b"Host: a\nX", 400, {}),
        (b"GET /" + b"a" * 200, 414, {"max_target_size": 100}),
        (GET + b"X: " + b"a" * 200, 431, {"max_header_size": 100}),
    ]:
        p = RequestParser(**limits)
        p.receive_data(data)
        with pytest.raises(ParseError) as exc:
            p.next_event()
        assert exc.value.status == code


def test_errors_in_the_chunk_stream_are_found_early() -> None:
    for tail in (b"5\n", b"5;" + b"x" * 5000, b"5\r\nhello!"):
        p = RequestParser()
        p.receive_data(CHUNKED + tail)
        assert isinstance(p.next_event(), RequestHead)
        with pytest.raises(ParseError) as exc:
            while p.next_event() is not None:
                pass
        assert exc.value.status == 400


# -- limits -----------------------------------------------------------------------------------


def test_target_limit() -> None:
    def line(size: int) -> bytes:
        return b"GET /" + b"a" * (size - 1) + b" HTTP/1.1\r\n" + HOST + b"\r\n"

    assert status(line(100), max_target_size=100) is None
    assert status(line(101), max_target_size=100) == 414
    assert status(line(100_000), max_target_size=100) == 414
    assert status(line(8192)) is None
    assert status(line(8193)) == 414
    assert status(b"OPTIONS http://" + b"a" * 200 + b"/ HTTP/1.1\r\n" + HOST + b"\r\n", max_target_size=100) == 414


def test_long_request_line_with_long_method_split_anywhere() -> None:
    # The quick line-length guard (target limit + 64) must not depend on where the CRLF falls.
    data = b"M" * 54 + b" /" + b"a" * 49 + b" HTTP/1.0\r\n\r\n"  # 114 bytes before the CRLF
    assert status(data, max_target_size=50) is None
    assert status(b"M" + data, max_target_size=50) == 414


def header_block(size: int) -> bytes:
    """Header lines totalling exactly ``size`` bytes, CRLFs included (Host first)."""
    lines = HOST
    while size - len(lines) > 1000:
        lines += b"X-Fill: " + b"v" * 990 + b"\r\n"
    rest = size - len(lines)
    assert rest >= 6
    return lines + b"X:" + b"w" * (rest - 4) + b"\r\n"


def test_header_size_limit_is_exact() -> None:
    for size in (100, 1000, 2500):
        block = header_block(size)
        assert len(block) == size
        assert status(GET + block + b"\r\n", max_header_size=size) is None
        assert status(GET + header_block(size + 1) + b"\r\n", max_header_size=size) == 431
    assert status(GET + header_block(16384) + b"\r\n") is None
    assert status(GET + header_block(16385) + b"\r\n") == 431


def test_header_count_limit() -> None:
    lines = HOST + b"".join(b"X-%d: v\r\n" % i for i in range(99))
    assert status(GET + lines + b"\r\n") is None
    assert status(GET + lines + b"X: one too many\r\n\r\n") == 431
    assert status(GET + HOST + b"A: 1\r\nB: 2\r\n\r\n", max_headers=3) is None
    assert status(GET + HOST + b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n", max_headers=3) == 431


def test_trailer_limits() -> None:
    block = b"T:" + b"t" * 94 + b"\r\n"  # 98 bytes of trailer lines
    assert status(CHUNKED + b"0\r\n" + block + b"\r\n", max_header_size=98) is None
    assert status(CHUNKED + b"0\r\n" + block + b"\r\n", max_header_size=97) == 431
    many = b"".join(b"T%d: v\r\n" % i for i in range(5))
    assert status(CHUNKED + b"0\r\n" + many + b"\r\n", max_headers=5) is None
    assert status(CHUNKED + b"0\r\n" + many + b"T: v\r\n\r\n", max_headers=5) == 431


def test_body_limit_by_content_length() -> None:
    def req(n: int) -> bytes:
        return POST + HOST + b"Content-Length: %d\r\n\r\n" % n + b"x" * n

    assert status(req(1000), max_body_size=1000) is None
    assert status(req(1001), max_body_size=1000) == 413
    assert status(POST + HOST + b"Content-Length: 1048577\r\n\r\n") == 413  # before any body
    assert status(POST + HOST + b"Content-Length: " + b"9" * 40 + b"\r\n\r\n") == 413
    assert status(POST + HOST + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n") == 413


def test_body_limit_by_chunked_total() -> None:
    ok = CHUNKED + b"200\r\n" + b"x" * 512 + b"\r\n" + b"1F4\r\n" + b"y" * 500 + b"\r\n0\r\n\r\n"
    assert status(ok, max_body_size=1012) is None
    assert status(ok, max_body_size=1011) == 413
    assert status(CHUNKED + b"ffffffffffffffff\r\n") == 413
    assert status(CHUNKED + b"f" * 5000 + b"\r\n") == 400  # the chunk-size line is too long


def test_max_chunk_line_exactly_fits_however_split() -> None:
    line = b"5;" + b"e" * (parser_module.MAX_CHUNK_LINE - 2)
    assert status(CHUNKED + line + b"\r\nhello\r\n0\r\n\r\n") is None
    assert status(CHUNKED + line + b"e\r\nhello\r\n0\r\n\r\n") == 400


# -- linear cost ------------------------------------------------------------------------------
# A parser that rescans its buffer from the start on every receive is quadratic; these tests
# feed large inputs one byte at a time and count work instead of timing it.


def _line_events_in_parser(data: bytes, **limits: int) -> int:
    """Python lines executed in evserve/parser.py while ``data`` is fed byte by byte."""
    count = 0
    filename = parser_module.__file__

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal count
        if frame.f_code.co_filename != filename:
            return None
        if event == "line":
            count += 1
        return tracer

    p = RequestParser(**limits)
    sys.settrace(tracer)
    try:
        for i in range(len(data)):
            p.receive_data(data[i : i + 1])
            while p.next_event() is not None:
                pass
    finally:
        sys.settrace(None)
    return count


def test_head_fed_bytewise_costs_linear_python_work() -> None:
    small = GET + header_block(4096) + b"\r\n"
    large = GET + header_block(16384) + b"\r\n"
    ratio = _line_events_in_parser(large) / _line_events_in_parser(small)
    size_ratio = len(large) / len(small)
    assert ratio < size_ratio * 1.15, (ratio, size_ratio)


def test_partial_head_checks_rescan_only_new_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The early checks on an incomplete head must resume where they stopped, not rescan.
    scanned = 0
    real = parser_module._BARE_CR_OR_LF

    class Counting:
        def search(self, buf, pos=0, endpos=None):  # type: ignore[no-untyped-def]
            nonlocal scanned
            scanned += (len(buf) if endpos is None else min(endpos, len(buf))) - pos
            return real.search(buf, pos, len(buf) if endpos is None else endpos)

    monkeypatch.setattr(parser_module, "_BARE_CR_OR_LF", Counting())
    data = GET + header_block(16384) + b"\r\n"
    out = parse_stream(bytewise(data), parser=RequestParser())
    assert out.error is None and [e[0] for e in out.events] == ["head", "end"]
    assert 0 < scanned <= 4 * len(data)

    scanned = 0
    trailers = CHUNKED + b"1\r\nx\r\n0\r\n" + header_block(16000)[len(HOST) :] + b"\r\n"
    out = parse_stream(bytewise(trailers), parser=RequestParser())
    assert out.error is None and out.events[-1][0] == "end"
    assert 0 < scanned <= 4 * len(trailers)


def test_megabyte_head_fed_bytewise() -> None:
    # Quadratic rescanning of a 1 MiB head fed bytewise would take minutes; linear, ~1 s.
    lines = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(1000))
    data = GET + HOST + lines + b"\r\n"
    out = parse_stream(bytewise(data), parser=RequestParser(max_header_size=2 << 20, max_headers=2000))
    assert out.error is None
    assert len(out.events[0][4]) == 1001  # type: ignore[arg-type]


def test_megabyte_body_fed_bytewise_keeps_the_buffer_small() -> None:
    size = 1 << 20
    p = RequestParser(max_body_size=size)
    p.receive_data(POST + HOST + b"Content-Length: %d\r\n\r\n" % size)
    assert isinstance(p.next_event(), RequestHead)
    received = 0
    one = b"x"
    for _ in range(size):
        p.receive_data(one)
        event = p.next_event()
        assert isinstance(event, BodyChunk) and event.data == one
        received += 1
        assert p.buffered == 0  # consumed bytes are released at once
    assert isinstance(p.next_event(), EndOfMessage)
    assert received == size


def test_chunked_body_fed_bytewise() -> None:
    chunk = b"x" * 4096
    body = (b"1000;ext=1\r\n" + chunk + b"\r\n") * 64 + b"0\r\nT: v\r\n\r\n"
    data = CHUNKED + body
    out = parse_stream(bytewise(data), parser=RequestParser())
    assert out.error is None
    assert out.events[1] == ("body", chunk * 64)
    assert out.events[2] == ("end", (("t", "v"),))


def test_many_pipelined_requests_in_one_buffer() -> None:
    # 50,000 requests (2 MB) in one receive: copying the rest of the buffer after each request
    # would move ~50 GB; consuming in place moves nothing.
    one = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    p = RequestParser()
    p.receive_data(one * 50_000)
    heads = 0
    while (event := p.next_event()) is not None:
        heads += isinstance(event, RequestHead)
    assert heads == 50_000 and p.buffered == 0


# -- heads shared between parsers -------------------------------------------------------------

SHARED = (b"POST /a/long/enough/target HTTP/1.1\r\nHost: example.com\r\nX-One: 1\r\nX-Two: 2\r\n"
          b"Content-Length: 5\r\n\r\nhello")


def first_event(data: bytes, **limits: int) -> object:
    p = RequestParser(**limits)
    p.receive_data(data)
    try:
        return p.next_event()
    except ParseError as exc:
        return exc.status


def test_a_head_that_comes_again_is_parsed_once_for_every_parser() -> None:
    head = SHARED.replace(b"/target", b"/target/again")  # a head no other test sends
    first, second, third, fourth = (first_event(head) for _ in range(4))
    assert isinstance(first, RequestHead) and first == second == third == fourth
    assert third is second and fourth is second  # kept from its second sighting on, and shared


def test_a_head_seen_once_is_not_kept() -> None:
    head = b"GET /seen/once HTTP/1.1\r\nHost: example.com\r\n\r\n"
    assert isinstance(first_event(head), RequestHead)
    assert head[:-4] not in parser_module._SHARED_HEADS


@pytest.mark.parametrize(("limits", "expected"), [
    ({"max_headers": 3}, 431),
    ({"max_header_size": 40}, 431),
    ({"max_target_size": 10}, 414),
    ({"max_body_size": 4}, 413),
])
def test_a_shared_head_is_still_refused_by_a_parser_with_smaller_limits(limits: dict[str, int],
                                                                       expected: int) -> None:
    for _ in range(2):
        assert isinstance(first_event(SHARED), RequestHead)
    assert SHARED[: SHARED.index(b"\r\n\r\n")] in parser_module._SHARED_HEADS  # now shared
    assert first_event(SHARED, **limits) == expected
    assert isinstance(first_event(SHARED, **{k: v + 1000 for k, v in limits.items()}), RequestHead)


def test_the_shared_head_cache_stays_bounded() -> None:
    for i in range(3 * parser_module._SHARED_HEADS_MAX):
        for _ in range(2):
            assert isinstance(first_event(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i), RequestHead)
    assert len(parser_module._SHARED_HEADS) <= parser_module._SHARED_HEADS_MAX
    assert len(parser_module._SEEN) <= parser_module._SEEN_MAX
