"""Peer: a raw ASGI app (no framework) on uvicorn.

``--http httptools --loop uvloop`` is uvicorn at its fastest (C parser, C event loop);
``--http h11 --loop asyncio`` is uvicorn in pure Python. Run with the peers virtualenv:
``bench/.venv-peers/bin/python bench/peers/asgi_uvicorn.py --port 8080 --http h11 --loop asyncio``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PLAIN_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
JSON_TYPE = (b"content-type", b"application/json")


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, obj: Any) -> None:
    body = json.dumps(obj, separators=(",", ":")).encode()
    await _respond(send, 200, [JSON_TYPE, (b"content-length", str(len(body)).encode())], body)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /plaintext``, ``GET /user/{id}``, ``POST /echo``; anything else 404."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, method = scope["path"], scope["method"]
    if path == "/plaintext" and method == "GET":
        await _respond(send, 200, PLAIN_HEADERS, b"Hello, World!")
    elif path.startswith("/user/") and method == "GET":
        await _json(send, {"user_id": path[6:]})
    elif path == "/echo" and method == "POST":
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            obj = json.loads(b"".join(chunks))
        except ValueError:
            await _respond(send, 400, [(b"content-length", b"0")], b"")
            return
        await _json(send, obj)
    else:
        await _respond(send, 404, [(b"content-length", b"0")], b"")


def main() -> None:
    """Serve ``app`` with the uvicorn protocol and loop given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--http", choices=["httptools", "h11"], default="httptools")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        http=args.http,
        loop=args.loop,
        log_level="warning",
        access_log=False,
        backlog=1024,
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
