"""The response object handed to handlers: chainable Express-style helpers (SPEC section 4)."""

from __future__ import annotations

import html
import inspect
import json as _json
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from json.encoder import c_encode_basestring as _c_encode_basestring  # type: ignore[attr-defined]
from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from evserve.errors import ResponseStateError
from evserve.exchange import ResponseState
from evserve.status import reason_phrase
from evserve.writer import body_allowed, validate_header, validate_reason

if TYPE_CHECKING:
    from evserve.exchange import Exchange
    from evserve.request import Request

__all__ = ["Response"]

HeaderValue = str | int | float | list[Any] | tuple[Any, ...]

# Response states, as the exchange's (``ResponseState``): the head is not sent; the head is sent
# and the body streams; finished (sent whole, ended, or given up).
_FRESH = ResponseState.FRESH
_STREAMING = ResponseState.STREAMING
_DONE = ResponseState.DONE

_CHARSET = re.compile(r";\s*charset\s*=", re.IGNORECASE)
_CHARSET_PARAM = re.compile(r";\s*charset\s*=\s*(?:\"[^\"]*\"|[^;]*)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The writer decides these (Date is added only when the application set none, as Node does).
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
# Characters encodeurl leaves alone: the URI reserved and unreserved sets, and '%'.
_URL_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    "-._~:/?#[]@!$&'()*+,;=%"
)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_JSON_DUMPS = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


# res.type() argument -> the validated Content-Type value it gives (bounded; per-type work once).
_TYPE_CACHE: dict[str, str] = {}


