"""Hello world: the smallest evserve application.

Run it with ``python examples/hello.py`` (then open http://127.0.0.1:8080/), or import ``app``.
"""

from __future__ import annotations

import argparse

from evserve import App

app = App()


@app.get("/")
def index(req, res):
    res.send("Hello, World!")


@app.get("/user/:id")
def user(req, res):
    res.json({"user_id": req.params["id"]})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    app.listen(args.port, args.host)


if __name__ == "__main__":
    main()
