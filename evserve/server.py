"""Listening sockets, accepting, deadlines sweep and shutdown; ``serve`` and ``run_in_thread``."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from evserve.config import Config
from evserve.connection import Connection, State
from evserve.handlers import Handler, as_handler
from evserve.reactor import EVENT_READ, Reactor, install_listen
from evserve.transport import SocketTransport

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "FORCED_EXIT_STATUS",
    "Server",
    "bind_socket",
    "check_port",
    "force_exit",
    "format_url",
    "free_port_near",
    "listen",
    "listen_error_message",
    "listen_or_exit",
    "log_to_stderr_if_unconfigured",
    "run_in_thread",
    "run_until_signal",
    "serve",
]

log = logging.getLogger("evserve")

# One default for every entry point (serve, app.listen, run_in_thread, reactor.listen, the CLI):
# the loopback interface, so nothing is exposed to the network unless asked for.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# The status of a process ended by a second Ctrl-C: 128 + SIGINT, what a shell reports for a
# program that Ctrl-C killed.
FORCED_EXIT_STATUS = 130

ACCEPTS_PER_WAKE = 64  # bounded, so a connection storm cannot starve established connections
ACCEPT_BACKOFF = 0.1  # seconds accepting pauses when the process runs out of descriptors
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
FRESH_GRACE = 1.0  # seconds a connection that has not sent its first request gets at shutdown
FRESH_POLL = 0.05  # seconds between two looks at such connections
INF = float("inf")


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


def check_port(port: Any) -> None:
    """Refuse a port that is not an int in 0-65535 (``TypeError`` / ``ValueError``)."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {port!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0-65535, not {port}")


