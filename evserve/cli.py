"""The command line: ``python -m evserve module:app [--host H] [--port P] [options]``."""

from __future__ import annotations

import argparse
import errno
import importlib
import importlib.util
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from evserve.config import Config

__all__ = ["load_app", "main"]

DEFAULT_PORT = 8080


class TargetError(Exception):
    """The ``module:app`` target cannot be loaded."""


def load_app(target: str) -> Any:
    """Import ``module:attr`` or ``path/to/file.py:attr`` (``attr`` defaults to ``app``).

    The current directory is put first on ``sys.path``, as ``python -m`` users expect.

    Raises:
        TargetError: with a one-line explanation.
    """
    module_part, _, attr = target.partition(":")
    attr = attr or "app"
    if not module_part:
        raise TargetError(f"bad target {target!r}: expected module:app or path/to/file.py:app")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        path = os.path.abspath(module_part)
        if not os.path.isfile(path):
            raise TargetError(f"no such file: {module_part}")
        directory = os.path.dirname(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot import {module_part}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise TargetError(f"importing {module_part} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            if exc.name and module_part.startswith(exc.name):
                raise TargetError(f"no module named {module_part!r} (looked in {cwd} and sys.path)") from exc
            raise TargetError(f"importing {module_part} failed: {exc}") from exc
        except Exception as exc:
            raise TargetError(f"importing {module_part} failed: {type(exc).__name__}: {exc}") from exc
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise TargetError(f"module {module_part!r} has no attribute {attr!r}") from None
    if not callable(app):
        raise TargetError(f"{target} is not callable (expected an evserve App or app(req, res))")
    return app


def _free_port_near(host: str, port: int) -> int | None:
    for candidate in range(port + 1, min(port + 50, 65535)):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return candidate
    return None


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (usage stays behind ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see python -m evserve --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m evserve",
        description="Serve an evserve application (or any app(req, res) callable).",
    )
    parser.add_argument("target", help="module:app or path/to/file.py:app (attribute defaults to 'app')")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--log-level", default="info", type=str.lower,
        choices=["debug", "info", "warning", "error", "critical"],
        help="logging level (default info)",
    )
    for name, unit, default, doc in Config.describe():
        if name == "workers":
            parser.add_argument("--workers", type=int, default=default, help=f"{doc} (default {default})")
            continue
        kind = float if unit == "seconds" else int
        parser.add_argument(
            "--" + name.replace("_", "-"), type=kind, default=None, dest=name,
            help=f"{doc}; {unit} (default {default})",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config: dict[str, Any] = {"workers": args.workers}
    for name, *_ in Config.describe():
        value = getattr(args, name, None)
        if value is not None:
            config[name] = value
    try:
        Config.from_kwargs(**config)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    try:
        app = load_app(args.target)
    except TargetError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is outside 0-65535")
    from evserve.server import serve

    try:
        serve(app, args.host, args.port, **config)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            hint = _free_port_near(args.host, args.port)
            suggestion = f"; try --port {hint}" if hint else ""
            sys.stderr.write(f"error: port {args.port} on {args.host} is already in use{suggestion}\n")
            return 1
        if exc.errno == errno.EACCES:
            sys.stderr.write(f"error: no permission to listen on {args.host}:{args.port}\n")
            return 1
        if isinstance(exc, socket.gaierror):
            sys.stderr.write(f"error: cannot resolve host {args.host!r}: {exc}\n")
            return 1
        raise
    return 0
