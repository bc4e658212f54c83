"""Testing applications without a socket: ``TestClient`` drives the real connection code in memory.

::

    from evserve.testing import TestClient

    with TestClient(app) as client:
        res = client.get("/user/42")
        assert res.status_code == 200 and res.json() == {"user_id": "42"}
"""

from __future__ import annotations

from evserve.testing.client import DEFAULT_TIMEOUT, MAX_REDIRECTS, TestClient
from evserve.testing.jar import Cookie, CookieJar
from evserve.testing.messages import ClientRequest, ClientResponse, InterimResponse
from evserve.testing.wire import (
    ClientError,
    MalformedResponse,
    MemoryTransport,
    ResponseReader,
    ResponseTimeout,
    ServerDisconnected,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_REDIRECTS",
    "ClientError",
    "ClientRequest",
    "ClientResponse",
    "Cookie",
    "CookieJar",
    "InterimResponse",
    "MalformedResponse",
    "MemoryTransport",
    "ResponseReader",
    "ResponseTimeout",
    "ServerDisconnected",
    "TestClient",
]
