"""Hypothesis properties of the request parser (SPEC section 7: sans-IO, split-invariant).

The ``check_*`` functions are the properties; the tests below run them on every test run with
the "ci" profile, and ``python -m fuzz`` runs the same functions at scale.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from evserve.parser import RequestParser
from tests.strategies import (
    GenRequest,
    Outcome,
    arbitrary_splits,
    expected_events,
    mutated_streams,
    parse_stream,
    request_streams,
    split_at,
)

# -- the properties ---------------------------------------------------------------------------


def check_never_raises_but_parse_error(data: bytes, cuts: list[int], limits: dict[str, int]) -> None:
    """Any bytes, however split, give events and at most a ParseError (parse_stream re-raises
    anything else), and the split does not change the events nor whether it fails."""
    whole = parse_stream([data], parser=RequestParser(**limits))
    split = parse_stream(split_at(data, cuts), parser=RequestParser(**limits))
    # The status may differ between splits only for input with several faults: an incomplete
    # head is checked early for bare CR/LF and size only, the complete head for everything.
    assert (whole.events, whole.error is None) == (split.events, split.error is None), (whole, split)


def check_split_invariance(reqs: list[GenRequest], data: bytes, chunks: list[bytes]) -> None:
    """A valid stream split any way gives exactly the events of the whole stream."""
    assert b"".join(chunks) == data
    expected = expected_events(reqs)
    whole = parse_stream([data])
    split = parse_stream(chunks)
    assert whole == Outcome(expected), whole
    assert split == Outcome(expected), split


def check_round_trip(reqs: list[GenRequest], data: bytes) -> None:
    """Each generated request comes back field by field."""
    out = parse_stream([data])
    assert out.error is None, out
    events = iter(out.events)
    for req in reqs:
        head = next(events)
        assert head[0] == "head"
        _, method, target, version, headers, keep_alive, expect_continue, length, chunked = head
        assert method == req.method
        assert target == req.target
        assert version == req.version
        assert list(headers) == req.headers  # type: ignore[call-overload]
        assert keep_alive is req.keep_alive
        assert expect_continue is req.expect_continue
        assert length == req.content_length
        assert chunked is req.chunked
        event = next(events)
        if req.body:
            assert event == ("body", req.body)
            event = next(events)
        assert event == ("end", tuple(req.trailers))
        if not keep_alive:
            break
    assert next(events, None) is None


def check_limits(reqs: list[GenRequest], data: bytes, chunks: list[bytes], limits: dict[str, int]) -> None:
    """With small limits, a valid stream fails exactly where a limit is first exceeded, with
    the limit's status, and everything before that request is reported unchanged."""
    target_limit = limits["max_target_size"]
    header_limit = limits["max_header_size"]
    count_limit = limits["max_headers"]
    body_limit = limits["max_body_size"]
    expected_status = None
    before: list[object] = []
    for req in reqs:
        raw = req.raw.lstrip(b"\r\n")
        line_end = raw.index(b"\r\n")
        head_end = raw.index(b"\r\n\r\n")
        header_bytes = head_end - line_end
        trailer_bytes = len(req.trailer_section)
        trailer_count = len(req.trailers)
        if line_end > target_limit + 64:
            expected_status = 414
        elif header_bytes > header_limit:
            expected_status = 431
        elif len(req.target) > target_limit:
            expected_status = 414
        elif len(req.headers) > count_limit:
            expected_status = 431
        elif len(req.body) > body_limit:
            expected_status = 413
        elif trailer_bytes > header_limit or trailer_count > count_limit:
            expected_status = 431
        if expected_status is not None:
            break
        before.extend(req.events())
        if not req.keep_alive:
            break
    out = parse_stream(chunks, parser=RequestParser(**limits))
    assert out.error == expected_status, (out, expected_status)
    assert out.events[: len(before)] == before
    if expected_status is not None:
        # Of the failing request, at most its head and some of its body came out.
        assert [e[0] for e in out.events[len(before) :]] in ([], ["head"], ["head", "body"])