def format_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server listening on ``host:port``."""
    host = host or "0.0.0.0"
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def where_listening(host: str, port: int) -> str:
    """How the listening line names the address: its URL, and for a wildcard host (``""``,
    ``0.0.0.0``, ``::``) that every interface is served, which the local URL alone would hide."""
    url = format_url(host, port)
    if host in ("", "0.0.0.0", "::"):
        return f"{url} and every other interface of this machine (host {host or '0.0.0.0'!r})"
    return url


def free_port_near(host: str, port: int) -> int | None:
    """A port above ``port`` that can be bound on ``host`` now, or None (for error hints)."""
    for candidate in range(port + 1, min(port + 50, 65536)):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return candidate
    return None


def listen_error_message(exc: OSError, host: str, port: int, port_hint: str = "port {}") -> str:
    """One line saying why ``host:port`` cannot be listened on, from the ``OSError`` of the bind.

    ``port_hint`` words the suggestion of a free port when the port is taken (the CLI says
    ``--port {}``).
    """
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r}: {exc.strerror or exc}"
    if exc.errno == errno.EADDRINUSE:
        free = free_port_near(host, port) if port else None
        hint = f"; try {port_hint.format(free)}" if free else ""
        return f"port {port} on {host} is already in use{hint}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: it is not an address of this machine"
    if exc.errno == errno.EACCES:
        needs = " (ports below 1024 need privileges)" if 0 < port < 1024 else ""
        return f"no permission to listen on {host}:{port}{needs}"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def listen_or_exit(host: str, port: int, backlog: int, *, reuse_port: bool = False) -> socket.socket:
    """``bind_socket``, for the entry points that own the process (``serve``, ``app.listen``).

    Raises:
        SystemExit: the address cannot be listened on; its message is one line (``error: port
            8080 on 127.0.0.1 is already in use; try port 8081``), which Python prints instead of
            a traceback, and its ``__cause__`` is the ``OSError``.
    """
    try:
        return bind_socket(host, port, backlog, reuse_port=reuse_port)
    except OSError as exc:
        raise SystemExit("error: " + listen_error_message(exc, host, port)) from exc


@contextlib.contextmanager
def log_to_stderr_if_unconfigured() -> Iterator[None]:
    """While the block runs, show ``evserve`` INFO records on stderr if nobody configured logging.

    Nothing changes when the root logger or an ``evserve`` logger has a handler (the program
    chose where logs go); otherwise a stderr handler is added to ``evserve`` for the block, so
    that a script calling ``app.listen()`` shows its URL, as the command line does.
    """
    ours = logging.getLogger("evserve")
    configured = bool(logging.getLogger().handlers) or any(
        not isinstance(handler, logging.NullHandler)
        for name, found in logging.Logger.manager.loggerDict.items()
        if (name == "evserve" or name.startswith("evserve.")) and isinstance(found, logging.Logger)
        for handler in found.handlers
    )
    if configured:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = ours.level
    ours.addHandler(handler)
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)
    try:
        yield
    finally:
        ours.removeHandler(handler)
        ours.setLevel(level)


def force_exit(message: str) -> NoReturn:
    """End the process now with ``FORCED_EXIT_STATUS`` (a second Ctrl-C), after logging ``message``.

    Nothing else runs: no ``finally`` block, no ``atexit`` handler, no wait for threads (a
    handler stuck in ``to_thread`` must not keep the process alive); log handlers and the
    standard streams are flushed first.
    """
    log.warning("%s", message)
    for logger in (logging.getLogger(), logging.getLogger("evserve")):
        for handler in logger.handlers:
            with contextlib.suppress(Exception):
                handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(FORCED_EXIT_STATUS)



def thread_wait(seconds: float) -> float | None:
    """``seconds`` as a timeout for ``threading`` waits, which refuse one past ``time_t``
    (``float("inf")``, a valid setting meaning no limit): ``None``, wait for ever, then."""
    return seconds if seconds < 1e9 else None

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
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        sock: socket.socket | None = None,
        **config: Any,
    ) -> None:
        """Listen on ``host:port`` (or serve ``sock``, a bound listening socket) on ``reactor``.

        Raises:
            TypeError: an unknown setting, or ``workers`` other than 1 (one ``Server`` is one
                process: forking workers is what ``serve``, ``app.listen`` and the CLI do).
            ValueError: a setting or the port out of range.
            OSError: the address cannot be listened on.
        """
        if sock is None:
            check_port(port)
        self.reactor = reactor
        self.app = app
        self.handler: Handler = as_handler(app)
        self.config = Config.from_kwargs(**config)
        if self.config.workers != 1:
            raise TypeError(
                f"workers={self.config.workers} cannot be honoured here: a server started by "
                "reactor.listen or run_in_thread runs in this process; serve(), app.listen() "
                "and python -m evserve fork workers"
            )
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
        """Tell the application that cares (an ``App``: ``attach_server``) which server serves
        it; a no-op for others."""
        hook = getattr(self.app, "attach_server", None)
        if callable(hook):
            hook(self)

    # -- properties ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:8080``."""
        return format_url(self.host, self.port)

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
            self.reactor.register(self._sock, EVENT_READ, self._on_accept)

    def _resume_accepting(self) -> None:
        if not self._shutting_down and len(self._connections) < self.config.max_connections:
            self._start_accepting()

    def _stop_accepting(self) -> None:
        if self._sock is not None and self._accepting:
            self._accepting = False
            self.reactor.unregister(self._sock)

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
        conn = Connection(self.handler, config, transport, self.reactor, peer)
        transport.conn = conn
        conn.on_closed = self._on_connection_closed
        self._connections.add(conn)
        if self._sweep_handle is None:
            self._sweep_handle = self.reactor.call_later(self._tick, self._sweep)

    def _on_connection_closed(self, conn: Connection) -> None:
        self._connections.discard(conn)
        transport = conn.transport
        if isinstance(transport, SocketTransport) and transport.is_lingering:
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
            if isinstance(transport, SocketTransport) and transport.write_deadline != INF:
                if transport.write_deadline > now:
                    transport.sample_kernel_queue()
                elif transport.write_stalled(now):
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
        grace = self.config.graceful_timeout if timeout is None else timeout
        self._run_on_reactor(self._begin_shutdown, timeout, grace=grace)

    def _run_on_reactor(self, fn: Callable[..., None], *args: Any, grace: float | None = None) -> None:
        reactor = self.reactor
        if grace is None:
            grace = self.config.graceful_timeout
        if reactor.in_reactor_thread() or not reactor.is_running:
            fn(*args)
            if not reactor.is_running:
                # Nobody turns the loop: drive it here until the work is done (bounded).
                deadline = reactor.time() + grace + 1
                while not self._closed.is_set() and reactor.time() < deadline:
                    reactor.run_once(0.05)
            return
        reactor.call_soon_threadsafe(fn, *args)
        self._closed.wait(thread_wait(grace + 5))

    def _close_listener(self) -> None:
        self._stop_accepting()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _close_now(self) -> None:
        self._close_listener()
        # Responses finished earlier in this turn are still corked (see Reactor.after_io):
        # hand them to the kernel before the aborts, which drop what is queued.
        self.reactor.run_after_io()
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()
        self._finish_shutdown()

    def _begin_shutdown(self, timeout: float | None = None) -> None:
        if self._closed.is_set():
            return
        self._shutting_down = True
        self._close_listener()
        grace = self.config.graceful_timeout if timeout is None else timeout
        fresh = []
        for conn in list(self._connections):
            if conn.state is State.READING_HEADERS:
                fresh.append(conn)
            else:
                conn.shutdown()
        if fresh:
            # A connection accepted a moment ago has had no chance to send its request: closing
            # it now would fail a client that did nothing wrong (a reload stops servers under
            # traffic). It gets a short grace to send one, as from Go's Server.Shutdown.
            self._shutdown_when_spoken(fresh, self.reactor.time() + min(FRESH_GRACE, grace))
        if not self._connections:
            self._finish_shutdown()
            return
        self.reactor.call_later(grace, self._close_now)

    def _shutdown_when_spoken(self, fresh: list[Connection], deadline: float) -> None:
        """Shut down each of ``fresh`` once it has moved past its first head, or at ``deadline``."""
        now = self.reactor.time()
        waiting = []
        for conn in fresh:
            if conn.state is State.READING_HEADERS and now < deadline:
                waiting.append(conn)
            else:
                conn.shutdown()
        if waiting:
            self.reactor.call_later(FRESH_POLL, self._shutdown_when_spoken, waiting, deadline)

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


