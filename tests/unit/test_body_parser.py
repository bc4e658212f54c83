"""Unit: the body parsers' pure parts, without sockets: limits, the JSON depth scan (against a
character-by-character reference), and bounded inflation."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evserve.errors import HTTPError
from evserve.middleware.body_parser import _inflate, _json_too_deep, parse_limit


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (0, 0),
        (12345, 12345),
        ("10", 10),
        ("10b", 10),
        ("100kb", 100 * 1024),
        ("100KB", 100 * 1024),
        ("1mb", 1 << 20),
        (" 1.5 Mb ", 3 << 19),
        ("2gb", 2 << 30),
    ],
)
def test_parse_limit(limit, expected):
    assert parse_limit(limit) == expected


@pytest.mark.parametrize("limit", ["", "kb", "1 k b", "-1kb", "1xb", "1e3"])
def test_parse_limit_refuses_other_forms(limit):
    with pytest.raises(ValueError):
        parse_limit(limit)


@pytest.mark.parametrize("limit", [None, 1.5, True, [1]])
def test_parse_limit_refuses_other_types(limit):
    with pytest.raises(TypeError):
        parse_limit(limit)


def reference_depth(text: str) -> int:
    """Bracket depth outside strings, one character at a time; stops at a backslash outside a
    string, where a JSON parser stops too."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == "\\":
            break
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


@settings(max_examples=300)
@given(st.text(alphabet='[]{}"\\a\u00e9', max_size=80), st.integers(0, 12))
def test_depth_scan_never_misses_depth_a_parser_would_reach(text, limit):
    # Stray backslashes outside strings make the text invalid; the scan may then over- or
    # under-count past them, but never below the depth a parser reaches before failing.
    if reference_depth(text) > limit:
        assert _json_too_deep(text.encode(), limit)


@settings(max_examples=300)
@given(st.text(alphabet='[]{}"a\u00e9', max_size=80), st.integers(0, 12))
def test_depth_scan_is_exact_without_backslashes(text, limit):
    assert _json_too_deep(text.encode(), limit) == (reference_depth(text) > limit)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n\u2028'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]"\\x'), inner, max_size=3),
    max_leaves=30,
)


def value_depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((value_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((value_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300)
@given(json_values, st.booleans())
def test_depth_scan_is_exact_on_valid_json(value, ascii_only):
    data = json.dumps(value, ensure_ascii=ascii_only).encode()
    depth = value_depth(value)
    assert not _json_too_deep(data, depth)
    if depth:
        assert _json_too_deep(data, depth - 1)


@pytest.mark.parametrize(
    "data",
    [b"[]" * 500_000, b"[[]]" * 250_000, b"[" * 1_000_000, b'"\\"' * 300_000, b"[" * 100 + b"]" * 100],
    ids=["flat", "pairs", "open", "quotes", "exactly-100"],
)
def test_depth_scan_handles_pathological_input(data):
    assert _json_too_deep(data, 100) == (reference_depth(data.decode()) > 100)


@pytest.mark.parametrize("limit", [0, 1, 999, 1000, 1001, 65536])
def test_inflate_never_produces_more_than_the_limit(limit):
    data = b"abc" * 1000
    for encoding, compressed in [("gzip", gzip.compress(data)), ("deflate", zlib.compress(data))]:
        if limit >= len(data):
            assert _inflate(compressed, encoding, limit) == data
        else:
            with pytest.raises(HTTPError) as info:
                _inflate(compressed, encoding, limit)
            assert info.value.status == 413


def test_inflate_stops_a_bomb_after_the_limit():
    bomb = zlib.compress(b"\0" * (64 << 20), 9)  # 64 MiB in ~64 KB
    with pytest.raises(HTTPError) as info:
        _inflate(bomb, "deflate", 1 << 20)
    assert info.value.status == 413
