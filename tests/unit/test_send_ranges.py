"""Range parsing, If-Range and multipart framing for the send core (no sockets)."""

from __future__ import annotations

import email.parser
import email.policy

import pytest

from evserve.middleware.byteranges import (
    MAX_RANGES,
    if_range_matches,
    multipart_frames,
    parse_range,
)
from evserve.middleware.send import SendOptions

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", [(0, 99)]),
        ("bytes=0-0", [(0, 0)]),
        ("bytes=-500", [(500, 999)]),
        ("bytes=500-", [(500, 999)]),
        ("bytes=990-5000", [(990, 999)]),
        ("bytes=-5000", [(0, 999)]),
        ("BYTES=1-2", [(1, 2)]),
        ("bytes= 1-2 , 4-5", [(1, 2), (4, 5)]),
        ("bytes=10-19,0-9", [(10, 19), (0, 9)]),  # request order kept; adjacent is not overlap
        ("bytes=0-9,,20-29", [(0, 9), (20, 29)]),  # empty list elements
        ("bytes=1000-,0-1", [(0, 1)]),  # the unsatisfiable one is dropped
        ("bytes=1000-", []),
        ("bytes=1000-2000", []),
        ("bytes=-0", []),
        ("bytes=99999999999999999999999-", []),
        ("bytes=0-99999999999999999999999", [(0, 999)]),
        ("bytes=5-2", None),  # last < first: invalid, ignored
        ("bytes=a-b", None),
        ("bytes=1", None),
        ("bytes=", None),
        ("bytes=--1", None),
        ("bytes=1-2-3", None),
        ("bytes=+1-2", None),
        ("bytes=\u0661-2", None),  # a non-ASCII digit
        ("items=0-1", None),
        ("0-1", None),
        ("bytes=0-10,5-20", None),  # overlapping
        ("bytes=0-10,-995", None),  # overlapping through a suffix
        ("bytes=0-1,0-1", None),
    ],
)
def test_parse_range(header: str, expected: list[tuple[int, int]] | None) -> None:
    assert parse_range(header, SIZE) == expected


def test_parse_range_empty_representation() -> None:
    assert parse_range("bytes=0-", 0) == []
    assert parse_range("bytes=-1", 0) == []


def test_parse_range_count_bound() -> None:
    fifty = ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(MAX_RANGES))
    assert parse_range("bytes=" + fifty, SIZE) is not None
    assert len(parse_range("bytes=" + fifty, SIZE) or []) == MAX_RANGES
    assert parse_range("bytes=" + fifty + ",999-999", SIZE) is None


@pytest.mark.parametrize(
    ("if_range", "expected"),
    [
        ('W/"3e8-1"', True),
        ('"3e8-1"', False),  # a strong tag is not our weak one
        ('W/"3e8-2"', False),
        ("Sun, 06 Nov 1994 08:49:37 GMT", True),
        ("Sun, 06 Nov 1994 08:49:38 GMT", False),
        ("garbage", False),
    ],
)
def test_if_range(if_range: str, expected: bool) -> None:
    assert if_range_matches(if_range, 'W/"3e8-1"', "Sun, 06 Nov 1994 08:49:37 GMT") is expected


def test_if_range_without_validators() -> None:
    assert not if_range_matches('W/"x"', None, None)
    assert not if_range_matches("Sun, 06 Nov 1994 08:49:37 GMT", None, None)


def test_multipart_frames_parse_back() -> None:
    data = bytes(range(256)) * 4
    ranges = [(0, 9), (100, 199), (1000, 1023)]
    heads, tail, length = multipart_frames("BOUNDARY", "text/plain; charset=utf-8", ranges, len(data))
    body = b"".join(h + data[a : b + 1] for h, (a, b) in zip(heads, ranges, strict=True)) + tail
    assert len(body) == length
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: multipart/byteranges; boundary=BOUNDARY\r\n\r\n" + body
    )
    parts = list(message.iter_parts())
    assert len(parts) == 3
    for part, (a, b) in zip(parts, ranges, strict=True):
        assert part.get_content_type() == "text/plain"
        assert part.get_param("charset") == "utf-8"
        assert part["Content-Range"] == f"bytes {a}-{b}/{len(data)}"
        assert part.get_payload(decode=True) == data[a : b + 1]


@pytest.mark.parametrize(
    ("kwargs", "cache_control"),
    [
        ({}, "public, max-age=0"),
        ({"max_age": 3600}, "public, max-age=3600"),
        ({"max_age": 1.9}, "public, max-age=1"),
        ({"max_age": -5}, "public, max-age=0"),
        ({"max_age": 10**12}, "public, max-age=31536000"),
        ({"max_age": 60, "immutable": True}, "public, max-age=60, immutable"),
        ({"cache_control": False}, None),
    ],
)
def test_cache_control(kwargs: dict[str, object], cache_control: str | None) -> None:
    assert SendOptions(**kwargs).cache_control == cache_control  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"dotfiles": "hide"}, ValueError),
        ({"max_age": "1d"}, TypeError),
        ({"max_age": True}, TypeError),
        ({"max_age": float("nan")}, ValueError),
        ({"index": "../x.html"}, ValueError),
        ({"index": ["index.html", "a/b.html"]}, ValueError),
        ({"index": [""]}, ValueError),
    ],
)
def test_bad_options(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        SendOptions(**kwargs)  # type: ignore[arg-type]


def test_index_forms() -> None:
    assert SendOptions(index=None).index == ()
    assert SendOptions(index=False).index == ()
    assert SendOptions(index=True).index == ("index.html",)
    assert SendOptions(index="home.htm").index == ("home.htm",)
    assert SendOptions(index=["a.html", "b.html"]).index == ("a.html", "b.html")
