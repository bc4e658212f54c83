"""Express-style routing: layers, routes, routers, and the iterative ``next()`` walk.

A ``Router`` is a stack of layers in registration order. A layer is a path matcher plus a
handler whose role is fixed at registration by its arity: ``(req, res)`` a route handler,
``(req, res, next)`` middleware, ``(err, req, res, next)`` error middleware. ``use`` adds
prefix-matched middleware layers (functions, Routers, Apps); ``get``/``post``/... add route
layers, each holding a ``Route`` (a per-path stack of method handlers).

A request walks the stack once. ``next()`` moves on, ``next(err)`` skips to error middleware,
``next("route")`` leaves the current route, ``next("router")`` leaves the current router. The
walk is a loop, never recursion: ``next`` called while its handler is still running only flags
the loop to go on, so a stack of thousands of middleware never nears the frame limit, and a
handler may also call ``next`` later, from a timer or a coroutine.

Dispatch is not linear in the number of routes: layers whose path is a plain string are found
through a dictionary keyed by the normalised path; the other layers are tried in order, and only
where their literal prefix can match. Registration order still decides who runs first.
"""

from __future__ import annotations

import heapq
import inspect
import logging
import re
from collections.abc import Callable, Coroutine, Sequence
from types import CoroutineType, GeneratorType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from evserve.errors import HTTPError, ResponseStateError
from evserve.pathpattern import PathMatch, PathPattern, compile_path, normalize_plain

if TYPE_CHECKING:
    from evserve.request import Request
    from evserve.response import Response

__all__ = ["METHODS", "Layer", "Next", "Route", "Router", "RouterWalk", "handler_role"]

log = logging.getLogger("evserve")

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")

Handler = Callable[..., Any]
PathSpec = str | re.Pattern[str] | Sequence[str | re.Pattern[str]]
F = TypeVar("F", bound=Callable[..., Any])

# Handler roles, decided once at registration.
HANDLER = 2  # (req, res)
MIDDLEWARE = 3  # (req, res, next)
ERROR = 4  # (err, req, res, next)

class Next(Protocol):
    """The type of the ``next`` callable handed to middleware: ``next()``, ``next(err)``,
    ``next("route")``, ``next("router")``."""

    def __call__(self, err: Any = None, /) -> None:
        """Continue the walk (with ``err``: skip to error middleware)."""


def handler_role(fn: Any) -> int:
    """Return the role of ``fn`` from its positional arity (2, 3 or 4).

    Raises:
        TypeError: ``fn`` is not callable, or takes another number of positional arguments.
    """
    if isinstance(fn, Router):
        return MIDDLEWARE
    if not callable(fn):
        raise TypeError(f"a handler must be callable, not {type(fn).__name__}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot read the signature of handler {fn!r}: {exc}") from None
    count = 0
    for param in signature.parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
    if count not in (HANDLER, MIDDLEWARE, ERROR):
        raise TypeError(
            f"handler {getattr(fn, '__qualname__', fn)!r} takes {count} positional parameters; "
            "expected (req, res), (req, res, next) or (err, req, res, next)"
        )
    return count


def _is_async(fn: Any) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = None if inspect.isroutine(fn) else type(fn).__dict__.get("__call__")
    return call is not None and inspect.iscoroutinefunction(call)


