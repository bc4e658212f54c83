"""Unit: evserve.jsontext, the one JSON decoder for client input (bodies and ``j:`` cookies).

Whatever it accepts must be writable by a strict writer (``allow_nan=False``, UTF-8 out, what
``res.json`` does); what it refuses is a ``JSONTextError`` (a ``ValueError``) with a short
reason. Checked against the plain ``json`` module as a reference.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evserve.jsontext import JSONTextDecoder, JSONTextError, loads


def writable(value: object) -> bool:
    """Whether a strict JSON writer can send ``value`` (what res.json does)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return False
    return True


def refusal(text: str) -> str:
    with pytest.raises(JSONTextError) as info:
        loads(text)
    return str(info.value)


# -- numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[1e999]",
        "[-1e400]",
        "[1E+400]",
        "[1e0000000400]",
        "[2e308]",
        "[1.7976931348623159e308]",  # rounds past the largest double
        "[-" + "9" * 400 + ".5]",  # no exponent, but 400 digits
        "[1" + "0" * 250 + "e99]",  # neither part alone is out of range
        '{"a": {"b": [0, 1, {"c": 1e999}]}}',  # deep in a value
        '{"key": 1e999, "other": 1}',
    ],
)
def test_numbers_beyond_a_float_are_refused(text):
    assert refusal(text).startswith("number out of range: ")


def test_the_refused_literal_is_quoted_short():
    assert refusal("[-1e400]") == "number out of range: -1e400"
    assert len(refusal("[" + "1" * 1000 + ".0]")) < 64


@pytest.mark.parametrize("text", ["[1e308]", "[1.7976931348623157e308]", "[1e-999]", "[-0.0]", "[5e-324]"])
def test_finite_numbers_and_underflow_are_kept(text):
    assert loads(text) == json.loads(text)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_the_non_json_constants_are_refused(constant):
    assert refusal(f"[{constant}]") == f"{constant} is not valid JSON"


@pytest.mark.skipif(not hasattr(sys, "get_int_max_str_digits"), reason="no int digit limit")
def test_integers_stay_exact_and_too_many_digits_is_a_refusal():
    big = "7" * 4000
    assert loads(f"[{big}]") == [int(big)]
    assert refusal("[" + "1" * 5000 + "]") == "integer with more than 4300 digits"


@settings(max_examples=300)
@given(st.from_regex(r"-?(0|[1-9][0-9]{0,330})(\.[0-9]{1,4})?([eE][+-]?[0-9]{1,4})?", fullmatch=True))
def test_a_number_is_accepted_exactly_when_it_is_finite(literal):
    reference = json.loads(literal)
    if isinstance(reference, float) and not math.isfinite(reference):
        with pytest.raises(JSONTextError):
            loads(f"[{literal}]")
    else:
        assert loads(f"[{literal}]") == [reference]


# -- surrogates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (r'["\ud800"]', r"unpaired surrogate \ud800 at line 1 column 3"),
        (r'["\uDFFF"]', r"unpaired surrogate \uDFFF at line 1 column 3"),
        (r'["x\udc00y"]', r"unpaired surrogate \udc00 at line 1 column 4"),
        (r'["\ud800x"]', r"unpaired surrogate \ud800 at line 1 column 3"),
        (r'["\ud800\u0041"]', r"unpaired surrogate \ud800 at line 1 column 3"),
        (r'["\ud800\ud800\udc00"]', r"unpaired surrogate \ud800 at line 1 column 3"),
        (r'["\ud800\udc00\udc00"]', r"unpaired surrogate \udc00 at line 1 column 15"),
        (r'["\udc00\ud800"]', r"unpaired surrogate \udc00 at line 1 column 3"),
        (r'["\ud800\\udc00"]', r"unpaired surrogate \ud800 at line 1 column 3"),  # a "\" then text
        (r'["\\\ud800"]', r"unpaired surrogate \ud800 at line 1 column 5"),  # "\" then an escape
        (r'{"\ud800": 1}', r"unpaired surrogate \ud800 at line 1 column 3"),  # an object key
        ('{\n "a": [{"b": "\\udbff"}]}', r"unpaired surrogate \udbff at line 2 column 15"),
        ('["\ud800"]', "unpaired surrogate U+D800 at line 1 column 3"),  # raw, not escaped
    ],
)
def test_unpaired_surrogates_are_refused_in_values_and_keys(text, message):
    assert refusal(text) == message


