"""Coroutines on the reactor without asyncio: ``Future``, ``Task``, ``sleep`` and ``to_thread``.

An ``async def`` handler is driven by the reactor itself: each ``await`` of an evserve awaitable
(``sleep``, ``to_thread``, a ``Future``, ``res.drain()``) suspends the coroutine, and the reactor
resumes it when the awaited thing completes. Awaiting an asyncio object is not supported and
raises a ``TypeError`` inside the coroutine saying so.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

from evserve.reactor import Reactor

__all__ = ["Future", "Task", "current_reactor", "run_coroutine", "sleep", "to_thread"]

T = TypeVar("T")
log = logging.getLogger("evserve")

_local = threading.local()


def current_reactor() -> Reactor:
    """The reactor driving the current coroutine or callback on this thread.

    Raises:
        RuntimeError: no evserve reactor runs coroutines on this thread.
    """
    reactor: Reactor | None = getattr(_local, "reactor", None)
    if reactor is None:
        raise RuntimeError("no evserve reactor is running coroutines on this thread")
    return reactor


def _set_current(reactor: Reactor | None) -> Reactor | None:
    previous: Reactor | None = getattr(_local, "reactor", None)
    _local.reactor = reactor
    return previous


class Future(Generic[T]):
    """A result that will be ready later; awaitable from a coroutine run by evserve.

    Not thread-safe: complete it on the reactor thread (from another thread, through
    ``reactor.call_soon_threadsafe(future.set_result, value)``).
    """

    __slots__ = ("_callbacks", "_done", "_exception", "_result")

    def __init__(self) -> None:
        self._done = False
        self._result: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[Future[T]], object]] = []

    def done(self) -> bool:
        """Whether a result or an exception has been set."""
        return self._done

    def result(self) -> T:
        """The result; raises the exception if one was set, RuntimeError if not done."""
        if not self._done:
            raise RuntimeError("the future is not done yet")
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[no-any-return]

    def exception(self) -> BaseException | None:
        """The exception set, or ``None``."""
        return self._exception

    def set_result(self, value: T) -> None:
        """Complete with ``value`` and run the callbacks (a second completion is ignored)."""
        if self._done:
            return
        self._done = True
        self._result = value
        self._run_callbacks()

    def set_exception(self, exc: BaseException) -> None:
        """Complete with ``exc`` and run the callbacks (a second completion is ignored)."""
        if self._done:
            return
        self._done = True
        self._exception = exc
        self._run_callbacks()

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        """Call ``fn(future)`` when done (at once if already done)."""
        if self._done:
            fn(self)
        else:
            self._callbacks.append(fn)

    def _run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:
                log.exception("error in a future callback")

    def __await__(self) -> Generator[Any, None, T]:
        if not self._done:
            yield self
        return self.result()


class Task(Future[T]):
    """Drives a coroutine on a reactor; itself a ``Future`` of the coroutine's result."""

    __slots__ = ("_coro", "_reactor")

    def __init__(self, coro: Coroutine[Any, Any, T], reactor: Reactor) -> None:
        super().__init__()
        self._coro = coro
        self._reactor = reactor
        self._step(None, None)

    def _step(self, value: Any, exc: BaseException | None) -> None:
        previous = _set_current(self._reactor)
        try:
            yielded = self._coro.throw(exc) if exc is not None else self._coro.send(value)
        except StopIteration as stop:
            self.set_result(stop.value)
            return
        except BaseException as error:  # the coroutine's own error: it belongs to the task
            self.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        finally:
            _set_current(previous)
        if isinstance(yielded, Future):
            yielded.add_done_callback(self._wakeup)
        elif yielded is None:
            self._reactor.call_soon(self._step, None, None)  # a bare yield: run again soon
        else:
            refusal = TypeError(
                f"evserve cannot await {yielded!r}: await evserve.sleep, evserve.to_thread or an "
                "evserve Future (asyncio objects need an asyncio loop)"
            )
            self._reactor.call_soon(self._step, None, refusal)

    def _wakeup(self, future: Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            self._step(None, exc)
        else:
            self._step(future._result, None)


def run_coroutine(coro: Coroutine[Any, Any, T], reactor: Reactor | None = None) -> Task[T]:
    """Start driving ``coro`` on ``reactor`` (default: the current one); returns its Task.

    The coroutine runs synchronously up to its first suspension before this returns.
    """
    return Task(coro, reactor if reactor is not None else current_reactor())


def sleep(seconds: float, result: T | None = None) -> Future[T | None]:
    """An awaitable that completes after ``seconds`` on the current reactor."""
    reactor = current_reactor()
    future: Future[T | None] = Future()
    reactor.call_later(seconds, future.set_result, result)
    return future


_pool_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None
MAX_THREADS = min(32, (os.cpu_count() or 1) + 4)


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="evserve-worker")
        return _pool


def to_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """Run blocking ``fn(*args, **kwargs)`` in a bounded thread pool; await the result.

    The result (or exception) comes back to the reactor through ``call_soon_threadsafe``.
    """
    reactor = current_reactor()
    future: Future[T] = Future()

    def done(cf: concurrent.futures.Future[T]) -> None:
        exc = cf.exception()
        if exc is not None:
            reactor.call_soon_threadsafe(future.set_exception, exc)
        else:
            reactor.call_soon_threadsafe(future.set_result, cf.result())

    _executor().submit(fn, *args, **kwargs).add_done_callback(done)
    return future
