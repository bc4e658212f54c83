"""The request object handed to handlers: wire facts plus Express's helpers (SPEC section 3)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from evserve.headers import Headers

if TYPE_CHECKING:
    from evserve.app import App
    from evserve.connection import Connection
    from evserve.exchange import Exchange
    from evserve.parser import RequestHead
    from evserve.reactor import Reactor
    from evserve.response import Response

__all__ = ["Request", "origin_form", "trust_predicate"]

_UNSET: Any = object()


class Request:
    """One HTTP request.

    Core attributes (always set): ``method``, ``url`` (path and query, relative to the current
    mount; origin-form even for an absolute-form request), ``original_url`` (the request-target
    as received, without a fragment: ``http://host/p?q=1`` for an absolute-form request; never
    changes), ``base_url`` (the mount path, ``""`` at the top),
    ``http_version`` (``"1.1"``/``"1.0"``), ``headers`` (case-insensitive multi-dict),
    ``raw_body`` (bytes), ``body`` (``None`` until a body parser sets it), ``params`` (dict),
    ``res`` (the paired response), ``app`` (the ``App`` handling it, or ``None``), ``aborted``
    (True once the client disconnected before the response was sent), ``next`` (the ``next``
    of the router walking the request, as Express's ``req.next``; ``None`` outside one).

    Other attributes may be set freely by middleware (``req.user = ...``).
    """

    __slots__ = (
        "__dict__",
        "_cookies",
        "_exchange",
        "_path",
        "_path_url",
        "_query",
        "_signed_cookies",
        "aborted",
        "app",
        "base_url",
        "body",
        "headers",
        "http_version",
        "method",
        "next",
        "original_url",
        "params",
        "raw_body",
        "res",
        "route",
        "url",
    )

    def __init__(self, exchange: Exchange | None, head: RequestHead, raw_body: bytes = b"") -> None:
        self._exchange = exchange
        self.method: str = head.method
        target = head.target
        if "#" in target:
            # A fragment is never part of a request (RFC 9110 section 4.2.5); like Express's
            # parseurl, it is not routed nor parsed into the query.
            target = target.split("#", 1)[0]
        absolute = target[:1] != "/" and target != "*"
        # original_url is the target as received, as Express's req.originalUrl (Node's raw
        # req.url): an absolute-form target keeps its scheme and authority there. url, which
        # routing and mounts rewrite, is its origin-form path and query.
        self.url: str = origin_form(target) if absolute else target
        self.original_url: str = target
        self.base_url: str = ""
        self.http_version: str = head.http_version
        self.headers: Headers = head.headers
        self.raw_body: bytes = raw_body
        self.body: Any = None
        self.params: dict[str, Any] = {}
        self.res: Response | None = None
        self.app: App | None = None
        self.route: Any = None
        self.next: Callable[..., None] | None = None
        self.aborted = False
        self._path_url: str | None = None
        self._path = ""
        self._query: Any = None
        self._cookies: dict[str, Any] | None = None
        self._signed_cookies: dict[str, Any] | None = None
        if absolute and "://" in head.target:
            # Absolute-form: the target's authority replaces Host (RFC 9112 section 3.2.2).
            self.__dict__["_authority"] = _AUTHORITY_END.split(head.target.split("://", 1)[1], 1)[0]

    # -- the URL --------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The path of ``url`` (still percent-encoded), relative to the current mount."""
        url = self.url
        if url is not self._path_url:
            i = url.find("?")
            self._path = url if i < 0 else url[:i]
            self._path_url = url
        return self._path

    @property
    def query_string(self) -> str:
        """The raw query string of the original URL, without the ``?``."""
        url = self.original_url
        i = url.find("?")
        return "" if i < 0 else url[i + 1 :]

    @property
    def query(self) -> dict[str, Any]:
        """The parsed query string (qs-style nesting; see ``App(query_parser=...)``, which is
        the top-level app's for the whole request)."""
        q = self._query
        if q is None:
            from evserve.query import parse_query, parse_simple

            qs = self.query_string
            mode = self._query_parser() if qs else None
            if not qs:
                q = {}
            elif callable(mode):
                q = mode(qs)
            elif mode == "simple":
                q = parse_simple(qs)
            elif mode is False or mode is None:
                q = {}
            else:
                q = parse_query(qs)
            self._query = q
        return q  # type: ignore[no-any-return]

    @query.setter
    def query(self, value: dict[str, Any]) -> None:
        self._query = value

    def _query_parser(self) -> Any:
        # The top-level app's setting, as in Express (its query middleware runs first and a
        # mounted app's keeps what it found): the answer then never depends on which app
        # happened to read req.query first.
        app: Any = self._exchange.handler if self._exchange is not None else None
        settings = getattr(app, "settings", None)
        if not isinstance(settings, dict):
            settings = self.app.settings if self.app is not None else {}
        return settings.get("query_parser", "extended")

    # -- headers --------------------------------------------------------------------------------

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the request header ``name`` (case-insensitive), or ``default``.

        ``Referer`` and ``Referrer`` are interchangeable, as in Express.
        """
        key = name.lower()
        if key in ("referer", "referrer"):
            value = self.headers.get("referer")
            if value is None:
                value = self.headers.get("referrer")
            return default if value is None else value
        found: str | None = self.headers.get(key, default)
        return found

    header = get

    @property
    def content_type(self) -> str | None:
        """The Content-Type header, or ``None``."""
        return self.headers.get("content-type")

    def is_type(self, *types: str | list[str]) -> str | None:
        """Return the first of ``types`` the request's Content-Type matches, as given, or None.

        Like Express's ``req.is``: ``"json"``, ``"urlencoded"``, ``"text/*"``, ``"+json"`` ...
        A request without a body matches nothing; as in type-is (and the body parsers), a
        request has a body when it says so with Transfer-Encoding or Content-Length, even
        ``Content-Length: 0``.
        """
        from evserve.negotiation import is_type

        headers = self.headers
        if "transfer-encoding" not in headers and "content-length" not in headers:
            return None
        return is_type(headers.get("content-type"), _flatten(types))

    @overload
    def accepts(self) -> list[str]: ...

    @overload
    def accepts(self, first: str | list[str], /, *types: str | list[str]) -> str | None: ...

    def accepts(self, *types: str | list[str]) -> str | list[str] | None:
        """Return the best of ``types`` for the Accept header, as given, or ``None``.

        With no types (or only empty lists), return the acceptable media types in the
        client's order of preference instead, as Express 5's ``req.accepts()`` (negotiator's
        ``mediaTypes()``): ``["*/*"]`` without an Accept header, ``[]`` for an empty one.
        """
        from evserve.negotiation import accepts, accepts_list

        return self._negotiate("accept", types, accepts, accepts_list)

    def _negotiate(self, header_name: str, offers: tuple[str | list[str], ...],
                   pick: Callable[[str | None, list[str]], str | None],
                   listing: Callable[[str | None], list[str]]) -> str | list[str] | None:
        """The best of ``offers`` for the ``header_name`` header, or with no offers the
        client's preferences in order (Express 5's accepts* with no arguments)."""
        flat = _flatten(offers)
        header = self.headers.get(header_name)
        return pick(header, flat) if flat else listing(header)

    @overload
    def accepts_charsets(self) -> list[str]: ...

    @overload
    def accepts_charsets(
        self, first: str | list[str], /, *charsets: str | list[str]
    ) -> str | None: ...

    def accepts_charsets(self, *charsets: str | list[str]) -> str | list[str] | None:
        """Return the best of ``charsets`` for Accept-Charset, as given, or ``None``.

        See :func:`evserve.negotiation.accepts_charsets` (npm negotiator's rules, as Express).
        With no charsets, return the acceptable ones in the client's order of preference
        (``["*"]`` without the header), as Express 5's ``req.acceptsCharsets()``.
        """
        from evserve.negotiation import accepts_charsets, accepts_charsets_list

        return self._negotiate("accept-charset", charsets, accepts_charsets, accepts_charsets_list)

    @overload
    def accepts_encodings(self) -> list[str]: ...

    @overload
    def accepts_encodings(
        self, first: str | list[str], /, *encodings: str | list[str]
    ) -> str | None: ...

    def accepts_encodings(self, *encodings: str | list[str]) -> str | list[str] | None:
        """Return the best of ``encodings`` for Accept-Encoding, as given, or ``None``.

        See :func:`evserve.negotiation.accepts_encodings`: without the header only
        ``"identity"`` is acceptable, as in Express. With no encodings, return the acceptable
        ones in the client's order of preference (``["identity"]`` without the header), as
        Express 5's ``req.acceptsEncodings()``.
        """
        from evserve.negotiation import accepts_encodings, accepts_encodings_list

        return self._negotiate("accept-encoding", encodings, accepts_encodings, accepts_encodings_list)

    @overload
    def accepts_languages(self) -> list[str]: ...

    @overload
    def accepts_languages(
        self, first: str | list[str], /, *languages: str | list[str]
    ) -> str | None: ...

    def accepts_languages(self, *languages: str | list[str]) -> str | list[str] | None:
        """Return the best of ``languages`` for Accept-Language, as given, or ``None``.

        See :func:`evserve.negotiation.accepts_languages` (npm negotiator's rules, as Express).
        With no languages, return the acceptable ones in the client's order of preference
        (``["*"]`` without the header), as Express 5's ``req.acceptsLanguages()``.
        """
        from evserve.negotiation import accepts_languages, accepts_languages_list

        return self._negotiate("accept-language", languages, accepts_languages, accepts_languages_list)

    @property
    def xhr(self) -> bool:
        """Whether X-Requested-With is ``XMLHttpRequest`` (case-insensitive)."""
        return (self.headers.get("x-requested-with") or "").lower() == "xmlhttprequest"

    # -- cookies --------------------------------------------------------------------------------

    @property
    def cookies(self) -> dict[str, Any]:
        """Cookies from the Cookie header (signed ones appear in ``signed_cookies`` instead).

        A value written by ``res.cookie`` from a dict or list (``j:`` + JSON) comes back as
        that dict or list, as with Express's cookie-parser.
        """
        if self._cookies is None:
            self._load_cookies()
        return self._cookies  # type: ignore[return-value]

    @property
    def signed_cookies(self) -> dict[str, Any]:
        """Cookies whose signature checks out with ``App(cookie_secret=...)``."""
        if self._signed_cookies is None:
            self._load_cookies()
        return self._signed_cookies  # type: ignore[return-value]

    def _load_cookies(self) -> None:
        from evserve.cookies import parse_cookie_header, split_signed

        cookies = parse_cookie_header(self.headers.get("cookie"))
        secret = self.app.settings.get("cookie_secret") if self.app is not None else None
        if secret:
            plain, signed = split_signed(cookies, secret)
            self._cookies, self._signed_cookies = _json_cookies(plain), _json_cookies(signed)
        else:
            self._cookies, self._signed_cookies = _json_cookies(cookies), {}

    # -- the connection ---------------------------------------------------------------------------

    @property
    def reactor(self) -> Reactor | None:
        """The reactor running this request (use its ``call_soon_threadsafe`` from threads)."""
        return self._exchange.reactor if self._exchange is not None else None

    @property
    def connection(self) -> Connection | None:
        """The connection the request arrived on (``None`` for a request built by hand)."""
        return self._exchange.connection if self._exchange is not None else None

    @property
    def exchange(self) -> Exchange | None:
        """The connection's exchange this request came from (``None`` for one built by hand)."""
        return self._exchange

    def on_close(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when the connection closes (e.g. the client went away)."""
        if self._exchange is not None:
            self._exchange.add_close_callback(callback)

    @property
    def socket_address(self) -> str:
        """The peer's IP address as seen on the socket (no proxy headers)."""
        peer = self._exchange.peer if self._exchange is not None else None
        if isinstance(peer, tuple) and peer:
            return str(peer[0])
        return ""

    def _trust(self) -> Callable[[str, int], bool]:
        setting = self.app.settings.get("trust_proxy", False) if self.app is not None else False
        return trust_predicate(setting)

    @property
    def ips(self) -> list[str]:
        """With ``trust_proxy``, the client and proxy addresses, client first (else ``[]``)."""
        chain = self._address_chain()
        return list(reversed(chain[1:])) if len(chain) > 1 else []

    def _address_chain(self) -> list[str]:
        """Socket address then X-Forwarded-For hops nearest first, cut at the first untrusted."""
        addrs = [self.socket_address]
        forwarded = self.headers.get("x-forwarded-for")
        if forwarded:
            addrs.extend(a.strip() for a in reversed(forwarded.split(",")) if a.strip())
        trust = self._trust()
        for i in range(len(addrs) - 1):
            if not trust(addrs[i], i):
                return addrs[: i + 1]
        return addrs

    @property
    def ip(self) -> str:
        """The client address: the socket peer, or with ``trust_proxy`` the X-Forwarded-For hop
        nearest the first untrusted proxy."""
        return self._address_chain()[-1]

    @property
    def protocol(self) -> str:
        """``"https"`` or ``"http"``, as the connection is; X-Forwarded-Proto is honoured from a
        trusted proxy. The scheme of an absolute-form target does not count (as in Express):
        a client can write any scheme there."""
        secure = self._exchange.secure if self._exchange is not None else False
        proto = "https" if secure else "http"
        if not self._trust()(self.socket_address, 0):
            return proto
        header = self.headers.get("x-forwarded-proto")
        if header:
            return header.split(",", 1)[0].strip().lower() or proto
        return proto

    @property
    def secure(self) -> bool:
        """Whether ``protocol`` is https."""
        return self.protocol == "https"

    @property
    def host(self) -> str | None:
        """The Host (with its port); X-Forwarded-Host is honoured from a trusted proxy.

        For an absolute-form request the target's authority replaces the Host header
        (RFC 9112 section 3.2.2)."""
        value: str | None = None
        if self._trust()(self.socket_address, 0):
            forwarded = self.headers.get("x-forwarded-host")
            if forwarded:
                value = forwarded.split(",", 1)[0].strip()
        if not value:
            value = self.__dict__.get("_authority") or self.headers.get("host")
        return value or None

    @property
    def hostname(self) -> str | None:
        """``host`` without the port (an IPv6 literal keeps its brackets)."""
        host = self.host
        if host is None:
            return None
        if host.startswith("["):
            end = host.find("]")
            return host[: end + 1] if end >= 0 else host
        return host.split(":", 1)[0]

    @property
    def subdomains(self) -> list[str]:
        """The hostname's labels before the last two, most specific last reversed like Express."""
        hostname = self.hostname
        if not hostname or hostname.startswith("[") or _is_ip(hostname):
            return []
        return list(reversed(hostname.split(".")[:-2]))

    @property
    def fresh(self) -> bool:
        """Whether the client's cached copy is still valid (for GET/HEAD with a 2xx/304)."""
        from evserve.freshness import is_fresh

        res = self.res
        if self.method not in ("GET", "HEAD") or res is None:
            return False
        status = res.status_code
        if not (200 <= status < 300 or status == 304):
            return False
        etag = res.get("ETag")
        if etag is None and (self.headers.get("if-none-match") or "").strip() == "*":
            # RFC 9110 section 13.1.2 (and jshttp/fresh, as Express): "*" matches any current
            # representation, whether or not the response has an ETag yet.
            etag = "*"
        return is_fresh(self.headers, etag, res.get("Last-Modified"))

    @property
    def stale(self) -> bool:
        """``not fresh``."""
        return not self.fresh

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.original_url}>"


_AUTHORITY_END = re.compile(r"[/?#]")


def origin_form(target: str) -> str:
    """The origin-form (path and query) of a request target such as ``req.original_url``.

    An absolute-form target loses its scheme and authority (``http://h/p?q`` gives ``/p?q``,
    ``http://h`` gives ``/``); an origin-form target, ``*`` and an authority-form target
    (``host:443``) are returned unchanged. Use it for the path of ``req.original_url``:
    ``origin_form(req.original_url).split("?", 1)[0]``.

    Args:
        target: a request target, without its fragment.

    Returns:
        The origin-form target. Never raises.
    """
    if target[:1] == "/" or "://" not in target:
        return target  # origin-form, "*", or authority-form (CONNECT): leave as is
    rest = target.split("://", 1)[1]
    end = _AUTHORITY_END.search(rest)
    if end is None or rest[end.start()] == "#":
        return "/"
    if rest[end.start()] == "?":
        return "/" + rest[end.start():]
    return rest[end.start():]


def _json_cookies(cookies: dict[str, str]) -> dict[str, Any]:
    """cookie-parser's JSONCookies: a ``j:`` value whose JSON parses to something truthy (in
    JavaScript's sense) is replaced by it; anything else stays the text it was.

    The JSON is read by :mod:`evserve.jsontext`, as JSON bodies are: a value a response could
    not write back (``NaN``, ``1e999``, an unpaired ``\\ud800``) or nested deeper than 100
    levels makes the cookie unparsable, so it stays text.
    """
    from evserve.jsontext import loads

    out: dict[str, Any] = cookies
    for name, value in cookies.items():
        if value.startswith("j:"):
            try:
                parsed = loads(value[2:])
            except ValueError:
                continue
            if isinstance(parsed, (dict, list)) or parsed:
                out[name] = parsed
    return out


def _flatten(types: tuple[str | list[str], ...]) -> list[str]:
    out: list[str] = []
    for t in types:
        if isinstance(t, (list, tuple)):
            out.extend(t)
        else:
            out.append(t)
    return out


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


_TRUST_CACHE: dict[Any, Callable[[str, int], bool]] = {}


def trust_predicate(setting: Any) -> Callable[[str, int], bool]:
    """Turn an App ``trust_proxy`` setting into ``fn(address, hop_index) -> bool``.

    Raises:
        ValueError: an address or CIDR that does not parse (``"10.0.0.0/33"``, ``"yes"``).
        TypeError: a setting of another kind (a float, a dict...).
    """
    # Keyed with the type too: True == 1 and hash(True) == hash(1), but True trusts every hop
    # and 1 trusts one.
    key: Any = (type(setting), tuple(setting) if isinstance(setting, list) else setting)
    try:
        cached = _TRUST_CACHE.get(key)
    except TypeError:
        cached = None
        key = None
    if cached is not None:
        return cached
    fn: Callable[[str, int], bool]
    if setting is True:
        fn = _trust_all
    elif setting is False or setting is None:
        fn = _trust_none
    elif isinstance(setting, int):
        hops = setting

        def fn(addr: str, i: int) -> bool:
            return i < hops
    elif callable(setting):
        fn = setting
    elif not isinstance(setting, (str, list, tuple)):
        raise TypeError(f"trust_proxy is True, False, a hop count, addresses/CIDRs or a function, "
                        f"not {setting!r}")
    else:
        items = [setting] if isinstance(setting, str) else list(setting)
        names = {"loopback": ["127.0.0.0/8", "::1/128"],
                 "linklocal": ["169.254.0.0/16", "fe80::/10"],
                 "uniquelocal": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]}
        nets = []
        for item in items:
            for part in str(item).split(","):
                part = part.strip()
                for cidr in names.get(part, [part]):
                    try:
                        nets.append(ipaddress.ip_network(cidr, strict=False))
                    except ValueError:
                        raise ValueError(
                            f"trust_proxy: {cidr!r} is not an address, a CIDR, or one of "
                            "loopback, linklocal, uniquelocal") from None

        def fn(addr: str, i: int) -> bool:
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                return False
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            return any(ip.version == n.version and ip in n for n in nets)
    if key is not None:
        _TRUST_CACHE[key] = fn
    return fn


def _trust_all(addr: str, i: int) -> bool:
    return True


def _trust_none(addr: str, i: int) -> bool:
    return False
