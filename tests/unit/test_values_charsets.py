"""Unit: the body parsers' charset allow-list (one function for json, urlencoded and text).

A charset is decoded only when it names a safe text codec: known aliases resolve as
``codecs.lookup`` resolves them, anything else is refused without asking the codec registry
(which would import a module per name and remember every unknown name forever), and no allowed
codec turns any bytes into a lone surrogate.
"""

from __future__ import annotations

import codecs
import encodings
import encodings.aliases
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evserve.middleware.body_parser import _TEXT_CODECS, _text_codec

SURROGATE = re.compile("[\ud800-\udfff]")


@pytest.mark.parametrize(
    ("charset", "codec"),
    [
        ("utf-8", "utf-8"),
        ("UTF-8", "utf-8"),
        ("utf8", "utf-8"),
        ("utf_8", "utf-8"),
        ("UTF 8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),
        ("UTF-16LE", "utf-16-le"),
        ("utf-16be", "utf-16-be"),
        ("utf-32", "utf-32"),
        ("utf-32le", "utf-32-le"),
        ("UTF-32BE", "utf-32-be"),
        ("us-ascii", "ascii"),
        ("ascii", "ascii"),
        ("iso-8859-1", "iso8859-1"),
        ("latin1", "iso8859-1"),
        ("ISO_8859-1", "iso8859-1"),
        ("iso-8859-2", "iso8859-2"),
        ("iso-8859-15", "iso8859-15"),
        ("iso-8859-16", "iso8859-16"),
        ("windows-1250", "cp1250"),
        ("windows-1252", "cp1252"),
        ("cp1258", "cp1258"),
        ("koi8-r", "koi8-r"),
        ("KOI8-U", "koi8-u"),
        ("ibm866", "cp866"),
        ("cp874", "cp874"),
        ("macintosh", "mac-roman"),
        ("shift_jis", "shift_jis"),
        ("ms932", "cp932"),
        ("sjis", "shift_jis"),
        ("euc-jp", "euc_jp"),
        ("iso-2022-jp", "iso2022_jp"),
        ("euc-kr", "euc_kr"),
        ("gbk", "gbk"),
        ("gb18030", "gb18030"),
        ("gb2312", "gb2312"),
        ("big5", "big5"),
        ("big5-hkscs", "big5hkscs"),
    ],
)
def test_allowed_charsets_resolve_to_their_codec(charset, codec):
    assert _text_codec(charset) == codec
    assert codecs.lookup(charset).name == codec


@pytest.mark.parametrize(
    "charset",
    [
        # bytes-to-bytes and escape codecs Python would "decode" with
        "punycode", "unicode_escape", "unicode-escape", "raw_unicode_escape", "idna", "rot13",
        "rot_13", "hex", "hex_codec", "base64", "base64_codec", "zlib", "uu", "bz2", "quopri",
        "undefined", "utf-7", "UTF7", "unicode_internal", "string_escape", "mbcs", "oem",
        # rare code pages and stateful encodings outside the list
        "cp037", "cp500", "cp1026", "hz", "iso2022_jp_2", "iso2022_kr", "johab", "palmos",
        "hp_roman8", "ptcp154", "koi8_t", "kz1048", "cp437", "mac-turkish",
        # not charset names at all
        "", "utf.8", "utf-99", "latin-9", "no-such-thing", "utf-8\x00", "utf-8; x", "\u00fctf-8",
        "utf-8" + " " * 100, "x" * 16_384,
    ],
)
def test_other_charsets_are_refused(charset):
    assert _text_codec(charset) is None


def _alias_names() -> list[str]:
    names = set(encodings.aliases.aliases) | set(encodings.aliases.aliases.values())
    return sorted(names)


@pytest.mark.parametrize("name", _alias_names())
def test_every_python_alias_resolves_as_codecs_lookup_does(name):
    # For each alias Python knows: either refused, or the very codec codecs.lookup gives, in
    # any case and with any punctuation.
    for variant in (name, name.upper(), name.replace("_", "-"), "-" + name.replace("_", " . ") + " "):
        codec = _text_codec(variant)
        if codec is not None:
            assert codec == codecs.lookup(variant).name, variant
            assert codec in _TEXT_CODECS.values()
    module = encodings.aliases.aliases.get(name, name)
    expected = _TEXT_CODECS.get(module)
    assert _text_codec(name) == expected


@settings(max_examples=300)
@given(st.text(alphabet="utf8-_. 1236LEBSIGiso59wndcpkr", max_size=14))
def test_any_name_resolves_as_codecs_lookup_does_or_is_refused(name):
    codec = _text_codec(name)
    if codec is not None:
        assert codecs.lookup(name).name == codec


def test_resolving_never_grows_the_codec_registry_cache():
    before = len(encodings._cache)  # type: ignore[attr-defined]
    for i in range(500):
        assert _text_codec(f"no-such-charset-{i}") is None
        assert _text_codec(f"x-unknown-{i}" * 3) is None
    assert len(encodings._cache) == before  # type: ignore[attr-defined]


@pytest.mark.parametrize("codec", sorted(set(_TEXT_CODECS.values())))
def test_no_allowed_codec_decodes_any_bytes_to_a_lone_surrogate(codec):
    pairs = b"".join(bytes((a, b)) for a in range(256) for b in range(256))
    quads = b"".join(bytes((a, b, 0, 0)) + bytes((0, 0, a, b)) for a in range(0xD0, 0xE0) for b in range(256))
    for data in (bytes(range(256)), pairs, pairs[1:], quads, quads[2:]):
        text = data.decode(codec, "replace")
        assert SURROGATE.search(text) is None
