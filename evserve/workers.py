"""Pre-forked worker processes sharing one port: start, restart, reload on SIGHUP, stop.

The master binds the listening sockets, forks the workers and then only supervises: it runs no
application code and never accepts a connection. It holds one listening socket per worker slot
for its whole life (one ``SO_REUSEPORT`` socket per slot where the platform has it, so the
kernel spreads connections over the slots; one shared socket elsewhere). A worker serves its
slot's socket; when a worker is replaced (a reload, a restart after a crash) its successor
serves the same socket, so connections queued meanwhile wait in it instead of being refused or
reset.

Signals to the master: SIGINT and SIGTERM stop the workers gracefully (each finishes its
in-flight requests within ``graceful_timeout``, then is killed); a SIGINT during that shutdown
(a second Ctrl-C) kills the workers and exits at once. SIGHUP reloads: a new worker is started
for each slot and the old one is stopped gracefully once its successor is ready; when the
command line started the master the application is imported again first (see
``evserve.cli``), and a failed import or a new worker dying before it is ready leaves the old
workers serving.

Workers leave when the master dies, however it dies: on Linux the kernel sends them SIGTERM
(``PR_SET_PDEATHSIG``); everywhere they watch a pipe from the master whose end of file says the
master is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from evserve.config import Config
from evserve.reactor import Reactor
from evserve.server import (
    Server,
    bind_socket,
    force_exit,
    listen_error_message,
    listen_or_exit,
    run_until_signal,
    thread_wait,
    where_listening,
)

__all__ = ["serve_workers"]

log = logging.getLogger("evserve")

RESTART_WINDOW = 1.0  # seconds: a worker dying sooner than this after its start died "quickly"
MAX_QUICK_DEATHS = 5  # consecutive quick deaths after which the master gives up
RESTART_BACKOFF = 0.05  # seconds before restarting after a quick death; doubles each time
MAX_RESTART_DELAY = 1.0
KILL_MARGIN = 2.0  # seconds past graceful_timeout after which a stopping worker is killed
ORPHAN_MARGIN = 5.0  # the same margin for a worker whose master is gone (it kills itself)
TICK = 0.05  # seconds between two looks at the workers
FORCED_REAP_TIME = 2.0  # seconds a forced exit waits for the killed workers to be reaped
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_MASTER_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def serve_workers(
    app: Any, host: str, port: int, config: Config, *, reload_app: Callable[[], Any] | None = None
) -> None:
    """Serve ``app`` from ``config.workers`` forked processes until SIGINT/SIGTERM.

    Runs in the main thread (it takes over SIGINT, SIGTERM and SIGHUP). ``reload_app``, when
    given, is called on SIGHUP for the application the new workers serve (a fresh import);
    without it they serve ``app`` again.

    Raises:
        RuntimeError: the platform has no ``os.fork``.
        SystemExit: the address cannot be listened on (one line, see ``listen_or_exit``), or
            workers kept dying right after their start and the master gave up (status 1, after
            an error line on the ``evserve`` logger).
    """
    if not hasattr(os, "fork"):
        raise RuntimeError("workers > 1 needs os.fork (not available on this platform)")
    sockets = _bind_slots(host, port, config)
    try:
        master = _Master(app, host, sockets, config, reload_app)
        master.run()
    finally:
        for sock in set(sockets):
            sock.close()
    if master.failure is not None:
        raise SystemExit(1)


def _bind_slots(host: str, port: int, config: Config) -> list[socket.socket]:
    """One listening socket per worker slot (all the same socket without SO_REUSEPORT)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return [listen_or_exit(host, port, config.backlog)] * config.workers
    # SO_REUSEPORT would let these sockets join another process's group on the port (another
    # server of the same user) and share its traffic silently: bind once without it first, so
    # a taken port is reported as taken (and port 0 becomes a real one).
    real_port = port
    sockets: list[socket.socket] = []
    try:
        try:
            with bind_socket(host, port, config.backlog, listen=False) as probe:
                real_port = probe.getsockname()[1]
            for _ in range(config.workers):
                sockets.append(bind_socket(host, real_port, config.backlog, reuse_port=True))
        except OSError as exc:
            raise SystemExit("error: " + listen_error_message(exc, host, real_port)) from exc
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class _Worker:
    """What the master knows of one worker process."""

    __slots__ = ("kill_at", "pid", "ready", "ready_fd", "slot", "started")

    def __init__(self, pid: int, slot: int, ready_fd: int) -> None:
        self.pid = pid
        self.slot = slot
        self.started = time.monotonic()
        self.ready = False
        self.ready_fd: int | None = ready_fd  # the worker writes one byte here once it serves
        self.kill_at: float | None = None  # when stopping: SIGKILL if still alive by then


