"""evserve: an HTTP/1.1 server and Express-style web framework in pure Python."""

from __future__ import annotations

import logging

from evserve.errors import EvserveError, HTTPError, ParseError, ResponseStateError

__all__ = ["EvserveError", "HTTPError", "ParseError", "ResponseStateError", "__version__"]

__version__ = "0.1.0"

logging.getLogger("evserve").addHandler(logging.NullHandler())
