"""CORS middleware: Access-Control-* headers for simple and preflight requests, like npm ``cors``.

A preflight is an ``OPTIONS`` request carrying ``Access-Control-Request-Method`` (SPEC section
8); any other request, ``OPTIONS`` included, is a simple request: it gets its headers and goes on
to ``next()``. A preflight is answered here (``options_success_status``, empty body) unless
``preflight_continue`` passes it on.

The ``origin`` option decides the ``Access-Control-Allow-Origin`` value:

* ``"*"`` (default): ``*``, the same for every requester, so no ``Vary``. With
  ``credentials=True`` the browser would refuse ``*``, so the request's Origin is reflected.
* ``True``: reflect the request's Origin. ``False``: CORS off, the middleware does nothing.
* another string: that value, whoever asks (npm ``cors``; the browser does the comparing).
* a ``re.Pattern`` or a list of strings and patterns: the request's Origin is reflected when it
  equals a string or a pattern finds a match in it (``pattern.search``, like JavaScript's
  ``test``); any other origin is not allowed.
* a callable ``fn(origin) -> bool | str``: ``True`` reflects, a string is sent as is, a false
  value disallows. It is called only for requests that carry an Origin header.

Whenever the value depends on the request's Origin, ``Vary: Origin`` is added, also to the
responses of disallowed origins (a shared cache must not hand them an allowed answer). A
disallowed origin, or a request without Origin in the reflecting modes, gets no
``Access-Control-Allow-Origin``, so the browser refuses the cross-origin response:

* a simple request gets no CORS headers and goes on to ``next()``;
* a preflight is still answered here, as npm ``cors`` does (its ``lib/index.js`` answers every
  preflight itself): ``options_success_status`` with the other preflight headers (methods,
  allowed headers, credentials, max age, exposed headers), only without Allow-Origin. It never
  reaches the routes, so a path without any route does not answer it with a 404.

A callable's false verdict is npm ``cors``'s ``callback(null, false)``: CORS is off for that
request (only ``Vary: Origin``), and a preflight goes on to ``next()`` too. The same holds for a
request without Origin, for which the callable is not asked.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from evserve.request import Request
    from evserve.response import Response

__all__ = ["DEFAULT_METHODS", "cors"]

Next = Callable[..., None]
Middleware = Callable[["Request", "Response", Next], None]
OriginOption = (
    bool
    | str
    | re.Pattern[str]
    | Sequence[str | re.Pattern[str]]
    | Callable[[str], bool | str | None]
)

DEFAULT_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE"


class _Verdict(enum.Enum):
    """An origin policy's answer other than an Allow-Origin value or None (not allowed)."""

    OFF = "off"  # a callable said no: CORS off for this request, preflights included


_OFF: Final = _Verdict.OFF
Allow = Callable[[str | None], str | _Verdict | None]


def _join(value: str | Sequence[str] | None, option: str) -> str | None:
    """A header value from a comma-separated string or a list (joined with ",")."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    items = list(value)
    if not all(isinstance(v, str) for v in items):
        raise TypeError(f"{option} must be a str or a list of str")
    return ",".join(items)


def _origin_policy(origin: OriginOption, credentials: bool) -> tuple[Allow, bool]:
    """Return ``(allow, varies)``: ``allow(request_origin)`` gives the Allow-Origin value, None
    (not allowed) or ``_OFF`` (CORS off for this request), and ``varies`` says whether that
    answer depends on the request's Origin."""
    if origin is True or (origin == "*" and credentials):
        return _reflect, True
    if origin == "*":
        return _star, False
    if isinstance(origin, str):
        fixed = origin

        def allow_fixed(request_origin: str | None) -> str | None:
            return fixed

        return allow_fixed, True
    if isinstance(origin, re.Pattern):
        search = origin.search

        def allow_pattern(request_origin: str | None) -> str | None:
            return request_origin if request_origin is not None and search(request_origin) else None

        return allow_pattern, True
    if callable(origin):
        decide = origin

        def allow_callable(request_origin: str | None) -> str | _Verdict | None:
            if request_origin is None:
                return _OFF
            verdict = decide(request_origin)
            if verdict is True:
                return request_origin
            if isinstance(verdict, str) and verdict:
                if verdict == "*" and credentials:
                    return request_origin
                return verdict
            return _OFF  # npm cors: callback(null, false) turns CORS off for the request

        return allow_callable, True
    if isinstance(origin, (list, tuple, set, frozenset)):
        exact = frozenset(o for o in origin if isinstance(o, str))
        patterns = tuple(o for o in origin if isinstance(o, re.Pattern))
        if len(exact) + len(patterns) != len(origin):
            raise TypeError("an origin list may hold only str and re.Pattern items")

        def allow_listed(request_origin: str | None) -> str | None:
            if request_origin is None:
                return None
            if request_origin in exact or any(p.search(request_origin) for p in patterns):
                return request_origin
            return None

        return allow_listed, True
    raise TypeError(
        "origin must be '*', True, False, a str, a re.Pattern, a list of str/re.Pattern, "
        f"or a callable; not {type(origin).__name__}"
    )