def check_truncation(reqs: list[GenRequest], data: bytes, cut: int) -> None:
    """A valid stream cut short: clean when cut between requests, else a 400 after the events
    of the complete requests (and possibly the head and part of the body of the cut one)."""
    before: list[object] = []
    offset = 0
    for req in reqs:
        end = offset + len(req.raw)
        if cut < end:
            blank = len(req.raw) - len(req.raw.lstrip(b"\r\n"))  # leading empty lines
            clean = cut - offset <= blank and (cut - offset) % 2 == 0
            break
        before.extend(req.events())
        offset = end
        if not req.keep_alive:
            clean = True  # what follows is never parsed
            break
    else:
        clean = True
    out = parse_stream([data[:cut]])
    if clean:
        assert out == Outcome(before), (out, before)
    else:
        assert out.error == 400, out
        assert out.events[: len(before)] == before
        assert [e[0] for e in out.events[len(before) :]] in ([], ["head"], ["head", "body"])


# -- the tests --------------------------------------------------------------------------------

small_limits = st.fixed_dictionaries(
    {
        "max_target_size": st.integers(1, 80),
        "max_header_size": st.integers(0, 300),
        "max_headers": st.integers(0, 8),
        "max_body_size": st.integers(0, 300),
    }
)
any_limits = st.one_of(st.just({}), small_limits)


@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=12), any_limits)
@example(b"\r\n\r\n", [1, 2, 3], {})
@example(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", [60], {})
def test_arbitrary_bytes_raise_only_parse_error(data: bytes, cuts: list[int], limits: dict[str, int]) -> None:
    check_never_raises_but_parse_error(data, cuts, limits)


prefixes = st.sampled_from(
    [
        b"",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
    ]
)


@given(prefixes, st.binary(max_size=300), st.lists(st.integers(0, 600), max_size=12), any_limits)
def test_arbitrary_bytes_after_a_valid_prefix(prefix: bytes, tail: bytes, cuts: list[int], limits: dict[str, int]) -> None:
    check_never_raises_but_parse_error(prefix + tail, cuts, limits)


@given(st.data(), mutated_streams(), any_limits)
def test_mutated_requests_raise_only_parse_error(data: st.DataObject, stream: bytes, limits: dict[str, int]) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    check_never_raises_but_parse_error(stream, cuts, limits)


@given(st.data(), request_streams())
def test_any_split_gives_the_events_of_the_whole(data: st.DataObject, pair: tuple[list[GenRequest], bytes]) -> None:
    reqs, stream = pair
    check_split_invariance(reqs, stream, data.draw(arbitrary_splits(stream)))


@given(request_streams(max_requests=2))
def test_bytewise_feeding_gives_the_events_of_the_whole(pair: tuple[list[GenRequest], bytes]) -> None:
    reqs, stream = pair
    check_split_invariance(reqs, stream, [stream[i : i + 1] for i in range(len(stream))])


@given(request_streams())
def test_generated_requests_round_trip(pair: tuple[list[GenRequest], bytes]) -> None:
    check_round_trip(*pair)


@given(st.data(), request_streams(), small_limits)
def test_limits_are_exact(data: st.DataObject, pair: tuple[list[GenRequest], bytes], limits: dict[str, int]) -> None:
    reqs, stream = pair
    check_limits(reqs, stream, data.draw(arbitrary_splits(stream)), limits)


@given(st.data(), request_streams())
def test_eof_in_the_middle_of_a_request_is_an_error(data: st.DataObject, pair: tuple[list[GenRequest], bytes]) -> None:
    reqs, stream = pair
    check_truncation(reqs, stream, data.draw(st.integers(0, len(stream))))
    # Every line boundary too, where the parser changes state (head, chunk line, trailers).
    for i in range(len(stream)):
        if stream.startswith(b"\r\n", i):
            check_truncation(reqs, stream, i + 1)
            check_truncation(reqs, stream, i + 2)
