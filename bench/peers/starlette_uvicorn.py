"""Peer: a Starlette app on uvicorn with httptools and uvloop.

Run with the peers virtualenv: ``bench/.venv-peers/bin/python bench/peers/starlette_uvicorn.py --port 8080``.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


async def plaintext(request: Request) -> Response:
    """``Hello, World!`` as text/plain."""
    return PlainTextResponse("Hello, World!")


async def user(request: Request) -> Response:
    """A routed parameter in a JSON object."""
    return JSONResponse({"user_id": request.path_params["id"]})


async def echo(request: Request) -> Response:
    """The posted JSON, parsed and serialised again."""
    try:
        body = await request.json()
    except ValueError:
        return Response(status_code=400)
    return JSONResponse(body)


app = Starlette(
    routes=[
        Route("/plaintext", plaintext),
        Route("/user/{id}", user),
        Route("/echo", echo, methods=["POST"]),
    ]
)


def main() -> None:
    """Serve ``app`` on uvicorn (httptools + uvloop)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
        backlog=1024,
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
