"""The application: a Router with settings, views, the final handler, and ``listen``."""

from __future__ import annotations

import contextlib
import difflib
import html
import logging
import os
import string
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from evserve.config import Config
from evserve.errors import HTTPError
from evserve.express import request_pair
from evserve.request import origin_form, trust_predicate
from evserve.router import Router, RouterWalk
from evserve.server import DEFAULT_HOST, DEFAULT_PORT
from evserve.status import reason_phrase

if TYPE_CHECKING:
    from evserve.exchange import Exchange
    from evserve.request import Request
    from evserve.response import Response
    from evserve.server import Server

__all__ = ["App", "template_engine"]

log = logging.getLogger("evserve")

Engine = Callable[[str, Mapping[str, Any]], str]

DEFAULT_SETTINGS: dict[str, Any] = {
    "case_sensitive": False,
    "strict": False,
    "trust_proxy": False,
    "cookie_secret": None,
    "views": "views",
    "query_parser": "extended",
    "etag": True,
    "json_spaces": None,
    "env": "production",
}

_SERVER_SETTINGS = frozenset(name for name, *_ in Config.describe())


def template_engine(path: str, context: Mapping[str, Any]) -> str:
    """The built-in ``.html`` engine: ``string.Template`` with every value HTML-escaped.

    ``$name`` and ``${name}`` are replaced; unknown placeholders are left as they are.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    escaped = {k: html.escape(str(v), quote=True) for k, v in context.items()}
    return string.Template(text).safe_substitute(escaped)


class App(Router):
    """An Express-style application: a ``Router`` plus settings, views and a server.

    Settings: ``case_sensitive=False``, ``strict=False``, ``trust_proxy=False`` (``True``, a hop
    count, or addresses/CIDRs), ``cookie_secret=None``, ``views="views"``,
    ``query_parser="extended"`` (or ``"simple"``, ``False``, or a callable), ``etag=True``,
    ``json_spaces=None``, ``env="production"``. Any other keyword raises ``TypeError`` (a
    misspelt setting must not be ignored); the application's own settings go through
    ``set(name, value)``. A sub-app mounted with ``use`` inherits the settings it was not given,
    also when its parent is itself mounted later (apps may be assembled bottom-up).
    """

    def __init__(self, **settings: Any) -> None:
        """Build an app with the given settings.

        Raises:
            TypeError: a keyword that is not an App setting; the message lists the known ones,
                or says where a server setting (``keepalive_timeout``, ``workers``...) belongs.
        """
        for name in settings:
            if name not in DEFAULT_SETTINGS:
                raise TypeError(_unknown_setting(name))
        if "trust_proxy" in settings:
            trust_predicate(settings["trust_proxy"])  # a bad address fails here, not per request
        merged = {**DEFAULT_SETTINGS, **settings}
        super().__init__(case_sensitive=bool(merged["case_sensitive"]), strict=bool(merged["strict"]))
        self.settings: dict[str, Any] = merged
        self._explicit = set(settings)
        self.locals: dict[str, Any] = {}
        self.parent: App | None = None
        self.mountpath: Any = "/"
        self._engines: dict[str, Engine] = {}  # registered here; see _engine_for
        self._children: list[App] = []  # apps mounted on this one, to pass settings down
        self.server: Server | None = None

    # -- mounting ---------------------------------------------------------------------------------

    def _mounted(self, parent: Router, path: Any) -> None:
        self.mountpath = path
        if isinstance(parent, App):
            self.parent = parent
            if self not in parent._children:
                parent._children.append(self)
            self._inherit(parent.settings, set())

    def _inherit(self, settings: Mapping[str, Any], seen: set[int]) -> None:
        """Take the settings not given to this app from ``settings``, and pass them down."""
        if id(self) in seen:  # an app mounted inside itself: stop
            return
        seen.add(id(self))
        for key, value in settings.items():
            if key not in self._explicit:
                self.settings[key] = value
        for child in self._children:
            child._inherit(self.settings, seen)

    def set(self, name: str, value: Any) -> App:
        """Set the setting ``name`` (as Express's ``app.set``) and return the app.

        Any name is accepted (the application's own settings live here too); mounted sub-apps
        that were not given ``name`` themselves inherit the new value. Express's spellings of
        evserve's settings (``"trust proxy"``, ``"json spaces"``, ``"case sensitive routing"``,
        ``"strict routing"``, ``"query parser"``) set them. ``trust_proxy`` is checked here.

        Raises:
            TypeError, ValueError: ``name`` is not a str, or a ``trust_proxy`` that cannot work.
        """
        if not isinstance(name, str):
            raise TypeError(f"a setting name is a str, not {name!r}")
        name = _EXPRESS_NAMES.get(name, name)
        if name == "trust_proxy":
            trust_predicate(value)
        self.settings[name] = value
        self._explicit.add(name)
        for child in self._children:
            child._inherit(self.settings, {id(self)})
        return self

    def attach_server(self, server: Server) -> None:
        """Called by the ``Server`` that serves this app: ``app.server`` is it from then on."""
        self.server = server

    # -- handling ---------------------------------------------------------------------------------

    def handle_exchange(self, exchange: Exchange) -> None:
        """Serve one request of a connection (the app as the connection's handler)."""
        req, res = request_pair(exchange)
        req.app = self
        RouterWalk(self, req, res, _Final(self, req, res)).run(None)

    def refuse_exchange(self, exchange: Exchange, status: int, reason: str) -> None:
        """Render a request the server refused after its head (see ``render_protocol_error``)."""
        req, res = request_pair(exchange)
        self.render_protocol_error(req, res, status, reason)

    def __call__(self, req: Request, res: Response, next_: Callable[..., None] | None = None) -> None:
        """Handle a request: ``app(req, res)`` at the top, ``app(req, res, next)`` when mounted."""
        if next_ is None:
            req.app = self
            RouterWalk(self, req, res, _Final(self, req, res)).run(None)
        else:
            self.handle(req, res, next_)

    def render_protocol_error(self, req: Request, res: Response, status: int, reason: str) -> None:
        """Answer a request the server refused after reading its head (413 body too large,
        408 body timeout, ...): the error goes through this app's error middleware as an
        ``HTTPError(status, reason)``, then to the default error page."""
        req.app = self
        refusal = HTTPError(status, reason)
        # Middleware that watches every response (logger) sees this one too, although the walk
        # below runs only error middleware: its ``on_refusal(req, res)`` hook is called first.
        _call_refusal_hooks(self, req.path, req, res)
        RouterWalk(self, req, res, _Final(self, req, res, refusal)).run(refusal)

    def handle(self, req: Request, res: Response, done: Callable[..., None]) -> None:
        """Walk this app's stack; ``req.app`` is this app inside and restored when leaving."""
        previous = req.app
        if previous is self:
            super().handle(req, res, done)
            return
        req.app = self

        def leave(err: Any = None) -> None:
            req.app = previous
            done(err)

        super().handle(req, res, leave)

    # -- views ------------------------------------------------------------------------------------

    def engine(self, ext: str, fn: Engine) -> App:
        """Register ``fn(path, context) -> str`` to render views with extension ``ext``
        (``"html"`` and ``".html"`` alike); mounted sub-apps use it too unless they register
        their own."""
        if not callable(fn):
            raise TypeError("an engine must be callable as fn(path, context) -> str")
        key = ext if ext.startswith(".") else "." + ext
        self._engines[key.lower()] = fn
        return self

    def render(self, view: str, context: Mapping[str, Any] | None = None) -> str:
        """Render ``view`` with the engine registered for its extension and return the text.

        The view is looked up under the ``views`` setting (a folder, or a list of folders tried
        in order), ``.html`` being added when the name has no extension; as in Express,
        ``<view>/index.<ext>`` is tried when ``<view>.<ext>`` is not a file.

        Raises:
            FileNotFoundError: no such view. ValueError: the view name leaves the views folder,
            or no engine is registered for its extension.
        """
        setting = self.settings.get("views") or "views"
        roots = [setting] if isinstance(setting, (str, os.PathLike)) else list(setting)
        stem, ext = os.path.splitext(view)
        name = view if ext else view + ".html"
        ext = ext or ".html"
        engine = self._engine_for(ext.lower())
        if engine is None:
            raise ValueError(f"no engine registered for {ext!r} views (use app.engine)")
        for folder in roots:
            root = os.path.abspath(os.fspath(folder))
            for candidate in (name, os.path.join(stem, "index" + ext)):
                path = os.path.abspath(os.path.join(root, candidate))
                if os.path.commonpath([root, path]) != root:
                    raise ValueError(f"view {view!r} is outside the views folder")
                if os.path.isfile(path):
                    return engine(path, {**self.locals, **(context or {})})
        shown = ", ".join(os.path.abspath(os.fspath(folder)) for folder in roots)
        raise FileNotFoundError(f"view {view!r} not found in {shown}")

    def _engine_for(self, ext: str) -> Engine | None:
        """The engine for ``ext``: this app's, else its parents' (as Express sub-apps inherit
        engines), else the built-in one for ``.html``."""
        app: App | None = self
        while app is not None:
            engine = app._engines.get(ext)
            if engine is not None:
                return engine
            app = app.parent
        return template_engine if ext == ".html" else None

    # -- serving ----------------------------------------------------------------------------------

    def listen(self, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, **config: Any) -> None:
        """Serve this app until SIGINT/SIGTERM, then shut down gracefully (blocks).

        ``serve(self, host, port, **config)``: it logs the URL (on stderr when logging is not
        configured), a second Ctrl-C stops at once, and an address that cannot be listened on
        raises ``SystemExit`` with a one-line message instead of a traceback.

        Raises:
            TypeError: an unknown server setting (an App setting given here says so).
            ValueError: a setting or the port out of range.
            SystemExit: the address cannot be listened on (see ``evserve.server.serve``).
        """
        from evserve.server import serve

        _check_server_settings(config, "listen")
        serve(self, host, port, **config)

    @contextlib.contextmanager
    def run_in_thread(self, host: str = DEFAULT_HOST, port: int = 0, **config: Any) -> Iterator[Server]:
        """A running server of this app on a background reactor thread, for a ``with`` block.

        Raises:
            TypeError: an unknown server setting, or ``workers`` other than 1.
            OSError: the address cannot be listened on.
        """
        from evserve.server import run_in_thread

        _check_server_settings(config, "run_in_thread")
        with run_in_thread(self, host, port, **config) as server:
            yield server

    def __repr__(self) -> str:
        return f"<App layers={len(self.stack)}>"


def _unknown_setting(name: str) -> str:
    """The message of the ``TypeError`` for ``App(name=...)``."""
    if name in _SERVER_SETTINGS:
        return (f"{name!r} is a server setting, not an App setting: pass it to app.listen(), "
                f"serve(), app.run_in_thread() or the command line (--{name.replace('_', '-')})")
    close = difflib.get_close_matches(name, DEFAULT_SETTINGS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"unknown App setting {name!r}{hint}; App settings are {', '.join(DEFAULT_SETTINGS)}; "
            "set the application's own with app.set(name, value)")


def _check_server_settings(config: Mapping[str, Any], entry: str) -> None:
    """Refuse an App setting given to a server entry point, saying where it belongs."""
    for name in config:
        if name in DEFAULT_SETTINGS and name not in _SERVER_SETTINGS:
            raise TypeError(f"{name!r} is an App setting, not a server setting: pass it to "
                            f"App({name}=...), not {entry}()")


# Express's app.set names for settings evserve spells in snake_case.
_EXPRESS_NAMES = {
    "trust proxy": "trust_proxy",
    "json spaces": "json_spaces",
    "case sensitive routing": "case_sensitive",
    "strict routing": "strict",
    "query parser": "query_parser",
}


def _call_refusal_hooks(router: Router, path: str, req: Request, res: Response) -> None:
    """Call the ``on_refusal`` hook of every middleware whose mount matches ``path``, in stack
    order, going into mounted routers and apps with the mount path stripped."""
    for layer in router.stack:
        if layer.route is not None:
            continue
        found = None if layer.match_all else layer.pattern.match(path)
        if not layer.match_all and found is None:
            continue
        if layer.sub is not None:
            rest = path[len(found.path):] if found is not None else path
            _call_refusal_hooks(layer.sub, rest if rest[:1] == "/" else "/" + rest, req, res)
            continue
        hook = getattr(layer.step.fn, "on_refusal", None) if layer.step is not None else None
        if hook is not None:
            try:
                hook(req, res)
            except Exception:
                log.exception("error in the on_refusal hook of %r", hook)


class _Final:
    """The end of the walk at the top-level app: 404, 204 OPTIONS, or the error page."""

    __slots__ = ("app", "refusal", "req", "res")

    def __init__(self, app: App, req: Request, res: Response, refusal: HTTPError | None = None) -> None:
        self.app = app
        self.req = req
        self.res = res
        # The server's own refusal (413, 501, ...) is the client's fault, not a server error:
        # when it reaches the end unchanged it is logged at DEBUG like any 4xx.
        self.refusal = refusal

    def __call__(self, err: Any = None) -> None:
        req = self.req
        res = self.res
        if err == "router" or err == "route":
            err = None
        if err is None:
            if res.headers_sent:
                if not res.finished:
                    res.end()
                return
            path = origin_form(req.original_url).split("?", 1)[0]
            _clear_content_headers(res)
            _error_page(res, 404, f"Cannot {req.method} {path}")
            return
        found = getattr(err, "status", None)
        status = 500
        from_error = False
        if isinstance(found, int) and not isinstance(found, bool) and 400 <= found <= 599:
            status = found
            from_error = True
        if status >= 500 and err is not self.refusal:
            log.error("error on %s %s", req.method, req.original_url, exc_info=_exc_info(err))
        else:
            log.debug("%d on %s %s: %s", status, req.method, req.original_url, err)
        if res.finished:
            return
        if res.headers_sent:
            conn = req.connection
            if conn is not None:
                conn.abort()  # half a response is on the wire: the only honest end is to cut it
            return
        _clear_content_headers(res)
        if isinstance(err, HTTPError):
            message = err.message
            extra: Any = err.current_lines()
        else:
            message = getattr(err, "message", None) or str(err) or reason_phrase(status)
            extra = getattr(err, "headers", None)
            extra = extra.items() if isinstance(extra, Mapping) else ()
        if not from_error:
            extra = ()  # like Express's finalhandler: an error's headers only with its own status
        seen: set[str] = set()
        for name, value in extra:
            try:
                key = str(name)
                if key.lower() in seen:
                    res.append(key, str(value))
                else:
                    res.set(key, str(value))
                    seen.add(key.lower())
            except Exception:
                # Never let a bad header cost the client its error page (this may run late,
                # from a timer, with nobody above to turn an exception into a response).
                log.warning("error header %r dropped: invalid name or value", name)
        _error_page(res, status, str(message) if status < 500 else reason_phrase(status))


def _exc_info(err: Any) -> Any:
    if isinstance(err, BaseException):
        return (type(err), err, err.__traceback__)
    return None


def _clear_content_headers(res: Response) -> None:
    """Drop what described the content the handler meant to send (the error page replaces it)."""
    for name in ("Content-Encoding", "Content-Language", "Content-Range", "Content-Disposition", "ETag",
                 "Last-Modified"):
        res.remove(name)


def _error_page(res: Response, status: int, text: str) -> None:
    res.status_code = int(status)
    res.set("Content-Type", "text/plain; charset=utf-8")
    res.set("X-Content-Type-Options", "nosniff")
    res.send(text)
