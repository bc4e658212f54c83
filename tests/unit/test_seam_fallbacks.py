"""Private or undocumented CPython APIs used on a hot path each have a fallback that gives the
same result, and both branches are exercised here.

- ``response._compact_json`` calls ``json.encoder``'s C accelerators (``c_make_encoder``,
  ``c_encode_basestring``) directly, and falls back to ``JSONEncoder.encode``;
- ``pathpattern`` walks regexes with the private ``re._parser``, and falls back to
  ``sre_parse`` (its name before Python 3.11).
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import importlib.util
import json
import json.encoder
import re
import warnings
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evserve import pathpattern, response

# -- JSON ---------------------------------------------------------------------------------

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers() | finite_floats | st.text()  # no surrogates
keys = st.text() | st.integers() | finite_floats | st.booleans() | st.none()  # json makes them str
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(keys, inner, max_size=4),
    max_leaves=24,
)


def stdlib_dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@contextlib.contextmanager
def pure_python_json() -> Iterator[None]:
    """``json`` as it runs without its C accelerator module (as on an interpreter without it)."""
    with mock.patch.object(json.encoder, "c_make_encoder", None), \
            mock.patch.object(json.encoder, "encode_basestring", json.encoder.py_encode_basestring):
        yield


@contextlib.contextmanager
def compact_json_fallback(missing: str) -> Iterator[None]:
    """``_compact_json`` with one of its C entry points missing, so it takes its fallback."""
    with mock.patch.object(response, missing, None):
        yield


def outcome(fn: Callable[[Any], str], obj: Any) -> tuple[str, bytes]:
    """What ``fn(obj)`` gives as UTF-8 bytes, or the type of what it raises (the C and Python
    encoders word some messages differently)."""
    try:
        return ("ok", fn(obj).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        return (type(exc).__name__, b"")


@given(json_values)
def test_compact_json_gives_the_bytes_of_json_dumps(obj: Any) -> None:
    expected = outcome(stdlib_dumps, obj)
    assert expected[0] == "ok"
    assert outcome(response._compact_json, obj) == expected
    with compact_json_fallback("_c_make_encoder"):
        assert outcome(response._compact_json, obj) == expected
    with compact_json_fallback("_c_encode_basestring"):
        assert outcome(response._compact_json, obj) == expected
    with pure_python_json():
        assert outcome(stdlib_dumps, obj) == expected
        with compact_json_fallback("_c_make_encoder"):
            assert outcome(response._compact_json, obj) == expected


class Colour(enum.IntEnum):
    RED = 1


class Text(str):
    pass


def circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize("obj", [
    "plain", "é\u2028\x00\"\\/\U0001f600", Text("sub"), Colour.RED, [Colour.RED, Text("x")],
    {Colour.RED: 1, 2.5: None, True: False, None: [], "k": {}}, 1e16, -0.0, 5e-324, 10**40,
    float("nan"), float("inf"), [float("-inf")], {1, 2}, {"k": b"bytes"}, {(1, 2): 0}, circular(),
    object(),
])
def test_compact_json_and_its_fallback_agree_on_edge_cases(obj: Any) -> None:
    expected = outcome(stdlib_dumps, obj)
    assert outcome(response._compact_json, obj) == expected
    with compact_json_fallback("_c_make_encoder"):
        assert outcome(response._compact_json, obj) == expected
    with pure_python_json():
        assert outcome(stdlib_dumps, obj) == expected


def test_the_json_fallback_branch_runs() -> None:
    calls: list[Any] = []

    def spy(obj: Any) -> str:
        calls.append(obj)
        return stdlib_dumps(obj)

    with compact_json_fallback("_c_make_encoder"), mock.patch.object(response, "_JSON_DUMPS", spy):
        assert response._compact_json({"a": [1]}) == '{"a":[1]}'
    assert calls == [{"a": [1]}]


# -- regex analysis -----------------------------------------------------------------------

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    HAS_SRE_PARSE = importlib.util.find_spec("sre_parse") is not None


@contextlib.contextmanager
def regex_parser_import(*missing: str) -> Iterator[None]:
    """``pathpattern`` as it runs when the named modules cannot be imported."""

    def import_module(name: str, package: str | None = None) -> Any:
        if name in missing:
            raise ImportError(f"No module named {name!r}")
        return importlib.import_module(name, package)

    pathpattern._regex_parser.cache_clear()
    try:
        with mock.patch.object(pathpattern, "importlib", SimpleNamespace(import_module=import_module)), \
                warnings.catch_warnings():
            # sre_parse warns that it is deprecated (3.11+) when first imported.
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        pathpattern._regex_parser.cache_clear()


def analysis(text: str, flags: int = 0) -> str | None:
    """What the regex check says of ``text``: ``None`` (accepted) or its refusal message."""
    try:
        pathpattern._check_regex(text, flags, "constraint")
    except pathpattern.PatternError as exc:
        return str(exc)
    return None


_ATOMS = ["a", "b", "-", r"\.", ".", r"\d", r"\w", r"\s", "[a-z]", r"[^/]", r"[\d,]"]
_ANCHORS = ["^", "$", r"\b", r"\1"]  # not repeatable; \1 is a backreference (or an error)
_QUANTIFIERS = ["", "", "", "*", "+", "?", "{2}", "{1,3}", "{2,}", "*?", "+?", "*+"]
_GROUPS = ["({})", "(?:{})", "(?:{})", "(?={})", "(?!{})", "(?<=a)(?:{})", "(?>{})", "(?i:{})", "(?(1){}|b)"]


@st.composite
def regexes(draw: st.DrawFn, depth: int = 3) -> str:
    """Small regexes over the constructs the check knows, and some it does not."""
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 9)) == 0:
            parts.append(draw(st.sampled_from(_ANCHORS)))
            continue
        if depth > 0 and draw(st.booleans()):
            inner = draw(regexes(depth - 1))
            if draw(st.booleans()):
                inner += "|" + draw(regexes(depth - 1))
            part = draw(st.sampled_from(_GROUPS)).format(inner)
        else:
            part = draw(st.sampled_from(_ATOMS))
        parts.append(part + draw(st.sampled_from(_QUANTIFIERS)))
    return "".join(parts)


KNOWN = ["\\d+", "(a+)+", "(?:\\d+,)*\\d+", "(a|aa)+", "(a)\\1", "[a-z]{2,8}", "(?:png|jpe?g)", "(?>a+)+",
         "(?=\\d)\\w+", "x(?:y(?:z+)+)?", "a{1,3}+", "(", "a**"]


@pytest.mark.skipif(not HAS_SRE_PARSE, reason="this Python has no sre_parse to fall back to")
@pytest.mark.parametrize("text", KNOWN)
def test_the_regex_check_falls_back_to_sre_parse_with_the_same_result(text: str) -> None:
    flags = re.IGNORECASE | re.VERBOSE
    expected = (analysis(text), analysis(text, flags))
    with regex_parser_import("re._parser"):
        assert pathpattern._regex_parser().__name__ == "sre_parse"
        assert (analysis(text), analysis(text, flags)) == expected


@pytest.mark.skipif(not HAS_SRE_PARSE, reason="this Python has no sre_parse to fall back to")
@given(regexes())
def test_the_regex_fallback_agrees_on_any_regex(text: str) -> None:
    expected = analysis(text)
    with regex_parser_import("re._parser"):
        assert analysis(text) == expected


def test_without_any_regex_parser_a_constraint_is_refused_or_accepted_never_crashes() -> None:
    with regex_parser_import("re._parser", "sre_parse"):
        for text in KNOWN:
            assert analysis(text) is None or "constraint" in str(analysis(text))
