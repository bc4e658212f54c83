"""Access-log middleware: one line per finished response on the ``evserve.access`` logger.

The line is written at INFO when the response finishes (``res.on_finish``), which also happens
when the client goes away first: the line then ends with ``" (aborted)"`` and its byte count is
``-``. The time is measured from when the middleware ran (``time.perf_counter``), the URL is
``req.original_url`` (SPEC section 8). Formats (morgan's, without colours):

* ``"dev"``: ``GET /path 200 1.234 ms - 13``
* ``"common"``: ``127.0.0.1 - user [21/Nov/2026:21:03:46 +0000] "GET /path HTTP/1.1" 200 13``
* ``"combined"``: common plus ``"referer" "user-agent"`` (Apache's combined format)
* ``"short"``: ``127.0.0.1 user GET /path HTTP/1.1 200 13 - 1.234 ms``
* ``"tiny"``: ``GET /path 200 13 - 1.234 ms``
* a callable ``fn(req, res, elapsed_ms) -> str | None``: the line to log, None to log nothing.

The byte count is the response's Content-Length, or ``-`` when it is unknown (a streamed body
without one, a 204/304). In the Apache formats, ``"`` and ``\\`` inside quoted fields are
backslash-escaped, as Apache's mod_log_config does, so every line parses back unambiguously.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evserve.request import Request
    from evserve.response import Response

__all__ = ["access_log", "logger"]

Next = Callable[..., None]
Middleware = Callable[["Request", "Response", Next], None]
FormatFunction = Callable[["Request", "Response", float], "str | None"]
Writer = Callable[["Request", "Response", float], None]

access_log = logging.getLogger("evserve.access")

_INFO = logging.INFO
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\"})

# The CLF timestamp of the current second, rebuilt once a second.
_clf_cache: tuple[int, str] = (-1, "")


def _clf_date() -> str:
    """Now in the Common Log Format, UTC: ``21/Nov/2026:21:03:46 +0000`` (locale-independent)."""
    global _clf_cache
    now = int(time.time())
    second, text = _clf_cache
    if second != now:
        t = time.gmtime(now)
        text = (
            f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
        )
        _clf_cache = (now, text)
    return text


def _length(res: Response) -> str:
    """The body size as declared by Content-Length, or ``-``."""
    value = res.get("Content-Length")
    if isinstance(value, list):
        value = value[0] if value else None
    return value if value else "-"


def _quoted(value: str | None) -> str:
    """A header value for a quoted Apache field: ``-`` when absent, ``"`` and ``\\`` escaped."""
    if not value:
        return "-"
    if '"' in value or "\\" in value:
        return value.translate(_ESCAPES)
    return value


def _remote_user(req: Request) -> str:
    """The user name of Basic authentication (RFC 7617), or ``-``."""
    auth = req.headers.get("authorization")
    if not auth or auth[:6].lower() != "basic ":
        return "-"
    try:
        decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return "-"
    user = decoded.partition(":")[0]
    return _quoted(user).replace(" ", "%20") or "-"


def _dev(req: Request, res: Response, elapsed_ms: float) -> None:
    if req.aborted:
        access_log.info("%s %s %d %.3f ms - - (aborted)", req.method, req.original_url,
                        res.status_code, elapsed_ms)
    else:
        access_log.info("%s %s %d %.3f ms - %s", req.method, req.original_url, res.status_code,
                        elapsed_ms, _length(res))


def _common(req: Request, res: Response, elapsed_ms: float) -> None:
    access_log.info(
        '%s - %s [%s] "%s %s HTTP/%s" %d %s%s',
        req.ip or "-", _remote_user(req), _clf_date(), req.method, _quoted(req.original_url),
        req.http_version, res.status_code, "-" if req.aborted else _length(res),
        " (aborted)" if req.aborted else "",
    )


def _combined(req: Request, res: Response, elapsed_ms: float) -> None:
    headers = req.headers
    referrer = headers.get("referer") or headers.get("referrer")
    access_log.info(
        '%s - %s [%s] "%s %s HTTP/%s" %d %s "%s" "%s"%s',
        req.ip or "-", _remote_user(req), _clf_date(), req.method, _quoted(req.original_url),
        req.http_version, res.status_code, "-" if req.aborted else _length(res),
        _quoted(referrer), _quoted(headers.get("user-agent")),
        " (aborted)" if req.aborted else "",
    )


def _short(req: Request, res: Response, elapsed_ms: float) -> None:
    # morgan: ":remote-addr :remote-user :method :url HTTP/:http-version :status
    # :res[content-length] - :response-time ms"
    access_log.info(
        "%s %s %s %s HTTP/%s %d %s - %.3f ms%s",
        req.ip or "-", _remote_user(req), req.method, req.original_url, req.http_version,
        res.status_code, "-" if req.aborted else _length(res), elapsed_ms,
        " (aborted)" if req.aborted else "",
    )


def _tiny(req: Request, res: Response, elapsed_ms: float) -> None:
    # morgan: ":method :url :status :res[content-length] - :response-time ms"
    access_log.info(
        "%s %s %d %s - %.3f ms%s",
        req.method, req.original_url, res.status_code, "-" if req.aborted else _length(res),
        elapsed_ms, " (aborted)" if req.aborted else "",
    )


_FORMATS: dict[str, Writer] = {
    "dev": _dev, "common": _common, "combined": _combined, "short": _short, "tiny": _tiny,
}


def _custom(fmt: FormatFunction) -> Writer:
    def write(req: Request, res: Response, elapsed_ms: float) -> None:
        line = fmt(req, res, elapsed_ms)
        if line is not None:
            access_log.info("%s", line)

    return write


def logger(
    format: str | FormatFunction = "dev",
    *,
    skip: Callable[[Request, Response], bool] | None = None,
) -> Middleware:
    """Middleware that logs one line per response through the ``evserve.access`` logger.

    Args:
        format: ``"dev"``, ``"common"``, ``"combined"``, ``"short"``, ``"tiny"`` (morgan's
            predefined formats, without colours), or ``fn(req, res, elapsed_ms)`` returning
            the line (None logs nothing).
        skip: ``fn(req, res) -> bool`` called when the response finishes; True logs nothing.

    Nothing is formatted while INFO is disabled for ``evserve.access``; the library adds no
    handler (the application or the CLI configures logging).

    Raises:
        ValueError: an unknown format name.
        TypeError: a format that is neither a str nor callable.
    """
    if isinstance(format, str):
        write = _FORMATS.get(format)
        if write is None:
            raise ValueError(f"unknown log format {format!r}; use {', '.join(_FORMATS)} or a callable")
    elif callable(format):
        write = _custom(format)
    else:
        raise TypeError(f"format must be a str or a callable, not {type(format).__name__}")
    is_enabled = access_log.isEnabledFor
    clock = time.perf_counter

    def watch(req: Request, res: Response) -> None:
        start = clock()

        def finished() -> None:
            if not is_enabled(_INFO) or (skip is not None and skip(req, res)):
                return
            write(req, res, (clock() - start) * 1000.0)

        res.on_finish(finished)

    def access_logger(req: Request, res: Response, next_: Next) -> None:
        watch(req, res)
        next_()

    # A request the server refuses after its head (413, 501, a 408 body timeout) goes straight
    # to the error middleware; the App calls this first so the refusal is logged too.
    access_logger.on_refusal = watch  # type: ignore[attr-defined]
    return access_logger
