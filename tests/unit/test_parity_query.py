"""The extended query parser against qs 6.15 (Express 5's), read from qs's lib/parse.js and
lib/utils.js: keys both plain and nested, unclosed brackets, empty keys, merge order."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from evserve.query import parse_query

# (query string, what qs.parse gives with Express's options), traced through
# splitKeyIntoSegments / parseObject / utils.merge (strictMerge on, its default since 6.15).
QS_TABLE: list[tuple[str, dict[str, Any]]] = [
    # a key that is both a value and an object or a list
    ("a[b]=1&a=2", {"a": [{"b": "1"}, "2"]}),
    ("a=2&a[b]=1", {"a": ["2", {"b": "1"}]}),
    ("a[]=1&a=2", {"a": ["1", "2"]}),
    ("a=1&a[]=2", {"a": ["1", "2"]}),
    ("a[0]=x&a=y", {"a": ["x", "y"]}),
    ("a=y&a[0]=x", {"a": ["y", "x"]}),
    ("a[b]=1&a=", {"a": {"b": "1"}}),  # an empty value adds nothing to an object...
    ("a[]=1&a=", {"a": ["1"]}),  # ... or to a list
    ("a=&a[b]=1", {"a": ["", {"b": "1"}]}),
    ("a=&a[]=1", {"a": ["", "1"]}),
    ("a[b]=1&a=2&a=3", {"a": {"b": "1", "0": "2", "1": "3"}}),
    ("a=2&a=3&a[b]=1", {"a": {"0": "2", "1": "3", "b": "1"}}),
    ("a[b]=1&a=2&a[c]=3", {"a": {"0": {"b": "1"}, "1": "2", "c": "3"}}),
    ("a[b][c]=1&a[b]=2", {"a": {"b": [{"c": "1"}, "2"]}}),
    ("a[b][c]=1&a[b]=2&a=3", {"a": [{"b": [{"c": "1"}, "2"]}, "3"]}),
    ("a[0][b]=1&a[0]=2", {"a": [{"b": "1"}, "2"]}),
    ("[a]=1&a=2", {"a": ["1", "2"]}),
    ("a[b]=1&a[b]x=2", {"a": {"b": ["1", "2"]}}),
    # JavaScript visits array-index keys first: "5" merges before "5[]"
    ("5[]=a&5=b", {"5": ["b", "a"]}),
    ("x[]=a&x=b", {"x": ["a", "b"]}),
    # brackets that do not pair up
    ("a[=1", {"a": {"[": "1"}}),
    ("a[b=1", {"a": {"[b": "1"}}),
    ("a%5Bb=1", {"a": {"[b": "1"}}),
    ("a[b][c=1", {"a": {"b": {"[c": "1"}}}),
    ("a[[]=1", {"a": {"[[]": "1"}}),
    ("a]=1", {"a]": "1"}),
    ("]=1", {"]": "1"}),
    ("a]b[c]=1", {"a]b": {"c": "1"}}),
    ("a[b]]=1", {"a": {"b": "1"}}),
    ("a[b]c=1", {"a": {"b": "1"}}),
    ("a[b]c[d]=1", {"a": {"b": {"d": "1"}}}),
    ("[a]=1", {"a": "1"}),
    ("[]=1", {"0": "1"}),
    ("[=1", {"[": "1"}),
    ("[[=1", {"[[": "1"}),
    ("[hello[=1", {"[hello[": "1"}),
    # balanced groups nest: the inner brackets are text of the key
    ("a[[b]]=1", {"a": {"[b]": "1"}}),
    ("a[b[]]=1", {"a": {"b[]": "1"}}),
    ("a[b[c]][d]=1", {"a": {"b[c]": {"d": "1"}}}),
    ("[[b]]=1", {"[b]": "1"}),
    # past depth 5, or at an unclosed group after it, the rest is the last key
    ("a[b][c][d][e][f][g][h]=1", {"a": {"b": {"c": {"d": {"e": {"f": {"[g][h]": "1"}}}}}}}),
    ("a[b][c][d][e][f][g=1", {"a": {"b": {"c": {"d": {"e": {"f": {"[g": "1"}}}}}}}),
    # empty keys are skipped (qs parseKeys returns nothing for them)
    ("=x", {}),
    ("=", {}),
    ("&=x&", {}),
    ("=x&a=1", {"a": "1"}),
    ("=x&=y&b", {"b": ""}),
    ("%20=x", {" ": "x"}),
    # list indices run below arrayLimit (qs 6.14.2: a count, not a largest index)
    ("a[99]=x", {"a": ["x"]}),
    ("a[100]=x", {"a": {"100": "x"}}),
]


@pytest.mark.parametrize(("qs", "expected"), QS_TABLE)
def test_matches_qs(qs: str, expected: dict[str, Any]) -> None:
    assert parse_query(qs) == expected


def test_array_index_keys_come_first() -> None:
    # JSON output lists them first, as Express's res.json(req.query) does.
    assert list(parse_query("b=1&10=x&2=y&a=2")) == ["2", "10", "b", "a"]
    assert list(parse_query("b[x]=1&10=x&01=y")) == ["10", "b", "01"]


# body-parser 2's non-extended urlencoded parser is qs with depth 0.
FLAT_TABLE: list[tuple[str, dict[str, Any]]] = [
    ("=x", {}),
    ("=", {}),
    ("&=x&", {}),
    ("=x&a=1", {"a": "1"}),
    ("a[b]=1", {"a[b]": "1"}),
    ("a[]=1&a[]=2", {"a[]": ["1", "2"]}),
    ("a=1&a=2", {"a": ["1", "2"]}),
    ("[a]=1", {"a": "1"}),
    ("a[=1", {"a[": "1"}),
]


@pytest.mark.parametrize(("qs", "expected"), FLAT_TABLE)
def test_depth_zero_is_body_parsers_flat_parser(qs: str, expected: dict[str, Any]) -> None:
    assert parse_query(qs, depth=0) == expected


def _nesting(node: Any) -> int:
    deepest = 0
    stack = [(node, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def test_aliased_keys_cannot_nest_the_result_without_bound() -> None:
    # "a[b]x" is "a[b]" to qs; alternating objects and values there would wrap one level per
    # pair. The result stays shallow enough for recursive Python code.
    pairs = [f"a[b]x{i}=v" if i % 2 else f"a[b][k{i}]=v" for i in range(998)]
    result = parse_query("a[b][c]=v&" + "&".join(pairs))
    assert _nesting(result) <= 110
    copy.deepcopy(result)
    json.dumps(result)
