"""``TestClient``: requests to an application through the real connection code, in memory.

Each request is written as bytes into a ``Connection`` (the server's own state machine, with the
server's ``Config``) over a ``MemoryTransport``, on a private ``Reactor`` that the client turns
while it waits, so timers, ``async def`` handlers, ``evserve.sleep``/``to_thread``, streamed
responses and the server's deadlines (``handler_timeout``, ...) behave as on a socket. The
response is read back from the bytes the connection wrote by a strict HTTP/1.1 reader. What a
test sees is what the wire would carry; no socket is opened.

Like a browser, the client keeps one connection alive between requests (a new one after the
server closes it) and a cookie jar. It is not thread-safe: use it from one thread.
"""

from __future__ import annotations

import json as jsonlib
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

from evserve.config import Config
from evserve.connection import Connection, State
from evserve.handlers import as_handler
from evserve.headers import Headers
from evserve.reactor import Reactor
from evserve.testing.jar import CookieJar, check_cookie
from evserve.testing.messages import ClientRequest, ClientResponse
from evserve.testing.wire import (
    ClientError,
    MalformedResponse,
    MemoryTransport,
    ParsedResponse,
    ResponseReader,
    ResponseTimeout,
    ServerDisconnected,
)
from evserve.writer import validate_header

__all__ = ["DEFAULT_TIMEOUT", "MAX_REDIRECTS", "TestClient"]

T = TypeVar("T")
HeadersArg = Mapping[str, Any] | Iterable[tuple[str, Any]] | None
ParamsArg = Mapping[str, Any] | Iterable[tuple[str, Any]] | str | None
DataArg = bytes | bytearray | memoryview | str | Mapping[str, Any] | Iterable[tuple[str, Any]] | None

DEFAULT_TIMEOUT = 10.0  # seconds a request may take before ResponseTimeout
DEFAULT_MAX_RESPONSE_SIZE = 1 << 28  # bytes of one response (256 MiB) before ClientError
MAX_REDIRECTS = 20  # redirects followed for one request before ClientError
RECV_SIZE = 65536  # request bytes are delivered in pieces of this size, as a socket reads them
MAX_WAIT = 1.0  # seconds one turn of the reactor may wait while nothing is due
_INF = float("inf")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# What may stand as is in a request-target (RFC 3986 pchar, "/" and "?"); "%" only when it
# starts an escape. Anything else (space, non-ASCII, quotes) is percent-encoded as UTF-8.
_TARGET_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                         "-._~!$&'()*+,;=:@/?")
_HEX = frozenset("0123456789ABCDEFabcdef")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_UNSET: Any = object()


class _Session:
    """One connection of the client: the server's ``Connection`` over a ``MemoryTransport``,
    and the reader of its responses."""

    def __init__(self, handler: Any, config: Config, reactor: Reactor, peer: tuple[str, int],
                 secure: bool) -> None:
        self.secure = secure
        self.transport = MemoryTransport(config.write_buffer_size)
        self.conn = Connection(handler, config, self.transport, reactor, peer, secure=secure,
                               clock=reactor.time)
        self.transport.conn = self.conn
        self.reader = ResponseReader()
        self.received = 0  # bytes read from the connection

    @property
    def reusable(self) -> bool:
        """Whether a new request may go on this connection: open, and between requests."""
        transport = self.transport
        return not (transport.closing or transport.closed or self.reader.buffered) and \
            self.conn.state in (State.IDLE, State.READING_HEADERS)

    def send(self, data: bytes) -> None:
        """Deliver request bytes to the connection, in socket-sized pieces."""
        for start in range(0, len(data), RECV_SIZE):
            if self.transport.closing or self.transport.closed:
                return  # the server has answered and closes: the rest would meet a reset
            self.conn.data_received(data[start:start + RECV_SIZE])

    def close(self) -> None:
        """Close the client's side: the server sees EOF, and whatever it holds is dropped."""
        conn = self.conn
        if conn.state is State.CLOSED:
            return
        conn.eof_received()
        self.transport.take()
        if not self.transport.closed:
            conn.abort()


