"""What a request body costs, whatever its framing: memory in proportion to its data, and a
bounded amount of framing (chunk-size lines, extensions, leading zeros) per byte of data.

The memory tests drive ``Connection`` with a fake transport and count allocations with
``tracemalloc``: deterministic, no sockets, no timing.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import pytest

from evserve import parser as parser_module
from evserve.config import Config
from evserve.connection import Connection
from evserve.errors import ParseError
from evserve.parser import BodyChunk, EndOfMessage, RequestHead, RequestParser
from tests.strategies import Outcome, parse_stream

HEAD = b"POST /upload HTTP/1.1\r\nHost: example.com\r\n"
CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
RECV = 65536  # what one recv() of the socket transport delivers at most


class NullTransport:
    """A transport that accepts everything and keeps nothing."""

    def write(self, data: bytes) -> None:
        pass

    def send_file(self, file: Any, offset: int, count: int) -> None:
        file.close()

    def buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def peak_while_feeding(pieces: list[bytes], head: bytes) -> tuple[int, list[bytes]]:
    """Feed ``head`` then ``pieces`` (one ``data_received`` each) to a ``Connection``; returns
    the peak of memory allocated while the pieces were fed and the bodies the app received."""
    bodies: list[bytes] = []

    def app(req: Any, res: Any) -> None:
        bodies.append(req.raw_body)
        res.end("ok")

    conn = Connection(app, Config(max_body_size=1 << 20), NullTransport())
    conn.data_received(head)
    # Garbage of earlier tests is collected first, and no collection runs while counting: a
    # finalizer (a socket's ResourceWarning, say) would count its own allocations.
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        for piece in pieces:
            conn.data_received(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    return peak, bodies


def test_one_byte_chunks_cost_memory_in_proportion_to_the_data() -> None:
    # A list entry per chunk costs some 40 bytes per byte of data; the bound is 3x the body.
    size = 1 << 17
    wire = b"1\r\nx\r\n" * size + b"0\r\n\r\n"
    pieces = [wire[i : i + RECV] for i in range(0, len(wire), RECV)]
    peak, bodies = peak_while_feeding(pieces, CHUNKED)
    assert bodies == [b"x" * size]
    assert peak < 3 * size, f"{peak} bytes allocated for a body of {size}"


def test_a_body_arriving_a_byte_per_receive_costs_memory_in_proportion_to_it() -> None:
    size = 1 << 18
    peak, bodies = peak_while_feeding([b"y"] * size, HEAD + b"Content-Length: %d\r\n\r\n" % size)
    assert bodies == [b"y" * size]
    assert peak < 3 * size, f"{peak} bytes allocated for a body of {size}"


def test_a_body_in_one_piece_reaches_the_app_without_a_copy() -> None:
    body = b'{"name": "x"}'
    wire = HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body
    bodies: list[bytes] = []

    def app(req: Any, res: Any) -> None:
        bodies.append(req.raw_body)
        res.end()

    Connection(app, Config(), NullTransport()).data_received(wire)
    assert bodies == [body] and type(bodies[0]) is bytes


# -- the parser: one event for the chunks at hand ------------------------------------------------


def events(pieces: list[bytes], **limits: int) -> list[Any]:
    p = RequestParser(**limits)
    out: list[Any] = []
    for piece in pieces:
        p.receive_data(piece)
        while (event := p.next_event()) is not None:
            out.append(event)
    return out


def test_the_chunks_in_the_buffer_come_out_as_one_event() -> None:
    out = events([CHUNKED + b"1\r\na\r\n" * 1000 + b"3;x=y\r\nbcd\r\n" + b"0\r\nT: v\r\n\r\n"])
    assert isinstance(out[0], RequestHead)
    assert out[1:2] == [BodyChunk(b"a" * 1000 + b"bcd")]
    assert len(out) == 3 and isinstance(out[2], EndOfMessage) and out[2].trailers == (("t", "v"),)


def test_at_most_one_body_event_per_receive() -> None:
    wire = b"1\r\na\r\n" * 5000 + b"0\r\n\r\n"
    pieces = [CHUNKED] + [wire[i : i + 1000] for i in range(0, len(wire), 1000)]
    out = events(pieces)
    chunks = [e for e in out if isinstance(e, BodyChunk)]
    assert len(chunks) <= len(pieces) and b"".join(c.data for c in chunks) == b"a" * 5000


def test_data_decoded_before_an_error_comes_out_first() -> None:
    p = RequestParser()
    p.receive_data(CHUNKED + b"2\r\nab\r\n2\r\ncd\r\nzz\r\n")
    assert isinstance(p.next_event(), RequestHead)
    assert p.next_event() == BodyChunk(b"abcd")
    with pytest.raises(ParseError) as first:
        p.next_event()
    assert first.value.status == 400
    with pytest.raises(ParseError) as again:
        p.next_event()
    assert again.value is first.value  # sticky, as any parse error


# -- framing bounds: extensions, leading zeros, overhead ---------------------------------------


def outcome(data: bytes, **limits: int) -> Outcome:
    """The parse of ``data``, checked to be the same fed whole and in pieces of 7 bytes."""
    whole = parse_stream([data], parser=RequestParser(**limits))
    split = parse_stream([data[i : i + 7] for i in range(0, len(data), 7)], parser=RequestParser(**limits))
    assert (whole.events, whole.error) == (split.events, split.error)
    return whole


def chunks(count: int, line: bytes, data: bytes = b"x") -> bytes:
    return (line + b"\r\n" + data + b"\r\n") * count


EXT = b";" + b"e" * 99  # 100 bytes of extension


FRAMINGS = [
    # Extensions: 16 KiB for a whole body (each line is bounded on its own too).
    ("extensions up to the bound", chunks(163, b"40" + EXT, b"x" * 64) + b"0;" + b"e" * 83 + b"\r\n\r\n", None),
    ("extensions past the bound", chunks(164, b"40" + EXT, b"x" * 64) + b"0\r\n\r\n", 400),
    ("a long extension on the last chunk", b"0;" + b"e" * 4000 + b"\r\n\r\n", None),
    ("extensions past the bound on big chunks", chunks(200, b"400" + EXT, b"x" * 1024) + b"0\r\n\r\n", 400),
    # Leading zeros: allowed (RFC 9112 section 7.1), but framing is not free.
    ("a few long sizes", chunks(3, b"0" * 4000 + b"1") + b"0\r\n\r\n", None),
    ("many long sizes", chunks(6, b"0" * 4000 + b"1") + b"0\r\n\r\n", 400),
    ("a long last chunk", b"0" * 4000 + b"\r\n\r\n", None),
    # Framing beyond 16 bytes a chunk plus twice its data adds up (as Go counts it).
    ("short extensions on one-byte chunks", chunks(5000, b"1;a"), None),
    ("one-byte chunks", chunks(20000, b"1"), None),
    ("padded sizes on one-byte chunks", chunks(1000, b"000000000000001"), None),
    ("padded sizes past the allowance", chunks(2000, b"0" * 30 + b"1"), 400),
]


@pytest.mark.parametrize(("name", "body", "expected"), FRAMINGS, ids=[f[0] for f in FRAMINGS])
def test_chunked_framing_is_bounded_per_byte_of_data(name: str, body: bytes, expected: int | None) -> None:
    data = CHUNKED + body
    if not data.endswith(b"\r\n\r\n"):
        data += b"0\r\n\r\n"
    out = outcome(data)
    assert out.error == expected, (name, out.reason)
    if expected is not None:
        assert out.reason is not None and "chunk" in out.reason


def test_the_bounds_are_what_the_parser_says() -> None:
    assert parser_module.MAX_CHUNK_EXTENSIONS == 16384
    assert parser_module.MAX_CHUNK_OVERHEAD == 16384
    assert parser_module.MAX_CHUNK_LINE == 4096


def test_wire_bytes_per_body_byte_are_bounded() -> None:
    # Whatever the framing, an accepted chunked body is at most ~19 wire bytes per data byte
    # plus a constant: the client cannot make the server read an unbounded amount for it.
    for line in (b"1", b"1;a", b"01;abcdefgh", b"000000000001;e=f", b"0" * 4000 + b"1", b"1;" + b"e" * 4000):
        for count in (10, 100, 1000, 3000):
            data = CHUNKED + chunks(count, line) + b"0\r\n\r\n"
            out = parse_stream([data], parser=RequestParser())
            if out.error is None:
                assert len(data) - len(CHUNKED) <= 19 * count + 2 * 16384 + 5
