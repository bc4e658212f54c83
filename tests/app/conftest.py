"""Helpers for application tests run through ``evserve.testing.TestClient``: no socket.

These tests check what an application does (routing, the request and response helpers,
middleware, body parsers, error handling) through the server's real connection code, in memory.
Tests about the wire itself (sockets, timeouts on a real socket, resets, sendfile, ports,
threads) live in tests/e2e.

``client_for(app, **config)`` gives a ``TestClient`` closed when the test ends. For the few tests
that send exact bytes (a malformed escape ``requests`` would re-quote, a request without a
header a client always adds), ``request_bytes`` builds a request as the e2e ``RawClient`` does
and ``exchange`` sends it on a fresh connection and parses the one response that comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from evserve.testing import ResponseReader, TestClient


@pytest.fixture
def client_for() -> Iterator[Callable[..., TestClient]]:
    """``client_for(app, **kwargs)``: a ``TestClient(app, **kwargs)``, closed when the test ends."""
    opened: list[TestClient] = []

    def make(app: Any, **kwargs: Any) -> TestClient:
        client = TestClient(app, **kwargs)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


@dataclass
class RawResponse:
    """One response parsed from the bytes a connection wrote (the e2e ``RawResponse``'s shape)."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    interim: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The header ``name`` (case-insensitive), lines joined by ", ", or None."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def request_bytes(method: str = "GET", target: str = "/", headers: dict[str, str] | None = None,
                  body: bytes = b"", version: str = "1.1") -> bytes:
    """A well-formed request, byte for byte as the e2e ``RawClient.request`` builds it."""
    lines = [f"{method} {target} HTTP/{version}", "Host: test"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in (headers or {})):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_responses(data: bytes, methods: list[str]) -> list[RawResponse]:
    """The responses in ``data`` (all the bytes a connection wrote), one per method in
    ``methods``; fails when bytes are missing or left over."""
    reader = ResponseReader()
    reader.feed(data)
    parsed = []
    for method in methods:
        res = reader.next_response(method, eof=True)
        assert res is not None, f"no whole response to {method} in {data[:300]!r}"
        parsed.append(RawResponse(res.http_version, res.status, res.reason, res.headers, res.body,
                                  res.raw, res.trailers, [i[0] for i in res.interim]))
    assert not reader.buffered, f"bytes after the responses: {reader.preview()!r}"
    return parsed


def exchange(client: TestClient, method: str = "GET", target: str = "/",
             headers: dict[str, str] | None = None, body: bytes = b"", version: str = "1.1") -> RawResponse:
    """Send one request built by ``request_bytes`` on a fresh connection; its response."""
    data = client.raw(request_bytes(method, target, headers, body, version))
    return parse_responses(data, [method])[0]