def _flatten_handlers(handlers: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for h in handlers:
        if isinstance(h, (list, tuple)):
            out.extend(_flatten_handlers(h))
        else:
            out.append(h)
    return out


class _Step:
    """One handler with its role (in a route's stack or as a middleware layer)."""

    __slots__ = ("fn", "is_async", "method", "needs_body", "role")

    def __init__(self, fn: Any, method: str | None = None) -> None:
        self.fn = fn
        self.role = handler_role(fn)
        self.is_async = _is_async(fn)
        self.method = method  # for route steps: upper-case method, or None for all()
        # A middleware marked ``needs_body`` (the body parsers) would only call next() for a
        # request that announces no body: the walk skips it then, saving the call.
        self.needs_body = self.role == MIDDLEWARE and getattr(fn, "needs_body", False) is True


class Route:
    """The handlers of one path, by method. Verb methods add handlers and return the route."""

    __slots__ = ("methods", "path", "single", "stack")

    def __init__(self, path: Any) -> None:
        self.path = path
        self.stack: list[_Step] = []
        self.methods: set[str] = set()  # upper-case; "_all" when all() was used
        # The lone synchronous (req, res) handler, when that is all the route has: the router
        # calls it directly, with no per-request walk object (the common case).
        self.single: _Step | None = None

    def handles_method(self, method: str) -> bool:
        """Whether some handler of this route answers ``method`` (HEAD falls back to GET)."""
        methods = self.methods
        if "_all" in methods or method in methods:
            return True
        return method == "HEAD" and "GET" in methods

    def allowed_methods(self) -> list[str]:
        """The methods this route answers, with HEAD added when GET is there."""
        methods = sorted(m for m in self.methods if m != "_all")
        if "GET" in self.methods and "HEAD" not in self.methods:
            methods.append("HEAD")
        return methods

    def _add(self, method: str | None, handlers: Sequence[Any]) -> Route:
        flat = _flatten_handlers(handlers)
        if not flat:
            raise TypeError(f"route {method or 'all'}({self.path!r}) needs at least one handler")
        for fn in flat:
            if isinstance(fn, Router):
                raise TypeError("a Router cannot be a route handler; mount it with use()")
            step = _Step(fn, method)
            self.stack.append(step)
        self.methods.add(method or "_all")
        only = self.stack[0]
        self.single = only if len(self.stack) == 1 and only.role == HANDLER and not only.is_async else None
        return self

    def all(self, *handlers: Any) -> Route:
        """Add handlers for every method."""
        return self._add(None, handlers)

    def get(self, *handlers: Any) -> Route:
        """Add GET handlers (they also answer HEAD)."""
        return self._add("GET", handlers)

    def post(self, *handlers: Any) -> Route:
        """Add POST handlers."""
        return self._add("POST", handlers)

    def put(self, *handlers: Any) -> Route:
        """Add PUT handlers."""
        return self._add("PUT", handlers)

    def patch(self, *handlers: Any) -> Route:
        """Add PATCH handlers."""
        return self._add("PATCH", handlers)

    def delete(self, *handlers: Any) -> Route:
        """Add DELETE handlers."""
        return self._add("DELETE", handlers)

    def head(self, *handlers: Any) -> Route:
        """Add HEAD handlers."""
        return self._add("HEAD", handlers)

    def options(self, *handlers: Any) -> Route:
        """Add OPTIONS handlers."""
        return self._add("OPTIONS", handlers)

    def method(self, method: str, *handlers: Any) -> Route:
        """Add handlers for any (extension) method, e.g. ``route.method("PROPFIND", fn)``."""
        return self._add(method.upper(), handlers)

    def __repr__(self) -> str:
        return f"<Route {self.path!r} {sorted(self.methods)}>"


class Layer:
    """A path matcher and what runs when it matches: a route, middleware, or a mounted router."""

    __slots__ = ("index", "match_all", "pattern", "prefix", "route", "step", "sub")

    def __init__(
        self,
        pattern: PathPattern,
        *,
        step: _Step | None = None,
        route: Route | None = None,
        sub: Any = None,
        index: int = 0,
    ) -> None:
        self.pattern = pattern
        self.step = step
        self.route = route
        self.sub = sub  # a mounted Router/App (its ``handle`` runs with the path stripped)
        self.index = index
        self.prefix = pattern.literal_prefix
        self.match_all = route is None and pattern.source == "/" and not pattern.keys

    def __repr__(self) -> str:
        kind = "route" if self.route else "router" if self.sub is not None else "middleware"
        return f"<Layer {kind} {self.pattern.source!r}>"


class Router:
    """A stack of middleware and routes; also usable as middleware itself.

    Args:
        case_sensitive: ``/Foo`` and ``/foo`` are different paths.
        strict: ``/foo`` and ``/foo/`` are different paths.
        merge_params: route handlers also see the params matched by the parent's mount path.
    """

    def __init__(self, case_sensitive: bool = False, strict: bool = False, merge_params: bool = False) -> None:
        self.case_sensitive = case_sensitive
        self.strict = strict
        self.merge_params = merge_params
        self.stack: list[Layer] = []
        self._plain: dict[str, list[int]] = {}  # normalised plain path -> route layer indices
        self._others: list[int] = []  # every other layer, in order
        self._merged: dict[str, list[int]] = {}  # cache: plain key -> merged candidate list
        self.pattern_attempts = 0  # regex match attempts, for tests and benchmarks

    # -- registration ---------------------------------------------------------------------------

    def _options(self) -> tuple[bool, bool]:
        return self.case_sensitive, self.strict

    def _push(self, layer: Layer) -> None:
        layer.index = len(self.stack)
        self.stack.append(layer)
        self._merged.clear()
        if layer.route is not None and layer.pattern.is_plain:
            self._plain.setdefault(layer.pattern.plain_key(), []).append(layer.index)
        else:
            self._others.append(layer.index)

    def use(self, *args: Any) -> Router:
        """Mount middleware, Routers or Apps on a path prefix (default ``/``); returns self.

        ``use(fn)``, ``use("/api", api_router)``, ``use(["/a", "/b"], fn1, fn2)``,
        ``use(re.compile(...), fn)``. Inside a mounted handler ``req.url``/``req.path`` are
        relative to the mount point and ``req.base_url`` is the matched mount path.
        """
        if not args:
            raise TypeError("use() needs at least one handler")
        path: Any = "/"
        handlers: list[Any] = list(args)
        first = args[0]
        if isinstance(first, (str, re.Pattern)) or (
            isinstance(first, (list, tuple)) and first and all(isinstance(p, (str, re.Pattern)) for p in first)
        ):
            path = first
            handlers = list(args[1:])
        handlers = _flatten_handlers(handlers)
        if not handlers:
            raise TypeError("use() needs at least one handler")
        pattern = compile_path(path, case_sensitive=self.case_sensitive, strict=False, end=False)
        for fn in handlers:
            if isinstance(fn, Router):
                fn._mounted(self, path)
                self._push(Layer(pattern, sub=fn))
            else:
                self._push(Layer(pattern, step=_Step(fn)))
        return self

    def _mounted(self, parent: Router, path: Any) -> None:
        """Called when this router is mounted under ``parent`` (Apps learn their parent)."""

    def route(self, path: PathSpec) -> Route:
        """Create a route for ``path`` and return it (``app.route("/x").get(f).post(g)``)."""
        case_sensitive, strict = self._options()
        pattern = compile_path(path, case_sensitive=case_sensitive, strict=strict, end=True)
        route = Route(path)
        self._push(Layer(pattern, route=route))
        return route

    def _verb(self, method: str | None, path: PathSpec, handlers: tuple[Any, ...]) -> Any:
        if not isinstance(path, (str, re.Pattern, list, tuple)):
            raise TypeError(f"a route path must be a str, re.Pattern or list, not {type(path).__name__}")
        if not handlers:
            def decorator(fn: F) -> F:
                self._verb(method, path, (fn,))
                return fn

            return decorator
        route = self.route(path)
        route._add(method, handlers)
        return self

    @overload
    def get(self, path: PathSpec) -> Callable[[F], F]: ...
    @overload
    def get(self, path: PathSpec, *handlers: Handler) -> Router: ...
    def get(self, path: PathSpec, *handlers: Handler) -> Any:
        """Route GET (and HEAD) requests for ``path``; with no handlers, a decorator."""
        return self._verb("GET", path, handlers)

    @overload
    def post(self, path: PathSpec) -> Callable[[F], F]: ...
    @overload
    def post(self, path: PathSpec, *handlers: Handler) -> Router: ...
    def post(self, path: PathSpec, *handlers: Handler) -> Any:
        """Route POST requests for ``path``; with no handlers, a decorator."""
        return self._verb("POST", path, handlers)

    @overload
    def put(self, path: PathSpec) -> Callable[[F], F]: ...
    @overload
    def put(self, path: PathSpec, *handlers: Handler) -> Router: ...
    def put(self, path: PathSpec, *handlers: Handler) -> Any:
        """Route PUT requests for ``path``; with no handlers, a decorator."""
        return self._verb("PUT", path, handlers)

    @overload
    def patch(self, path: PathSpec) -> Callable[[F], F]: ...
    @overload
    def patch(self, path: PathSpec, *handlers: Handler) -> Router: ...
    def patch(self, path: PathSpec, *handlers: Handler) -> Any:
        """Route PATCH requests for ``path``; with no handlers, a decorator."""
        return self._verb("PATCH", path, handlers)

    @overload
    def delete(self, path: PathSpec) -> Callable[[F], F]: ...
    @overload
    def delete(self, path: PathSpec, *handlers: Handler) -> Router: ...
    def delete(self, path: PathSpec, *handlers: Handler) -> Any:
        """Route DELETE requests for ``path``; with no handlers, a decorator."""
        return self._verb("DELETE", path, handlers)

    @overload
    def head(self, path: PathSpec) -> Callable[[F], F]: ...
    @overload
    def head(self, path: PathSpec, *handlers: Handler) -> Router: ...
    def head(self, path: PathSpec, *handlers: Handler) -> Any:
        """Route HEAD requests for ``path``; with no handlers, a decorator."""
        return self._verb("HEAD", path, handlers)

    @overload
    def options(self, path: PathSpec) -> Callable[[F], F]: ...
    @overload
    def options(self, path: PathSpec, *handlers: Handler) -> Router: ...
    def options(self, path: PathSpec, *handlers: Handler) -> Any:
        """Route OPTIONS requests for ``path``; with no handlers, a decorator."""
        return self._verb("OPTIONS", path, handlers)

    @overload
    def all(self, path: PathSpec) -> Callable[[F], F]: ...
    @overload
    def all(self, path: PathSpec, *handlers: Handler) -> Router: ...
    def all(self, path: PathSpec, *handlers: Handler) -> Any:
        """Route every method for ``path``; with no handlers, a decorator."""
        return self._verb(None, path, handlers)

    # -- dispatch ---------------------------------------------------------------------------------

    def __call__(self, req: Request, res: Response, next_: Callable[..., None]) -> None:
        """Use the router as middleware."""
        self.handle(req, res, next_)

    def handle(self, req: Request, res: Response, done: Callable[..., None]) -> None:
        """Walk the stack for ``req``; ``done(err=None)`` runs when the walk leaves the router."""
        RouterWalk(self, req, res, done).run(None)

    def _candidates(self, path: str) -> list[int]:
        """Indices of the layers that may match ``path``, in registration order."""
        merged = self._merged.get(path)  # keyed by the raw path: no normalising on a hit
        if merged is not None:
            return merged
        key = normalize_plain(path, case_sensitive=self.case_sensitive, strict=self.strict)
        plain = self._plain.get(key)
        if plain is None:
            return self._others
        merged = list(heapq.merge(plain, self._others)) if self._others else plain
        if len(self._merged) >= 4096:  # bounded: request paths come from clients
            self._merged.clear()
        self._merged[path] = merged
        return merged


class RouterWalk:
    """The state of one request's walk through one router; it is also that walk's ``next``."""

    __slots__ = (
        "allowed",
        "base_url",
        "candidates",
        "done",
        "in_call",
        "path",
        "pending",
        "pos",
        "removed",
        "req",
        "res",
        "router",
        "saved_next",
        "saved_params",
        "slash_added",
    )

    def __init__(self, router: Router, req: Request, res: Response, done: Callable[..., None]) -> None:
        self.router = router
        self.req = req
        self.res = res
        self.done = done
        self.pos = 0
        self.path = req.path
        self.candidates = router._candidates(self.path)
        self.in_call = False
        self.pending: Any = _NOTHING
        self.saved_params = req.params
        self.saved_next = req.next
        req.next = self  # Express's req.next: this router's next, restored when the walk leaves
        self.removed = ""  # the mount path stripped from req.url for the current layer
        self.slash_added = False
        self.allowed: list[str] | None = [] if req.method == "OPTIONS" else None
        self.base_url = req.base_url

    def __call__(self, err: Any = None) -> None:
        """``next(err=None)`` for the handler this walk is running."""
        if self.in_call:
            self.pending = err  # the loop in run() picks it up when the handler returns
            return
        self.run(err)

    def _restore_mount(self) -> None:
        # Put the mount path back in front of req.url (keeping any rewrite a handler made).
        removed = self.removed
        if removed:
            req = self.req
            url = req.url
            if self.slash_added:
                url = url[1:]
                self.slash_added = False
            req.url = removed + url
            req.base_url = self.base_url
            self.removed = ""

    def _leave(self, err: Any) -> None:
        req = self.req
        self._restore_mount()
        req.params = self.saved_params
        req.next = self.saved_next
        allowed = self.allowed
        if err is None and allowed and not self.res.headers_sent:
            self._answer_options(allowed)
            return
        self.done(err)

    def _answer_options(self, allowed: list[str]) -> None:
        # Each method once, sorted, as Express 5's router (sendOptionsResponse) lists them.
        self.res.set("Allow", ", ".join(sorted(set(allowed)))).status(204).end()

    def run(self, err: Any) -> None:
        router = self.router
        req = self.req
        res = self.res
        stack = router.stack
        while True:
            if self.removed:
                self._restore_mount()
            if err is not None:
                if err == "router":
                    self._leave(None)
                    return
                if err == "route":
                    err = None
            path = req.path
            if path is not self.path and path != self.path:
                # A middleware rewrote req.url: look the candidates up again from here on.
                self.path = path
                start = stack[self.candidates[self.pos - 1]].index + 1 if self.pos else 0
                self.candidates = [i for i in router._candidates(self.path) if i >= start]
                self.pos = 0
            try:
                layer, matched, params = self._next_match(err)
            except HTTPError as exc:
                err = exc
                continue
            if layer is None:
                self._leave(err)
                return
            route = layer.route
            if route is not None:
                if router.merge_params and self.saved_params:
                    params = {**self.saved_params, **params}
                req.params = params
                req.route = route
                single = route.single
                if single is not None:
                    try:
                        result = single.fn(req, res)
                    except Exception as exc:
                        err = exc
                        continue
                    if result is not None:
                        if type(result) is CoroutineType:
                            outcome = _await_result(self, result, (req, res))
                            if outcome is _NOTHING:
                                return
                            err = outcome
                            continue
                        _returned_a_value(single.fn, result, res)
                    return
                outcome = _RouteWalk(route, req, res, self).run()
                if outcome is _NOTHING:
                    return  # the route owns the request now
                err = outcome
                continue
            # middleware or mounted router: strip the mount path
            if matched:
                rest = req.url[len(matched):]
                if rest[:1] != "/":
                    rest = "/" + rest
                    self.slash_added = True
                req.url = rest
                req.base_url = self.base_url + matched
                self.removed = matched
            if params or not router.merge_params:
                req.params = {**self.saved_params, **params} if router.merge_params else params
            sub = layer.sub
            if sub is not None:
                outcome = _call(self, sub.handle, (req, res, self), err, _CALL_SUB)
            else:
                step = layer.step
                if step is None:  # pragma: no cover - every non-route layer has one
                    continue
                outcome = _call(self, step.fn, _args(step.role, err, req, res, self), err, step.role,
                                step.is_async)
            if outcome is _NOTHING:
                return
            err = outcome

    def _next_match(self, err: Any) -> tuple[Layer | None, str, dict[str, Any]]:
        """Advance to the next layer that matches the path, method and error state; returns it
        with the matched path text and the params."""
        router = self.router
        stack = router.stack
        candidates = self.candidates
        path = self.path
        method = self.req.method
        key_path = path if router.case_sensitive else path.lower()
        n = len(candidates)
        pos = self.pos
        while pos < n:
            layer = stack[candidates[pos]]
            pos += 1
            route = layer.route
            if route is not None:
                if err is not None:
                    continue  # routes do not handle errors
                if layer.pattern.is_plain:
                    # Found through the plain-path dictionary: a match by construction.
                    if not route.handles_method(method):
                        if self.allowed is not None:
                            self.allowed.extend(route.allowed_methods())
                        continue
                    self.pos = pos
                    return layer, path, {}
                if layer.prefix and not key_path.startswith(layer.prefix):
                    continue
                router.pattern_attempts += 1
                match = self._match(layer, path, pos)
                if match is None:
                    continue
                if not route.handles_method(method):
                    if self.allowed is not None:
                        self.allowed.extend(route.allowed_methods())
                    continue
                self.pos = pos
                return layer, match.path, match.params
            step = layer.step
            if step is None:
                if err is not None:
                    continue  # a mounted router takes (req, res, next): errors skip it
            elif (err is None) == (step.role == ERROR) or (
                step.needs_body and not announces_body(self.req)
            ):
                continue
            if layer.match_all:
                self.pos = pos
                return layer, "", {}
            if layer.prefix and not key_path.startswith(layer.prefix.rstrip("/")):
                continue
            router.pattern_attempts += 1
            match = self._match(layer, path, pos)
            if match is None:
                continue
            self.pos = pos
            return layer, match.path, match.params
        self.pos = pos
        return None, "", {}


    def _match(self, layer: Layer, path: str, pos: int) -> PathMatch | None:
        try:
            return layer.pattern.match(path)
        except HTTPError:
            self.pos = pos  # a malformed escape in a param: go on past this layer with a 400
            raise


class _RouteWalk:
    """The walk through one route's handlers; it is also their ``next``."""

    __slots__ = ("in_call", "method", "outer", "pending", "pos", "req", "res", "route")

    def __init__(self, route: Route, req: Request, res: Response, outer: RouterWalk) -> None:
        self.route = route
        self.req = req
        self.res = res
        self.outer = outer
        self.pos = 0
        self.in_call = False
        self.pending: Any = _NOTHING
        method = req.method
        if method == "HEAD" and "HEAD" not in route.methods:
            method = "GET"
        self.method = method

    def __call__(self, err: Any = None) -> None:
        if self.in_call:
            self.pending = err
            return
        outcome = self.run(err)
        if outcome is not _NOTHING:
            self.outer(outcome)

    def run(self, err: Any = None) -> Any:
        """Run handlers until one keeps the request; returns ``_NOTHING`` then, else what to pass
        to the router's ``next`` (None, an error, or "router")."""
        stack = self.route.stack
        method = self.method
        req = self.req
        res = self.res
        while True:
            if err == "route":
                return None
            if err == "router":
                return "router"
            step = None
            while self.pos < len(stack):
                candidate = stack[self.pos]
                self.pos += 1
                if candidate.method is not None and candidate.method != method:
                    continue
                if (err is None) == (candidate.role == ERROR):
                    continue
                step = candidate
                break
            if step is None:
                return err
            outcome = _call(self, step.fn, _args(step.role, err, req, res, self), err, step.role, step.is_async)
            if outcome is _NOTHING:
                return _NOTHING
            err = outcome


_NOTHING: Any = object()  # "the handler kept the request" (it answered or will call next later)
_CALL_SUB = 0


def _args(role: int, err: Any, req: Request, res: Response, walk: Any) -> tuple[Any, ...]:
    if role == HANDLER:
        return (req, res)
    if role == MIDDLEWARE:
        return (req, res, walk)
    return (err, req, res, walk)


def announces_body(req: Request) -> bool:
    """Whether the request has a body, or announced one (an empty ``Content-Length: 0`` too):
    type-is's ``hasBody``."""
    if req.raw_body:
        return True
    headers = req.headers.lowered  # names are lowercased already: skip Headers.__contains__
    return "transfer-encoding" in headers or "content-length" in headers


def _call(walk: Any, fn: Callable[..., Any], args: tuple[Any, ...], err: Any, role: int,
          is_async: bool = False) -> Any:
    """Call a handler; return what the walk does next: ``_NOTHING`` (the handler kept the
    request) or what ``next`` was called with during the call (or the exception raised).

    A coroutine handler runs on the reactor up to its first suspension inside this call; if it
    fails later, its exception goes to ``next``.
    """
    walk.in_call = True
    walk.pending = _NOTHING
    try:
        result = fn(*args)
        if result is not None:
            if is_async or type(result) is CoroutineType:
                task = _start_task(result, args)
                if task.done():
                    exc = task.exception()
                    if exc is None:
                        _returned_a_value(fn, task.result(), args[-1] if role == HANDLER else None)
                    elif not _stopped_streaming(exc, walk.res, fn):
                        raise exc
                else:
                    task.add_done_callback(lambda t: _async_done(walk, t, fn, role == HANDLER))
            elif walk.pending is _NOTHING and role != _CALL_SUB:
                _returned_a_value(fn, result, args[-1] if role == HANDLER else args[-2])
    except Exception as exc:
        walk.in_call = False
        walk.pending = _NOTHING
        return exc
    walk.in_call = False
    pending = walk.pending
    walk.pending = _NOTHING
    return pending


def _await_result(walk: Any, coro: Coroutine[Any, Any, Any], args: tuple[Any, ...]) -> Any:
    """Drive a coroutine that a plain function returned; like ``_call`` for ``async def``."""
    try:
        task = _start_task(coro, args)
        if task.done():
            exc = task.exception()
            if exc is not None:
                return _NOTHING if _stopped_streaming(exc, walk.res, None) else exc
        else:
            task.add_done_callback(lambda t: _async_done(walk, t, None, False))
    except Exception as exc:
        return exc
    return _NOTHING


def _start_task(coro: Coroutine[Any, Any, Any], args: tuple[Any, ...]) -> Any:
    from evserve.tasks import current_reactor, run_coroutine

    req = args[-3] if len(args) >= 3 else args[0]
    reactor = getattr(req, "reactor", None)
    return run_coroutine(coro, reactor if reactor is not None else current_reactor())


def _async_done(walk: Any, task: Any, fn: Callable[..., Any] | None, is_handler: bool) -> None:
    """A handler's coroutine finished after suspending: its error goes to ``next``."""
    exc = task.exception()
    if exc is None:
        if is_handler and fn is not None:
            _returned_a_value(fn, task.result(), walk.res)
        return
    if not _stopped_streaming(exc, walk.res, fn):
        walk(exc)


def _stopped_streaming(exc: BaseException, res: Response, fn: Any) -> bool:
    """Whether ``exc`` is ``await res.drain()`` refusing on a response that takes no more body
    (client gone, HEAD, 204, 304): how a streaming loop is meant to end, not the handler's
    error. Logged at DEBUG then."""
    if isinstance(exc, ResponseStateError) and res.silenced:
        log.debug("%r stopped streaming: %s", fn, exc)
        return True
    return False


# What a handler returns when it meant it as the response (Flask's habit): evserve sends only
# what is passed to res.send/res.json/..., so returning one of these is a mistake worth logging.
_BODY_LIKE = (dict, list, tuple, str, bytes, bytearray, int, float, GeneratorType)


def _returned_a_value(fn: Callable[..., Any], result: Any, res: Response | None) -> None:
    """Log a handler that returned a response-like value without answering or calling next.

    A request left that way would hang until ``handler_timeout`` (or forever): the user must see
    why. Values that mean "I answer later" (timer handles, futures, threads) are not logged.
    """
    if result is None or res is None or res.headers_sent:
        return
    if result is res or isinstance(result, _BODY_LIKE):  # res: a chain like res.status(201)
        name = getattr(fn, "__qualname__", None) or repr(fn)
        log.error(
            "handler %s returned %.200r without answering: evserve does not send return values; "
            "call res.send(...), res.json(...) or next() instead (%s %s is still unanswered)",
            name, result, res.req.method, res.req.original_url,
        )