class _Master:
    """The supervising loop: signal handlers only record; the loop acts every ``TICK``."""

    def __init__(
        self, app: Any, host: str, sockets: list[socket.socket], config: Config,
        reload_app: Callable[[], Any] | None,
    ) -> None:
        self.app = app
        self.host = host
        self.port: int = sockets[0].getsockname()[1]
        self.sockets = sockets
        self.config = config
        self.settings = {name: getattr(config, name) for name, *_ in Config.describe() if name != "workers"}
        self.reload_app = reload_app
        self.pid = os.getpid()
        self.workers: dict[int, _Worker] = {}  # by pid: every child not yet reaped
        self.serving: dict[int, _Worker] = {}  # by slot: the worker that serves the slot
        self.incoming: dict[int, _Worker] = {}  # by slot: its successor during a reload
        self.restart_at: dict[int, float] = {}  # by slot: when to start a worker again
        self.quick_deaths = 0
        self.stop_requested = False  # set by the signal handler
        self.reload_requested = False
        self.stopping = False  # the loop has begun the shutdown
        self.stop_reason = "stop"  # what the shutdown log line names
        self.failure: str | None = None
        # The master keeps the only write end: the workers see end of file when it dies.
        self.life_r, self.life_w = os.pipe()

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        previous: dict[signal.Signals, Any] = {}
        try:
            for signum in _MASTER_SIGNALS:
                previous[signum] = signal.signal(signum, self._on_signal)
            for slot in range(self.config.workers):
                self.serving[slot] = self._start(slot)
            log.info("evserve listening on %s with %d workers (press Ctrl-C to quit)",
                     where_listening(self.host, self.port), self.config.workers)
            while self.workers or not self.stopping:
                self._turn()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for worker in self.workers.values():  # only after an unexpected error
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
            for worker in self.workers.values():
                self._close_ready(worker)
            os.close(self.life_r)
            os.close(self.life_w)

    def _turn(self) -> None:
        if self.stop_requested and not self.stopping:
            self._begin_stop()
        if self.reload_requested:
            self.reload_requested = False
            self._reload()
        self._wait_ready(TICK)
        self._reap()
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.kill_at is not None and now >= worker.kill_at:
                worker.kill_at = None
                log.warning("worker %d did not stop within graceful_timeout: killing it", worker.pid)
                self._send(worker, signal.SIGKILL)
        if not (self.stopping or self.stop_requested):
            for slot, when in list(self.restart_at.items()):
                if when <= now:
                    del self.restart_at[slot]
                    self._restart(slot)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGHUP:
            self.reload_requested = True
        elif not self.stop_requested:
            self.stop_requested = True
            self.stop_reason = signal.Signals(signum).name
        elif signum == signal.SIGINT:
            self._force()
        # A repeated SIGTERM changes nothing: a process manager signalling the whole group
        # sends one to the master and one to each worker.

    # -- starting ---------------------------------------------------------------------------------

    def _start(self, slot: int) -> _Worker:
        ready_r, ready_w = os.pipe()
        # Block the master's signals across fork: a worker must never run the master's handlers
        # (it would stop its siblings, or reload) before it has its own.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _MASTER_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(ready_r)
            os.close(ready_w)
            raise
        if pid == 0:
            os.close(ready_r)
            self._run_worker(slot, ready_w, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(ready_w)
        os.set_blocking(ready_r, False)
        worker = _Worker(pid, slot, ready_r)
        self.workers[pid] = worker
        return worker

    def _restart(self, slot: int) -> None:
        try:
            self.serving[slot] = self._start(slot)
        except OSError as exc:  # out of processes or memory: a quick death in all but name
            log.error("cannot start a worker: %s", exc)
            self._count_quick_death(f"fork failed: {exc}", slot)

    def _run_worker(self, slot: int, ready_w: int, mask: set[int | signal.Signals]) -> NoReturn:
        """The child's side of the fork: serve the slot's socket until stopped, then exit."""
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloading is the master's business
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            _die_with_parent()
            if os.getppid() != self.pid:  # the master died before the line above
                os._exit(0)
            sock = self.sockets[slot]
            for other in set(self.sockets):
                if other is not sock:
                    other.close()
            os.close(self.life_w)
            for worker in self.workers.values():
                if worker.ready_fd is not None:
                    os.close(worker.ready_fd)
            reactor = Reactor()
            server = Server(reactor, self.app, self.host, self.port, sock=sock, **self.settings)
            reactor.add_reader(self.life_r, _on_master_gone, reactor, self.life_r,
                               self.config.graceful_timeout)
            os.write(ready_w, b"r")
            os.close(ready_w)
            run_until_signal(reactor, server)
        except BaseException:
            log.exception("worker %d failed", os.getpid())
            code = 1
        finally:
            os._exit(code)

    def _wait_ready(self, timeout: float) -> None:
        waiting = {w.ready_fd: w for w in self.workers.values() if w.ready_fd is not None}
        if not waiting:
            time.sleep(timeout)
            return
        readable, _, _ = select.select(list(waiting), [], [], timeout)
        for fd in readable:
            worker = waiting[fd]
            try:
                data = os.read(fd, 1)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            self._close_ready(worker)
            if data:
                self._on_ready(worker)

    def _on_ready(self, worker: _Worker) -> None:
        worker.ready = True
        slot = worker.slot
        if self.incoming.get(slot) is not worker:
            return
        del self.incoming[slot]
        old = self.serving.get(slot)
        self.serving[slot] = worker
        if old is not None:
            self._retire(old)
        if not self.incoming:
            log.info("SIGHUP: reload done, workers now %s",
                     ", ".join(str(w.pid) for _, w in sorted(self.serving.items())))

    # -- ending -----------------------------------------------------------------------------------

    def _reap(self) -> None:
        for worker in list(self.workers.values()):
            try:
                pid, status = os.waitpid(worker.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: gone all the same
                pid, status = worker.pid, 0
            if pid == 0:
                continue
            del self.workers[worker.pid]
            self._close_ready(worker)
            self._on_exit(worker, status)

    def _on_exit(self, worker: _Worker, status: int) -> None:
        slot = worker.slot
        how = _describe(status)
        if self.incoming.get(slot) is worker:
            # A reload's new worker that could not start: the old one keeps the slot. Not a
            # crash loop (that would take the serving workers down for a bad reload).
            del self.incoming[slot]
            kept = self.serving.get(slot)
            log.error("SIGHUP: new worker %d died (%s) before serving; worker %s keeps serving",
                      worker.pid, how, kept.pid if kept is not None else "none")
            return
        if self.serving.get(slot) is not worker:
            log.debug("worker %d stopped (%s)", worker.pid, how)
            return
        del self.serving[slot]
        if self.stopping or self.stop_requested:  # a signal to the whole group reached it first
            log.debug("worker %d stopped (%s)", worker.pid, how)
            return
        successor = self.incoming.pop(slot, None)
        if successor is not None:  # died during a reload: its successor takes the slot now
            self.serving[slot] = successor
            log.warning("worker %d died (%s); worker %d takes its place", worker.pid, how, successor.pid)
            return
        lived = time.monotonic() - worker.started
        if lived >= RESTART_WINDOW:
            self.quick_deaths = 0
            log.warning("worker %d died (%s) after %.1f s: restarting", worker.pid, how, lived)
            self.restart_at[slot] = time.monotonic()
            return
        self._count_quick_death(f"worker {worker.pid}: {how} after {lived:.2f} s", slot)

    def _count_quick_death(self, what: str, slot: int) -> None:
        self.quick_deaths += 1
        if self.quick_deaths >= MAX_QUICK_DEATHS:
            self.failure = what
            log.error("workers keep dying right after they start (%d in a row, the last %s): giving up",
                      self.quick_deaths, what)
            self.stop_reason = "crash loop"
            self._begin_stop()
            return
        delay = min(MAX_RESTART_DELAY, RESTART_BACKOFF * 2 ** (self.quick_deaths - 1))
        log.warning("%s, right after its start: restarting in %.2f s", what, delay)
        self.restart_at[slot] = time.monotonic() + delay

    def _begin_stop(self) -> None:
        self.stopping = True
        self.restart_at.clear()
        hint = " (press Ctrl-C again to force)" if self.stop_reason == "SIGINT" else ""
        log.info("%s: stopping %d workers gracefully%s", self.stop_reason, len(self.workers), hint)
        for worker in self.workers.values():
            self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        """Ask ``worker`` to stop gracefully; it is killed if still alive after the grace."""
        deadline = time.monotonic() + self.config.graceful_timeout + KILL_MARGIN
        if worker.kill_at is None or worker.kill_at > deadline:
            worker.kill_at = deadline
        self._send(worker, signal.SIGTERM)

    def _send(self, worker: _Worker, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signum)

    def _close_ready(self, worker: _Worker) -> None:
        if worker.ready_fd is not None:
            os.close(worker.ready_fd)
            worker.ready_fd = None

    def _force(self) -> NoReturn:
        """A second Ctrl-C: kill every worker, reap them (briefly), and exit now."""
        for worker in self.workers.values():
            self._send(worker, signal.SIGKILL)
        deadline = time.monotonic() + FORCED_REAP_TIME
        for worker in list(self.workers.values()):
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(worker.pid, os.WNOHANG)[0] != 0:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.01)
        force_exit(f"SIGINT again: killed {len(self.workers)} workers, exiting now")

    # -- reloading --------------------------------------------------------------------------------

    def _reload(self) -> None:
        if self.stopping:
            return
        if self.incoming:
            log.warning("SIGHUP: a reload is still in progress; ignored")
            return
        if self.reload_app is not None:
            try:
                app = self.reload_app()
            except (Exception, SystemExit) as exc:
                log.error("SIGHUP: loading the application again failed; the running workers "
                          "keep serving it", exc_info=exc.__cause__ or exc)
                return
            self.app = app
        log.info("SIGHUP: starting %d new workers; the old ones stop once they are ready",
                 self.config.workers)
        for slot in range(self.config.workers):
            if slot not in self.serving:
                continue  # waiting for a restart, which starts the new application anyway
            try:
                self.incoming[slot] = self._start(slot)
            except OSError as exc:
                log.error("SIGHUP: cannot start a worker (%s); worker %d keeps serving",
                          exc, self.serving[slot].pid)


def _die_with_parent() -> None:
    """On Linux, have the kernel send this process SIGTERM when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:  # no libc to load, or no prctl in it
        log.debug("prctl unavailable: %s", exc)


def _on_master_gone(reactor: Reactor, fd: int, grace: float) -> None:
    """The master's pipe says end of file: stop as on SIGTERM, and make sure of the exit."""
    reactor.remove_reader(fd)
    log.warning("worker %d: the master process is gone; shutting down", os.getpid())
    # Nobody is left to kill this worker if a handler keeps it from stopping: it does so itself.
    limit = thread_wait(grace + ORPHAN_MARGIN)
    if limit is not None:  # graceful_timeout=inf means no limit: then no watchdog either
        watchdog = threading.Timer(limit, os._exit, (1,))
        watchdog.daemon = True
        watchdog.start()
    os.kill(os.getpid(), signal.SIGTERM)
