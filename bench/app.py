"""The evserve side of the benchmark: plaintext, a routed JSON response and a JSON echo.

Endpoints (the same three every peer in ``bench/peers/`` serves):

- ``GET /plaintext``: ``Hello, World!`` as ``text/plain``;
- ``GET /user/:id``: ``{"user_id": id}``;
- ``POST /echo``: the posted JSON, parsed by ``body_parser.json()`` and sent back.

Run it with ``python bench/app.py --port 8080 [--workers N]`` or
``python -m evserve bench/app.py:app --port 8080``; ``bench/run.py`` starts it for you. Importing
this module only builds ``app``; it listens only when run as a script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

try:
    from evserve import App, Request, Response
    from evserve.middleware import body_parser
except ImportError:  # a checkout without `pip install -e .`: use the evserve next to bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from evserve import App, Request, Response
    from evserve.middleware import body_parser

app = App()
app.use(body_parser.json())


@app.get("/plaintext")
def plaintext(req: Request, res: Response) -> None:
    """``Hello, World!`` as text/plain."""
    res.type("text/plain").send("Hello, World!")


@app.get("/user/:id")
def user(req: Request, res: Response) -> None:
    """A routed parameter in a JSON object."""
    res.json({"user_id": req.params["id"]})


@app.post("/echo")
def echo(req: Request, res: Response) -> None:
    """The posted JSON, parsed and serialised again."""
    res.json(req.body)


def main(argv: list[str] | None = None) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; server settings not given keep evserve's defaults."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=None, help="pre-forked processes")
    parser.add_argument("--keepalive-timeout", type=float, default=None, help="seconds")
    parser.add_argument("--max-connections", type=int, default=None)
    parser.add_argument("--backlog", type=int, default=None)
    args = parser.parse_args(argv)
    config: dict[str, Any] = {
        name: value
        for name in ("workers", "keepalive_timeout", "max_connections", "backlog")
        if (value := getattr(args, name)) is not None
    }
    app.listen(args.port, args.host, **config)


if __name__ == "__main__":
    main()
