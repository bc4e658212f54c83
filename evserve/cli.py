"""The command line: ``python -m evserve module:app [--host H] [--port P] [options]``."""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import logging
import os
import site
import sys
import sysconfig
import traceback
from collections.abc import Sequence
from types import TracebackType
from typing import Any, NoReturn

from evserve.config import Config
from evserve.server import DEFAULT_HOST, DEFAULT_PORT, listen_error_message, serve

__all__ = ["TargetError", "load_app", "main"]


class TargetError(Exception):
    """The ``module:app`` target cannot be loaded.

    ``str()`` is one line. When the target's own code failed (a ``SyntaxError``, an exception,
    a failed import inside the module), ``__cause__`` is that exception and ``report()`` adds
    its traceback, which the user needs to find the line.
    """

    def __init__(self, message: str, *, show_traceback: bool = False) -> None:
        super().__init__(message)
        self.show_traceback = show_traceback

    def report(self) -> str:
        """What the command line prints: ``error: ...`` and, for a failure inside the user's
        code, the traceback from the user's first frame on."""
        text = f"error: {self}\n"
        cause = self.__cause__
        if self.show_traceback and cause is not None:
            frames = _user_frames(cause.__traceback__)
            text += "".join(traceback.format_exception(type(cause), cause, frames))
        return text


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without its leading frames of this module and of importlib (as ``python -m``)."""
    importlib_dir = os.path.dirname(importlib.__file__)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename != __file__ and not filename.startswith("<frozen importlib") and \
                os.path.dirname(filename) != importlib_dir:
            break
        tb = tb.tb_next
    return tb


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_app(target: str) -> Any:
    """Import ``module:attr`` or ``path/to/file.py:attr`` (``attr`` defaults to ``app``).

    The current directory is put first on ``sys.path``, as ``python -m`` users expect.

    Raises:
        TargetError: with a one-line explanation; when the module's own code raised, that error
            is its ``__cause__`` and ``report()`` shows its traceback.
    """
    module_part, _, attr = target.partition(":")
    attr = attr or "app"
    if not module_part:
        raise TargetError(f"bad target {target!r}: expected module:app or path/to/file.py:app")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    failed = f"importing {module_part} failed"
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
            sys.modules.pop(name, None)
            raise TargetError(f"{failed}: {_one_line(exc)}", show_traceback=True) from exc
    else:
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            # Only the target itself (or a package above it) missing is a one-line error; a
            # module that the target imports and that is missing is a failure of the user's code.
            if exc.name and (module_part == exc.name or module_part.startswith(exc.name + ".")):
                raise TargetError(f"no module named {module_part!r} (looked in {cwd} and sys.path)") from exc
            raise TargetError(f"{failed}: {_one_line(exc)}", show_traceback=True) from exc
        except Exception as exc:
            raise TargetError(f"{failed}: {_one_line(exc)}", show_traceback=True) from exc
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise TargetError(f"module {module_part!r} has no attribute {attr!r}") from None
    if not callable(app):
        raise TargetError(f"{target} is not callable (expected an evserve App or app(req, res))")
    return app


class _Reimporter:
    """Loads the target; ``reload()`` loads it again with the project's own modules imported
    afresh, for SIGHUP with workers.

    The project's modules are those the target brought in that are neither the standard
    library's nor an installed package's (nor evserve's): those are kept, as re-importing a
    C extension is not safe. A failed reload leaves ``sys.modules`` as it was.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.modules: list[str] = []

    def load(self) -> Any:
        before = set(sys.modules)
        app = load_app(self.target)
        self.modules = [name for name in list(sys.modules) if name not in before and _is_project_module(name)]
        return app

    def reload(self) -> Any:
        saved = {name: sys.modules.pop(name) for name in self.modules if name in sys.modules}
        importlib.invalidate_caches()
        before = set(sys.modules)
        try:
            return self.load()
        except BaseException:
            for name in set(sys.modules) - before:  # a set: deleting while iterating is safe
                if _is_project_module(name):
                    del sys.modules[name]
            sys.modules.update(saved)
            raise


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    found = [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths]
    if hasattr(site, "getsitepackages"):
        found += site.getsitepackages()
    if hasattr(site, "getusersitepackages"):
        found.append(site.getusersitepackages())
    found.append(os.path.dirname(os.path.abspath(__file__)))  # evserve itself
    return tuple(os.path.join(os.path.realpath(path), "") for path in found)


def _is_project_module(name: str) -> bool:
    path = getattr(sys.modules.get(name), "__file__", None)
    if not isinstance(path, str):
        return False
    real = os.path.realpath(path)
    return not any(real.startswith(prefix) for prefix in _library_dirs())


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (usage stays behind ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see python -m evserve --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m evserve",
        description="Serve an evserve application (or any app(req, res) callable).",
        epilog="Ctrl-C or SIGTERM stops gracefully (a second Ctrl-C stops at once). With --workers "
               "above 1, SIGHUP imports the application again and replaces the workers gracefully.",
        allow_abbrev=False,  # an abbreviation would take a misspelt option for another one
    )
    parser.add_argument("target", help="module:app or path/to/file.py:app (attribute defaults to 'app')")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
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
    """Run the command line; returns the process exit status.

    0 after a graceful stop; 1 when the address cannot be listened on or workers keep dying
    at start; 2 for a bad option or target. A second Ctrl-C ends the process with 130.
    """
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
        settings = Config.from_kwargs(**config)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is outside 0-65535")
    loader = _Reimporter(args.target)
    try:
        app = loader.load()
    except TargetError as exc:
        sys.stderr.write(exc.report())
        return 2
    try:
        if settings.workers > 1:
            from evserve.workers import serve_workers

            serve_workers(app, args.host, args.port, settings, reload_app=loader.reload)
        else:
            serve(app, args.host, args.port, **config)
    except SystemExit as exc:
        if isinstance(exc.__cause__, OSError):  # cannot listen: say so, naming the option
            message = listen_error_message(exc.__cause__, args.host, args.port, port_hint="--port {}")
            sys.stderr.write(f"error: {message}\n")
            return 1
        raise
    return 0
