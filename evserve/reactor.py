"""The reactor: one thread, one ``selectors`` loop, ready callbacks and a timer heap. No HTTP here.

The loop turns like this: wait in ``select`` until an fd is ready or the nearest timer is due (no
polling: an idle reactor sleeps until its next timer, or forever without one), run the fd
callbacks, then the due timers, then the callbacks queued with ``call_soon``. Another thread may
queue work with ``call_soon_threadsafe``, which wakes a sleeping loop through a socketpair.

Two ways to watch a file descriptor. ``add_reader``/``add_writer`` take any callback with its
arguments, one per direction, for applications. ``register``/``modify``/``unregister`` are the
fast path transports and servers use: one ``callback(mask)`` per fd, called directly with the
ready events. An fd is watched one way or the other, not both.

Transports hold back what they write while handling input and send it once a batch of fd
callbacks has run (``after_io``): the responses of one turn leave in a burst, so the peer is
woken once for many of them rather than once per response, which on loopback and in VMs costs more
than the Python work of a small request.

``Reactor.listen`` builds a server, which lives a layer above: the reactor never imports it.
``evserve.server`` installs the function behind ``listen`` with ``install_listen`` when it is
imported, which ``import evserve`` (or any ``evserve.*`` import) always does first.

An exception raised by a callback is logged to the ``evserve`` logger and the loop goes on.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from evserve.server import Server

__all__ = ["Handle", "ListenFunction", "Reactor", "TimerHandle", "install_listen"]

log = logging.getLogger("evserve")

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
AFTER_IO_BATCH = 64  # fd callbacks after which the held-back writes are sent, even mid-turn
# The longest single wait in select(). Selectors take milliseconds in a C int (epoll, poll: about
# 24.8 days) or refuse large floats (select); a timer further away (days, or float("inf")) is
# reached by waking once a day and waiting again, so any delay an application passes is handled.
MAX_WAIT = 86400.0
_INFINITY = float("inf")


def _seconds(value: float, name: str) -> float:
    """``value`` as a float of seconds, refusing what would corrupt the timer heap."""
    if type(value) is not float and type(value) is not int:
        if isinstance(value, (bool, str, bytes)) or not hasattr(value, "__float__"):
            raise TypeError(f"{name} must be a number of seconds, not {value!r}")
        value = float(value)  # Decimal, Fraction, numpy floats...
    if value != value:
        raise ValueError(f"{name} must not be NaN")
    try:
        return float(value)
    except OverflowError:  # an int past a float's range (10**400): as good as infinite
        return _INFINITY if value > 0 else -_INFINITY


class Handle:
    """A callback queued on the reactor; ``cancel()`` stops it from running."""

    __slots__ = ("_args", "_cancelled", "_fn")

    def __init__(self, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._fn = fn
        self._args = args
        self._cancelled = False

    def cancel(self) -> None:
        """Prevent the callback from running (no effect once it has run)."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel`` was called."""
        return self._cancelled

    def _run(self) -> None:
        try:
            self._fn(*self._args)
        except Exception:
            log.exception("error in reactor callback %r", self._fn)


class TimerHandle(Handle):
    """A callback scheduled at ``when`` (reactor time); ordered by ``(when, seq)``."""

    __slots__ = ("_reactor", "seq", "when")

    def __init__(self, when: float, seq: int, fn: Callable[..., object], args: tuple[Any, ...],
                 reactor: Reactor | None = None) -> None:
        super().__init__(fn, args)
        self.when = when
        self.seq = seq
        self._reactor = reactor  # set while the handle waits in that reactor's heap

    def __lt__(self, other: TimerHandle) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        """Prevent the callback from running (no effect once it has run)."""
        if not self._cancelled:
            self._cancelled = True
            reactor = self._reactor
            # Counted only on the reactor's thread (the count is not locked); a cancel from
            # elsewhere just sets the flag, and the entry is dropped when it comes up.
            if reactor is not None and reactor.in_reactor_thread():
                reactor._timer_cancelled()


