"""Cookies: lenient Cookie-header parsing, Set-Cookie serialization and HMAC-signed values."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TypeAlias
from urllib.parse import quote

from evserve.query import decode_component

__all__ = [
    "Secret",
    "parse_cookie_header",
    "serialize_cookie",
    "sign_value",
    "split_signed",
    "unsign_value",
]

Secret: TypeAlias = "str | bytes | Sequence[str | bytes]"
"""One secret, or several for rotation (the first signs, every one verifies)."""

# RFC 6265 section 4.1.1 cookie-name = token (RFC 9110 section 5.6.2 tchar).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Names accepted when parsing: what browsers send, so anything but controls, whitespace and the
# characters that would make the header ambiguous.
_LENIENT_NAME = re.compile(r"[^\x00-\x20\x7f\",;\\]+")
# Attribute values: visible ASCII and space, no ";" (npm cookie's pathValueRegExp).
_PATH = re.compile(r"[\x20-\x3a\x3c-\x7e]*")
_DOMAIN = re.compile(r"[\x21-\x3a\x3c-\x7e]+")
# encodeURIComponent leaves these (beyond letters, digits and "-_.~") alone.
_URI_COMPONENT_SAFE = "!'()*"

_SAME_SITE = {"lax": "Lax", "strict": "Strict", "none": "None"}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def parse_cookie_header(header: str | None) -> dict[str, str]:
    """Parse a Cookie request header (RFC 6265 section 5.4, as browsers send it), leniently.

    Pairs are separated by ";" with optional spaces or tabs around names and values. A piece
    without "=", or whose name is empty or holds controls, whitespace, ``"``, ``,`` or ``\\``, is
    skipped. The first occurrence of a name wins (like the npm ``cookie`` package). A value in
    double quotes loses them; a value is then percent-decoded as UTF-8 unless the escapes are
    malformed or not UTF-8, in which case it is kept as sent.

    Args:
        header: the Cookie header value, or ``None`` when absent.

    Returns:
        A new dict of name to value. Never raises.
    """
    cookies: dict[str, str] = {}
    if not header:
        return cookies
    for piece in header.split(";"):
        eq = piece.find("=")
        if eq < 0:
            continue
        name = piece[:eq].strip(" \t")
        if name in cookies or not _LENIENT_NAME.fullmatch(name):
            continue
        value = piece[eq + 1 :].strip(" \t")
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        cookies[name] = decode_component(value)  # npm cookie's decode
    return cookies


def _http_date(moment: datetime | float) -> str:
    """Format an IMF-fixdate (RFC 9110 section 5.6.7); raises ValueError when out of range."""
    try:
        if isinstance(moment, datetime):
            when = moment if moment.tzinfo is None else moment.astimezone(timezone.utc)
        else:
            when = datetime.fromtimestamp(math.floor(float(moment)), timezone.utc)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"cookie expires is not a representable time: {moment!r}") from exc
    return (
        f"{_DAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} {when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} GMT"
    )


def serialize_cookie(
    name: str,
    value: str,
    *,
    max_age: int | float | None = None,
    expires: datetime | int | float | None = None,
    path: str | None = "/",
    domain: str | None = None,
    secure: bool = False,
    http_only: bool = False,
    same_site: str | bool | None = None,
    partitioned: bool = False,
) -> str:
    """Build a Set-Cookie header value, like Express ``res.cookie`` (npm ``cookie.serialize``).

    The value is percent-encoded like JavaScript's ``encodeURIComponent``, so it can hold any
    text. Attributes come in npm cookie's order: ``Max-Age``, ``Domain``, ``Path``, ``Expires``,
    ``HttpOnly``, ``Secure``, ``Partitioned``, ``SameSite``.

    Args:
        name: the cookie name, an RFC 6265 token.
        value: any text (lone surrogates excepted).
        max_age: lifetime in seconds. Gives ``Max-Age`` (floored to an integer) and, as Express
            does, ``Expires`` = now + ``max_age``, which then takes the place of ``expires``.
        expires: a ``datetime`` (naive means UTC) or epoch seconds; sent as an IMF-fixdate.
        path: the Path attribute; ``None`` or ``""`` leaves it out.
        domain: the Domain attribute; ``None`` or ``""`` leaves it out.
        secure: add ``Secure``.
        http_only: add ``HttpOnly``.
        same_site: ``True`` gives ``Strict``; ``"lax"``, ``"strict"``, ``"none"`` (any case)
            give ``Lax``, ``Strict``, ``None``; ``None`` or ``False`` leave it out.
        partitioned: add ``Partitioned`` (CHIPS).

    Returns:
        The header value, free of CR, LF and other control characters.

    Raises:
        ValueError: for a name that is not a token, a value that cannot be encoded, a path
            or domain with control characters or ";", a non-finite ``max_age``, an
            ``expires`` out of range, or an unknown ``same_site``.
    """
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid cookie name: {name!r}")
    try:
        encoded = quote(str(value), safe=_URI_COMPONENT_SAFE, encoding="utf-8", errors="strict")
    except UnicodeEncodeError as exc:
        raise ValueError(f"cookie value for {name!r} cannot be encoded as UTF-8") from exc
    parts = [f"{name}={encoded}"]
    if max_age is not None:
        try:
            age = float(max_age)
        except OverflowError:
            age = math.inf
        if not math.isfinite(age):
            raise ValueError(f"cookie max_age is not finite: {max_age!r}")
        parts.append(f"Max-Age={math.floor(age)}")
        expires = time.time() + age
    if domain:
        if not _DOMAIN.fullmatch(domain):
            raise ValueError(f"invalid cookie domain: {domain!r}")
        parts.append(f"Domain={domain}")
    if path:
        if not _PATH.fullmatch(path):
            raise ValueError(f"invalid cookie path: {path!r}")
        parts.append(f"Path={path}")
    if expires is not None:
        parts.append(f"Expires={_http_date(expires)}")
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    if partitioned:
        parts.append("Partitioned")
    if same_site is not None and same_site is not False:
        if same_site is True:
            parts.append("SameSite=Strict")
        else:
            label = _SAME_SITE.get(same_site.lower()) if isinstance(same_site, str) else None
            if label is None:
                raise ValueError(f"invalid cookie same_site: {same_site!r}")
            parts.append(f"SameSite={label}")
    return "; ".join(parts)


def _secrets(secret: Secret) -> list[bytes]:
    """Return the non-empty secrets as bytes, in order."""
    items: Sequence[str | bytes] = [secret] if isinstance(secret, str | bytes) else secret
    keys: list[bytes] = []
    for item in items:
        key = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else bytes(item)
        if key:
            keys.append(key)
    return keys


def _mac(key: bytes, value: str) -> bytes:
    digest = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=")


def sign_value(value: str, secret: Secret) -> str:
    """Sign ``value``: ``"s:" + value + "." + base64url(HMAC-SHA256(secret, value))``, no padding.

    Args:
        value: the cookie value to protect (it stays readable; signing is not encryption).
        secret: the key (``str`` as UTF-8, or ``bytes``); with several, the first one signs.

    Returns:
        The signed value, to be passed to :func:`serialize_cookie`.

    Raises:
        ValueError: when no non-empty secret is given.
    """
    keys = _secrets(secret)
    if not keys:
        raise ValueError("a non-empty cookie secret is required to sign")
    return f"s:{value}.{_mac(keys[0], value).decode('ascii')}"


def unsign_value(signed: str, secret: Secret) -> str | None:
    """Return the value inside a signed cookie value if its signature is good, else ``None``.

    The input must start with ``"s:"``. Each secret is tried in turn (key rotation), comparing in
    constant time with ``hmac.compare_digest``.

    Args:
        signed: a value produced by :func:`sign_value`.
        secret: one secret or a sequence of them.

    Returns:
        The original value, or ``None`` when it is not signed or the signature does not match.
        Never raises.
    """
    if not signed.startswith("s:"):
        return None
    dot = signed.rfind(".")
    if dot < 2:
        return None
    value = signed[2:dot]
    given = signed[dot + 1 :].encode("utf-8", "surrogatepass")
    matched = False
    for key in _secrets(secret):
        # No early exit: the time taken does not tell which secret matched.
        matched |= hmac.compare_digest(_mac(key, value), given)
    return value if matched else None


def split_signed(
    cookies: Mapping[str, str], secret: Secret | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Separate signed cookies from plain ones, like cookie-parser with a secret.

    Args:
        cookies: parsed cookies, e.g. from :func:`parse_cookie_header`.
        secret: the app's cookie secret(s). With ``None`` nothing is verified and every cookie,
            ``"s:"`` ones included, stays plain (cookie-parser without a secret).

    Returns:
        ``(plain, signed)``: a value starting with ``"s:"`` goes to ``signed`` (unsigned) when
        its signature matches and is dropped from both when it does not; any other value stays
        in ``plain``. Never raises.
    """
    if secret is None:
        return dict(cookies), {}
    plain: dict[str, str] = {}
    signed: dict[str, str] = {}
    for name, value in cookies.items():
        if value.startswith("s:"):
            original = unsign_value(value, secret)
            if original is not None:
                signed[name] = original
        else:
            plain[name] = value
    return plain, signed
