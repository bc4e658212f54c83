"""What the test client sends and gets back: ``ClientRequest`` and ``ClientResponse``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from evserve.headers import Headers
from evserve.testing.wire import ParsedResponse

__all__ = ["ClientRequest", "ClientResponse", "InterimResponse"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class ClientRequest:
    """A request as the test client sent it.

    Attributes:
        method: the method, e.g. ``"GET"``.
        url: the whole URL, e.g. ``"http://testserver/items?page=2"``.
        target: the request-target on the request line, e.g. ``"/items?page=2"``.
        headers: the header lines sent (``Host``, ``Cookie``, ``Content-Length`` included).
        content: the body, before any transfer coding.
        secure: whether it went "over https" (``req.protocol`` is ``"https"``).
        data: the bytes written to the connection.
    """

    method: str
    url: str
    target: str
    headers: Headers
    content: bytes
    secure: bool
    data: bytes = field(repr=False)

    @property
    def host(self) -> str:
        """The host the request went to, without port or IPv6 brackets, lowercased."""
        authority = self.headers.get("host") or ""
        if authority.startswith("["):
            return authority[1:authority.find("]")].lower()
        return authority.rsplit(":", 1)[0].lower() if ":" in authority else authority.lower()

    @property
    def path(self) -> str:
        """The path of the target, without the query."""
        return self.target.split("?", 1)[0]


@dataclass(frozen=True)
class InterimResponse:
    """A 1xx response that came before the final one (``100 Continue``, ``103 Early Hints``)."""

    status_code: int
    reason: str
    headers: Headers


class ClientResponse:
    """A response the test client received.

    Attributes:
        status_code: the status, e.g. ``200``.
        reason: the reason phrase, e.g. ``"OK"``.
        http_version: ``"1.1"`` (or ``"1.0"``).
        headers: case-insensitive; repeated lines kept (``headers.get_all("set-cookie")``),
            ``headers["vary"]`` joins them with ``", "``; names are lowercased.
        content: the body as bytes (the transfer coding removed, any Content-Encoding kept).
        trailers: the trailer lines of a chunked body.
        interim: the 1xx responses that came first.
        request: the ``ClientRequest`` answered.
        url: the URL requested.
        history: the redirects followed to get here, oldest first (with ``follow_redirects``).
        raw: the bytes of the response as the connection wrote them.
    """

    __slots__ = ("content", "headers", "history", "http_version", "interim", "raw", "reason",
                 "request", "status_code", "trailers", "url")

    def __init__(self, parsed: ParsedResponse, request: ClientRequest) -> None:
        self.status_code = parsed.status
        self.reason = parsed.reason
        self.http_version = parsed.http_version
        self.headers = Headers(parsed.headers)
        self.content = parsed.body
        self.trailers = Headers(parsed.trailers)
        self.interim = [InterimResponse(status, reason, Headers(lines))
                        for status, reason, lines in parsed.interim]
        self.request = request
        self.url = request.url
        self.history: list[ClientResponse] = []
        self.raw = parsed.raw

    @property
    def text(self) -> str:
        """The body decoded by the charset of Content-Type (UTF-8 when none or unknown);
        undecodable bytes become U+FFFD."""
        charset = _charset(self.headers.get("content-type"))
        try:
            return self.content.decode(charset, "replace")
        except (LookupError, ValueError):  # a codec that is no text encoding ("base64")
            return self.content.decode("utf-8", "replace")

    def json(self) -> object:
        """The body parsed as JSON.

        Raises:
            ValueError: the body is not JSON (the message shows the start of it).
        """
        try:
            return json.loads(self.content)
        except ValueError as exc:
            raise ValueError(
                f"{self.request.method} {self.url} answered {self.status_code} with a body that "
                f"is not JSON (Content-Type {self.headers.get('content-type')!r}): "
                f"{self.content[:200]!r}"
            ) from exc

    @property
    def ok(self) -> bool:
        """Whether the status is below 400."""
        return self.status_code < 400

    @property
    def is_redirect(self) -> bool:
        """Whether this is a redirect with a Location to follow (301, 302, 303, 307, 308)."""
        return self.status_code in REDIRECT_STATUSES and "location" in self.headers

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status_code} {self.reason}>"


def _charset(content_type: str | None) -> str:
    """The charset parameter of a Content-Type value, or ``"utf-8"``."""
    if content_type:
        for parameter in content_type.split(";")[1:]:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "charset":
                return value.strip().strip('"') or "utf-8"
    return "utf-8"
