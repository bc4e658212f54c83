"""Listening sockets, accepting, deadlines sweep and shutdown; ``serve`` and ``run_in_thread``."""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from evserve.config import Config
from evserve.connection import Connection
from evserve.reactor import EVENT_READ, Reactor
from evserve.transport import SocketTransport

__all__ = ["Server", "bind_socket", "run_in_thread", "serve"]

log = logging.getLogger("evserve")

ACCEPTS_PER_WAKE = 64  # bounded, so a connection storm cannot starve established connections
ACCEPT_BACKOFF = 0.1  # seconds accepting pauses when the process runs out of descriptors
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def bind_socket(
    host: str, port: int, backlog: int, *, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """Create a non-blocking listening TCP socket on ``host:port`` (IPv4 or IPv6).

    With ``listen=False`` the socket is only bound (it reserves the port for SO_REUSEPORT peers).

    Raises:
        OSError: the address cannot be resolved or bound (for example, the port is taken).
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise OSError(f"cannot resolve {host!r}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Server:
    """An HTTP server of ``app`` on a reactor; listening from construction on.

    Attributes:
        host: the host it was asked to listen on.
        port: the port it listens on (the real one when asked for port 0).
        url: ``http://host:port`` for clients.
        config: the ``Config`` in force.
    """

    def __init__(
        self,
        reactor: Reactor,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        sock: socket.socket | None = None,
        **config: Any,
    ) -> None:
        self.reactor = reactor
        self.app = app
        self.config = Config.from_kwargs(**config)
        self._sock: socket.socket | None = sock or bind_socket(host, port, self.config.backlog)
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]
        self.host = host
        self._family = self._sock.family
        self._connections: set[Connection] = set()
        # Transports whose connection is over but whose socket still lingers (see
        # SocketTransport._finish_close): closed at the latest when the server stops.
        self._lingering: set[SocketTransport] = set()
        self._accepting = False
        self._sweep_handle: Any = None
        limits = self.config
        timeouts = [limits.keepalive_timeout, limits.header_timeout, limits.body_timeout,
                    limits.write_timeout]
        if limits.handler_timeout is not None:
            timeouts.append(limits.handler_timeout)
        self._tick = min(1.0, max(0.01, min(timeouts) / 10))
        self._closed = threading.Event()
        self._shutting_down = False
        self._start_accepting()
        self.on_app_attached()

    def on_app_attached(self) -> None:
        """Let an application that cares (an ``App``) learn its reactor; a no-op otherwise."""
        hook = getattr(self.app, "_attach_server", None)
        if callable(hook):
            hook(self)

    # -- properties ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:8080``."""
        host = self.host or "0.0.0.0"
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def connection_count(self) -> int:
        """Open HTTP connections now."""
        return len(self._connections)

    @property
    def is_listening(self) -> bool:
        """Whether new connections are accepted."""
        return self._sock is not None

    # -- accepting ----------------------------------------------------------------------------

    def _start_accepting(self) -> None:
        if self._sock is not None and not self._accepting:
            self._accepting = True
            self.reactor._register(self._sock, EVENT_READ, self._on_accept)

    def _resume_accepting(self) -> None:
        if not self._shutting_down and len(self._connections) < self.config.max_connections:
            self._start_accepting()

    def _stop_accepting(self) -> None:
        if self._sock is not None and self._accepting:
            self._accepting = False
            self.reactor._unregister(self._sock)

    def _on_accept(self, mask: int) -> None:
        lsock = self._sock
        if lsock is None:
            return
        config = self.config
        for _ in range(ACCEPTS_PER_WAKE):
            if len(self._connections) >= config.max_connections:
                self._stop_accepting()
                log.warning("max_connections (%d) reached: accepting paused", config.max_connections)
                return
            try:
                sock, peer = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_RESOURCE_ERRORS:
                    # Out of descriptors or memory: the pending connection stays queued and the
                    # socket stays readable, so retrying now would spin. Pause a moment (a
                    # closed connection resumes accepting sooner).
                    log.warning("accept failed: %s; pausing accepts for %.1f s", exc, ACCEPT_BACKOFF)
                    self._stop_accepting()
                    self.reactor.call_later(ACCEPT_BACKOFF, self._resume_accepting)
                    return
                log.debug("accept failed: %s", exc)  # ECONNABORTED and the like: that peer only
                continue
            self._add_connection(sock, peer)

    def _add_connection(self, sock: socket.socket, peer: Any) -> None:
        config = self.config
        sock.setblocking(False)
        if self._family != socket.AF_UNIX:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        transport = SocketTransport(self.reactor, sock, config.write_buffer_size, config.write_timeout)
        conn = Connection(self.app, config, transport, self.reactor, peer)
        transport.conn = conn
        conn.on_closed = self._on_connection_closed
        self._connections.add(conn)
        if self._sweep_handle is None:
            self._sweep_handle = self.reactor.call_later(self._tick, self._sweep)

    def _on_connection_closed(self, conn: Connection) -> None:
        self._connections.discard(conn)
        transport = conn.transport
        if type(transport) is SocketTransport and transport.is_lingering:
            self._lingering.add(transport)
            transport.on_closed = self._lingering.discard
        if not self._accepting and not self._shutting_down and \
                len(self._connections) < self.config.max_connections:
            self._start_accepting()
        if self._shutting_down and not self._connections:
            self._finish_shutdown()

    # -- deadlines ----------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Enforce every connection's deadline; runs every ``tick`` while connections exist."""
        self._sweep_handle = None
        now = self.reactor.time()
        for conn in list(self._connections):
            if conn.deadline <= now:
                conn.check_deadline(now)
            transport = conn.transport
            if isinstance(transport, SocketTransport) and transport.write_deadline <= now:
                conn.write_timed_out()
        if self._connections:
            self._sweep_handle = self.reactor.call_later(self._tick, self._sweep)

    # -- stopping -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening and drop every connection now. Callable from any thread."""
        self._run_on_reactor(self._close_now)

    def shutdown(self, timeout: float | None = None) -> None:
        """Graceful stop: stop accepting, let in-flight requests finish, close idle connections.

        Connections still open after ``timeout`` (default ``graceful_timeout``) are dropped.
        Callable from any thread; from another thread it returns when the server is closed.
        """
        self._run_on_reactor(self._begin_shutdown, timeout)

    def _run_on_reactor(self, fn: Callable[..., None], *args: Any) -> None:
        reactor = self.reactor
        if reactor.in_reactor_thread() or not reactor.is_running:
            fn(*args)
            if not reactor.is_running:
                # Nobody turns the loop: drive it here until the work is done (bounded).
                deadline = reactor.time() + self.config.graceful_timeout + 1
                while not self._closed.is_set() and reactor.time() < deadline:
                    reactor.run_once(0.05)
            return
        reactor.call_soon_threadsafe(fn, *args)
        self._closed.wait(self.config.graceful_timeout + 5)

    def _close_listener(self) -> None:
        self._stop_accepting()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _close_now(self) -> None:
        self._close_listener()
        # Responses finished earlier in this turn are still corked (see Reactor._after_io):
        # hand them to the kernel before the aborts, which drop what is queued.
        self.reactor._run_after_io()
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()
        self._finish_shutdown()

    def _begin_shutdown(self, timeout: float | None = None) -> None:
        if self._closed.is_set():
            return
        self._shutting_down = True
        self._close_listener()
        for conn in list(self._connections):
            conn.shutdown()
        if not self._connections:
            self._finish_shutdown()
            return
        grace = self.config.graceful_timeout if timeout is None else timeout
        self.reactor.call_later(grace, self._close_now)

    def _finish_shutdown(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        # Every response has been flushed to the kernel by now; lingering sockets would
        # outlive the reactor (and leak) if their timers never run, so close them here.
        for transport in list(self._lingering):
            transport.end_linger()
        self._lingering.clear()
        self._closed.set()

    @property
    def is_closed(self) -> bool:
        """Whether the server has stopped listening and has no connections left."""
        return self._closed.is_set()

    def __repr__(self) -> str:
        return f"<Server {self.url} connections={len(self._connections)}>"


def serve(app: Any, host: str = "127.0.0.1", port: int = 8080, **config: Any) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down gracefully and return.

    ``config`` takes the keys of ``evserve.config.Config``; with ``workers`` above 1 the port is
    shared by that many pre-forked processes (see ``evserve.workers``).
    """
    settings = Config.from_kwargs(**config)
    if settings.workers > 1:
        from evserve.workers import serve_workers

        serve_workers(app, host, port, settings)
        return
    reactor = Reactor()
    server = Server(reactor, app, host, port, **config)
    log.info("evserve listening on %s", server.url)
    run_until_signal(reactor, server)


def run_until_signal(reactor: Reactor, server: Server) -> None:
    """Run ``reactor`` until SIGINT/SIGTERM, then shut ``server`` down gracefully."""

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: shutting down gracefully", signum)
        reactor.call_soon_threadsafe(stop)

    def stop() -> None:
        server.shutdown()
        reactor.call_soon(wait_closed)

    def wait_closed() -> None:
        if server.is_closed:
            reactor.stop()
        else:
            reactor.call_later(0.02, wait_closed)

    previous: dict[signal.Signals, Any] = {}
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        reactor.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if not server.is_closed:
            server.close()
        reactor.close()


@contextlib.contextmanager
def run_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> Iterator[Server]:
    """Run ``app`` on a background reactor thread for the ``with`` block; yields the ``Server``.

    Leaving the block shuts the server down gracefully, stops the reactor and joins the thread.
    """
    reactor = Reactor()
    server = Server(reactor, app, host, port, **config)
    thread = threading.Thread(target=reactor.run, name=f"evserve-{server.port}", daemon=True)
    started = threading.Event()
    reactor.call_soon(started.set)
    thread.start()
    started.wait(10)
    try:
        yield server
    finally:
        server.shutdown()
        reactor.stop()
        thread.join(timeout=server.config.graceful_timeout + 5)
        if not thread.is_alive():
            reactor.close()