class TestClient:
    """Requests to ``app`` through the real connection code, in memory (no socket).

    Args:
        app: what a server would serve: an ``App``, a ``fn(req, res)``, a ``fn(exchange)``, or
            a handler object.
        base_url: the scheme and host requests go to (the Host header), and a path prefix for
            relative paths. ``https`` makes ``req.protocol`` ``"https"`` (the connection is
            marked secure; no TLS is done).
        headers: header lines sent with every request (a request's own win by name).
        cookies: cookies to start the jar with (name to value, for the base URL's host).
        timeout: seconds each request may take before ``ResponseTimeout`` (None: no limit).
        follow_redirects: follow 3xx responses with a Location (each request may say otherwise).
        client_address: the ``(host, port)`` the connections come from (``req.ip``); each new
            connection takes the next port.
        max_response_size: the most bytes one response may have before ``ClientError`` (the
            client reads as fast as the server writes, so an endless stream must stop somewhere).
        **config: server settings (``evserve.config.Config``: ``max_body_size``,
            ``handler_timeout``, ``keepalive_timeout``, ...).

    Raises:
        TypeError: an unknown server setting, ``workers`` other than 1 (nothing forks here), or
            an ``app`` that cannot be served.
        ValueError: a setting out of range, or a ``base_url`` that is no http(s) URL.
    """

    __test__ = False  # not a test class, whatever pytest's naming rule says

    def __init__(
        self,
        app: Any,
        *,
        base_url: str = "http://testserver",
        headers: HeadersArg = None,
        cookies: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        follow_redirects: bool = False,
        client_address: tuple[str, int] = ("127.0.0.1", 50000),
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        **config: Any,
    ) -> None:
        self.app = app
        self._handler = as_handler(app)
        self.config = Config.from_kwargs(**config)
        if self.config.workers != 1:
            raise TypeError(f"workers={self.config.workers} cannot be honoured by the test client, "
                            "which serves in this process")
        self.max_response_size = max_response_size
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"base_url must be an http:// or https:// URL without query, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self.headers: dict[str, str] = {"User-Agent": "evserve-testclient", "Accept": "*/*"}
        self.headers.update(_pairs(headers))
        self.cookies = CookieJar(parts.hostname or "")
        for name, value in (cookies or {}).items():
            self.cookies.set(name, value)
        self.timeout = timeout
        self.follow_redirects = follow_redirects
        self.client_address = client_address
        self._connections = 0
        self._reactor = Reactor()
        # The reactor holds a socketpair (its thread-safe wake-up): released by close(), or
        # when the client is collected, whichever comes first.
        self._finalizer = weakref.finalize(self, self._reactor.close)
        self._session: _Session | None = None
        self._closed = False

    # -- lifetime --------------------------------------------------------------------------------

    @property
    def reactor(self) -> Reactor:
        """The client's private reactor (``req.reactor`` in handlers); it turns only while the
        client waits for a response."""
        return self._reactor

    def close(self) -> None:
        """Close the connection (the server sees the client go) and release the reactor."""
        if self._closed:
            return
        self._closed = True
        self._drop_session()
        self._finalizer()

    def __enter__(self) -> TestClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeadersArg = None,
        params: ParamsArg = None,
        json: Any = None,
        data: DataArg = None,
        cookies: Mapping[str, str] | None = None,
        timeout: float | None = _UNSET,
        follow_redirects: bool | None = None,
    ) -> ClientResponse:
        """Send a request and return the whole response.

        Args:
            method: the method (upper-cased).
            url: a path (``"/items?page=2"``, joined to the base URL's path) or a whole
                ``http(s)://`` URL (its host becomes the Host header; the same app answers).
                Characters a URL may not carry are percent-encoded; escapes are kept.
            headers: header lines for this request; a value of None removes a default one. A
                ``Cookie`` header given here replaces the jar's cookies. Content-Length is set
                from the body; ``Transfer-Encoding: chunked`` sends the body chunked.
            params: query parameters (a mapping, whose list values repeat the name, or pairs),
                percent-encoded and added to the URL's query.
            json: a value sent as JSON (``Content-Type: application/json``); None sends none.
            data: the body: ``bytes`` or ``str`` (UTF-8) as is, or a mapping or pairs sent as
                an urlencoded form (``application/x-www-form-urlencoded``).
            cookies: cookies for this request only, over the jar's of the same name.
            timeout: seconds to wait for the whole response (default: the client's).
            follow_redirects: follow redirects (default: the client's setting). 303, and
                301/302 after a POST, continue with a GET without the body, as browsers do.

        Raises:
            ResponseTimeout: no whole response within ``timeout``.
            ServerDisconnected: the server closed or reset the connection first.
            MalformedResponse: the server wrote an invalid response.
            ClientError: more than ``MAX_REDIRECTS`` redirects.
            TypeError, ValueError: arguments that cannot make a valid request.
        """
        if self._closed:
            raise RuntimeError("this TestClient is closed")
        wait = self.timeout if timeout is _UNSET else timeout
        request = self._build(method, url, headers, params, json, data, cookies)
        response = self._send(request, wait)
        follow = self.follow_redirects if follow_redirects is None else follow_redirects
        history: list[ClientResponse] = []
        while follow and response.is_redirect:
            if len(history) >= MAX_REDIRECTS:
                raise ClientError(f"{method} {url}: more than {MAX_REDIRECTS} redirects "
                                  f"(the last to {response.headers['location']!r})")
            history.append(response)
            status = response.status_code
            method = request.method
            # RFC 9110 sections 15.4.2-15.4.4: 303 continues with a GET; 301 and 302 after a
            # POST too, as every browser does; 307 and 308 repeat the request as it was.
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, json, data = "GET", None, None
                headers = [(n, v) for n, v in _pairs(headers).items()
                           if n.lower() not in ("content-type", "transfer-encoding")]
            location = urljoin(response.url, response.headers["location"])
            request = self._build(method, location, headers, None, json, data, cookies)
            response = self._send(request, wait)
        response.history = history
        return response

    def get(self, url: str, *, headers: HeadersArg = None, params: ParamsArg = None,
            json: Any = None, data: DataArg = None, cookies: Mapping[str, str] | None = None,
            timeout: float | None = _UNSET, follow_redirects: bool | None = None) -> ClientResponse:
        """Send a GET request (see ``request``)."""
        return self.request("GET", url, headers=headers, params=params, json=json, data=data,
                            cookies=cookies, timeout=timeout, follow_redirects=follow_redirects)

    def head(self, url: str, *, headers: HeadersArg = None, params: ParamsArg = None,
             json: Any = None, data: DataArg = None, cookies: Mapping[str, str] | None = None,
             timeout: float | None = _UNSET, follow_redirects: bool | None = None) -> ClientResponse:
        """Send a HEAD request (see ``request``); the response has no body."""
        return self.request("HEAD", url, headers=headers, params=params, json=json, data=data,
                            cookies=cookies, timeout=timeout, follow_redirects=follow_redirects)

    def post(self, url: str, *, headers: HeadersArg = None, params: ParamsArg = None,
             json: Any = None, data: DataArg = None, cookies: Mapping[str, str] | None = None,
             timeout: float | None = _UNSET, follow_redirects: bool | None = None) -> ClientResponse:
        """Send a POST request (see ``request``)."""
        return self.request("POST", url, headers=headers, params=params, json=json, data=data,
                            cookies=cookies, timeout=timeout, follow_redirects=follow_redirects)

    def put(self, url: str, *, headers: HeadersArg = None, params: ParamsArg = None,
            json: Any = None, data: DataArg = None, cookies: Mapping[str, str] | None = None,
            timeout: float | None = _UNSET, follow_redirects: bool | None = None) -> ClientResponse:
        """Send a PUT request (see ``request``)."""
        return self.request("PUT", url, headers=headers, params=params, json=json, data=data,
                            cookies=cookies, timeout=timeout, follow_redirects=follow_redirects)

    def patch(self, url: str, *, headers: HeadersArg = None, params: ParamsArg = None,
              json: Any = None, data: DataArg = None, cookies: Mapping[str, str] | None = None,
              timeout: float | None = _UNSET, follow_redirects: bool | None = None) -> ClientResponse:
        """Send a PATCH request (see ``request``)."""
        return self.request("PATCH", url, headers=headers, params=params, json=json, data=data,
                            cookies=cookies, timeout=timeout, follow_redirects=follow_redirects)

    def delete(self, url: str, *, headers: HeadersArg = None, params: ParamsArg = None,
               json: Any = None, data: DataArg = None, cookies: Mapping[str, str] | None = None,
               timeout: float | None = _UNSET, follow_redirects: bool | None = None) -> ClientResponse:
        """Send a DELETE request (see ``request``)."""
        return self.request("DELETE", url, headers=headers, params=params, json=json, data=data,
                            cookies=cookies, timeout=timeout, follow_redirects=follow_redirects)

    def options(self, url: str, *, headers: HeadersArg = None, params: ParamsArg = None,
                json: Any = None, data: DataArg = None, cookies: Mapping[str, str] | None = None,
                timeout: float | None = _UNSET, follow_redirects: bool | None = None) -> ClientResponse:
        """Send an OPTIONS request (see ``request``; ``"*"`` asks about the server)."""
        return self.request("OPTIONS", url, headers=headers, params=params, json=json, data=data,
                            cookies=cookies, timeout=timeout, follow_redirects=follow_redirects)

    def raw(self, data: bytes, *, timeout: float | None = _UNSET, eof: bool = False) -> bytes:
        """Write ``data`` as is on a new connection; return every byte the server writes until
        it has answered all of it (the connection is idle again) or closed the connection.

        For tests of the wire itself: malformed requests, pipelining, exact framing. With
        ``eof`` the client closes its sending side after ``data`` (a body delimited by the
        close, or a client that half-closes). Cookies and default headers play no part.

        Raises:
            ResponseTimeout: the connection neither idled nor closed within ``timeout``.
        """
        if self._closed:
            raise RuntimeError("this TestClient is closed")
        wait = self.timeout if timeout is _UNSET else timeout
        session = self._open_session(self._scheme == "https")
        received = bytearray()
        conn = session.conn
        transport = session.transport

        def answered() -> bytes | None:
            if (conn.state is State.IDLE or conn.state is State.CLOSED) and not transport.has_output:
                return bytes(received)
            return None

        what = f"raw request {bytes(data[:60])!r}"

        def stuck() -> ClientError:
            return ResponseTimeout(
                f"{what}: not answered within {wait:g} s: {_stuck_reason(session)}; received "
                f"{len(received)} bytes: {bytes(received[:200])!r}")

        try:
            session.send(bytes(data))
            if eof:
                conn.eof_received()
            return self._wait(session, received.extend, answered, wait, stuck, what)
        finally:
            session.close()

    # -- building a request ----------------------------------------------------------------------

    def _build(self, method: str, url: str, headers: HeadersArg, params: ParamsArg, json: Any,
               data: DataArg, cookies: Mapping[str, str] | None) -> ClientRequest:
        if not isinstance(method, str) or _TOKEN.fullmatch(method) is None:
            raise ValueError(f"invalid method {method!r}")
        method = method.upper()
        scheme, netloc, target = self._resolve(url, method)
        if params is not None:
            query = _quote_target(params.lstrip("?")) if isinstance(params, str) else _urlencode(params)
            if query:
                target += ("&" if "?" in target else "?") + query
        body, content_type = _encode_body(json, data)
        lines = {"host": ("Host", netloc)}
        own = _pairs(headers)
        chunked = False
        for layer in (self.headers, own):
            for name, value in layer.items():
                key = name.lower()
                if value is None:
                    lines.pop(key, None)
                    continue
                if key == "content-length":
                    raise ValueError("Content-Length is set from the body; use client.raw() to "
                                     "send a request whose framing is wrong on purpose")
                if key == "transfer-encoding":
                    if value.strip().lower() != "chunked":
                        raise ValueError(f"Transfer-Encoding {value!r}: the client sends only "
                                         "chunked; use client.raw() for others")
                    chunked = True
                lines[key] = (name, value)
        if content_type is not None and "content-type" not in lines:
            lines["content-type"] = ("Content-Type", content_type)
        secure = scheme == "https"
        if "cookie" not in lines:
            host = urlsplit(f"//{netloc}").hostname or ""
            own_cookies = dict(cookies or {})
            for name, value in own_cookies.items():
                check_cookie(name, value)
            sent = [(n, v) for n, v in self.cookies.pairs_for(host, target.split("?", 1)[0], secure)
                    if n not in own_cookies]
            sent.extend(own_cookies.items())
            if sent:
                lines["cookie"] = ("Cookie", "; ".join(f"{n}={v}" for n, v in sent))
        payload = body
        if chunked:
            payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        elif body or method in _BODY_METHODS:
            lines["content-length"] = ("Content-Length", str(len(body)))
        pairs = list(lines.values())
        for name, value in pairs:
            validate_header(name, value)
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in pairs) + "\r\n"
        url = f"{scheme}://{netloc}" + ("" if target == "*" else target)
        return ClientRequest(method, url, target, Headers(pairs), body, secure,
                             head.encode("latin-1") + payload)

    def _resolve(self, url: str, method: str) -> tuple[str, str, str]:
        """``(scheme, authority, request-target)`` of ``url``."""
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if url == "*":
            if method != "OPTIONS":
                raise ValueError("the target '*' is for OPTIONS only (RFC 9112 section 3.2.4)")
            return self._scheme, self._netloc, "*"
        url = url.split("#", 1)[0]  # a fragment never travels
        if _ABSOLUTE.match(url):
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
                raise ValueError(f"cannot request {url!r}: only http:// and https:// URLs")
            scheme, netloc = parts.scheme.lower(), parts.netloc.rsplit("@", 1)[-1]
            rest = url.split("://", 1)[1]
            cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
            path = rest[cut:]
        else:
            scheme, netloc = self._scheme, self._netloc
            path = self._prefix + (url if url.startswith("/") else "/" + url)
        if not path.startswith("/"):
            path = "/" + path
        return scheme, netloc, _quote_target(path)

    # -- sending ---------------------------------------------------------------------------------

    def _open_session(self, secure: bool) -> _Session:
        host, port = self.client_address
        peer = (host, port + self._connections)
        self._connections += 1
        return _Session(self._handler, self.config, self._reactor, peer, secure)

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _ready_session(self, secure: bool) -> _Session:
        """The kept-alive connection if it can take a request, else a new one."""
        self._reactor.run_once(0)  # timers that came due between requests run first
        session = self._session
        if session is not None:
            data = session.transport.take()
            if data:
                session.reader.feed(data)  # unsolicited: the connection is not reused
            # A server would have closed a connection idle past keepalive_timeout by now.
            session.conn.check_deadline(self._reactor.time())
            if not session.reusable or session.secure != secure:
                self._drop_session()
                session = None
        if session is None:
            session = self._session = self._open_session(secure)
        return session

    def _send(self, request: ClientRequest, timeout: float | None) -> ClientResponse:
        session = self._ready_session(request.secure)
        transport = session.transport
        reader = session.reader
        what = f"{request.method} {request.target}"

        def response() -> ParsedResponse | None:
            return reader.next_response(request.method, eof=transport.closed and not transport.aborted)

        def stuck() -> ClientError:
            return ResponseTimeout(f"{what}: no complete response within {timeout:g} s: "
                                   f"{_stuck_reason(session)}")

        try:
            session.send(request.data)
            parsed = self._wait(session, reader.feed, response, timeout, stuck, what)
        except MalformedResponse as exc:
            self._drop_session()
            raise MalformedResponse(f"{what}: {exc}") from None
        except ClientError:
            self._drop_session()
            raise
        result = ClientResponse(parsed, request)
        for line in result.headers.get_all("set-cookie"):
            self.cookies.receive(line, request.host, request.path)
        tokens = {t.strip().lower() for t in (result.headers.get("connection") or "").split(",")}
        if parsed.close_delimited or "close" in tokens or (
                parsed.http_version == "1.0" and "keep-alive" not in tokens) or parsed.status == 101:
            self._drop_session()
        return result

    def _wait(self, session: _Session, sink: Callable[[bytes], object], poll: Callable[[], T | None],
              timeout: float | None, stuck: Callable[[], ClientError], what: str) -> T:
        """Turn the reactor, reading the connection's output into ``sink``, until ``poll``
        returns something; ``stuck()`` is raised when ``timeout`` passes first."""
        reactor = self._reactor
        conn = session.conn
        transport = session.transport
        deadline = _INF if timeout is None else reactor.time() + timeout
        session.received = 0  # (counted per response, for the error messages)
        while True:
            data = transport.take()
            if data:
                session.received += len(data)
                if session.received > self.max_response_size:
                    self._drop_session()
                    raise ClientError(f"{what}: the response passed max_response_size "
                                      f"({self.max_response_size} bytes); connection dropped")
                sink(data)
            result = poll()
            if result is not None:
                return result
            if transport.closed:
                raise _disconnected(session, what)
            now = reactor.time()
            # The server's sweep does not run in memory: its deadlines are enforced here (first,
            # so that a server deadline passed with the client's is answered, as on a socket).
            if conn.check_deadline(now):
                continue
            if now >= deadline:
                raise stuck()
            if transport.has_output:
                continue  # the read let a streaming writer go on (drained): read that first
            reactor.run_once(min(max(0.0, min(deadline, conn.deadline) - now), MAX_WAIT))



def _disconnected(session: _Session, what: str) -> ClientError:
    """The error for a connection the server closed before the response was complete."""
    transport = session.transport
    start = session.reader.preview()
    if not transport.aborted:
        return ServerDisconnected(f"{what}: the server closed the connection before a complete "
                                  f"response; received {session.received} bytes: {start!r}")
    dropped = f", and the reset dropped {transport.discarded} more" if transport.discarded else ""
    return ServerDisconnected(
        f"{what}: the server reset the connection before a complete response (an error after "
        f"the response had started, an abort, or a file shorter than announced; see the evserve "
        f"log); received {session.received} bytes{dropped}: {start!r}")


def _stuck_reason(session: _Session) -> str:
    """What the connection is waiting for, in words, for a timeout's message."""
    conn = session.conn
    exchange = conn.current_exchange
    state = conn.state
    if state is State.HANDLED and exchange is not None:
        if not exchange.headers_sent:
            return ("the handler has not started a response (does every path send one or call "
                    "next()? the server setting handler_timeout answers 503 in such a case)")
        return (f"the response started ({session.received} bytes received) but has not ended "
                "(is res.end() called?)")
    if state is State.READING_HEADERS or state is State.READING_BODY:
        return f"the server is still reading the request ({state.name})"
    return f"the connection is {state.name}"


def _pairs(headers: HeadersArg) -> dict[str, Any]:
    """Header arguments as an ordered dict, names as given (a later name replaces an earlier)."""
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    result: dict[str, Any] = {}
    lower: dict[str, str] = {}
    for name, value in items:
        if not isinstance(name, str):
            raise TypeError(f"a header name is a str, not {name!r}")
        key = name.lower()
        if key in lower:
            del result[lower[key]]
        lower[key] = name
        result[name] = None if value is None else str(value)
    return result


def _urlencode(params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> str:
    """Pairs (a mapping's list values repeat the name; None values are left out) as an
    urlencoded string."""
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((str(name), str(v)) for v in values if v is not None)
    return urlencode(pairs)


def _encode_body(json: Any, data: DataArg) -> tuple[bytes, str | None]:
    """The body bytes and the Content-Type they call for (None: leave it to the caller)."""
    if json is not None:
        if data is not None:
            raise TypeError("pass json= or data=, not both")
        return jsonlib.dumps(json).encode("utf-8"), "application/json"
    if data is None:
        return b"", None
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), None
    if isinstance(data, str):
        return data.encode("utf-8"), None
    if isinstance(data, (Mapping, list, tuple)):
        return _urlencode(data).encode("ascii"), "application/x-www-form-urlencoded"
    raise TypeError(f"data must be bytes, str, a mapping or pairs, not {type(data).__name__}")


def _quote_target(target: str) -> str:
    """``target`` with what a request-target may not hold percent-encoded (existing escapes
    kept)."""
    out: list[str] = []
    for i, ch in enumerate(target):
        if ch in _TARGET_SAFE or (ch == "%" and target[i + 1:i + 2] in _HEX and target[i + 2:i + 3] in _HEX):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)
