"""Peer: a plain WSGI app on waitress (its default 4 worker threads).

waitress's defaults are raised where they would make some scenarios impossible, not faster:
``connection_limit`` (default 100) for the 1,000- and 10,000-connection runs;
``asyncore_use_poll`` because ``select()`` cannot watch file descriptors above 1023; and
``channel_timeout`` (its idle timeout, default 120 s) to 600 s, because waitress needs one to
three minutes just to accept 10,000 connections (its loop polls every connection on every turn),
so the first ones would be closed before the last one is open.

Run with the peers virtualenv: ``bench/.venv-peers/bin/python bench/peers/waitress_server.py --port 8080``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from typing import Any

import waitress

StartResponse = Callable[..., Any]

PLAIN = b"Hello, World!"


def _json(start_response: StartResponse, obj: Any) -> list[bytes]:
    body = json.dumps(obj, separators=(",", ":")).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """``GET /plaintext``, ``GET /user/<id>``, ``POST /echo``; anything else 404."""
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/plaintext" and method == "GET":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [PLAIN]
    if path.startswith("/user/") and method == "GET":
        return _json(start_response, {"user_id": path[6:]})
    if path == "/echo" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            obj = json.loads(environ["wsgi.input"].read(length))
        except ValueError:
            start_response("400 Bad Request", [("Content-Length", "0")])
            return [b""]
        return _json(start_response, obj)
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]


def main() -> None:
    """Serve ``app`` until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    waitress.serve(
        app,
        host=args.host,
        port=args.port,
        backlog=1024,
        connection_limit=12000,
        channel_timeout=600,
        asyncore_use_poll=True,
        _quiet=True,
    )


if __name__ == "__main__":
    main()
