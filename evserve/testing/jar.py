"""The test client's cookie jar: Set-Cookie stored and sent back as a browser does (RFC 6265).

Kept to what tests meet: cookies are set, overwritten (same name, domain and path) and deleted
(``Max-Age`` of zero or less, an ``Expires`` in the past); ``Path`` and ``Domain`` decide where
a cookie goes back, ``Secure`` ones go only over https. Not modelled: the public suffix list,
``SameSite`` (every request comes from the same site) and size limits.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime

__all__ = ["Cookie", "CookieJar"]


@dataclass
class Cookie:
    """One stored cookie.

    Attributes:
        name: the cookie's name.
        value: its value, exactly as the server sent it (still percent-encoded, say).
        domain: the host it came from, or the ``Domain`` it named (lowercase, no leading dot).
        host_only: True when no ``Domain`` was given: it goes back to ``domain`` only.
        path: the ``Path`` it applies to.
        secure: sent over https only.
        http_only: ``HttpOnly`` was set (no difference to the test client).
        expires: epoch seconds when it expires; ``None`` for a session cookie.
    """

    name: str
    value: str
    domain: str
    host_only: bool = True
    path: str = "/"
    secure: bool = False
    http_only: bool = False
    expires: float | None = None
    created: int = 0

    def is_expired(self, now: float) -> bool:
        """Whether the cookie has expired at epoch second ``now``."""
        return self.expires is not None and self.expires <= now


class CookieJar(Mapping[str, str]):
    """The cookies a test client holds, as a read-only mapping of name to value (live cookies
    only; for a name stored under several paths, the one with the longest path).

    Args:
        default_host: the host ``set`` stores cookies for when given no domain (the client's).
        clock: returns the current epoch time in seconds (``time.time``).
    """

    def __init__(self, default_host: str = "", clock: Callable[[], float] = time.time) -> None:
        self.default_host = default_host.lower()
        self._clock = clock
        self._cookies: dict[tuple[str, str, str], Cookie] = {}
        self._seq = itertools.count()

    # -- the mapping ---------------------------------------------------------------------------

    def _live(self) -> list[Cookie]:
        now = self._clock()
        for key in [k for k, c in self._cookies.items() if c.is_expired(now)]:
            del self._cookies[key]
        return sorted(self._cookies.values(), key=lambda c: (-len(c.path), c.created))

    def __getitem__(self, name: str) -> str:
        for cookie in self._live():
            if cookie.name == name:
                return cookie.value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(c.name for c in self._live()))

    def __len__(self) -> int:
        return len({c.name for c in self._live()})

    def cookies(self) -> list[Cookie]:
        """Every live cookie, most specific path first."""
        return self._live()

    def __repr__(self) -> str:
        return f"CookieJar({dict(self)!r})"

    # -- changing it by hand -------------------------------------------------------------------

    def set(self, name: str, value: str, *, domain: str = "", path: str = "/", secure: bool = False) -> None:
        """Store a cookie as if the server had set it: for ``domain`` and its subdomains, or
        with ``domain`` "" for ``default_host`` only.

        Raises:
            ValueError: a name or value that cannot travel in a Cookie header.
        """
        check_cookie(name, value)
        domain = domain.lower().lstrip(".")
        self._store(Cookie(name, value, domain or self.default_host, host_only=not domain,
                           path=path, secure=secure))

    def delete(self, name: str, *, path: str | None = None) -> None:
        """Remove the cookies named ``name`` (only the one with ``path`` when given)."""
        for key in [k for k in self._cookies if k[0] == name and (path is None or k[2] == path)]:
            del self._cookies[key]

    def clear(self) -> None:
        """Remove every cookie."""
        self._cookies.clear()

    # -- what the client does ------------------------------------------------------------------

    def _store(self, cookie: Cookie) -> None:
        key = (cookie.name, cookie.domain, cookie.path)
        old = self._cookies.pop(key, None)
        if cookie.is_expired(self._clock()):
            return  # an expiry in the past deletes (RFC 6265 section 5.3, step 11)
        cookie.created = old.created if old is not None else next(self._seq)
        self._cookies[key] = cookie

    def receive(self, set_cookie: str, host: str, request_path: str) -> None:
        """Store what one ``Set-Cookie`` line says, for a request to ``host`` and
        ``request_path`` (RFC 6265 sections 5.2 and 5.3); a line it cannot use is ignored."""
        pair, _, attributes = set_cookie.partition(";")
        name, eq, value = pair.partition("=")
        name = name.strip(" \t")
        value = value.strip(" \t")
        if not eq or not name:
            return
        host = host.lower()
        cookie = Cookie(name, value, host, path=_default_path(request_path))
        max_age: float | None = None
        expires: float | None = None
        for attribute in attributes.split(";"):
            key, _, arg = attribute.partition("=")
            key = key.strip(" \t").lower()
            arg = arg.strip(" \t")
            if key == "max-age":
                digits = arg[1:] if arg[:1] == "-" else arg
                if digits.isdigit() and digits.isascii():
                    delta = int(arg)
                    max_age = self._clock() + delta if delta > 0 else 0.0
            elif key == "expires":
                expires = _parse_date(arg)
            elif key == "domain" and arg:
                domain = arg.lower().lstrip(".")
                if not _domain_match(host, domain):
                    return  # a cookie for another site is refused (section 5.3, step 6)
                cookie.domain = domain
                cookie.host_only = False
            elif key == "path" and arg.startswith("/"):
                cookie.path = arg
            elif key == "secure":
                cookie.secure = True
            elif key == "httponly":
                cookie.http_only = True
        cookie.expires = max_age if max_age is not None else expires  # Max-Age wins
        self._store(cookie)

    def pairs_for(self, host: str, path: str, secure: bool) -> list[tuple[str, str]]:
        """The ``(name, value)`` pairs a request to ``host`` and ``path`` carries, in the
        order of RFC 6265 section 5.4 (longest path first, then oldest)."""
        host = host.lower()
        return [
            (c.name, c.value) for c in self._live()
            if (c.domain == host if c.host_only else _domain_match(host, c.domain))
            and _path_match(path, c.path) and (secure or not c.secure)
        ]


def check_cookie(name: str, value: str) -> None:
    """Refuse a cookie that cannot travel in a ``Cookie`` header (``ValueError``)."""
    if not name or any(ch in name for ch in "=; \t,\"") or not _printable(name):
        raise ValueError(f"invalid cookie name {name!r}")
    if ";" in value or not _printable(value):
        raise ValueError(f"invalid character in the value of cookie {name!r}: {value!r} "
                         "(encode it first, e.g. with urllib.parse.quote)")


def _printable(text: str) -> bool:
    return all("\x20" <= ch < "\x7f" for ch in text)


def _default_path(request_path: str) -> str:
    """The path a cookie without ``Path`` applies to: the request path's directory (RFC 6265
    section 5.1.4)."""
    if not request_path.startswith("/") or request_path.count("/") == 1:
        return "/"
    return request_path[:request_path.rindex("/")]


def _path_match(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 section 5.1.4."""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/")


def _domain_match(host: str, domain: str) -> bool:
    """RFC 6265 section 5.1.3 (an IP address matches only itself)."""
    if host == domain:
        return True
    return host.endswith("." + domain) and not host.replace(".", "").isdigit()


def _parse_date(text: str) -> float | None:
    """Epoch seconds of an HTTP date (``Expires``), or None when it cannot be read."""
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    try:
        if moment.tzinfo is None:  # "-0000": UTC, with no claim about the sender's zone
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
