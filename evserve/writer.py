"""The sans-IO response writer: status line, header validation and body framing, as bytes.

Pure: no socket, clock or logging. The caller passes the current epoch second for the Date
header; the formatted value is cached, so it is computed at most once per second.

Framing (RFC 9112 section 6 and RFC 9110 section 6.4.1) is decided in one function,
``frame_response``, which every sender asks (the connection's exchange, ``ResponseWriter``):
    * responses to HEAD, and 1xx, 204 and 304 responses, carry no body;
    * a body of known size gets ``Content-Length``;
    * a streamed body gets ``Transfer-Encoding: chunked`` for an HTTP/1.1 client, and is
      delimited by closing the connection for an HTTP/1.0 client.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from email.utils import formatdate

from evserve.status import REASONS

__all__ = [
    "LAST_CHUNK",
    "NO_CONTENT_STATUSES",
    "Framing",
    "ResponseWriter",
    "body_allowed",
    "chunk_size_line",
    "frame_chunk",
    "frame_response",
    "http_date",
    "serialize_head",
    "status_line",
    "validate_header",
    "validate_reason",
]

LAST_CHUNK = b"0\r\n\r\n"

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A field value may hold HTAB, SP, VCHAR and obs-text (RFC 9110 section 5.5): never CR, LF,
# NUL or any other control character, and nothing outside latin-1.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_REASON = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

_STATUS_LINES: dict[int, str] = {code: f"HTTP/1.1 {code} {phrase}\r\n" for code, phrase in REASONS.items()}

_date_second = -1
_date_value = ""


def http_date(epoch_second: int) -> str:
    """Return the IMF-fixdate for ``epoch_second`` (RFC 9110 section 5.6.7), cached per second."""
    global _date_second, _date_value
    if epoch_second != _date_second:
        _date_value = formatdate(epoch_second, usegmt=True)
        _date_second = epoch_second
    return _date_value


def validate_header(name: str, value: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a token and ``value`` a clean field value.

    CR, LF, NUL and the other control characters (except HTAB) are refused anywhere, so that
    nothing a handler passes in can split a response or inject a header.
    """
    if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
        raise ValueError(f"invalid header name {name!r}")
    if not isinstance(value, str) or _FIELD_VALUE.fullmatch(value) is None:
        raise ValueError(f"invalid character in the value of header {name!r}: {value!r}")


def validate_reason(reason: str) -> None:
    """Raise ``ValueError`` for a reason phrase with a control character (or non-latin-1)."""
    if _REASON.fullmatch(reason) is None:
        raise ValueError(f"invalid character in reason phrase {reason!r}")


# Statuses whose responses carry no content (RFC 9110 sections 15.2, 15.3.5, 15.3.6, 15.4.5);
# nor does any response to HEAD (section 9.3.2). The one statement of the rule: body_allowed and
# frame_response read it.
NO_CONTENT_STATUSES = frozenset({*range(100, 200), 204, 205, 304})


def body_allowed(method: str, status: int) -> bool:
    """Whether a response with ``status`` to a ``method`` request may carry a body (not for
    HEAD, 1xx, 204, 205 or 304)."""
    return method != "HEAD" and status not in NO_CONTENT_STATUSES


class Framing(enum.IntEnum):
    """How the end of a response body is found by the client (RFC 9112 section 6.3)."""

    NO_BODY = 1  # the response has no content: HEAD, 1xx, 204, 304
    LENGTH = 2  # Content-Length bytes follow the head
    CHUNKED = 3  # the chunked transfer coding, ended by the last chunk
    CLOSE = 4  # the body ends when the connection closes (a streamed body to HTTP/1.0)


_NO_BODY = Framing.NO_BODY
_LENGTH = Framing.LENGTH
_CHUNKED = Framing.CHUNKED
_CLOSE = Framing.CLOSE
_KEEP_ALIVE_10 = "Connection: keep-alive\r\n"
_CLOSE_LINE = "Connection: close\r\n"


def frame_response(
    method: str, http_version: str, status: int, content_length: int | None, keep_alive: bool
) -> tuple[Framing, str, bool]:
    """Decide how a response is framed: the one place that does (RFC 9112 sections 6 and 9).

    Args:
        method: the request's method (a response to ``HEAD`` has no body).
        http_version: the request's version, ``"1.1"`` or ``"1.0"``.
        status: the response status (1xx, 204 and 304 have no body).
        content_length: the body's size when known; ``None`` for a streamed body.
        keep_alive: whether the connection may carry another request after this response.

    Returns:
        ``(framing, lines, keep_alive)``: the framing, the header lines that state it (each
        ending in CRLF: Content-Length or Transfer-Encoding, and Connection), and whether the
        connection persists after the response (False for a body delimited by the close).
        A response without a body keeps the Content-Length it was given, which then states
        what a GET would have carried (RFC 9110 section 8.6), except a 304, which describes no
        body, 1xx and 204, which may not carry the field at all, and 205, whose length is 0.
    """
    if method == "HEAD" or status in NO_CONTENT_STATUSES:  # as body_allowed says
        framing = _NO_BODY
        if status == 205:
            # RFC 9110 section 15.3.6: no content, said with a zero length so that the
            # connection can carry on.
            lines = "Content-Length: 0\r\n"
        elif content_length is None or status < 200 or status == 204 or status == 304:
            lines = ""
        else:
            lines = f"Content-Length: {content_length}\r\n"
    elif content_length is not None:
        framing = _LENGTH
        lines = f"Content-Length: {content_length}\r\n"
    elif http_version == "1.1":
        framing = _CHUNKED
        lines = "Transfer-Encoding: chunked\r\n"
    else:
        framing = _CLOSE
        lines = ""
        keep_alive = False
    if not keep_alive:
        lines += _CLOSE_LINE
    elif http_version == "1.0":
        lines += _KEEP_ALIVE_10
    return framing, lines, keep_alive


