"""evserve: an HTTP/1.1 server and Express-style web framework in pure Python."""

from __future__ import annotations

import logging

from evserve.app import App
from evserve.config import Config
from evserve.errors import EvserveError, HTTPError, ParseError, PatternError, ResponseStateError
from evserve.middleware import body_parser
from evserve.middleware.cors import cors
from evserve.middleware.logger import logger
from evserve.middleware.static import static
from evserve.reactor import Reactor
from evserve.request import Request
from evserve.response import Response
from evserve.router import Route, Router
from evserve.server import Server, run_in_thread, serve
from evserve.tasks import Future, sleep, to_thread

__all__ = [
    "App",
    "Config",
    "EvserveError",
    "Future",
    "HTTPError",
    "ParseError",
    "PatternError",
    "Reactor",
    "Request",
    "Response",
    "ResponseStateError",
    "Route",
    "Router",
    "Server",
    "__version__",
    "body_parser",
    "cors",
    "logger",
    "run_in_thread",
    "serve",
    "sleep",
    "static",
    "to_thread",
]

__version__ = "0.1.0"

logging.getLogger("evserve").addHandler(logging.NullHandler())
