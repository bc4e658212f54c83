"""The Express layer as a handler of exchanges: the one place that builds ``Request``/``Response``.

An ``App`` is a handler (``handle_exchange``/``refuse_exchange``, see ``evserve.handlers``) through
the two functions here; any other Express-style ``fn(req, res)`` is served by ``ExpressHandler``,
which ``as_handler`` finds through the adapter registered below, so that the connection layer
never imports this one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evserve.exchange import Exchange, plain_error
from evserve.handlers import Handler, register_adapter
from evserve.request import Request
from evserve.response import Response
from evserve.router import HANDLER, handler_role

__all__ = ["ExpressHandler", "express_adapter", "request_pair"]


def request_pair(exchange: Exchange) -> tuple[Request, Response]:
    """The ``Request`` and ``Response`` of ``exchange``, paired (``req.res`` is the response)."""
    req = Request(exchange, exchange.head, exchange.body)
    res = Response(exchange, req)
    req.res = res
    return req, res


class ExpressHandler:
    """Serves an Express-style ``fn(req, res)`` (or any object that renders refusals with
    ``render_protocol_error(req, res, status, reason)``, as an ``App`` does)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Request, Response], object]) -> None:
        self.fn = fn

    def handle_exchange(self, exchange: Exchange) -> object:
        """Build the request and response, then call the function (an ``async def`` one's
        coroutine is returned, for the connection to run)."""
        req, res = request_pair(exchange)
        return self.fn(req, res)

    def refuse_exchange(self, exchange: Exchange, status: int, reason: str) -> None:
        """Render the refusal through the function's ``render_protocol_error`` if it has
        one, else send the plain error page."""
        render = getattr(self.fn, "render_protocol_error", None)
        if render is None:
            plain_error(exchange, status, reason)
            return
        req, res = request_pair(exchange)
        render(req, res, status, reason)

    def __repr__(self) -> str:
        return f"ExpressHandler({self.fn!r})"


def express_adapter(target: Any) -> Handler | None:
    """An ``ExpressHandler`` for a callable taking ``(req, res)``; None for anything else."""
    if callable(target) and not isinstance(target, type):
        try:
            role = handler_role(target)
        except TypeError:
            return None
        if role == HANDLER:
            return ExpressHandler(target)
    return None


register_adapter(express_adapter)
