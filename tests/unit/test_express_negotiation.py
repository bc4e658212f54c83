"""Accept-Charset/-Encoding/-Language negotiation and query decoding, as Express does them.

The expected answers are npm negotiator's (Express's ``req.acceptsCharsets``,
``req.acceptsEncodings``, ``req.acceptsLanguages``) and npm qs's (``req.query``, urlencoded
bodies): the q of an offer is the q of its most specific matching entry, never the highest q of
any match; qs keeps a value whose escapes do not decode as UTF-8.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evserve.negotiation import (
    accepts,
    accepts_charsets,
    accepts_encodings,
    accepts_languages,
)
from evserve.query import parse_query, parse_simple

# (Accept-Language, offers, expected)
LANGUAGE_CASES: list[tuple[str | None, tuple[str, ...], str | None]] = [
    # the most specific entry sets the q: offer "en" takes "en;q=0.8", not "en-US" (q=1)
    ("en-US, en;q=0.8", ("en", "en-US"), "en-US"),
    # equal q: the exact match beats the primary-tag match
    ("en-US", ("en", "en-US"), "en-US"),
    ("en", ("en-US", "en"), "en"),
    # a q=0 entry refuses its language even when "*" allows everything else
    ("en;q=0, *", ("en",), None),
    ("en;q=0, *", ("en", "fr"), "fr"),
    ("en-US;q=0, *", ("en-US", "en-GB"), "en-GB"),
    # a primary tag matches a longer offer, and the reverse, less specifically than "*" would not
    ("en", ("en-US",), "en-US"),
    ("en-US", ("en",), "en"),
    ("en-US, fr;q=0.5", ("fr", "en"), "en"),
    ("fr;q=0.5, *;q=0.9", ("fr", "de"), "de"),
    # ties in q and specificity: the entry earlier in the header, then the earlier offer
    ("fr, de", ("de", "fr"), "fr"),
    ("*", ("de", "fr"), "de"),
    # case-insensitive; the offer comes back as given
    ("EN-us", ("en-US",), "en-US"),
    ("en-us", ("EN",), "EN"),
    # no header means "*"; an empty header accepts nothing
    (None, ("es", "en"), "es"),
    ("", ("es", "en"), None),
    ("de", ("en", "fr"), None),
    # RFC 9110 section 12.4.2 allows OWS before "q" and any case (negotiator's language parser
    # would read both entries as q=1 and answer "en": a deliberate difference)
    ("en; q=0.1, fr;q=0.5", ("en", "fr"), "fr"),
    ("en;Q=0.1, fr;q=0.5", ("en", "fr"), "fr"),
    ("en;q=abc, fr;q=0.1", ("en", "fr"), "fr"),  # an unparsable q excludes
]

# (Accept-Charset, offers, expected)
CHARSET_CASES: list[tuple[str | None, tuple[str, ...], str | None]] = [
    ("utf-8;q=0.5, *", ("utf-8", "iso-8859-1"), "iso-8859-1"),
    ("utf-8;q=0, *", ("utf-8",), None),
    ("*, utf-8;q=0", ("utf-8", "iso-8859-1"), "iso-8859-1"),
    ("iso-8859-1, utf-8", ("utf-8", "iso-8859-1"), "iso-8859-1"),
    ("*", ("utf-8", "iso-8859-1"), "utf-8"),
    ("UTF-8", ("utf-8",), "utf-8"),
    ("utf-8", ("UTF-8",), "UTF-8"),
    (None, ("utf-8",), "utf-8"),
    ("", ("utf-8",), None),
    ("latin1", ("utf-8",), None),
    ("utf-8;q=0.5, *;q=0.7", ("utf-8", "ascii"), "ascii"),
    ("utf-8;q=0.5, *;q=0.5", ("ascii", "utf-8"), "utf-8"),  # same q: the exact match wins
]

# (Accept-Encoding, offers, expected)
ENCODING_CASES: list[tuple[str | None, tuple[str, ...], str | None]] = [
    ("gzip;q=0, *", ("gzip",), None),
    ("gzip;q=0, *", ("gzip", "br"), "br"),
    ("gzip;q=0.5, *", ("gzip", "br"), "br"),
    ("gzip, br", ("br", "gzip"), "gzip"),
    ("gzip, deflate", ("deflate", "gzip", "identity"), "gzip"),
    # identity is implicit, with the lowest q of the header and after every entry
    ("gzip", ("identity", "gzip"), "gzip"),
    ("gzip", ("identity",), "identity"),
    ("gzip;q=0.2, br;q=0.8", ("identity", "gzip"), "gzip"),
    ("gzip;q=0, br;q=0.8", ("identity",), "identity"),
    # ...unless named, or covered by "*"
    ("gzip, identity;q=0", ("identity",), None),
    ("gzip, *;q=0", ("identity",), None),
    ("*", ("identity", "gzip"), "identity"),
    # no (or an empty) header: identity only, as negotiator
    (None, ("gzip", "identity"), "identity"),
    (None, ("gzip",), None),
    ("", ("gzip", "identity"), "identity"),
    ("GZIP", ("gzip",), "gzip"),
]


@pytest.mark.parametrize(("header", "offers", "expected"), LANGUAGE_CASES)
def test_accepts_languages(header: str | None, offers: tuple[str, ...], expected: str | None) -> None:
    assert accepts_languages(header, offers) == expected


@pytest.mark.parametrize(("header", "offers", "expected"), CHARSET_CASES)
def test_accepts_charsets(header: str | None, offers: tuple[str, ...], expected: str | None) -> None:
    assert accepts_charsets(header, offers) == expected


@pytest.mark.parametrize(("header", "offers", "expected"), ENCODING_CASES)
def test_accepts_encodings(header: str | None, offers: tuple[str, ...], expected: str | None) -> None:
    assert accepts_encodings(header, offers) == expected


def test_no_offers_is_none() -> None:
    for fn in (accepts_languages, accepts_charsets, accepts_encodings):
        assert fn("*", ()) is None
        assert fn(None, []) is None


def test_media_types_use_the_most_specific_range_too() -> None:
    assert accepts("text/html;q=0, */*", ["text/html"]) is None
    assert accepts("text/html;q=0, */*", ["text/html", "json"]) == "json"
    assert accepts("text/*;q=0.5, */*", ["html", "json"]) == "json"


_TOKENS = st.sampled_from(["en", "en-US", "fr", "*", "gzip", "identity", "utf-8", "x;q=0", ""])


@given(
    st.lists(
        st.tuples(_TOKENS, st.sampled_from(["", ";q=0", ";q=0.5", ";q=1", ";q=x", " ; q=0.3"])),
        max_size=6,
    ).map(lambda items: ", ".join(t + p for t, p in items)),
    st.lists(_TOKENS, max_size=4),
)
def test_answer_is_an_offer_or_none(header: str, offers: list[str]) -> None:
    for fn in (accepts_languages, accepts_charsets, accepts_encodings):
        answer = fn(header, offers)
        assert answer is None or answer in offers


# (query string, expected) for the qs decoding of keys and values
DECODE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("name=caf%E9", {"name": "caf%E9"}),
    ("name=caf%C3%A9", {"name": "caf\u00e9"}),
    ("a=x+caf%E9", {"a": "x caf%E9"}),  # "+" is still a space
    ("caf%E9=1", {"caf%E9": "1"}),  # keys too
    ("a=%C3%A9%E9", {"a": "%C3%A9%E9"}),  # one bad escape keeps the whole value
    ("a=%zz%C3%A9", {"a": "%zz%C3%A9"}),  # as does a malformed one (decodeURIComponent throws)
    ("a=%ED%A0%80", {"a": "%ED%A0%80"}),  # an encoded surrogate is not UTF-8
    ("a=%C0%AF", {"a": "%C0%AF"}),  # nor is an overlong form
    ("a[b]=caf%E9", {"a": {"b": "caf%E9"}}),
    ("a=%F0%9F%98%80", {"a": "\U0001f600"}),
]


@pytest.mark.parametrize(("qs", "expected"), DECODE_CASES)
def test_query_keeps_undecodable_text_as_qs(qs: str, expected: dict[str, Any]) -> None:
    assert parse_query(qs) == expected


def test_simple_parser_still_decodes_as_node() -> None:
    # Node's querystring.unescape falls back to escape-by-escape decoding with U+FFFD.
    assert parse_simple("name=caf%E9&b=%zz%C3%A9") == {"name": "caf\ufffd", "b": "%zz\u00e9"}