def _reflect(request_origin: str | None) -> str | None:
    return request_origin


def _star(request_origin: str | None) -> str | None:
    return "*"


def cors(
    origin: OriginOption = "*",
    methods: str | Sequence[str] = DEFAULT_METHODS,
    allowed_headers: str | Sequence[str] | None = None,
    exposed_headers: str | Sequence[str] | None = None,
    credentials: bool = False,
    max_age: int | None = None,
    preflight_continue: bool = False,
    options_success_status: int = 204,
) -> Middleware:
    """Middleware that adds CORS headers and answers preflight requests.

    Args:
        origin: who may read responses; see the module documentation. A preflight from a
            disallowed origin is answered too, only without Access-Control-Allow-Origin.
        methods: Access-Control-Allow-Methods for preflights (a str or a list).
        allowed_headers: Access-Control-Allow-Headers for preflights; None reflects the
            preflight's Access-Control-Request-Headers (adding ``Vary`` for it); an empty list
            sends none.
        exposed_headers: Access-Control-Expose-Headers (response headers scripts may read).
        credentials: send ``Access-Control-Allow-Credentials: true`` (never with ``*``).
        max_age: seconds a preflight answer may be cached (Access-Control-Max-Age); 0 is sent.
        preflight_continue: pass preflights on to ``next()`` instead of answering them.
        options_success_status: the status of the preflight answer (200 for old browsers).

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an ``options_success_status`` outside 200-299.
    """
    if origin is False:
        def cors_disabled(req: Request, res: Response, next_: Next) -> None:
            next_()

        return cors_disabled
    allow, varies = _origin_policy(origin, credentials)
    allow_methods = _join(methods, "methods") or ""
    allow_headers = _join(allowed_headers, "allowed_headers")
    expose_headers = _join(exposed_headers, "exposed_headers")
    age = None if max_age is None else str(int(max_age))
    if not isinstance(options_success_status, int) or isinstance(options_success_status, bool):
        raise TypeError("options_success_status must be an int")
    if not 200 <= options_success_status <= 299:
        raise ValueError(f"options_success_status must be a 2xx status, not {options_success_status}")

    def cors_middleware(req: Request, res: Response, next_: Next) -> None:
        headers = req.headers
        if varies:
            res.vary("Origin")
        allowed = allow(headers.get("origin"))
        if allowed is _OFF:
            next_()
            return
        is_preflight = req.method == "OPTIONS" and "access-control-request-method" in headers
        if allowed is None:
            if not is_preflight:
                next_()
                return
            # A disallowed preflight is still answered, without Allow-Origin (npm cors).
        else:
            res.set("Access-Control-Allow-Origin", allowed)
        if credentials:
            res.set("Access-Control-Allow-Credentials", "true")
        if expose_headers:
            res.set("Access-Control-Expose-Headers", expose_headers)
        if not is_preflight:
            next_()
            return
        # A preflight (Fetch standard, "CORS-preflight request").
        if allow_methods:
            res.set("Access-Control-Allow-Methods", allow_methods)
        if allow_headers is None:
            res.vary("Access-Control-Request-Headers")
            requested = headers.get("access-control-request-headers")
            if requested:
                res.set("Access-Control-Allow-Headers", requested)
        elif allow_headers:
            res.set("Access-Control-Allow-Headers", allow_headers)
        if age is not None:
            res.set("Access-Control-Max-Age", age)
        if preflight_continue:
            next_()
            return
        res.status(options_success_status)
        res.set("Content-Length", "0")
        res.end()

    return cors_middleware
