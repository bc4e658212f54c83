"""The one error tree of evserve: every error carries the HTTP status it should become."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ClientError",
    "EvserveError",
    "HTTPError",
    "MalformedResponse",
    "ParseError",
    "PatternError",
    "ResponseStateError",
    "ResponseTimeout",
    "ServerDisconnected",
]

HeadersArg = Mapping[str, str] | Iterable[tuple[str, str]] | None


class EvserveError(Exception):
    """Base class of the errors evserve raises on purpose.

    Each subclass also derives from the built-in exception its kind of failure is known by
    (``ValueError`` for a refused value, ``RuntimeError`` for a call the state forbids), so code
    written against either keeps catching it.
    """


class ParseError(EvserveError):
    """A request that cannot be accepted, with the status the server answers it with.

    The request parser raises only this. ``status`` is a 4xx/5xx code (400, 413, 414, 431, 501,
    505, ...) and ``reason`` a short, human-readable explanation safe to show the client. After a
    ``ParseError`` the connection must be closed once the error response is flushed.
    """

    def __init__(self, status: int, reason: str, head: Any = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        # The parsed request head when the error was found after a well-formed head (a body
        # over the limit, an unsupported framing): lets the server answer through the app.
        self.head = head
        # The method of the refused request when no head is carried: read from its request
        # line, or that of the request whose body was being read. A HEAD request's error
        # response carries no body.
        self.method: str | None = None


class HTTPError(EvserveError):
    """Raise from a handler for an error response with ``status``.

    Args:
        status: an HTTP status code, 400-599 for an error page (any other status reaching the
            final handler is answered as 500, without the error's headers, as Express does).
        message: the text shown to the client for a 4xx (a 5xx shows only its reason phrase).
        headers: extra response headers, as a mapping or ``(name, value)`` pairs.

    Attributes:
        status: the status code.
        message: the message (the reason phrase when none was given).
        headers: the extra headers as a ``dict`` (``err.headers["WWW-Authenticate"]``).
        header_lines: the same as ``(name, value)`` pairs, in order, repeated names kept.
    """

    def __init__(self, status: int, message: str | None = None, headers: HeadersArg = None) -> None:
        if not isinstance(status, int) or isinstance(status, bool):
            raise TypeError(f"HTTPError status must be an int, not {type(status).__name__}")
        if not 100 <= status <= 999:
            raise ValueError(f"HTTPError status {status} is outside 100-999")
        from evserve.status import reason_phrase  # local: keeps this module import-light

        self.status = status
        self.message = message if message is not None else reason_phrase(status)
        pairs: list[tuple[str, str]]
        if headers is None:
            pairs = []
        elif isinstance(headers, Mapping):
            pairs = [(str(k), str(v)) for k, v in headers.items()]
        else:
            pairs = [(str(k), str(v)) for k, v in headers]
        # The lines sent with the error page, repeats kept (two Set-Cookie lines stay two).
        self.header_lines: list[tuple[str, str]] = pairs
        # As http-errors' err.headers: a mapping of what was passed (a repeated name keeps its
        # last value here; header_lines has them all).
        self.headers: dict[str, str] = dict(pairs)
        super().__init__(self.message)

    def current_lines(self) -> list[tuple[str, str]]:
        """The header lines to send: ``headers`` as it is now (a handler may have changed it),
        with the repeats of ``header_lines`` kept for a name whose last value is unchanged."""
        lines: list[tuple[str, str]] = []
        for name, value in self.headers.items():
            repeats = [v for n, v in self.header_lines if n == name]
            if len(repeats) > 1 and repeats[-1] == value:
                lines.extend((name, v) for v in repeats)
            else:
                lines.append((name, value))
        return lines

    def __repr__(self) -> str:
        return f"HTTPError({self.status!r}, {self.message!r})"


class PatternError(EvserveError, ValueError):
    """A route path that cannot be registered: bad syntax, a bad or dangerous regex.

    Raised when the route is added (``app.get("/a/(", ...)``), never per request.
    """


class ResponseStateError(EvserveError, RuntimeError):
    """An operation that the response's state forbids, such as sending a second response."""


# -- the test client's (evserve.testing) --------------------------------------------------------


class ClientError(EvserveError):
    """The test client got no complete, valid response; the message names the request."""


class ResponseTimeout(ClientError, TimeoutError):
    """No complete response came within the request's ``timeout``; the message says what the
    server was doing (a handler that has not answered, a response that has not ended)."""


class ServerDisconnected(ClientError, ConnectionError):
    """The server closed (or reset) the connection before the response was complete."""


class MalformedResponse(ClientError):
    """The server wrote something an HTTP/1.1 client must refuse (RFC 9112)."""