@pytest.mark.parametrize(
    "text",
    [
        r'["\ud83d\ude00"]',
        r'["\uD83D\uDE00"]',
        r'{"\udbff\udfff": "\ud800\udc00"}',
        r'["\\ud800"]',  # an escaped backslash, then plain text
        r'["\\\\ud800"]',
        r'["\u00e9\ud7ff\ue000"]',  # neighbours of the surrogate range
        r'["\ud800\udc00", "\\ud800"]',
    ],
)
def test_pairs_and_lookalikes_are_accepted(text):
    assert loads(text) == json.loads(text)


# Pieces of a JSON string's inside: escapes of both surrogate halves, escaped backslashes that
# make a following "ud800" plain text, and other escapes.
_PIECES = ["a", "\\\\", "\\ud800", "\\uDBFF", "\\udc00", "\\uDFFF", "\\u0041", "\\n", '\\"', "u", "d800", "\\/"]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(_PIECES), max_size=8), st.lists(st.sampled_from(_PIECES), max_size=4))
def test_a_string_is_accepted_exactly_when_it_is_writable(value_pieces, key_pieces):
    key, value = "".join(key_pieces), "".join(value_pieces)
    text = f'{{"{key}": ["{value}"]}}'
    reference = json.loads(text)
    if writable(reference):
        assert loads(text) == reference
    else:
        with pytest.raises(JSONTextError, match="unpaired surrogate"):
            loads(text)


def test_object_hook_never_sees_a_refused_value():
    seen = []
    decoder = JSONTextDecoder(object_hook=lambda obj: seen.append(obj) or obj)
    for text in [r'[{"a": "\ud800"}]', '[{"a": 1}, {"b": 1e999}]', '[{"a": NaN}]']:
        with pytest.raises(JSONTextError):
            decoder.decode(text)
    assert all(writable(obj) for obj in seen)
    assert decoder.decode('{"a": {"b": 2}}') == {"a": {"b": 2}}


def test_object_hook_errors_pass_through_unchanged():
    def hook(obj):
        raise KeyError("mine")

    with pytest.raises(KeyError):
        JSONTextDecoder(object_hook=hook).decode('{"a": 1}')


# -- the rest of the rules ----------------------------------------------------------------------------


def test_malformed_json_and_depth_are_refused_as_before():
    assert refusal('{"a":') == "Expecting value at line 1 column 6"
    assert refusal("[" * 101 + "]" * 101) == "nested deeper than 100 levels"
    assert loads("[" * 100 + "]" * 100) is not None
    assert refusal("[" * 100_000) == "nested deeper than 100 levels"
    assert JSONTextDecoder(max_depth=2).decode("[[1]]") == [[1]]
    with pytest.raises(JSONTextError):
        JSONTextDecoder(max_depth=2).decode("[[[1]]]")


def test_the_utf8_argument_stands_for_the_text():
    text = '{"\u00e9": ["\u2603"]}'
    assert JSONTextDecoder().decode(text, text.encode()) == {"\u00e9": ["\u2603"]}
    deep = "[" * 101 + '"\u00e9"' + "]" * 101
    with pytest.raises(JSONTextError, match="nested deeper"):
        JSONTextDecoder().decode(deep, deep.encode())


@pytest.mark.parametrize(
    "text", ['{"a": [1, 2.5, true, null, "x"]}', "[]", '"s"', "  0 ", '{"\u00e9": "\U0001f600"}']
)
def test_ordinary_json_is_what_json_loads_gives(text):
    assert loads(text) == json.loads(text)
