"""MIME lookup, Accept negotiation (req.accepts), Content-Type matching (req.is_type)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evserve.negotiation import (
    accepts,
    accepts_list,
    content_type_for,
    is_type,
    mime_type,
    parse_content_type,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("json", "application/json"),
        (".json", "application/json"),
        ("JSON", "application/json"),
        ("data.json", "application/json"),
        ("html", "text/html"),
        (".htm", "text/html"),
        ("txt", "text/plain"),
        ("text", "text/plain"),
        ("png", "image/png"),
        ("bin", "application/octet-stream"),
        ("js", "text/javascript"),
        ("css", "text/css"),
        ("svg", "image/svg+xml"),
        ("archive.tar.gz", "application/gzip"),
        ("application/x-thing", "application/x-thing"),
        ("text/html; charset=latin1", "text/html; charset=latin1"),
        ("unknownext", "application/octet-stream"),
        ("", "application/octet-stream"),
        (".", "application/octet-stream"),
        ("rtf", "application/rtf"),  # from Python's own table
    ],
)
def test_mime_type(value: str, expected: str) -> None:
    assert mime_type(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("json", "application/json; charset=utf-8"),
        ("html", "text/html; charset=utf-8"),
        ("txt", "text/plain; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("application/javascript", "application/javascript; charset=utf-8"),
        ("application/json", "application/json; charset=utf-8"),
        ("text/html; charset=latin1", "text/html; charset=latin1"),
        ("text/plain;Charset=UTF-8", "text/plain;Charset=UTF-8"),
        ("png", "image/png"),
        ("bin", "application/octet-stream"),
        ("application/xml", "application/xml"),
        ("unknownext", "application/octet-stream"),
    ],
)
def test_content_type_for(value: str, expected: str) -> None:
    assert content_type_for(value) == expected


ACCEPTS_CASES: list[tuple[str | None, list[str], str | None]] = [
    # no Accept header: the first offer, whatever it is
    (None, ["json", "html"], "json"),
    ("", ["html", "json"], "html"),
    (None, ["whatever"], "whatever"),
    (None, [], None),
    ("text/html", [], None),
    # */*
    ("*/*", ["json", "html"], "json"),
    ("*/*", ["image/png"], "image/png"),
    # extensions and full types are returned as given
    ("text/*, application/json", ["html"], "html"),
    ("text/*, application/json", ["text/html"], "text/html"),
    ("text/*, application/json", ["json", "text"], "json"),
    ("text/*, application/json", ["application/json"], "application/json"),
    ("text/*, application/json", ["image/png"], None),
    ("text/*, application/json", ["png"], None),
    ("text/*;q=.5, application/json", ["html", "json"], "json"),
    # q-values
    ("application/json;q=0.5, text/html", ["json", "html"], "html"),
    ("text/html;q=0.1, application/json;q=0.9", ["html", "json"], "json"),
    ("text/html;q=0, */*", ["html", "json"], "json"),
    ("text/html;q=0", ["html"], None),
    ("text/html;q=0.000", ["html"], None),
    ("text/html;q=bogus, application/json", ["html", "json"], "json"),
    ("text/html;q", ["html"], None),
    ("text/html;q=1;level=1", ["html"], "html"),
    # specificity beats header order; header order beats offer order
    ("text/*, text/html;q=0.5", ["html"], "html"),
    ("text/*;q=0.5, text/html", ["text/plain", "text/html"], "text/html"),
    ("application/json, text/html", ["html", "json"], "json"),
    ("text/html, application/json", ["json", "html"], "html"),
    ("*/*;q=0.8, text/html", ["json", "html"], "html"),
    # parameters must match when the Accept entry has them
    ("text/html;level=1", ["text/html"], None),
    ("text/html;level=1", ["text/html;level=1"], "text/html;level=1"),
    ("text/html;level=1, text/html;q=0.5", ["html", "text/html;level=1"], "text/html;level=1"),
    ('text/html;foo="a,b", application/json', ['text/html;foo="a,b"'], 'text/html;foo="a,b"'),
    ('text/html;foo="a,b", application/json', ["html", "json"], "json"),
    # case and spacing
    ("Application/JSON", ["json"], "json"),
    ("  text/html  ,application/json  ", ["json"], "json"),
    # offers that mean nothing are skipped; malformed Accept entries are ignored
    ("application/json", ["unknownext", "json"], "json"),
    ("garbage, application/json", ["html", "json"], "json"),
    ("garbage", ["html"], None),
    (",,,", ["html"], None),
    # wildcard offers
    ("text/html", ["text/*"], "text/*"),
    ("text/html", ["*/*"], "*/*"),
    ("image/png", ["text/*", "image/*"], "image/*"),
    ("*/*", ["*/*"], "*/*"),
    ("text/html, */*;q=0.1", ["*/*", "json"], "*/*"),
]


@pytest.mark.parametrize(("header", "offers", "expected"), ACCEPTS_CASES)
def test_accepts(header: str | None, offers: list[str], expected: str | None) -> None:
    assert accepts(header, offers) == expected


def test_accepts_returns_the_offer_object_given() -> None:
    offer = "".join(["js", "on"])
    assert accepts("application/json", ["html", offer]) is offer


def test_accepts_long_header() -> None:
    header = ", ".join(f"type{i}/sub{i};q=0.{i % 10}" for i in range(2000)) + ", application/json"
    assert accepts(header, ["json", "type5/sub5"]) == "json"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ["*/*"]),
        ("", []),
        ("text/html", ["text/html"]),
        ("text/html, application/json", ["text/html", "application/json"]),
        ("application/json;q=0.5, text/html", ["text/html", "application/json"]),
        (
            "text/*;q=0.3, text/html;q=0.7, text/html;level=1, */*;q=0.5",
            [
                "text/html",
                "text/html",
                "*/*",
                "text/*",
            ],
        ),
        ("text/html;q=0, application/json", ["application/json"]),
        ("Text/HTML", ["Text/HTML"]),  # negotiator lists the types as written
        ("garbage, image/png", ["image/png"]),
    ],
)
def test_accepts_list(header: str | None, expected: list[str]) -> None:
    assert accepts_list(header) == expected


IS_TYPE_CASES: list[tuple[str | None, list[str], str | None]] = [
    # no content type
    (None, ["json"], None),
    ("", ["json"], None),
    # invalid content types never match
    ("text/", ["*/*"], None),
    ("/html", ["*/*"], None),
    ("text/html/x", ["*/*"], None),
    ("text html", ["*/*"], None),
    ("text/h tml", ["*/*"], None),
    ("text/html\x00", ["*/*"], None),
    # no candidates: the bare type
    ("text/html; charset=utf-8", [], "text/html"),
    ("TEXT/HTML", [], "text/html"),
    # extensions and full types
    ("text/html; charset=utf-8", ["html"], "html"),
    ("text/html; charset=utf-8", ["text/html"], "text/html"),
    ("text/html", ["json"], None),
    ("application/json", ["json"], "json"),
    ("application/json", ["html", "json"], "json"),
    ("application/json", ["json", "application/json"], "json"),
    ("application/json", ["application/json", "json"], "application/json"),
    ("Application/JSON; Charset=UTF-8", ["json"], "json"),
    ("application/json", ["Application/JSON"], "Application/JSON"),
    ("application/json", ["application/json; charset=utf-8"], "application/json; charset=utf-8"),
    ("image/png", ["png"], "png"),
    ("image/png", ["unknownext"], None),
    # wildcards, returned as given (SPEC section 8)
    ("text/html", ["text/*"], "text/*"),
    ("text/html", ["*/*"], "*/*"),
    ("text/html", ["*/html"], "*/html"),
    ("text/html", ["image/*"], None),
    ("application/json", ["*/json"], "*/json"),
    # shorthands
    ("application/x-www-form-urlencoded", ["urlencoded"], "urlencoded"),
    ("application/x-www-form-urlencoded; charset=utf-8", ["json", "urlencoded"], "urlencoded"),
    ("multipart/form-data; boundary=xyz", ["multipart"], "multipart"),
    ("multipart/mixed", ["multipart/*"], "multipart/*"),
    ("text/plain", ["multipart"], None),
    # +suffix
    ("application/vnd+json", ["+json"], "+json"),
    ("application/ld+json", ["application/*+json"], "application/*+json"),
    ("application/vnd.api+json; charset=utf-8", ["json", "+json"], "+json"),
    ("application/json", ["+json"], None),
    ("application/json", ["application/*+json"], None),
    ("text/vnd+json", ["application/*+json"], None),
    ("application/+json", ["+json"], "+json"),
    # malformed candidates simply do not match
    ("text/html", ["text/html/x", "", "/"], None),
]


@pytest.mark.parametrize(("content_type", "types", "expected"), IS_TYPE_CASES)
def test_is_type(content_type: str | None, types: list[str], expected: str | None) -> None:
    assert is_type(content_type, types) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("", {})),
        ("", ("", {})),
        ("text/html", ("text/html", {})),
        ("Text/HTML; Charset=UTF-8", ("text/html", {"charset": "UTF-8"})),
        ("text/html ; charset = utf-8 ", ("text/html", {"charset": "utf-8"})),
        (
            'multipart/form-data; boundary="--a;b=c"',
            ("multipart/form-data", {"boundary": "--a;b=c"}),
        ),
        (
            'text/plain; name="a \\"quoted\\" \\\\ name"',
            ("text/plain", {"name": 'a "quoted" \\ name'}),
        ),
        ("text/plain; charset=utf-8; charset=latin1", ("text/plain", {"charset": "utf-8"})),
        ("text/plain; broken; =x; a=1", ("text/plain", {"a": "1"})),
        ("text/plain;;", ("text/plain", {})),
        ("application/json; charset=", ("application/json", {"charset": ""})),
        ('text/plain; x="unterminated', ("text/plain", {"x": '"unterminated'})),
        ("garbage", ("garbage", {})),
    ],
)
def test_parse_content_type(value: str | None, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_content_type(value) == expected


# -- properties ------------------------------------------------------------------------------------

HEADERISH = st.text() | st.text(alphabet='text/html*;q=0.5,"\\ =json+', max_size=60)
OFFERS = st.lists(
    st.sampled_from(["json", "html", "txt", "png", "nope", "text/*", "*/*", "+json", "a/b"])
    | st.text(max_size=10),
    max_size=5,
)


@given(HEADERISH, OFFERS)
def test_accepts_never_raises_and_returns_an_offer(header: str, offers: list[str]) -> None:
    result = accepts(header, offers)
    assert result is None or result in offers
    assert all(isinstance(t, str) for t in accepts_list(header))


@given(HEADERISH, OFFERS)
def test_is_type_never_raises_and_returns_a_candidate(value: str, types: list[str]) -> None:
    result = is_type(value, types)
    assert result is None or result in types or not types


@given(HEADERISH)
def test_parse_content_type_never_raises(value: str) -> None:
    mime, params = parse_content_type(value)
    assert mime == mime.lower().strip()
    assert all(k == k.lower() for k in params)


@given(OFFERS)
def test_star_accepts_the_first_known_offer(offers: list[str]) -> None:
    # "*/*" matches every offer that names a media type; ties go to the earlier offer.
    known = [o for o in offers if "/" in o or mime_type(o) != "application/octet-stream"]
    result = accepts("*/*", offers)
    if result is not None:
        assert result in offers
    if known and all(o in {"json", "html", "txt", "png", "text/*", "*/*", "a/b"} for o in offers):
        assert result == known[0]
