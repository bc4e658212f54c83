"""Pre-forked worker processes sharing one port: start, restart on death, pass signals on."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import Any

from evserve.config import Config
from evserve.reactor import Reactor
from evserve.server import Server, bind_socket, run_until_signal

__all__ = ["serve_workers"]

log = logging.getLogger("evserve")

RESTART_WINDOW = 1.0  # a worker dying sooner than this after its start counts as a crash loop
MAX_QUICK_DEATHS = 5  # consecutive quick deaths after which the master gives up
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _config_kwargs(config: Config) -> dict[str, Any]:
    return {name: getattr(config, name) for name, *_ in Config.describe() if name != "workers"}


def serve_workers(app: Any, host: str, port: int, config: Config) -> None:
    """Serve ``app`` from ``config.workers`` forked processes until SIGINT/SIGTERM.

    With SO_REUSEPORT (Linux, BSD) every worker listens on its own socket bound to the port and
    the kernel spreads connections over them; elsewhere the workers share one inherited socket.
    A worker that dies is restarted; SIGINT/SIGTERM are passed on to the workers, which shut
    down gracefully within ``graceful_timeout`` (then they are killed).
    """
    if not hasattr(os, "fork"):
        raise RuntimeError("workers > 1 needs os.fork (not available on this platform)")
    reuse_port = hasattr(socket, "SO_REUSEPORT")
    # Reserve the port (and learn it when 0 was asked for); with SO_REUSEPORT this socket only
    # holds the port and never listens, so it receives no connections.
    master_sock = bind_socket(host, port, config.backlog, reuse_port=reuse_port, listen=not reuse_port)
    real_port = master_sock.getsockname()[1]
    settings = _config_kwargs(config)
    children: dict[int, float] = {}
    stopping = False
    quick_deaths = 0

    def start_worker() -> None:
        # Block the stop signals across fork: a worker must never run the master's handler
        # (it would signal its siblings and swallow its own stop) before it has its own.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        else:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                if reuse_port:
                    master_sock.close()
                    sock = bind_socket(host, real_port, config.backlog, reuse_port=True)
                else:
                    sock = master_sock
                reactor = Reactor()
                server = Server(reactor, app, host, real_port, sock=sock, **settings)
                run_until_signal(reactor, server)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                os._exit(code)
        children[pid] = time.monotonic()

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            log.info("signal %d: stopping %d workers", signum, len(children))
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for _ in range(config.workers):
            start_worker()
        log.info("evserve listening on http://%s:%d with %d workers", host, real_port, config.workers)
        deadline: float | None = None
        while children:
            if stopping and deadline is None:
                deadline = time.monotonic() + config.graceful_timeout + 2
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if deadline is not None and time.monotonic() > deadline:
                    for child in list(children):
                        try:
                            os.kill(child, signal.SIGKILL)
                        except ProcessLookupError:
                            children.pop(child, None)
                time.sleep(0.05)
                continue
            started = children.pop(pid, None)
            if started is None or stopping:
                continue
            lived = time.monotonic() - started
            quick_deaths = quick_deaths + 1 if lived < RESTART_WINDOW else 0
            log.warning("worker %d died (status %d) after %.1f s: restarting", pid, status, lived)
            if quick_deaths >= MAX_QUICK_DEATHS:
                log.error("workers keep dying at start: giving up")
                on_signal(signal.SIGTERM, None)
                continue
            start_worker()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        master_sock.close()