def listen(reactor: Reactor, app: Any, host: str = DEFAULT_HOST, port: int = 0, **config: Any) -> Server:
    """Serve ``app`` on ``host:port`` from ``reactor``: what ``reactor.listen(app, ...)`` does.

    Installed behind ``Reactor.listen`` when this module is imported (see
    ``evserve.reactor.install_listen``), so the reactor needs no import of the server.

    Raises:
        TypeError, ValueError: an unknown setting, or a setting or port out of range.
        OSError: the address cannot be listened on.
    """
    return Server(reactor, app, host, port, **config)


install_listen(listen)


def serve(app: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **config: Any) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down gracefully and return.

    A program's main loop: it logs ``evserve listening on http://...`` at INFO (on stderr when
    logging is not configured, see ``log_to_stderr_if_unconfigured``), takes over SIGINT and
    SIGTERM while it runs, and a second Ctrl-C during the graceful shutdown ends the process at
    once (``force_exit``). ``config`` takes the keys of ``evserve.config.Config``; with
    ``workers`` above 1 the port is shared by that many pre-forked processes, which SIGHUP
    replaces gracefully (see ``evserve.workers``).

    Raises:
        TypeError, ValueError: an unknown setting, or a setting or port out of range.
        SystemExit: the address cannot be listened on (the port is taken, the host is not an
            address of this machine...): one line, ``error: ...``, that Python prints instead
            of a traceback; the ``OSError`` is its ``__cause__``. An embedding program that
            wants the ``OSError`` itself uses ``run_in_thread`` or ``reactor.listen``. Also
            ``SystemExit(1)`` after a logged error line when worker processes keep dying at
            start.
    """
    settings = Config.from_kwargs(**config)
    check_port(port)
    with log_to_stderr_if_unconfigured():
        if settings.workers > 1:
            from evserve.workers import serve_workers

            serve_workers(app, host, port, settings)
            return
        sock = listen_or_exit(host, port, settings.backlog)
        reactor = Reactor()
        try:
            server = Server(reactor, app, host, port, sock=sock, **config)
        except BaseException:
            sock.close()
            reactor.close()
            raise
        run_until_signal(reactor, server, lambda: log.info(
            "evserve listening on %s (press Ctrl-C to quit)", where_listening(host, server.port)))


def run_until_signal(reactor: Reactor, server: Server, ready: Callable[[], object] | None = None) -> None:
    """Run ``reactor`` until SIGINT/SIGTERM, then shut ``server`` down gracefully.

    Signals are handled only when called from the main thread. While the graceful shutdown
    runs, a SIGINT (a second Ctrl-C) ends the process at once with ``force_exit``, even if a
    handler blocks the reactor; another SIGTERM changes nothing (a process manager that
    signals the whole process group sends one to every process).
    """
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        name = signal.Signals(signum).name
        if not stopping:
            stopping = True
            hint = " (press Ctrl-C again to force)" if signum == signal.SIGINT else ""
            log.info("%s: shutting down gracefully%s", name, hint)
            reactor.call_soon_threadsafe(stop)
        elif signum == signal.SIGINT:
            force_exit(f"{name} again: exiting now, dropping {server.connection_count} connection(s)")
        else:
            log.info("%s: already shutting down", name)

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
        if ready is not None:
            ready()  # announced once a signal can no longer kill the process mid-start
        reactor.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if not server.is_closed:
            server.close()
        reactor.close()


@contextlib.contextmanager
def run_in_thread(app: Any, host: str = DEFAULT_HOST, port: int = 0, **config: Any) -> Iterator[Server]:
    """Run ``app`` on a background reactor thread for the ``with`` block; yields the ``Server``.

    Leaving the block shuts the server down gracefully, stops the reactor and joins the thread.

    Raises:
        TypeError: an unknown setting, or ``workers`` other than 1 (see ``Server``).
        OSError: the address cannot be listened on.
    """
    reactor = Reactor()
    try:
        server = Server(reactor, app, host, port, **config)
    except BaseException:
        reactor.close()
        raise
    thread = threading.Thread(target=reactor.run, name=f"evserve-{server.port}", daemon=True)
    started = threading.Event()
    reactor.call_soon(started.set)
    thread.start()
    started.wait(10)
    failed = True
    try:
        yield server
        failed = False
    finally:
        # After an exception in the block nobody waits for the in-flight requests: a short
        # grace, so a failing test or program does not hang for graceful_timeout.
        grace = min(server.config.graceful_timeout, 1.0) if failed else server.config.graceful_timeout
        server.shutdown(grace)
        reactor.stop()
        thread.join(timeout=thread_wait(grace + 5))
        if thread.is_alive():
            log.error("the evserve reactor thread did not stop within %.3g s: a handler blocks it",
                      grace + 5)
        else:
            reactor.close()
