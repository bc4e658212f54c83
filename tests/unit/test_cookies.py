"""Cookie header parsing, Set-Cookie serialization and signed values."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evserve.cookies import (
    parse_cookie_header,
    serialize_cookie,
    sign_value,
    split_signed,
    unsign_value,
)

PARSE_CASES: list[tuple[str | None, dict[str, str]]] = [
    (None, {}),
    ("", {}),
    ("foo=bar", {"foo": "bar"}),
    ("foo=123", {"foo": "123"}),
    ("FOO    = bar;   baz  =   raz", {"FOO": "bar", "baz": "raz"}),
    ("foo=bar;bar=baz", {"foo": "bar", "bar": "baz"}),
    ("foo=bar; bar=baz", {"foo": "bar", "bar": "baz"}),
    ("\tfoo=bar\t;\tbar=baz", {"foo": "bar", "bar": "baz"}),
    ("foo=", {"foo": ""}),
    ("foo=;bar=1", {"foo": "", "bar": "1"}),
    ("foo=a=b=c", {"foo": "a=b=c"}),
    ('foo="bar=123456789&name=Magic+Mouse"', {"foo": "bar=123456789&name=Magic+Mouse"}),
    ('foo="bar"', {"foo": "bar"}),
    ('foo=""', {"foo": ""}),
    ('foo="', {"foo": '"'}),
    ('foo="bar', {"foo": '"bar'}),
    # percent-decoding, raw when it would fail
    ("email=%20%22%2c%3b%2f", {"email": ' ",;/'}),
    ("euro=%E2%82%AC", {"euro": "\u20ac"}),
    ("foo=%1;bar=bar", {"foo": "%1", "bar": "bar"}),
    ("foo=%zz%20", {"foo": "%zz%20"}),
    ("foo=%ff", {"foo": "%ff"}),
    ("foo=a+b", {"foo": "a+b"}),
    # first occurrence wins
    ("foo=%1;bar=bar;foo=boo", {"foo": "%1", "bar": "bar"}),
    ("foo=false;bar=bar;foo=true", {"foo": "false", "bar": "bar"}),
    ("foo=;bar=bar;foo=boo", {"foo": "", "bar": "bar"}),
    # pieces without "=" or with an invalid name are skipped
    ("foo", {}),
    ("foo;bar=1", {"bar": "1"}),
    ("foo; bar=1; baz", {"bar": "1"}),
    ("=bar; a=1", {"a": "1"}),
    ("  =  ; a=1", {"a": "1"}),
    ("a b=1; c=2", {"c": "2"}),
    ('a"b=1; c=2', {"c": "2"}),
    ("a\x01b=1; c=2", {"c": "2"}),
    ("a,b=1; c=2", {"c": "2"}),
    # names browsers do send, though not RFC 6265 tokens
    ("arr[0]=x; ns:key=y; q?=z", {"arr[0]": "x", "ns:key": "y", "q?": "z"}),
    (";;; ;", {}),
]


@pytest.mark.parametrize(("header", "expected"), PARSE_CASES)
def test_parse_cookie_header(header: str | None, expected: dict[str, str]) -> None:
    assert parse_cookie_header(header) == expected


NOW = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(time, "time", lambda: NOW)
    return NOW


SERIALIZE_CASES: list[tuple[str, str, dict[str, object], str]] = [
    ("foo", "bar", {}, "foo=bar; Path=/"),
    ("foo", "bar", {"path": None}, "foo=bar"),
    ("foo", "bar", {"path": ""}, "foo=bar"),
    ("foo", "bar baz", {"path": None}, "foo=bar%20baz"),
    ("foo", "", {"path": None}, "foo="),
    ("foo", "a;b,c=d\"e'f(g)h*i!j~k", {"path": None}, "foo=a%3Bb%2Cc%3Dd%22e'f(g)h*i!j~k"),
    ("foo", "\u20ac\U0001f600", {"path": None}, "foo=%E2%82%AC%F0%9F%98%80"),
    ("foo", "+/?#&", {"path": None}, "foo=%2B%2F%3F%23%26"),
    ("foo", "a\r\nb", {"path": None}, "foo=a%0D%0Ab"),
    ("foo", "bar", {"path": "/app"}, "foo=bar; Path=/app"),
    ("foo", "bar", {"domain": "example.com"}, "foo=bar; Domain=example.com; Path=/"),
    ("foo", "bar", {"secure": True}, "foo=bar; Path=/; Secure"),
    ("foo", "bar", {"http_only": True}, "foo=bar; Path=/; HttpOnly"),
    ("foo", "bar", {"partitioned": True}, "foo=bar; Path=/; Partitioned"),
    ("foo", "bar", {"same_site": True}, "foo=bar; Path=/; SameSite=Strict"),
    ("foo", "bar", {"same_site": False}, "foo=bar; Path=/"),
    ("foo", "bar", {"same_site": "lax"}, "foo=bar; Path=/; SameSite=Lax"),
    ("foo", "bar", {"same_site": "Strict"}, "foo=bar; Path=/; SameSite=Strict"),
    ("foo", "bar", {"same_site": "NONE"}, "foo=bar; Path=/; SameSite=None"),
    (
        "foo",
        "bar",
        {"expires": datetime(2000, 1, 2, 3, 4, 5)},
        "foo=bar; Path=/; Expires=Sun, 02 Jan 2000 03:04:05 GMT",
    ),
    (
        "foo",
        "bar",
        {"expires": datetime(2000, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))},
        "foo=bar; Path=/; Expires=Sun, 02 Jan 2000 03:04:05 GMT",
    ),
    ("foo", "bar", {"expires": 0}, "foo=bar; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
    (
        "foo",
        "bar",
        {"expires": 946782245.9},
        "foo=bar; Path=/; Expires=Sun, 02 Jan 2000 03:04:05 GMT",
    ),
    (
        "sid",
        "x",
        {
            "domain": ".example.com",
            "path": "/admin",
            "expires": 0,
            "http_only": True,
            "secure": True,
            "partitioned": True,
            "same_site": "none",
        },
        "sid=x; Domain=.example.com; Path=/admin; Expires=Thu, 01 Jan 1970 00:00:00 GMT;"
        " HttpOnly; Secure; Partitioned; SameSite=None",
    ),
    ("!#$%&'*+-.^_`|~", "v", {"path": None}, "!#$%&'*+-.^_`|~=v"),
]


@pytest.mark.parametrize(("name", "value", "options", "expected"), SERIALIZE_CASES)
def test_serialize_cookie(name: str, value: str, options: dict[str, object], expected: str) -> None:
    assert serialize_cookie(name, value, **options) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("max_age", "expected"),
    [
        (3600, "Max-Age=3600; Path=/; Expires=Tue, 14 Nov 2023 23:13:20 GMT"),
        (1.9, "Max-Age=1; Path=/; Expires=Tue, 14 Nov 2023 22:13:21 GMT"),
        (0, "Max-Age=0; Path=/; Expires=Tue, 14 Nov 2023 22:13:20 GMT"),
        (-10, "Max-Age=-10; Path=/; Expires=Tue, 14 Nov 2023 22:13:10 GMT"),
    ],
)
def test_max_age_is_seconds_and_sets_expires(
    frozen_clock: float, max_age: float, expected: str
) -> None:
    assert serialize_cookie("a", "b", max_age=max_age) == "a=b; " + expected


def test_max_age_takes_the_place_of_expires(frozen_clock: float) -> None:
    header = serialize_cookie("a", "b", max_age=60, expires=datetime(2000, 1, 1))
    assert header == "a=b; Max-Age=60; Path=/; Expires=Tue, 14 Nov 2023 22:14:20 GMT"


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("", {}),
        ("foo bar", {}),
        ("foo\n", {}),
        ("foo=", {}),
        ("foo;", {}),
        ("f\u00f6o", {}),
        ("a(b)", {}),
        ("foo", {"path": "/\r\nSet-Cookie: x=y"}),
        ("foo", {"path": "/;HttpOnly"}),
        ("foo", {"path": "/\x00"}),
        ("foo", {"path": "/\u00e9"}),
        ("foo", {"domain": "example.com;secure"}),
        ("foo", {"domain": "exa mple.com"}),
        ("foo", {"domain": "example.com\r\n"}),
        ("foo", {"same_site": "foo"}),
        ("foo", {"same_site": ""}),
        ("foo", {"same_site": 1}),
        ("foo", {"max_age": float("nan")}),
        ("foo", {"max_age": float("inf")}),
        ("foo", {"max_age": 10**400}),
        ("foo", {"expires": float("nan")}),
        ("foo", {"expires": 1e20}),
        ("foo", {"expires": 10**400}),
    ],
)
def test_serialize_cookie_rejects(name: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        serialize_cookie(name, "value", **options)  # type: ignore[arg-type]


def test_serialize_rejects_unencodable_value() -> None:
    with pytest.raises(ValueError):
        serialize_cookie("foo", "\ud800")


def _mac(secret: bytes, value: str) -> str:
    digest = hmac.new(secret, value.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def test_sign_value_format() -> None:
    signed = sign_value("hello", "tobiiscool")
    assert signed == "s:hello." + _mac(b"tobiiscool", "hello")
    assert "=" not in signed and "+" not in signed and "/" not in signed
    assert len(signed.rpartition(".")[2]) == 43
    assert sign_value("hello", b"tobiiscool") == signed


def test_sign_value_with_several_secrets_uses_the_first() -> None:
    assert sign_value("v", ["new", "old"]) == sign_value("v", "new")


@pytest.mark.parametrize("secret", ["", b"", [], ["", b""]])
def test_sign_value_needs_a_secret(secret: str | bytes | list[str | bytes]) -> None:
    with pytest.raises(ValueError):
        sign_value("v", secret)


def test_unsign_value() -> None:
    signed = sign_value("hello.world", "secret")
    assert unsign_value(signed, "secret") == "hello.world"
    assert unsign_value(signed, b"secret") == "hello.world"
    assert unsign_value(signed, "wrong") is None
    assert unsign_value(signed[2:], "secret") is None
    assert unsign_value(signed + "x", "secret") is None
    assert unsign_value(signed[:-1], "secret") is None
    assert unsign_value("s:" + "tampered" + signed[signed.rindex(".") :], "secret") is None
    assert unsign_value("s:novalue", "secret") is None
    assert unsign_value("s:", "secret") is None
    assert unsign_value("", "secret") is None
    assert unsign_value(signed, []) is None
    assert unsign_value(signed, "") is None
    assert unsign_value("s:x.\u00e9\u00e9", "secret") is None


def test_unsign_value_with_rotated_secrets() -> None:
    old = sign_value("v", "old")
    new = sign_value("v", "new")
    assert unsign_value(old, ["new", "old"]) == "v"
    assert unsign_value(new, ["new", "old"]) == "v"
    assert unsign_value(old, ["new", b"older"]) is None


def test_split_signed() -> None:
    cookies = {
        "plain": "value",
        "good": sign_value("secret-value", "k"),
        "bad": sign_value("secret-value", "other"),
        "tampered": sign_value("x", "k").replace("s:x", "s:y"),
        "empty": "",
    }
    plain, signed = split_signed(cookies, "k")
    assert plain == {"plain": "value", "empty": ""}
    assert signed == {"good": "secret-value"}


def test_split_signed_without_secret_keeps_everything_plain() -> None:
    cookies = {"a": "1", "b": sign_value("x", "k")}
    assert split_signed(cookies, None) == (cookies, {})


def test_split_signed_with_rotation() -> None:
    cookies = {"a": sign_value("1", "old"), "b": sign_value("2", "new")}
    assert split_signed(cookies, ["new", "old"]) == ({}, {"a": "1", "b": "2"})


# -- properties ------------------------------------------------------------------------------------

TOKEN = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=20,
)


@given(st.text())
def test_parse_never_raises(header: str) -> None:
    result = parse_cookie_header(header)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())


@given(TOKEN, st.text())
def test_serialize_then_parse_round_trips(name: str, value: str) -> None:
    header = serialize_cookie(name, value, http_only=True, same_site="lax")
    assert all(c >= " " and c != "\x7f" for c in header)
    assert parse_cookie_header(header)[name] == value


@given(st.dictionaries(TOKEN, st.text(), max_size=8))
def test_cookie_header_of_many_round_trips(cookies: dict[str, str]) -> None:
    header = "; ".join(serialize_cookie(n, v, path=None) for n, v in cookies.items())
    assert parse_cookie_header(header) == cookies


SECRETS = st.text(min_size=1) | st.binary(min_size=1)


@given(st.text(), SECRETS)
def test_sign_unsign_round_trip(value: str, secret: str | bytes) -> None:
    signed = sign_value(value, secret)
    assert unsign_value(signed, secret) == value
    assert unsign_value(signed, [b"\x00other", secret]) == value
    plain, verified = split_signed({"c": signed}, secret)
    assert plain == {} and verified == {"c": value}


@given(st.text(), SECRETS, st.data())
def test_tampering_is_detected(value: str, secret: str | bytes, data: st.DataObject) -> None:
    signed = sign_value(value, secret)
    position = data.draw(st.integers(min_value=2, max_value=len(signed) - 1))
    replacement = data.draw(st.characters().filter(lambda c: c != signed[position]))
    tampered = signed[:position] + replacement + signed[position + 1 :]
    assert unsign_value(tampered, secret) is None
    assert split_signed({"c": tampered}, secret) == ({}, {})


@given(st.text(), SECRETS)
def test_unsign_never_raises(text: str, secret: str | bytes) -> None:
    assert unsign_value(text, secret) in (None, text[2 : text.rfind(".")])


@given(st.text(), st.text(min_size=1), st.text(min_size=1))
def test_other_secret_does_not_verify(value: str, secret: str, other: str) -> None:
    # HMAC pads short keys with zero bytes, so "k" and "k\x00" are the same key.
    if secret.rstrip("\x00") != other.rstrip("\x00"):
        assert unsign_value(sign_value(value, secret), other) is None