def serialize_head(
    status: int,
    headers: Iterable[tuple[str, str]],
    reason: str | None = None,
    *,
    validate: bool = True,
) -> bytes:
    """Return the status line and header section (ending with the empty line) as bytes.

    Args:
        status: three-digit status code, 100-999.
        headers: ``(name, value)`` lines, written in the given order.
        reason: the reason phrase; the standard one when ``None``.
        validate: check every name and value (skip only for values already validated).

    Raises:
        ValueError: a status outside 100-999, or a control character in a name, value or reason.
    """
    if reason is None:
        line = _STATUS_LINES.get(status)
        if line is None:
            if not 100 <= status <= 999:
                raise ValueError(f"status {status} is outside 100-999")
            line = f"HTTP/1.1 {status} {status}\r\n"
    else:
        if not 100 <= status <= 999:
            raise ValueError(f"status {status} is outside 100-999")
        validate_reason(reason)
        line = f"HTTP/1.1 {status} {reason}\r\n"
    parts = [line]
    if validate:
        for name, value in headers:
            validate_header(name, value)
            parts.append(f"{name}: {value}\r\n")
    else:
        parts.extend([f"{name}: {value}\r\n" for name, value in headers])
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def status_line(status: int, reason: str | None = None) -> str:
    """The status line with its CRLF, e.g. ``"HTTP/1.1 200 OK\\r\\n"`` (cached for standard codes).

    Raises:
        ValueError: a status outside 100-999, or a control character in ``reason``.
    """
    if reason is None:
        line = _STATUS_LINES.get(status)
        if line is not None:
            return line
    if not 100 <= status <= 999:
        raise ValueError(f"status {status} is outside 100-999")
    if reason is None:
        return f"HTTP/1.1 {status} {status}\r\n"
    validate_reason(reason)
    return f"HTTP/1.1 {status} {reason}\r\n"


def chunk_size_line(size: int) -> bytes:
    """The size line that opens a chunk of ``size`` bytes (its data and a CRLF follow)."""
    return b"%x\r\n" % size


def frame_chunk(data: bytes) -> bytes:
    """Frame ``data`` as one chunk of the chunked transfer coding (empty data gives ``b""``)."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)


class ResponseWriter:
    """Frames one response for one request: decides the framing, then turns calls into bytes.

    Use ``head`` once (after any number of interim 1xx heads), then ``body`` any number of
    times, then ``end`` once; each returns the bytes to send. ``keep_alive`` tells, after
    ``head``, whether the connection may carry another request once this response has been
    sent.

    Args:
        method: the request method (``HEAD`` suppresses the body).
        http_version: the request's version, ``"1.1"`` or ``"1.0"``.
        keep_alive: whether the request allows the connection to persist.
    """

    __slots__ = ("_chunked", "_has_body", "_started", "http_version", "keep_alive", "method")

    def __init__(self, method: str, http_version: str, keep_alive: bool) -> None:
        self.method = method
        self.http_version = http_version
        self.keep_alive = keep_alive
        self._has_body = True
        self._chunked = False
        self._started = False

    @property
    def chunked(self) -> bool:
        """Whether the body is being sent with the chunked transfer coding."""
        return self._chunked

    @property
    def has_body(self) -> bool:
        """Whether body bytes passed to ``body``/``end`` are sent (False for HEAD, 204, ...)."""
        return self._has_body

    def head(
        self,
        status: int,
        headers: list[tuple[str, str]],
        *,
        content_length: int | None = None,
        date: str | None = None,
        reason: str | None = None,
        validate: bool = True,
    ) -> bytes:
        """Return the response head, with the framing headers added.

        Args:
            status: the status code.
            headers: the application's header lines; it must not include Content-Length,
                Transfer-Encoding, Connection or Date when the writer is to decide them (a
                Content-Length given there is kept for HEAD and 304 responses).
            content_length: the body size when known; ``None`` streams the body.
            date: the value of the Date header (see ``http_date``); omitted when ``None``.
            reason: a custom reason phrase.
            validate: check the application's header lines.
        """
        if self._started:
            raise RuntimeError("the response head was already written")
        lines = list(headers)
        if date is not None:
            lines.append(("Date", date))
        if status < 200:
            # RFC 9110 section 15.2: any number of interim (1xx) heads may precede the final one;
            # no body follows them.
            self._has_body = False
            return serialize_head(status, lines, reason, validate=validate)
        self._started = True
        framing, framing_lines, self.keep_alive = frame_response(
            self.method, self.http_version, status, content_length, self.keep_alive)
        self._has_body = framing is not _NO_BODY
        self._chunked = framing is _CHUNKED
        head = serialize_head(status, lines, reason, validate=validate)
        return head[:-2] + framing_lines.encode("latin-1") + b"\r\n"

    def body(self, data: bytes) -> bytes:
        """Return ``data`` framed for the wire (nothing when the response has no body)."""
        if not self._has_body or not data:
            return b""
        if self._chunked:
            return frame_chunk(data)
        return bytes(data)

    def end(self, data: bytes = b"") -> bytes:
        """Return the last body bytes and the end of the message."""
        if not self._has_body:
            return b""
        if self._chunked:
            return frame_chunk(data) + LAST_CHUNK if data else LAST_CHUNK
        return bytes(data)
