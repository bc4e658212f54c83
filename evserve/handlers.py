"""Handlers: what a connection hands its requests to, and how a served object becomes one.

The connection layer knows one interface, ``Handler`` (``handle_exchange`` and
``refuse_exchange``). ``as_handler`` turns what a server is given into one: a ``Handler`` as it
is, a plain ``fn(exchange)`` (``FunctionHandler``), or what an adapter registered by a higher
layer makes of it (the Express layer registers the one serving ``fn(req, res)``), so that this
layer imports nothing above it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from evserve.exchange import Exchange, plain_error

__all__ = ["FunctionHandler", "Handler", "as_handler", "register_adapter"]


@runtime_checkable
class Handler(Protocol):
    """What a connection hands its requests to.

    ``handle_exchange`` is called once per request, when its body has arrived; the handler
    answers through the exchange then or later (from a timer, a coroutine, or another thread
    through ``reactor.call_soon_threadsafe``). A coroutine it returns (an ``async def``
    handler) is run on the connection's reactor. An exception it raises, now or from that
    coroutine, answers 500 (or cuts a response already started) and is logged. ``refuse_exchange`` is called instead for a
    request the server refuses after reading its head (413 body too large, 408 body timeout,
    417, 501...): the handler renders the error page its own way (an ``App`` through its
    error middleware); the connection closes after it.
    """

    def handle_exchange(self, exchange: Exchange) -> object:
        """Answer one request."""

    def refuse_exchange(self, exchange: Exchange, status: int, reason: str) -> object:
        """Answer a request the server refused with ``status`` (``reason`` says why)."""


class FunctionHandler:
    """A plain function ``fn(exchange)`` as a handler; refusals get the plain error page."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Exchange], object]) -> None:
        self.fn = fn

    def handle_exchange(self, exchange: Exchange) -> object:
        """Call the function with the exchange."""
        return self.fn(exchange)

    def refuse_exchange(self, exchange: Exchange, status: int, reason: str) -> None:
        """Send the plain error page."""
        plain_error(exchange, status, reason)

    def __repr__(self) -> str:
        return f"FunctionHandler({self.fn!r})"


# Adapters registered by higher layers, tried in order by ``as_handler`` (the Express layer
# registers the one that serves ``fn(req, res)``): the connection layer never imports them.
_adapters: list[Callable[[Any], Handler | None]] = []


def register_adapter(adapter: Callable[[Any], Handler | None]) -> None:
    """Let ``as_handler`` serve more kinds of objects: ``adapter(target)`` returns a handler
    for ``target``, or None when it does not know it. Registered once per adapter."""
    if adapter not in _adapters:
        _adapters.append(adapter)


def as_handler(target: Any) -> Handler:
    """The handler serving ``target``: a ``Handler`` as it is, what a registered adapter makes of
    it (an Express-style ``fn(req, res)``), or a function of one argument as ``fn(exchange)``.

    Raises:
        TypeError: ``target`` is none of these.
    """
    if callable(getattr(target, "handle_exchange", None)) and callable(getattr(target, "refuse_exchange", None)):
        return target  # type: ignore[no-any-return]
    if callable(target) and not isinstance(target, type) and _positional_count(target) == 1:
        return FunctionHandler(target)
    for adapter in _adapters:
        handler = adapter(target)
        if handler is not None:
            return handler
    raise TypeError(
        f"cannot serve {target!r}: pass an App, a function fn(req, res), a function "
        "fn(exchange), or an object with handle_exchange(exchange) and "
        "refuse_exchange(exchange, status, reason)"
    )


def _positional_count(fn: Any) -> int:
    """How many positional arguments ``fn`` takes without defaults (-1 when unknown)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return -1
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return -1
    return sum(1 for p in parameters
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)
