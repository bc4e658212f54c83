"""The reactor with real threads and file descriptors: wake-ups, idleness, timers, readers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from evserve.reactor import Reactor
from evserve.server import run_in_thread

from .conftest import DEADLINE, RawClient, wait_until


@contextlib.contextmanager
def running(reactor: Reactor):
    thread = threading.Thread(target=reactor.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: reactor.is_running)
        yield thread
    finally:
        reactor.stop()
        thread.join(DEADLINE)
        assert not thread.is_alive()
        reactor.close()


def test_call_soon_threadsafe_wakes_an_idle_loop():
    reactor = Reactor()
    with running(reactor) as thread:
        # No fd activity and no timer: the loop sleeps in select() with no timeout. Only the
        # wake-up socketpair can get these callbacks run.
        for _ in range(20):
            ran = threading.Event()
            where = []
            def probe(where=where, ran=ran):
                where.append(threading.get_ident())
                ran.set()

            reactor.call_soon_threadsafe(probe)
            assert ran.wait(DEADLINE), "call_soon_threadsafe did not wake the sleeping loop"
            assert where == [thread.ident]


def test_stop_from_another_thread_wakes_an_idle_loop():
    reactor = Reactor()
    thread = threading.Thread(target=reactor.run, daemon=True)
    thread.start()
    wait_until(lambda: reactor.is_running)
    reactor.stop()
    thread.join(DEADLINE)
    assert not thread.is_alive()
    reactor.close()


def test_a_stop_that_comes_before_run_is_not_lost():
    reactor = Reactor()
    try:
        reactor.stop()  # e.g. another thread stopping a reactor whose thread has not started yet
        thread = threading.Thread(target=reactor.run, daemon=True)
        thread.start()
        thread.join(DEADLINE)
        assert not thread.is_alive()
        ran = []
        reactor.call_soon(ran.append, 1)  # and the reactor can run again afterwards
        reactor.call_soon(reactor.stop)
        reactor.run()
        assert ran == [1]
    finally:
        reactor.close()


def test_many_threads_posting_at_once_lose_nothing():
    reactor = Reactor()
    results = []
    with running(reactor):
        def post(n):
            for i in range(200):
                reactor.call_soon_threadsafe(results.append, (n, i))

        posters = [threading.Thread(target=post, args=(n,)) for n in range(8)]
        for poster in posters:
            poster.start()
        for poster in posters:
            poster.join(DEADLINE)
        wait_until(lambda: len(results) == 1600)
    for n in range(8):  # each thread's callbacks run in the order it posted them
        assert [i for m, i in results if m == n] == list(range(200))


def test_an_idle_server_uses_almost_no_cpu():
    with run_in_thread(lambda req, res: res.send("x")) as server:
        with RawClient(server) as client:  # one request first: the loop is warm and has run
            client.request()
            assert client.read_response().text == "x"
        wait_until(lambda: server.connection_count == 0)
        thread_id = server.reactor.thread_id
        assert thread_id is not None
        clock = time.pthread_getcpuclockid(thread_id)
        # No connection: no sweep timer re-arms, so the loop sleeps in select() (a leftover
        # timer or two may still fire once, which costs microseconds).
        start_cpu = time.clock_gettime(clock)
        start = time.monotonic()
        while time.monotonic() - start < 1.0:  # the measurement window, not a synchronisation
            time.sleep(0.1)
        used = time.clock_gettime(clock) - start_cpu
        assert used < 0.02, f"idle reactor thread used {used:.4f} s of CPU in 1 s"


def test_timers_run_in_deadline_order_and_cancelled_ones_never():
    reactor = Reactor()
    order = []
    try:
        now = reactor.time()
        reactor.call_at(now + 0.03, order.append, "c")
        reactor.call_at(now + 0.01, order.append, "a")
        same1 = reactor.call_at(now + 0.02, order.append, "b1")
        reactor.call_at(now + 0.02, order.append, "b2")  # equal deadlines: scheduling order
        cancelled = reactor.call_later(0.015, order.append, "never")
        cancelled.cancel()
        reactor.call_soon(order.append, "soon")
        deadline = time.monotonic() + DEADLINE
        while len(order) < 4 + 1 and time.monotonic() < deadline:
            reactor.run_once(0.5)
        assert order == ["soon", "a", "b1", "b2", "c"]
        assert not same1.cancelled and cancelled.cancelled
    finally:
        reactor.close()


def test_many_cancelled_timers_do_not_pile_up():
    reactor = Reactor()
    try:
        handles = [reactor.call_later(60, lambda: None) for _ in range(2000)]
        for handle in handles:
            handle.cancel()
        reactor.call_soon(lambda: None)
        reactor.run_once(0)
        assert len(reactor._timers) < 1000
    finally:
        reactor.close()


def test_cancelled_timers_are_dropped_without_scanning_the_heap_every_turn():
    reactor = Reactor()
    ran = []
    try:
        handles = [reactor.call_later(60 + i, ran.append, i) for i in range(1000)]
        soon = reactor.call_later(0, ran.append, "soon")
        reactor.run_once(0)
        assert ran == ["soon"]
        soon.cancel()  # after it ran: not counted as a cancelled entry of the heap
        for handle in handles[:400]:
            handle.cancel()
        reactor.run_once(0)
        assert len(reactor._timers) == 1000  # under half cancelled: kept, counted
        assert reactor._cancelled_timers == 400
        for handle in handles[400:600]:
            handle.cancel()
        reactor.run_once(0)
        assert len(reactor._timers) == 400 and reactor._cancelled_timers == 0
        handles[0].cancel()  # dropped from the heap already: a second cancel counts nothing
        handles[700].cancel()
        assert reactor._cancelled_timers == 1
        assert min(reactor._timers)[2] is handles[600]
    finally:
        reactor.close()


def test_a_failing_callback_is_logged_and_the_loop_goes_on(caplog):
    reactor = Reactor()
    ran = []
    try:
        reactor.call_soon(lambda: 1 / 0)
        reactor.call_soon(ran.append, "after")
        reactor.run_once(0)
        assert ran == ["after"]
        assert "ZeroDivisionError" in caplog.text
    finally:
        reactor.close()


def test_add_reader_and_run_once_in_a_host_loop():
    reactor = Reactor()
    a, b = socket.socketpair()
    received = []
    try:
        def on_readable(sock, tag):
            received.append((tag, sock.recv(100)))

        reactor.add_reader(a, on_readable, a, "tag")
        b.sendall(b"ping")
        deadline = time.monotonic() + DEADLINE
        while not received and time.monotonic() < deadline:
            reactor.run_once(0.5)
        assert received == [("tag", b"ping")]
        assert reactor.remove_reader(a) is True
        assert reactor.remove_reader(a) is False
        b.sendall(b"again")
        reactor.run_once(0.05)  # no longer watched: nothing runs
        assert received == [("tag", b"ping")]
    finally:
        a.close()
        b.close()
        reactor.close()


def test_run_once_returns_after_its_timeout_when_nothing_happens():
    reactor = Reactor()
    try:
        start = time.monotonic()
        reactor.run_once(0.05)
        assert time.monotonic() - start < DEADLINE  # it returned at all (no event ever comes)
    finally:
        reactor.close()


@contextlib.contextmanager
def _readable_pairs(reactor: Reactor, count: int, on_readable):
    """``count`` socketpairs watched by ``reactor``, each readable; all closed on exit, with it."""
    pairs = [socket.socketpair() for _ in range(count)]
    try:
        for index, (a, b) in enumerate(pairs):
            reactor.add_reader(a, on_readable, a, index)
            b.sendall(b"x")
        yield pairs
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        reactor.close()


def _run_until(reactor: Reactor, done) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done() and time.monotonic() < deadline:
        reactor.run_once(0.5)


def test_after_io_calls_run_once_the_turns_fd_callbacks_have_run():
    # What transports build on: the output of every connection read in a turn leaves together,
    # after the reads, so the peer is woken once for the burst.
    reactor = Reactor()
    order: list[tuple[str, int]] = []

    def on_readable(sock, index):
        sock.recv(10)
        order.append(("read", index))
        reactor.after_io(lambda: order.append(("after", index)))

    with _readable_pairs(reactor, 5, on_readable):
        _run_until(reactor, lambda: len(order) == 10)
        assert [kind for kind, _ in order] == ["read"] * 5 + ["after"] * 5
        assert sorted(index for _, index in order[5:]) == list(range(5))
        reactor.run_once(0)  # nothing left over for the next turn
        assert len(order) == 10


def test_after_io_calls_run_at_least_every_batch_of_fd_callbacks():
    from evserve.reactor import AFTER_IO_BATCH

    reactor = Reactor()
    order: list[str] = []

    def on_readable(sock, index):
        sock.recv(10)
        order.append("read")
        reactor.after_io(lambda: order.append("after"))

    count = AFTER_IO_BATCH + 3
    with _readable_pairs(reactor, count, on_readable):
        _run_until(reactor, lambda: len(order) == 2 * count)
        # Every fd was readable before the turn, so select() returned them all at once: the
        # first batch's calls run right after its last read, not after all the reads.
        first_after = order.index("after")
        assert first_after == AFTER_IO_BATCH
        assert order[first_after:first_after + AFTER_IO_BATCH] == ["after"] * AFTER_IO_BATCH
        assert order.count("after") == count


def test_a_failing_after_io_call_is_logged_and_the_others_still_run(caplog):
    reactor = Reactor()
    ran: list[str] = []

    def on_readable(sock, index):
        sock.recv(10)
        reactor.after_io(lambda: 1 / 0)
        reactor.after_io(lambda: ran.append("second"))

    with _readable_pairs(reactor, 1, on_readable):
        _run_until(reactor, lambda: bool(ran))
        assert ran == ["second"]
        assert "ZeroDivisionError" in caplog.text


def test_an_after_io_call_that_raises_through_leaves_the_rest_for_the_next_pass():
    # A KeyboardInterrupt in a host loop's run_once must not lose the other transports' sends.
    reactor = Reactor()
    ran: list[str] = []

    def interrupt():
        raise KeyboardInterrupt

    def on_readable(sock, index):
        sock.recv(10)
        reactor.after_io(interrupt)
        reactor.after_io(lambda: ran.append("second"))

    with _readable_pairs(reactor, 1, on_readable):
        with pytest.raises(KeyboardInterrupt):
            _run_until(reactor, lambda: bool(ran))
        assert ran == []
        reactor.run_once(0)
        assert ran == ["second"]
