"""Query-string parsers: qs-style nesting, limits and decoding, Node-style simple parsing."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evserve.query import parse_query, parse_simple

# (query string, expected) for parse_query with its defaults.
EXTENDED_CASES: list[tuple[str, dict[str, Any]]] = [
    # plain pairs
    ("", {}),
    ("foo=bar", {"foo": "bar"}),
    ("0=foo", {"0": "foo"}),
    ("foo=bar&bar=baz", {"foo": "bar", "bar": "baz"}),
    ("foo", {"foo": ""}),
    ("foo=", {"foo": ""}),
    ("foo=bar&baz", {"foo": "bar", "baz": ""}),
    ("foo=bar=baz", {"foo": "bar=baz"}),
    (" foo = bar = baz ", {" foo ": " bar = baz "}),
    ("cht=p3&chd=t:60,40&chl=Hello|World", {"cht": "p3", "chd": "t:60,40", "chl": "Hello|World"}),
    ("_r=1&", {"_r": "1"}),
    ("&&a=1&&", {"a": "1"}),
    ("=1&=2", {}),
    # decoding
    ("foo=c++", {"foo": "c  "}),
    ("q=hello+world", {"q": "hello world"}),
    ("a%20b=c%2Bd", {"a b": "c+d"}),
    ("he%3Dllo=th%3Dere", {"he=llo": "th=ere"}),
    ("a%26b=1", {"a&b": "1"}),
    ("euro=%E2%82%AC", {"euro": "\u20ac"}),
    ("e=%e2%82%ac", {"e": "\u20ac"}),
    ("bad=%zz&pct=%&half=%4", {"bad": "%zz", "pct": "%", "half": "%4"}),
    ("{%:%}=", {"{%:%}": ""}),
    ("foo=%:%}", {"foo": "%:%}"}),
    ("latin=%FF", {"latin": "%FF"}),
    ("cut=%E2%82x", {"cut": "%E2%82x"}),
    ("%2B=%2B", {"+": "+"}),
    # repeated keys
    ("a=b&a=c", {"a": ["b", "c"]}),
    ("a=b&a=c&a=d", {"a": ["b", "c", "d"]}),
    ("a=1&a=", {"a": ["1", ""]}),
    # nesting
    ("a[b]=c", {"a": {"b": "c"}}),
    ("a[b][c]=d", {"a": {"b": {"c": "d"}}}),
    ("a[b]=c&a[d]=e", {"a": {"b": "c", "d": "e"}}),
    ("a[>=]=23", {"a": {">=": "23"}}),
    ("a[<=>]==23", {"a": {"<=>": "=23"}}),
    ("a[==]=23", {"a": {"==": "23"}}),
    ("a[b%20c]=d", {"a": {"b c": "d"}}),
    ("a%5Bb%5D=c", {"a": {"b": "c"}}),
    ("a%5bb%5d=c", {"a": {"b": "c"}}),
    ("a[12b]=c", {"a": {"12b": "c"}}),
    ("[foo]=bar", {"foo": "bar"}),
    ("[]=&a=b", {"0": "", "a": "b"}),
    ("a[b]c=1", {"a": {"b": "1"}}),
    ('pets=["tobi"]', {"pets": '["tobi"]'}),
    ("a[b=1", {"a": {"[b": "1"}}),  # qs 6.15: an unclosed group keeps the rest as the key
    ("a]=1", {"a]": "1"}),
    # depth: 5 bracket segments, the rest stays text of the last key
    (
        "a[b][c][d][e][f][g]=1",
        {"a": {"b": {"c": {"d": {"e": {"f": {"[g]": "1"}}}}}}},
    ),
    (
        "a[b][c][d][e][f][g][h]=i",
        {"a": {"b": {"c": {"d": {"e": {"f": {"[g][h]": "i"}}}}}}},
    ),
    # explicit arrays
    ("a[]=b", {"a": ["b"]}),
    ("a[]=b&a[]=c", {"a": ["b", "c"]}),
    ("a[]=b&a[]=&a[]=c", {"a": ["b", "", "c"]}),
    ("a[]=&a[]=b", {"a": ["", "b"]}),
    ("a[b][]=c&a[b][]=d", {"a": {"b": ["c", "d"]}}),
    ("a[][b]=c", {"a": [{"b": "c"}]}),
    ("a[0][b]=c", {"a": [{"b": "c"}]}),
    # mixed simple and explicit arrays
    ("a=b&a[]=c", {"a": ["b", "c"]}),
    ("a[]=b&a=c", {"a": ["b", "c"]}),
    ("a[0]=b&a=c", {"a": ["b", "c"]}),
    ("a=b&a[0]=c", {"a": ["b", "c"]}),
    ("a[1]=b&a=c", {"a": ["b", "c"]}),
    ("a=b&a[1]=c", {"a": ["b", "c"]}),
    # indices, compacted in index order
    ("a[0]=x&a[1]=y", {"a": ["x", "y"]}),
    ("a[1]=c&a[0]=b&a[2]=d", {"a": ["b", "c", "d"]}),
    ("a[1]=c&a[0]=b", {"a": ["b", "c"]}),
    ("a[10]=1&a[2]=2", {"a": ["2", "1"]}),
    ("a[1]=c", {"a": ["c"]}),
    ("a[1][b][2][c]=1", {"a": [{"b": [{"c": "1"}]}]}),
    ("a[1][2][3][c]=1", {"a": [[[{"c": "1"}]]]}),
    ("a[01]=x", {"a": {"01": "x"}}),
    ("a[-1]=x", {"a": {"-1": "x"}}),
    ("0[0]=x", {"0": ["x"]}),
    # index limit (100 items, indices 0-99): from 100 on, a dict with string keys
    ("a[99]=a", {"a": ["a"]}),
    ("a[100]=a", {"a": {"100": "a"}}),
    ("a[101]=a", {"a": {"101": "a"}}),
    ("a[2]=b&a[99999999]=c", {"a": {"2": "b", "99999999": "c"}}),
    ("a[0]=x&a[200]=y", {"a": {"0": "x", "200": "y"}}),
    # lists turned into dicts by object keys
    ("foo[0]=bar&foo[bad]=baz", {"foo": {"0": "bar", "bad": "baz"}}),
    ("foo[bad]=baz&foo[0]=bar", {"foo": {"bad": "baz", "0": "bar"}}),
    ("foo[bad]=baz&foo[]=bar", {"foo": {"bad": "baz", "0": "bar"}}),
    ("foo[]=bar&foo[bad]=baz", {"foo": {"0": "bar", "bad": "baz"}}),
    ("foo[bad]=baz&foo[]=bar&foo[]=foo", {"foo": {"bad": "baz", "0": "bar", "1": "foo"}}),
    (
        "foo[0][a]=a&foo[0][b]=b&foo[1][a]=aa&foo[1][b]=bb",
        {"foo": [{"a": "a", "b": "b"}, {"a": "aa", "b": "bb"}]},
    ),
    # conflicts between a value and an object (qs's merge, strictMerge)
    ("a[b]=c&a=d", {"a": [{"b": "c"}, "d"]}),
    ("a[b]=c&a=b", {"a": [{"b": "c"}, "b"]}),
    ("a[b]=c&a=", {"a": {"b": "c"}}),
    ("a=1&a[b]=2", {"a": ["1", {"b": "2"}]}),
    # jQuery's $.param output
    (
        "filter%5B0%5D%5B%5D=int1&filter%5B0%5D%5B%5D=%3D&filter%5B0%5D%5B%5D=77&filter%5B%5D=and"
        "&filter%5B2%5D%5B%5D=int2&filter%5B2%5D%5B%5D=%3D&filter%5B2%5D%5B%5D=8",
        {"filter": [["int1", "=", "77"], "and", ["int2", "=", "8"]]},
    ),
    # no prototype pollution concerns in Python: ordinary keys
    (
        "__proto__[x]=1&constructor[prototype][bad]=2",
        {
            "__proto__": {"x": "1"},
            "constructor": {"prototype": {"bad": "2"}},
        },
    ),
]


@pytest.mark.parametrize(("qs", "expected"), EXTENDED_CASES)
def test_parse_query(qs: str, expected: dict[str, Any]) -> None:
    assert parse_query(qs) == expected


@pytest.mark.parametrize(
    ("qs", "depth", "expected"),
    [
        ("a[b][c]=d", 1, {"a": {"b": {"[c]": "d"}}}),
        ("a[b][c][d]=e", 1, {"a": {"b": {"[c][d]": "e"}}}),
        ("a[b][c][d]=e", 2, {"a": {"b": {"c": {"[d]": "e"}}}}),
        ("a[0]=b&a[1]=c", 0, {"a[0]": "b", "a[1]": "c"}),
        ("a[0][0]=b&a[1]=d&e=2", 0, {"a[0][0]": "b", "a[1]": "d", "e": "2"}),
        ("a[b]=1", -3, {"a[b]": "1"}),
    ],
)
def test_depth(qs: str, depth: int, expected: dict[str, Any]) -> None:
    assert parse_query(qs, depth=depth) == expected


def test_parameter_limit_ignores_the_rest() -> None:
    qs = "&".join(f"k{i}=v" for i in range(20))
    assert parse_query(qs, parameter_limit=5) == {f"k{i}": "v" for i in range(5)}
    assert parse_query(qs, parameter_limit=0) == {}
    assert len(parse_query("&".join(f"k{i}=v" for i in range(1500)))) == 1000


def test_parameter_limit_counts_empty_pieces() -> None:
    assert parse_query("a=1&&&b=2", parameter_limit=3) == {"a": "1"}


def test_array_limit_index() -> None:
    assert parse_query("a[19]=a", array_limit=20) == {"a": ["a"]}
    assert parse_query("a[20]=a", array_limit=20) == {"a": {"20": "a"}}
    assert parse_query("a[1]=c", array_limit=0) == {"a": {"1": "c"}}
    assert parse_query("a[0]=c", array_limit=0) == {"a": {"0": "c"}}
    assert parse_query("a[0]=c", array_limit=1) == {"a": ["c"]}


@pytest.mark.parametrize(
    "qs",
    [
        "&".join(["a=x"] * 150),
        "&".join(["a[]=x"] * 150),
        "&".join(f"a[{i}]=x" for i in range(100)) + "&a[]=x",
        "&".join(["a[b][]=x"] * 150),
        "a=x&" + "&".join(["a[]=x"] * 150),
    ],
)
def test_lists_are_capped(qs: str) -> None:
    result = parse_query(qs)
    values = result["a"]["b"] if isinstance(result["a"], dict) else result["a"]
    assert values == ["x"] * 100


def test_list_cap_keeps_the_first_items() -> None:
    assert parse_query("a=1&a=2&a=3&a=4", array_limit=2) == {"a": ["1", "2"]}
    assert parse_query("a[]=1&a[]=2&a[]=3", array_limit=2) == {"a": ["1", "2"]}
    # A cap of 1 (or less) keeps the first value as it is.
    assert parse_query("a=1&a=2", array_limit=1) == {"a": "1"}
    assert parse_query("a=1&a[b]=2", array_limit=0) == {"a": "1"}


def test_very_long_explicit_array() -> None:
    result = parse_query("&".join(["a[]=a"] * 30000), parameter_limit=100000)
    assert result == {"a": ["a"] * 100}


def test_deep_keys_beyond_the_depth_stay_text() -> None:
    key = "a" + "[b]" * 10000
    result = parse_query(key + "=1", depth=10000)
    node: Any = result["a"]
    levels = 1
    while isinstance(node, dict):
        (node,) = node.values()
        levels += 1
    assert node == "1"
    assert levels == 102  # "a", 100 segments, then the rest as one key


def test_returns_fresh_objects() -> None:
    first = parse_query("a[b]=1&c=2")
    first["a"]["b"] = "changed"
    assert parse_query("a[b]=1&c=2") == {"a": {"b": "1"}, "c": "2"}


SIMPLE_CASES: list[tuple[str, dict[str, str | list[str]]]] = [
    ("", {}),
    ("a=1&b=2", {"a": "1", "b": "2"}),
    ("a=1&a=2&a=3", {"a": ["1", "2", "3"]}),
    ("a[b]=1&a[]=2", {"a[b]": "1", "a[]": "2"}),
    ("a", {"a": ""}),
    ("a=", {"a": ""}),
    ("=1", {"": "1"}),
    ("a=1&&b=2&", {"a": "1", "b": "2"}),
    ("a=b=c", {"a": "b=c"}),
    ("q=hello+world&x=%2B%20", {"q": "hello world", "x": "+ "}),
    ("bad=%zz&e=%E2%82%AC", {"bad": "%zz", "e": "\u20ac"}),
    ("a%5Bb%5D=1", {"a[b]": "1"}),
]


@pytest.mark.parametrize(("qs", "expected"), SIMPLE_CASES)
def test_parse_simple(qs: str, expected: dict[str, str | list[str]]) -> None:
    assert parse_simple(qs) == expected


def test_parse_simple_limit() -> None:
    assert parse_simple("a=1&b=2&c=3", parameter_limit=2) == {"a": "1", "b": "2"}
    assert parse_simple("a=1", parameter_limit=0) == {}


# -- properties ------------------------------------------------------------------------------------


def _leaves(node: Any) -> int:
    if isinstance(node, dict):
        return sum(_leaves(v) for v in node.values())
    if isinstance(node, list):
        return sum(_leaves(v) for v in node)
    return 1


def _nesting(node: Any) -> int:
    """Container levels below ``node`` (0 for a leaf)."""
    if isinstance(node, dict):
        return 1 + max((_nesting(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_nesting(v) for v in node), default=0)
    return 0


def _longest_list(node: Any) -> int:
    if isinstance(node, dict):
        return max((_longest_list(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return max([len(node), *(_longest_list(v) for v in node)])
    return 0


def _well_typed(node: Any) -> bool:
    if isinstance(node, dict):
        return all(isinstance(k, str) and _well_typed(v) for k, v in node.items())
    if isinstance(node, list):
        return all(_well_typed(v) for v in node)
    return isinstance(node, str)


_KEY_PART = st.sampled_from(["a", "b", "0", "1", "2", "150", "", "x y", "%5B", "%5D", "%", "+"])
_SEGMENT = st.builds("[{}]".format, _KEY_PART) | st.sampled_from(["[]", "[", "]", "[[", "]]"])
_KEY = st.builds(lambda head, segs: head + "".join(segs), _KEY_PART, st.lists(_SEGMENT, max_size=9))
_PAIR = st.builds(
    lambda key, eq, value: key + eq + value,
    _KEY,
    st.sampled_from(["=", "", "=="]),
    st.sampled_from(["", "v", "1", "%E2%82%AC", "%zz", "a+b", "[x]", "b"]),
)
# Bracket-heavy query strings, where merging and limits do their work.
BRACKETY = st.builds("&".join, st.lists(_PAIR, max_size=40))
ANY_QUERY = st.text() | BRACKETY


def _check_bounds(
    result: dict[str, Any], qs: str, depth: int, parameter_limit: int, limit: int
) -> None:
    assert _well_typed(result)
    assert _leaves(result) <= parameter_limit
    # Brackets give at most depth + 1 levels under a top-level key; qs's merging of a value with
    # a list adds at most two more, and a value meeting an object (strictMerge) puts both in a
    # list, one more level for each such value at most.
    pairs = min(qs.count("&") + 1, max(parameter_limit, 0))
    assert _nesting(result) - 1 <= max(depth, 0) + 3 + pairs
    assert _longest_list(result) <= max(limit, 1)


@given(ANY_QUERY)
def test_parse_query_never_raises_and_is_bounded(qs: str) -> None:
    result = parse_query(qs)
    assert isinstance(result, dict)
    _check_bounds(result, qs, 5, 1000, 100)


@given(
    BRACKETY,
    st.integers(min_value=-1, max_value=6),
    st.integers(min_value=0, max_value=12),
    st.integers(min_value=0, max_value=4),
)
def test_parse_query_respects_small_limits(qs: str, depth: int, params: int, limit: int) -> None:
    result = parse_query(qs, depth=depth, parameter_limit=params, array_limit=limit)
    _check_bounds(result, qs, depth, params, limit)


@given(ANY_QUERY)
def test_output_size_is_bounded_by_input(qs: str) -> None:
    result = parse_query(qs)
    assert len(repr(result)) <= 40 * (len(qs) + 1)


@given(ANY_QUERY)
def test_parse_simple_never_raises(qs: str) -> None:
    result = parse_simple(qs)
    for key, value in result.items():
        assert isinstance(key, str)
        assert isinstance(value, str) or all(isinstance(v, str) for v in value)


_FLAT_TEXT = st.text().filter(lambda s: "[" not in s and "%5" not in s.lower())


@given(_FLAT_TEXT)
def test_without_brackets_extended_agrees_with_simple(qs: str) -> None:
    simple = parse_simple(qs)
    expected = {k: (v[:100] if isinstance(v, list) else v) for k, v in simple.items() if k != ""}
    assert parse_query(qs) == expected


_PLAIN_KEY = st.text(min_size=1).filter(lambda s: "[" not in s and "]" not in s)


@given(st.dictionaries(_PLAIN_KEY, st.text(), max_size=20))
def test_encoded_pairs_round_trip(pairs: dict[str, str]) -> None:
    qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs.items())
    assert parse_query(qs) == pairs
    assert parse_simple(qs) == pairs


@given(st.dictionaries(st.text(), st.text(), max_size=20))
def test_simple_round_trips_any_pairs(pairs: dict[str, str]) -> None:
    qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs.items())
    assert parse_simple(qs) == pairs
