"""Peer: an aiohttp.web app (its C HTTP parser, the default asyncio loop).

Run with the peers virtualenv: ``bench/.venv-peers/bin/python bench/peers/aiohttp_server.py --port 8080``.
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web


async def plaintext(request: web.Request) -> web.Response:
    """``Hello, World!`` as text/plain."""
    return web.Response(text="Hello, World!")


async def user(request: web.Request) -> web.Response:
    """A routed parameter in a JSON object."""
    return web.json_response({"user_id": request.match_info["id"]})


async def echo(request: web.Request) -> web.Response:
    """The posted JSON, parsed and serialised again."""
    try:
        body = await request.json()
    except ValueError:
        return web.Response(status=400)
    return web.json_response(body, dumps=lambda obj: json.dumps(obj, separators=(",", ":")))


def make_app() -> web.Application:
    """The application with the three benchmark routes."""
    app = web.Application()
    app.router.add_get("/plaintext", plaintext)
    app.router.add_get("/user/{id}", user)
    app.router.add_post("/echo", echo)
    return app


def main() -> None:
    """Serve the app until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(
        make_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=1024,
        keepalive_timeout=75,
    )


if __name__ == "__main__":
    main()