class _FdCallbacks:
    """The reader and writer callbacks registered for one file descriptor."""

    __slots__ = ("reader", "writer")

    def __init__(self) -> None:
        self.reader: Handle | None = None
        self.writer: Handle | None = None

    def __call__(self, mask: int) -> None:
        if mask & EVENT_READ and self.reader is not None:
            self.reader._run()
        if mask & EVENT_WRITE and self.writer is not None:
            self.writer._run()


class Reactor:
    """A single-threaded event loop on ``selectors.DefaultSelector``.

    Everything but ``call_soon_threadsafe`` and ``stop`` must be called from the thread running
    the loop (or before it runs).
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._ready: deque[Handle] = deque()
        self._after_io_calls: deque[Callable[[], object]] = deque()  # see after_io
        # (when, seq, handle): tuples compare in C, so heap operations call no Python code.
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._cancelled_timers = 0  # cancelled handles still in the heap
        self._seq = itertools.count()
        self._stopping = False
        self._running = False
        self._closed = False
        self.thread_id: int | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, EVENT_READ, self._drain_wakeups)

    # -- time and scheduling -----------------------------------------------------------------

    @staticmethod
    def time() -> float:
        """The reactor's clock: ``time.monotonic()`` seconds."""
        return time.monotonic()

    def call_soon(self, fn: Callable[..., object], *args: Any) -> Handle:
        """Run ``fn(*args)`` on the next turn of the loop, after the pending fd events."""
        handle = Handle(fn, args)
        self._ready.append(handle)
        return handle

    def call_later(self, delay: float, fn: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``fn(*args)`` once, ``delay`` seconds from now; returns a cancellable handle.

        A negative delay means now; ``float("inf")`` means never (the handle stays cancellable).

        Raises:
            TypeError: ``delay`` is not a real number.
            ValueError: ``delay`` is NaN.
        """
        return self.call_at(time.monotonic() + max(0.0, _seconds(delay, "delay")), fn, *args)

    def call_at(self, when: float, fn: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``fn(*args)`` once at reactor time ``when``; returns a cancellable handle.

        Raises:
            TypeError: ``when`` is not a real number.
            ValueError: ``when`` is NaN (it would break the order of the timer heap).
        """
        when = _seconds(when, "when")
        seq = next(self._seq)
        handle = TimerHandle(when, seq, fn, args, self)
        heapq.heappush(self._timers, (when, seq, handle))
        return handle

    def _timer_cancelled(self) -> None:
        """Count a cancelled handle still in the heap (see ``_drop_cancelled``)."""
        self._cancelled_timers += 1

    def _drop_cancelled(self) -> None:
        """Rebuild the heap without its cancelled handles.

        Called by the turn once they are half of it: O(n) after n/2 cancellations, so a server
        that cancels most of its timers (lingering closes ended early) never carries or scans a
        heap of dead entries, and a cancel itself stays O(1).
        """
        kept: list[tuple[float, int, TimerHandle]] = []
        for entry in self._timers:
            if entry[2]._cancelled:
                entry[2]._reactor = None  # out of the heap: a second cancel() is not counted
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self._timers = kept
        self._cancelled_timers = 0

    def call_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> Handle:
        """Like ``call_soon`` but callable from any thread; wakes the loop if it sleeps."""
        handle = Handle(fn, args)
        self._ready.append(handle)  # deque.append is atomic
        self._wake()
        return handle

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # a wake-up is already pending
        except OSError:
            pass  # closed while stopping

    def _drain_wakeups(self, mask: int) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    # -- file descriptors ---------------------------------------------------------------------

    def add_reader(self, fd: Any, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` whenever ``fd`` (an int or an object with ``fileno()``) is readable."""
        self._add(fd, EVENT_READ, Handle(fn, args))

    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; returns whether it was watched."""
        return self._remove(fd, EVENT_READ)

    def add_writer(self, fd: Any, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` whenever ``fd`` is writable."""
        self._add(fd, EVENT_WRITE, Handle(fn, args))

    def remove_writer(self, fd: Any) -> bool:
        """Stop watching ``fd`` for writing; returns whether it was watched."""
        return self._remove(fd, EVENT_WRITE)

    def _add(self, fd: Any, event: int, handle: Handle) -> None:
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            callbacks = _FdCallbacks()
            if event == EVENT_READ:
                callbacks.reader = handle
            else:
                callbacks.writer = handle
            self._selector.register(fd, event, callbacks)
            return
        callbacks = key.data
        if not isinstance(callbacks, _FdCallbacks):
            raise ValueError(f"fd {fd!r} is watched through register(), not add_reader/add_writer")
        if event == EVENT_READ:
            callbacks.reader = handle
        else:
            callbacks.writer = handle
        self._selector.modify(fd, key.events | event, callbacks)

    def _remove(self, fd: Any, event: int) -> bool:
        try:
            key = self._selector.get_key(fd)
        except (KeyError, ValueError):
            return False
        callbacks = key.data
        if not isinstance(callbacks, _FdCallbacks) or not key.events & event:
            return False
        if event == EVENT_READ:
            callbacks.reader = None
        else:
            callbacks.writer = None
        remaining = key.events & ~event
        if remaining:
            self._selector.modify(fd, remaining, callbacks)
        else:
            self._selector.unregister(fd)
        return True

    # -- the fast path: one callback(mask) per fd, for transports and servers -----------------

    def register(self, fileobj: Any, events: int, callback: Callable[[int], object]) -> None:
        """Watch ``fileobj`` for ``events``; ``callback(mask)`` is called with the ready ones.

        ``fileobj`` is an int fd or an object with ``fileno()``; ``events`` is ``EVENT_READ``,
        ``EVENT_WRITE`` or both. The callback is called directly from the turn, with no
        ``Handle`` around it: an exception it raises is logged and the loop goes on.

        Raises:
            KeyError: ``fileobj`` is already watched (through ``register`` or ``add_reader``).
            ValueError: ``events`` is empty or invalid, or ``fileobj`` is not a valid fd.
        """
        self._selector.register(fileobj, events, callback)

    def modify(self, fileobj: Any, events: int, callback: Callable[[int], object]) -> None:
        """Change what a ``register``-ed ``fileobj`` is watched for, and its callback.

        Cheaper than ``unregister`` then ``register`` (one system call with epoll).

        Raises:
            KeyError: ``fileobj`` is not watched.
            ValueError: ``events`` is empty or invalid.
        """
        self._selector.modify(fileobj, events, callback)

    def unregister(self, fileobj: Any) -> None:
        """Stop watching ``fileobj``; does nothing if it is not watched (or already closed)."""
        try:
            self._selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def after_io(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` once the fd callbacks of this turn have run, before its timers.

        For transports: they hold back the output produced while handling input and send it
        from here, so one turn's responses leave in a burst. On a turn with many ready fds the
        calls are made every ``AFTER_IO_BATCH`` callbacks, so output is never held back longer.
        Called outside an fd callback (before ``run``, from a timer), ``fn`` runs after the next
        turn's fd callbacks. Each ``fn`` runs once, in the order given; an exception it raises
        is logged and the other calls are still made.
        """
        self._after_io_calls.append(fn)

    def run_after_io(self) -> None:
        """Make the pending ``after_io`` calls now, rather than at the end of the I/O.

        For whoever must see the held-back output sent before acting (a server dropping its
        connections hands the finished responses to the kernel first). The turn calls it too.
        """
        # One at a time off the shared deque: a pass started inside a call (a handler that
        # closes the server) finishes the rest, and an exception that escapes (KeyboardInterrupt
        # in a host loop) leaves the calls not yet made for the next pass.
        calls = self._after_io_calls
        while calls:
            fn = calls.popleft()
            try:
                fn()
            except Exception:
                log.exception("error in after-I/O callback %r", fn)

    # -- running ------------------------------------------------------------------------------

    def run(self) -> None:
        """Run the loop until ``stop()`` is called.

        A ``stop()`` that comes before ``run()`` starts (from another thread, racing with it)
        is not lost: ``run()`` then returns at once, and the reactor may be run again later.
        """
        if self._running:
            raise RuntimeError("the reactor is already running")
        self._running = True
        self.thread_id = threading.get_ident()
        try:
            while not self._stopping:
                self._turn(None)
        finally:
            self._running = False
            self._stopping = False

    def run_once(self, timeout: float | None = None) -> None:
        """Run one turn: wait at most ``timeout`` seconds (``None``: until something happens).

        Raises:
            TypeError, ValueError: ``timeout`` is not a number of seconds, or is NaN.
        """
        if timeout is not None:
            timeout = _seconds(timeout, "timeout")
        self.thread_id = threading.get_ident()
        self._turn(timeout)

    def stop(self) -> None:
        """Make ``run()`` return after the current turn; callable from any thread."""
        self._stopping = True
        self._wake()

    @property
    def is_running(self) -> bool:
        """Whether ``run()`` is looping now."""
        return self._running

    def in_reactor_thread(self) -> bool:
        """Whether the caller is the thread that runs (or last ran) this reactor."""
        return self.thread_id is None or self.thread_id == threading.get_ident()

    def _turn(self, timeout: float | None) -> None:
        ready = self._ready
        timers = self._timers
        if ready or self._stopping:
            wait: float | None = 0.0
        elif timers:
            wait = max(0.0, timers[0][0] - time.monotonic())
            if timeout is not None and timeout < wait:
                wait = timeout
        else:
            wait = timeout
        if wait is None or wait > MAX_WAIT:
            # Even "until something happens" wakes once a day: harmless, and it keeps every
            # selector's timeout in range whatever timers or timeout the caller gave.
            wait = MAX_WAIT
        after_io = self._after_io_calls
        for key, mask in self._selector.select(wait):
            try:
                key.data(mask)
            except Exception:
                log.exception("error in I/O callback for %r", key.fileobj)
            if len(after_io) >= AFTER_IO_BATCH:
                self.run_after_io()
        if after_io:
            self.run_after_io()
        if self._cancelled_timers > 128 and self._cancelled_timers * 2 > len(timers):
            self._drop_cancelled()
            timers = self._timers
        if timers:
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                handle = heapq.heappop(timers)[2]
                handle._reactor = None
                if handle._cancelled:
                    if self._cancelled_timers > 0:
                        self._cancelled_timers -= 1
                else:
                    ready.append(handle)
        for _ in range(len(ready)):
            callback = ready.popleft()
            if not callback._cancelled:
                callback._run()

    def close(self) -> None:
        """Release the selector and the wake-up socketpair; the reactor cannot run again."""
        if self._closed:
            return
        self._closed = True
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- serving ------------------------------------------------------------------------------

    def listen(self, app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> Server:
        """Start serving ``app`` on ``host:port`` from this reactor; returns the ``Server``.

        The socket is bound and listening on return; requests are served while the reactor runs.
        ``config`` takes the keys of ``evserve.config.Config``. The server is built by the
        function ``evserve.server`` installed (see ``install_listen``).

        Raises:
            TypeError, ValueError: an unknown setting, or a setting or port out of range.
            OSError: the address cannot be listened on.
            RuntimeError: no listen function is installed (``evserve.server`` never imported).
        """
        listen = _listen
        if listen is None:
            raise RuntimeError(
                "Reactor.listen needs the server layer: import evserve (or evserve.server) first"
            )
        return listen(self, app, host, port, **config)


class ListenFunction(Protocol):
    """The function behind ``Reactor.listen``: serve ``app`` on ``host:port`` from ``reactor``."""

    def __call__(self, reactor: Reactor, app: Any, host: str, port: int, **config: Any) -> Server:
        """Return a server of ``app`` listening on ``host:port``, run by ``reactor``."""
        ...


# Filled by evserve.server when it is imported (see install_listen).
_listen: ListenFunction | None = None


def install_listen(fn: ListenFunction) -> None:
    """Make ``fn`` the function ``Reactor.listen`` calls (replacing any installed before).

    ``evserve.server`` installs its ``listen`` when imported, so that the reactor serves
    without importing the layer above it.
    """
    global _listen
    _listen = fn