def _json_default(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _compact_json(obj: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)``, without
    the Python-level layers of ``JSONEncoder.encode`` (measured at half the cost of a small
    response): the C encoder is called directly when the interpreter has it."""
    if _c_make_encoder is None or _c_encode_basestring is None:  # pragma: no cover - PyPy etc.
        return _JSON_DUMPS(obj)
    if type(obj) is str:
        return _c_encode_basestring(obj)  # type: ignore[no-any-return]
    encoder = _c_make_encoder({}, _json_default, _c_encode_basestring, None, ":", ",", False, False, False)
    return "".join(encoder(obj, 0))


def _accelerator_agrees() -> bool:
    """Whether the C encoder, called as ``_compact_json`` calls it, writes what ``json`` does:
    it is a private interface, so a Python that changed it falls back instead of failing."""
    sample = {"a": [1, 2.5, None, True], "é\u2028": "\x00\"q\"", "n": {"x": -0.0}}
    try:
        return _compact_json(sample) == _JSON_DUMPS(sample)
    except Exception:
        return False


if not _accelerator_agrees():  # pragma: no cover - a Python whose private encoder changed
    _c_make_encoder = _c_encode_basestring = None


class Response:
    """The response to one request; methods that configure it return ``self`` for chaining.

    A response is sent exactly once: by ``send``/``json``/``send_status``/``redirect``/``end``
    (whole), or by ``write`` calls followed by ``end`` (streamed). A second send raises
    ``ResponseStateError``, except once the client has gone away (``req.aborted``): sending,
    setting headers or status are then silently ignored, so a slow handler whose client left
    does not fail. Header names and values, cookies, Location and the status are checked
    when set: a control character raises ``ValueError`` before anything reaches the wire.
    """

    __slots__ = (
        "__dict__",
        "_drain_waiters",
        "_exchange",
        "_finish_callbacks",
        "_headers",
        "_quiet",
        "_reason",
        "_state",
        "locals",
        "req",
        "status_code",
    )

    def __init__(self, exchange: Exchange | None, req: Request) -> None:
        self._exchange = exchange
        self.req = req
        self.status_code = 200
        self._reason: str | None = None
        self._headers: dict[str, tuple[str, str | list[str]]] = {}
        self._state = _FRESH
        self._quiet = False  # ended for a reason of the connection's: later sends are ignored
        if exchange is not None:
            exchange.listener = self
        self._finish_callbacks: list[Callable[[], object]] | None = None
        self._drain_waiters: list[Callable[[], object]] | None = None
        self.locals: dict[str, Any] = {}

    # -- state ------------------------------------------------------------------------------------

    @property
    def headers_sent(self) -> bool:
        """Whether the status line and headers have been handed to the connection."""
        return self._state is not _FRESH

    @property
    def finished(self) -> bool:
        """Whether the whole response has been handed to the connection (or abandoned)."""
        return self._state is _DONE

    @property
    def silenced(self) -> bool:
        """Whether the response ended for a reason that is not the handler's: the client went
        away, the response could carry no body (HEAD, 204, 304: its head ended it), or the
        server answered in the handler's place (a timeout). Sends are then ignored, not
        refused with ``ResponseStateError``."""
        return self._state is _DONE and (self._quiet or self.req.aborted)

    @property
    def app(self) -> Any:
        """The ``App`` handling the request (``None`` outside an App)."""
        return self.req.app

    def _check_fresh(self, what: str) -> None:
        if self._state is not _FRESH and not self._quiet and not self.req.aborted:
            raise ResponseStateError(f"cannot {what}: the response was already sent")

    def _refuse(self, what: str) -> None:
        """A send on a response that is no longer fresh: ignored when the client went away
        (like a write to a closed socket in Node), when the response could carry no body (its
        head ended it: HEAD, 204, 304) or when the server answered in its place (a timeout),
        else a ``ResponseStateError``."""
        if not self._quiet and not self.req.aborted:
            raise ResponseStateError(f"cannot {what}: the response was already sent")

    # -- status and headers -----------------------------------------------------------------------

    def status(self, code: int) -> Response:
        """Set the status code; returns ``self``.

        Raises:
            TypeError: ``code`` is not an int.
            ValueError: ``code`` is outside 100-999.
        """
        if not isinstance(code, int) or isinstance(code, bool):
            raise TypeError(f"status code must be an int, not {type(code).__name__}")
        if not 100 <= code <= 999:
            raise ValueError(f"status code {code} is outside 100-999")
        self._check_fresh("set the status")
        self.status_code = int(code)  # an IntEnum such as http.HTTPStatus.CREATED becomes 201
        return self

    def reason(self, phrase: str) -> Response:
        """Set a custom reason phrase for the status line; returns ``self``."""
        validate_reason(phrase)
        self._reason = phrase
        return self

    def set(self, name: str | Mapping[str, HeaderValue], value: HeaderValue | None = None) -> Response:
        """Set a header (replacing it), or several from a mapping; returns ``self``.

        Values are ``str()``-ed; a list gives one header line per item. A Content-Type without a
        charset gets ``; charset=utf-8`` when it is text, like Express.
        """
        if isinstance(name, Mapping):
            for key, val in name.items():
                self.set(key, val)
            return self
        if value is None:
            raise TypeError(f"res.set({name!r}) needs a value")
        key = name.lower()
        if key == "content-type":
            if isinstance(value, (list, tuple)):
                raise TypeError("Content-Type cannot be set to a list")
            text = str(value)
            if _CHARSET.search(text) is None:
                from evserve.negotiation import content_type_for

                text = content_type_for(text) if "/" in text else text
            value = text
        self._store(name, key, value, replace=True)
        return self

    header = set

    def append(self, name: str, value: HeaderValue) -> Response:
        """Add value(s) to a header, keeping what is there; returns ``self``."""
        self._store(name, name.lower(), value, replace=False)
        return self

    def _store(self, name: str, key: str, value: HeaderValue, *, replace: bool) -> None:
        self._check_fresh("set a header")
        if isinstance(value, (list, tuple)):
            values = [str(v) for v in value]
            for v in values:
                validate_header(name, v)
        else:
            text = str(value)
            validate_header(name, text)
            values = [text]
        old = None if replace else self._headers.get(key)
        if old is not None:
            prior = old[1] if isinstance(old[1], list) else [old[1]]
            self._headers[key] = (old[0], prior + values)
        elif len(values) == 1 and not isinstance(value, (list, tuple)):
            self._headers[key] = (name, values[0])
        else:
            self._headers[key] = (name, values)

    def get(self, name: str) -> str | list[str] | None:
        """Return the header ``name`` as set (a list for multi-line headers), or ``None``."""
        entry = self._headers.get(name.lower())
        return None if entry is None else entry[1]

    def has(self, name: str) -> bool:
        """Whether the header ``name`` is set."""
        return name.lower() in self._headers

    def remove(self, name: str) -> Response:
        """Remove the header ``name``; returns ``self``."""
        self._check_fresh("remove a header")
        self._headers.pop(name.lower(), None)
        return self

    def header_items(self) -> list[tuple[str, str]]:
        """The headers set so far as ``(name, value)`` lines."""
        return self._lines()

    def type(self, type_or_ext: str) -> Response:
        """Set Content-Type from a MIME type or an extension (``"json"``, ``".html"``)."""
        value = _TYPE_CACHE.get(type_or_ext)
        if value is None or self._state is not _FRESH:
            from evserve.negotiation import content_type_for

            value = content_type_for(type_or_ext)
            self.set("Content-Type", value)
            if len(_TYPE_CACHE) < 256:
                _TYPE_CACHE[type_or_ext] = self._headers["content-type"][1]  # type: ignore[assignment]
            return self
        self._headers["content-type"] = ("Content-Type", value)  # validated when it was cached
        return self

    content_type = type

    def vary(self, field: str | list[str] | tuple[str, ...]) -> Response:
        """Add ``field`` to the Vary header unless already there; returns ``self``."""
        fields = field if isinstance(field, (list, tuple)) else [f.strip() for f in field.split(",")]
        current = self.get("Vary")
        existing = ", ".join(current) if isinstance(current, list) else (current or "")
        names = [v.strip() for v in existing.split(",") if v.strip()]
        if "*" in names:
            return self
        lower = {n.lower() for n in names}
        for f in fields:
            if not f:
                continue
            if f == "*":
                names = ["*"]
                break
            if f.lower() not in lower:
                names.append(f)
                lower.add(f.lower())
        if names:
            self.set("Vary", ", ".join(names))
        return self

    def links(self, links: Mapping[str, str | list[str] | tuple[str, ...]]) -> Response:
        """Add a Link header from ``{rel: url}``; returns ``self``.

        A list of URLs gives one link per URL with the same ``rel``, as in Express 5.1
        (``{"pages": [a, b]}`` -> ``<a>; rel="pages", <b>; rel="pages"``).
        """
        value = ", ".join(
            f"<{url}>; rel=\"{rel}\""
            for rel, urls in links.items()
            for url in (urls if isinstance(urls, (list, tuple)) else (urls,))
        )
        current = self.get("Link")
        if current:
            value = (", ".join(current) if isinstance(current, list) else current) + ", " + value
        return self.set("Link", value)

    def location(self, url: str) -> Response:
        """Set Location; ``"back"`` means the Referer when it is same-origin (a relative
        reference, or the request's own scheme, host and port), else ``"/"``: a redirect never
        sends the user to a site named by a header another site can set. Unsafe characters are
        percent-encoded and existing escapes left alone.

        Raises:
            ValueError: ``url`` holds a control character (CR, LF, NUL, HTAB, DEL...).
        """
        if url == "back":
            # The client's own header: whatever it holds is percent-encoded, never refused.
            url = _same_origin_referer(self.req)
        elif _CONTROL.search(url) is not None:
            raise ValueError(f"control character in Location {url!r}")
        return self.set("Location", encode_url(url))

    def attachment(self, filename: str | None = None) -> Response:
        """Set Content-Disposition to attachment (with ``filename``, whose extension sets the type)."""
        from evserve.disposition import content_disposition

        if filename:
            self.type(_extension(filename) or "bin")
        return self.set("Content-Disposition", content_disposition(filename))

    # -- cookies ------------------------------------------------------------------------------------

    def cookie(
        self,
        name: str,
        value: Any,
        *,
        max_age: float | None = None,
        expires: datetime | float | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        http_only: bool = False,
        same_site: str | bool | None = None,
        signed: bool = False,
        partitioned: bool = False,
    ) -> Response:
        """Add a Set-Cookie header; returns ``self``.

        ``max_age`` is seconds; ``expires`` a ``datetime`` or epoch seconds. ``path=None`` means
        ``"/"`` as in Express (``""`` leaves Path out). A dict or list value is stored as ``j:`` +
        JSON, as Express does. ``signed=True`` signs the value with ``App(cookie_secret=...)``.

        Raises:
            ValueError: a control character in the value, a name that is not a token, a bad
                attribute, or ``signed=True`` without a ``cookie_secret``.
        """
        from evserve.cookies import serialize_cookie, sign_value

        text = "j:" + _JSON_DUMPS(value) if isinstance(value, (dict, list)) else str(value)
        if _CONTROL.search(text) is not None:
            raise ValueError(f"control character in the value of cookie {name!r}")
        if signed:
            secret = self.req.app.settings.get("cookie_secret") if self.req.app is not None else None
            if not secret:
                raise ValueError("signed cookies need App(cookie_secret=...)")
            if isinstance(secret, (list, tuple)):
                secret = secret[0]
            text = sign_value(text, secret)
        if path is None:
            path = "/"  # Express: a null/undefined path is "/"
        header = serialize_cookie(
            name, text, max_age=max_age, expires=expires, path=path, domain=domain,
            secure=secure, http_only=http_only, same_site=same_site, partitioned=partitioned,
        )
        return self.append("Set-Cookie", header)

    def clear_cookie(self, name: str, path: str | None = "/", **options: Any) -> Response:
        """Expire the cookie ``name`` (same ``path``/``domain`` as when set); returns ``self``."""
        options.pop("max_age", None)
        options.pop("expires", None)
        options.pop("signed", None)
        return self.cookie(name, "", expires=0, path=path, **options)

    # -- sending whole responses ----------------------------------------------------------------

    def send(self, body: Any = None) -> None:
        """Send a whole response.

        ``str`` is sent as ``text/html; charset=utf-8``; ``bytes`` as
        ``application/octet-stream``; a dict, list, number or bool as JSON; ``None`` as an empty
        body. A Content-Type set earlier wins (for ``str``, with its charset made ``utf-8``, the
        encoding actually sent). Adds Content-Length and a weak ETag (not for ``None``, like
        Express's ``res.send()``), and answers 304 when the request is fresh.

        Raises:
            ResponseStateError: a response was already sent.
        """
        if self._state is not _FRESH:
            self._refuse("send")
            return
        headers = self._headers
        if isinstance(body, str):
            data = body.encode("utf-8")
            if "content-type" not in headers:
                headers["content-type"] = ("Content-Type", "text/html; charset=utf-8")
            else:
                _utf8_charset(headers)
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
            if "content-type" not in headers:
                headers["content-type"] = ("Content-Type", "application/octet-stream")
        elif body is None:
            self._send_bytes(b"", etag=False)  # like Express's res.send(): no ETag
            return
        elif isinstance(body, (dict, list, tuple, int, float, bool)):
            self.json(body)
            return
        else:
            raise TypeError(f"cannot send a {type(body).__name__}; pass str, bytes, dict, list or a number")
        self._send_bytes(data, etag=True)

    def json(self, obj: Any) -> None:
        """Send ``obj`` as JSON (``application/json; charset=utf-8``, or the type set earlier
        with ``charset=utf-8``).

        Raises:
            ValueError: ``obj`` holds a NaN or an infinity, which JSON cannot carry (where
                JavaScript's ``JSON.stringify`` would silently write ``null``).
            TypeError: ``obj`` holds something JSON has no form for.
        """
        if self._state is not _FRESH:
            self._refuse("send")
            return
        app = self.req.app
        spaces = app.settings.get("json_spaces") if app is not None else None
        if spaces:
            data = _json.dumps(obj, ensure_ascii=False, indent=spaces, allow_nan=False).encode("utf-8")
        else:
            data = _compact_json(obj).encode("utf-8")
        if "content-type" not in self._headers:
            self._headers["content-type"] = ("Content-Type", "application/json; charset=utf-8")
        else:
            _utf8_charset(self._headers)
        self._send_bytes(data, etag=True)

    def format(self, handlers: Mapping[str, Callable[..., object]]) -> None:
        """Answer with the handler for the type the request accepts best (Express's
        ``res.format``).

        ``handlers`` maps MIME types or extensions (``"text/plain"``, ``"json"``) to callables
        taking no arguments, ``(req, res)`` or ``(req, res, next)`` (the router's ``next``, as
        Express's ``req.next``); the key ``"default"`` is used when none is
        acceptable. The chosen type becomes the Content-Type before its handler runs, and
        ``Vary: Accept`` is added.

        Raises:
            HTTPError: 406 when no type is acceptable and there is no ``"default"`` (its
                ``types`` attribute lists the offered types as MIME types); from a handler it
                reaches the error middleware.
            TypeError: a handler takes another number of arguments.
        """
        from evserve.errors import HTTPError  # local: errors is imported lazily here

        req = self.req
        self.vary("Accept")
        offered = [key for key in handlers if key != "default"]
        chosen = req.accepts(offered) if offered else None
        if chosen is not None:
            self.type(chosen)
            fn = handlers[chosen]
        elif "default" in handlers:
            fn = handlers["default"]
        else:
            from evserve.negotiation import content_type_for

            error = HTTPError(406)
            # As Express's err.types: the offered keys as MIME types ("json" -> application/json).
            error.types = [content_type_for(key).split(";", 1)[0] for key in offered]  # type: ignore[attr-defined]
            raise error
        _call_format_handler(fn, req, self)

    def send_status(self, code: int) -> None:
        """Set the status and send its reason phrase as a text/plain body."""
        self.status(code)
        self.type("text/plain")
        self.send(reason_phrase(code))

    def redirect(self, url: str | int, status: int | str = 302) -> None:
        """Redirect to ``url`` with ``status`` (302); ``redirect(301, url)`` also works.

        The body is a short note in the format the client accepts, HTML or text (empty when
        it accepts neither), and ``Vary: Accept`` says so, as Express's ``res.format`` does.

        Raises:
            TypeError, ValueError: a bad status (see ``status``), or a control character in
                ``url`` (see ``location``); nothing is changed then.
        """
        if isinstance(url, int) and isinstance(status, str):
            url, status = status, url
        if not isinstance(url, str) or not isinstance(status, int):
            raise TypeError("redirect(url, status=302) needs a str url and an int status")
        previous = self.status_code
        self.status(status)
        try:
            self.location(url)
        except ValueError:
            self.status_code = previous
            raise
        target = self.get("Location")
        shown = target if isinstance(target, str) else url
        phrase = reason_phrase(status)
        self.vary("Accept")
        kind = self.req.accepts("text", "html")
        if kind == "html":
            safe = html.escape(shown)
            self.type("html").end(f"<p>{phrase}. Redirecting to <a href=\"{safe}\">{safe}</a></p>")
        elif kind == "text":
            self.type("txt").end(f"{phrase}. Redirecting to {shown}")
        else:
            self.end()

    def render(self, view: str, context: Mapping[str, Any] | None = None) -> None:
        """Render ``view`` with the app's engine for its extension and send it as HTML."""
        app = self.req.app
        if app is None:
            raise RuntimeError("render() needs an App")
        merged = {**app.locals, **self.locals, **(context or {})}
        text = app.render(view, merged)
        if "content-type" not in self._headers:
            self._headers["content-type"] = ("Content-Type", "text/html; charset=utf-8")
        self.send(text)

    def _send_bytes(self, data: bytes, *, etag: bool) -> None:
        if self.status_code < 200:
            self._check_final()
        headers = self._headers
        req = self.req
        status = self.status_code
        if etag and "etag" not in headers and self._etag_enabled():
            headers["etag"] = ("ETag", weak_etag(data))
        if 200 <= status < 300 and (req.method == "GET" or req.method == "HEAD"):
            conditional = req.headers.lowered
            if ("if-none-match" in conditional or "if-modified-since" in conditional) and req.fresh:
                status = self.status_code = 304
        if status == 205:
            data = b""  # RFC 9110 section 15.3.6: a 205 response has no content
        if status == 204 or status == 304:
            for key in ("content-type", "content-length", "transfer-encoding"):
                headers.pop(key, None)
            data = b""
        else:
            # Recorded for res.get() and the access log; the connection writes the real one.
            headers["content-length"] = ("Content-Length", str(len(data)))
        self._state = _DONE
        exchange = self._exchange
        if exchange is not None:
            if "connection" in headers:
                self._honour_connection_header()
            exchange.respond(status, (), data, reason=self._reason, add_date="date" not in headers,
                             validated_lines=self._header_block())
        self._finished()

    def _honour_connection_header(self) -> None:
        """``Connection: close`` set by the application closes the connection after this response."""
        value = self._headers["connection"][1]
        tokens = value if isinstance(value, list) else [value]
        exchange = self._exchange
        if exchange is not None and any(tok.strip().lower() == "close" for t in tokens for tok in t.split(",")):
            exchange.close_after()

    def _etag_enabled(self) -> bool:
        app = self.req.app
        return app is None or app.settings.get("etag", True) is not False

    def _header_block(self) -> str:
        """The header lines to send, formatted (names and values were validated when set)."""
        parts: list[str] = []
        for key, (name, value) in self._headers.items():
            if key in _FRAMING:
                continue
            if type(value) is str:
                parts.append(f"{name}: {value}\r\n")
            else:
                parts.extend([f"{name}: {v}\r\n" for v in value])
        return "".join(parts)

    def _lines(self) -> list[tuple[str, str]]:
        lines: list[tuple[str, str]] = []
        for key, (name, value) in self._headers.items():
            if key in _FRAMING:
                continue
            if type(value) is str:
                lines.append((name, value))
            else:
                lines.extend([(name, v) for v in value])
        return lines

    # -- streaming --------------------------------------------------------------------------------

    def write(self, chunk: str | bytes) -> bool:
        """Send part of the body, starting a streamed response (chunked on HTTP/1.1).

        Returns False when unsent output is above the high-water mark: the caller should wait
        for ``on_drain`` (or ``await res.drain()``) before writing more. Also False, with the
        chunk dropped, once the response takes no more body: it has ended, the client went away
        (``req.aborted``), or it may carry none (a HEAD request, 204, 304: the head ends it, so
        a streaming loop that checks the result or ``res.finished`` stops at once).
        """
        if self._state is _DONE:
            self._refuse("write")
            return False
        data = _body_bytes(chunk, "write")
        if self._state is _FRESH:
            self._start_stream()
            if self._state is _DONE:
                return False  # no body allowed: the head was the whole response
        exchange = self._exchange
        if exchange is None:
            return True
        return exchange.write(data)

    def _check_final(self) -> None:
        """A 1xx is interim, never the answer: refused before anything changes."""
        if self.status_code < 200:
            raise ValueError(f"cannot send a response with status {self.status_code}: a 1xx is "
                             "interim, not a final response")

    def _start_stream(self, content_length: int | None = None, *, default_type: bool = True) -> None:
        if self.status_code < 200:
            self._check_final()
        headers = self._headers
        if self.status_code == 204 or self.status_code == 304:
            # No content, so nothing to describe (as for a whole 204/304, see _send_bytes).
            for key in ("content-type", "content-length", "transfer-encoding"):
                headers.pop(key, None)
        elif default_type and "content-type" not in headers:
            headers["content-type"] = ("Content-Type", "text/html; charset=utf-8")
        if content_length is None:
            declared = headers.get("content-length")
            if declared is not None and isinstance(declared[1], str) and declared[1].isdigit():
                content_length = int(declared[1])
        if "connection" in headers:
            self._honour_connection_header()
        self._state = _STREAMING
        exchange = self._exchange
        if exchange is not None:
            takes_body = exchange.start_response(
                self.status_code, content_length=content_length, reason=self._reason,
                add_date="date" not in headers, validated_lines=self._header_block())
        else:
            takes_body = body_allowed(self.req.method, self.status_code)
        if not takes_body:
            # HEAD, 1xx, 204, 304: the head is the whole response (RFC 9110 sections 9.3.2,
            # 15.3.5, 15.4.5). It ended there, so the connection moves on and a streaming
            # handler or generator is stopped instead of producing a body nobody will get.
            self._state = _DONE
            self._quiet = True
            self._finished()

    def write_file(self, file: Any, offset: int, count: int) -> None:
        """Send ``count`` bytes of the open binary ``file`` from ``offset`` as part of the body.

        Zero-copy through ``os.sendfile`` where the OS allows it. Starts a streamed response if
        needed (set Content-Length first to avoid chunked framing). The file is closed once
        sent (or at once when the response has no body, as for HEAD).
        """
        if self._state is _DONE:
            file.close()
            if self.req.aborted:
                return  # the client went away: nothing to send it to
            raise ResponseStateError("cannot write: the response has ended")
        if self._state is _FRESH:
            self._start_stream()
        exchange = self._exchange
        if exchange is None or self._state is _DONE:
            file.close()  # no body allowed (HEAD, 204, 304): the head was the whole response
            return
        exchange.send_file(file, offset, count)

    def send_file(self, path: str, root: str | None = None, max_age: float = 0, **options: Any) -> None:
        """Send the file at ``path`` (relative to ``root`` when given) with its Content-Type,
        ETag, Last-Modified, Cache-Control, Range and conditional-GET handling.

        Options are those of ``evserve.middleware.send.send_file``; ``etag`` defaults to the
        app's ``etag`` setting. Errors (missing file 404, outside ``root`` 403, ...) raise
        ``HTTPError`` unless a ``callback(err)`` option is given, which then receives the error
        or ``None`` on success.
        """
        from evserve.middleware.send import send_file

        if "etag" not in options and not self._etag_enabled():
            options["etag"] = False  # Express passes app.enabled('etag') to send
        send_file(self.req, self, path, root=root, max_age=max_age, **options)

    def download(self, path: str, filename: str | None = None, **options: Any) -> None:
        """Send the file at ``path`` as an attachment named ``filename`` (default: its base name).

        Without a ``root`` option a relative ``path`` is taken from the current working
        directory (Express's ``resolve(path)``). Other options are those of ``send_file``.
        """
        from evserve.disposition import content_disposition
        from evserve.middleware.send import send_file

        name = filename if filename is not None else path.replace("\\", "/").rsplit("/", 1)[-1]
        headers = dict(options.pop("headers", None) or {})
        headers["Content-Disposition"] = content_disposition(name)
        if not options.get("root"):
            options.pop("root", None)
            path = os.path.abspath(path)
        if "etag" not in options and not self._etag_enabled():
            options["etag"] = False  # Express passes app.enabled('etag') to send
        send_file(self.req, self, path, headers=headers, **options)

    def end(self, data: str | bytes | None = None) -> None:
        """Finish the response, sending ``data`` last (a whole response if nothing was sent)."""
        if self._state is _DONE:
            self._refuse("end")
            return
        payload = b"" if data is None else _body_bytes(data, "end")
        if self._state is _FRESH:
            if self.status_code < 200:
                self._check_final()
            self._state = _DONE
            if "connection" in self._headers:
                self._honour_connection_header()
            status = self.status_code
            if status == 205:
                payload = b""  # RFC 9110 section 15.3.6: a 205 response has no content
            if not payload and self.req.method == "HEAD" and status != 204 and status != 304:
                # A HEAD handler answering without a body: send the Content-Length it set (the
                # length a GET would have), or none, never a made-up 0 (RFC 9110 section 8.6).
                # The head ends the response (see _start_stream).
                self._start_stream(default_type=False)
                return
            if status == 204 or status == 304:
                payload = b""
            else:
                self._headers["content-length"] = ("Content-Length", str(len(payload)))
            exchange = self._exchange
            if exchange is not None:
                exchange.respond(status, (), payload, reason=self._reason,
                                 add_date="date" not in self._headers, validated_lines=self._header_block())
            self._finished()
            return
        self._state = _DONE
        if self._exchange is not None:
            self._exchange.end(payload)
        self._finished()

    def flush_headers(self) -> None:
        """Send the status line and headers now, streaming the body that follows."""
        if self._state is _FRESH:
            self._start_stream()

    def on_drain(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when unsent output falls below the low-water mark.

        At once when nothing is waiting; never once the response takes no more body (ended,
        client gone, or a HEAD/204/304 whose head ended it): no drain will come, and calling
        back would turn a write-then-wait loop into a spin.
        """
        if self._state is _DONE:
            return
        exchange = self._exchange
        if exchange is None or not exchange.write_blocked:
            callback()
            return
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(callback)

    def drain(self) -> Any:
        """An awaitable that resolves when it is fine to ``write`` again.

        Once the response takes no more body (ended, client gone, a HEAD/204/304 whose head
        ended it), awaiting it raises ``ResponseStateError``: a streaming loop ends there
        instead of spinning, and evserve does not report that error as the handler's.
        """
        from evserve.tasks import Future

        future: Future[None] = Future()
        waiter = _DrainWaiter(future)
        if self._state is _DONE:
            waiter.fail()
        else:
            self.on_drain(waiter)  # failed by _finished if the response ends first
        return future

    def stream(self, chunks: Iterable[bytes | str], *, on_error: Callable[[BaseException], object] | None = None) -> None:
        """Send an iterable of chunks as the body, pulling the next one only when output drains.

        Memory stays bounded by the high-water mark plus one chunk, whatever the size of the
        whole. Ends the response when the iterable is exhausted. When the response takes no
        body (a HEAD request, 204, 304) or stops taking it (the client went away), nothing more
        is pulled and a generator is closed (its ``finally`` runs).
        """
        iterator = iter(chunks)
        if self._state is _FRESH and not body_allowed(self.req.method, self.status_code):
            self._start_stream()  # the head is the whole response: pull nothing
        if self._state is _DONE:
            _close_iterator(iterator)
            return
        self.on_finish(lambda: _close_iterator(iterator))  # ended, or the client went away

        def pump(first: bool = False) -> None:
            while self._state is not _DONE:
                try:
                    chunk = next(iterator)
                except StopIteration:
                    if self._state is not _DONE:
                        self.end()
                    return
                except Exception as exc:
                    if on_error is not None:
                        on_error(exc)
                        return
                    if first and self._state is _FRESH:
                        raise  # nothing sent yet: the handler's error, so a 500 page says so
                    logging.getLogger("evserve").exception(
                        "error producing the body of %s %s: connection aborted",
                        self.req.method, self.req.original_url)
                    if self._exchange is not None:
                        self._exchange.abort()
                    return
                first = False
                if not self.write(chunk) and self._state is not _DONE:
                    self.on_drain(pump)
                    return

        pump(first=True)

    def exchange_drained(self) -> None:
        """Called by the exchange: output drained; waiting writers go on."""
        waiters = self._drain_waiters
        if waiters:
            self._drain_waiters = None
            for callback in waiters:
                callback()

    # -- lifecycle hooks --------------------------------------------------------------------------

    def on_finish(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when the response is finished or the client goes away."""
        if self._state is _DONE:
            callback()
            return
        if self._finish_callbacks is None:
            self._finish_callbacks = []
        self._finish_callbacks.append(callback)

    def _finished(self) -> None:
        waiters = self._drain_waiters
        if waiters:
            # No drain will come: wake whoever awaits one (drain() raises for them); plain
            # on_drain callbacks are dropped, as a drain event never fires after the end.
            self._drain_waiters = None
            for waiter in waiters:
                if type(waiter) is _DrainWaiter:
                    waiter.fail()
        callbacks = self._finish_callbacks
        if callbacks:
            self._finish_callbacks = None
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    logging.getLogger("evserve").exception("error in a response finish callback")

    def exchange_lost(self) -> None:
        """Called by the exchange: the client went away before the response was complete."""
        self.req.aborted = True
        self._state = _DONE
        self._finished()

    def exchange_taken_over(self, status: int) -> None:
        """Called by the exchange: the server answered for us (a ``handler_timeout`` 503) and
        took the response back; what the handler sends later is dropped quietly."""
        self.status_code = status  # what the access log shows
        self._state = _DONE
        self._quiet = True
        self._finished()

    def __repr__(self) -> str:
        return f"<Response {self.status_code} for {self.req.method} {self.req.original_url}>"


def _call_format_handler(fn: Callable[..., object], req: Request, res: Response) -> None:
    try:
        count = sum(1 for p in inspect.signature(fn).parameters.values()
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)
    except (TypeError, ValueError):
        count = 2
    if count == 0:
        fn()
    elif count == 2:
        fn(req, res)
    elif count == 3:
        # Express calls obj[key](req, this, next) with the router's next (req.next).
        next_ = getattr(req, "next", None)
        if next_ is None:
            raise TypeError("a res.format handler taking (req, res, next) needs a router's req.next")
        fn(req, res, next_)
    else:
        raise TypeError(f"a res.format handler takes no arguments, (req, res) or (req, res, next), not {count}")


def _utf8_charset(headers: dict[str, tuple[str, str | list[str]]]) -> None:
    """Make the charset of the Content-Type set ``utf-8`` for a body encoded in UTF-8
    (Express's setCharset: the bytes sent are UTF-8 whatever was declared)."""
    entry = headers["content-type"]
    value = entry[1]
    if type(value) is not str or value.endswith("charset=utf-8"):
        return
    found = _CHARSET_PARAM.search(value)
    if found is None:
        value += "; charset=utf-8"
    else:
        value = value[: found.start()] + "; charset=utf-8" + value[found.end() :]
    headers["content-type"] = (entry[0], value)


_DEFAULT_PORTS = {"http": "80", "https": "443"}
_URL_IGNORED = re.compile(r"[\t\n\r]")  # browsers drop these anywhere in a URL (WHATWG URL)
_C0_AND_SPACE = "".join(map(chr, range(0x21)))  # and trim these at both ends


def _same_origin_referer(req: Request) -> str:
    """The Referer if it names the request's own origin (or is relative), else ``"/"``."""
    referer = req.get("referer")
    if not referer:
        return "/"
    # Read it as a browser would follow it: C0 and spaces around trimmed, tabs and newlines
    # dropped, backslashes as slashes (so "/\\evil.example" is the host "evil.example").
    seen = _URL_IGNORED.sub("", referer).strip(_C0_AND_SPACE).replace("\\", "/")
    try:
        parts = urlsplit(seen)
        port = parts.port
    except ValueError:
        return "/"
    # What is returned is what was checked: the form as read, so that percent-encoding the
    # raw text (a "\\" becomes "%5C") cannot move an "@" into the authority afterwards.
    if not parts.scheme and not parts.netloc and not seen.startswith("//"):
        return seen  # a relative reference stays on this origin
    scheme = parts.scheme.lower() or req.protocol
    if scheme != req.protocol or parts.username is not None or parts.password is not None:
        return "/"
    own = urlsplit(f"{req.protocol}://{req.host or ''}")
    try:
        own_port = own.port
    except ValueError:
        return "/"
    default = _DEFAULT_PORTS.get(scheme)
    same = (
        parts.hostname is not None
        and parts.hostname == own.hostname
        and str(port or default) == str(own_port or default)
    )
    return seen if same else "/"


class _DrainWaiter:
    """What ``drain()`` waits on: resolved by a drain, failed when the response ends first."""

    __slots__ = ("future",)

    def __init__(self, future: Any) -> None:
        self.future = future

    def __call__(self) -> None:
        self.future.set_result(None)

    def fail(self) -> None:
        self.future.set_exception(ResponseStateError("cannot drain: the response takes no more body"))


def _body_bytes(data: Any, what: str) -> bytes:
    """``data`` (str, as UTF-8, or a bytes-like object) as bytes; anything else is a mistake
    (``bytes(5)`` would be five NUL bytes, ``bytes(10**10)`` ten gigabytes)."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what}() takes str or bytes, not {type(data).__name__}")


def _close_iterator(iterator: Any) -> None:
    """Close a generator (or any iterator with ``close``) that will not be pulled again."""
    close = getattr(iterator, "close", None)
    if close is None:
        return
    try:
        close()
    except ValueError:
        pass  # "generator already executing": it ends by itself when it returns
    except Exception:
        logging.getLogger("evserve").exception("error closing a streamed iterable")


def weak_etag(data: bytes) -> str:
    """A weak validator from the body's length and two cheap 32-bit checksums (CRC-32 and
    Adler-32): 96 bits that change with the content, computed in C at memory speed."""
    return f'W/"{len(data):x}-{zlib.crc32(data):08x}{zlib.adler32(data):08x}"'


def encode_url(url: str) -> str:
    """Percent-encode what may not appear in a URL, leaving existing ``%XX`` escapes alone."""
    if all(c in _URL_SAFE for c in url) and ("%" not in url or _all_escapes_valid(url)):
        return url
    out: list[str] = []
    i = 0
    n = len(url)
    while i < n:
        c = url[i]
        if c == "%":
            if _PERCENT_ESCAPE.match(url, i):
                out.append(url[i : i + 3])
                i += 3
                continue
            out.append("%25")
        elif c in _URL_SAFE:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        i += 1
    return "".join(out)


def _all_escapes_valid(url: str) -> bool:
    return url.count("%") == len(_PERCENT_ESCAPE.findall(url))


def _extension(filename: str) -> str:
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[1] if "." in base.strip(".") else ""
