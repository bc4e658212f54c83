"""Peer: a tornado.web app on tornado's HTTP server (asyncio loop).

Run with the peers virtualenv: ``bench/.venv-peers/bin/python bench/peers/tornado_server.py --port 8080``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import tornado.web


class PlaintextHandler(tornado.web.RequestHandler):
    """``Hello, World!`` as text/plain."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.finish(b"Hello, World!")


class UserHandler(tornado.web.RequestHandler):
    """A routed parameter in a JSON object."""

    def get(self, user_id: str) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"user_id": user_id}, separators=(",", ":")))


class EchoHandler(tornado.web.RequestHandler):
    """The posted JSON, parsed and serialised again."""

    def post(self) -> None:
        try:
            body = json.loads(self.request.body)
        except ValueError:
            self.send_error(400)
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body, separators=(",", ":")))


def make_app() -> tornado.web.Application:
    """The application with the three benchmark routes."""
    return tornado.web.Application(
        [
            (r"/plaintext", PlaintextHandler),
            (r"/user/([^/]+)", UserHandler),
            (r"/echo", EchoHandler),
        ]
    )


async def serve(host: str, port: int) -> None:
    """Listen until SIGINT/SIGTERM."""
    server = make_app().listen(port, host, backlog=1024, idle_connection_timeout=75)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.stop()


def main() -> None:
    """Parse ``--host``/``--port`` and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
