"""Timers and sleeps of any length the application can ask for: far-future, infinite, odd types."""

from __future__ import annotations

import decimal
import fractions
import threading

import pytest
import requests

import evserve
from evserve import App
from evserve.reactor import MAX_WAIT, Reactor

from .conftest import DEADLINE, wait_until
from .test_reactor import running

FAR = (float("inf"), 1e300, 10 * 86400.0, 30 * 86400.0, 2.0**31, MAX_WAIT * 1.5)


@pytest.mark.parametrize("delay", FAR, ids=repr)
def test_a_far_future_timer_leaves_the_loop_running(delay):
    reactor = Reactor()
    with running(reactor) as thread:
        far = reactor.call_later(delay, lambda: None)
        ran = threading.Event()
        # The loop has gone to sleep until the far timer; a wake-up still runs callbacks.
        reactor.call_soon_threadsafe(lambda: reactor.call_later(0.01, ran.set))
        assert ran.wait(DEADLINE), "the loop died waiting for a far-future timer"
        assert thread.is_alive()
        reactor.call_soon_threadsafe(far.cancel)


@pytest.mark.parametrize("when", [float("inf"), float("-inf"), 1e300])
def test_call_at_any_time(when):
    reactor = Reactor()
    ran = []
    reactor.call_at(when, ran.append, when)
    reactor.run_once(0)
    assert ran == ([when] if when == float("-inf") else [])
    reactor.close()


@pytest.mark.parametrize("timeout", [1e300, float("inf")])
def test_run_once_with_a_huge_timeout_returns_when_something_happens(timeout):
    reactor = Reactor()
    ran = []
    reactor.call_later(0.01, ran.append, 1)
    reactor.run_once(timeout)  # wakes for the timer, far before the timeout
    reactor.run_once(0)
    assert ran == [1]
    reactor.close()


@pytest.mark.parametrize("value", [float("nan"), "1", b"1", None, True, object()], ids=repr)
def test_a_delay_that_is_not_a_number_of_seconds_is_refused_with_a_message(value):
    reactor = Reactor()
    with pytest.raises((TypeError, ValueError), match="delay"):
        reactor.call_later(value, lambda: None)
    with pytest.raises((TypeError, ValueError), match="when"):
        reactor.call_at(value, lambda: None)
    assert reactor._timers == []  # nothing half-scheduled
    reactor.close()


@pytest.mark.parametrize("delay", [decimal.Decimal("0.01"), fractions.Fraction(1, 100), 0, -5])
def test_other_real_numbers_are_delays(delay):
    reactor = Reactor()
    ran = []
    reactor.call_later(delay, ran.append, 1)
    wait_until(lambda: reactor.run_once(0.05) or ran)
    reactor.close()


def test_handlers_sleeping_forever_or_for_days_leave_the_server_serving(caplog):
    app = App()
    slept = []

    @app.get("/sleep/:how")
    async def sleeper(req, res):
        how = req.params["how"]
        seconds = {"inf": float("inf"), "days": 7 * 86400.0, "nan": float("nan")}[how]
        slept.append(how)
        await evserve.sleep(seconds)
        res.send("woke")  # pragma: no cover - never reached

    @app.get("/ok")
    def ok(req, res):
        res.send("ok")

    with app.run_in_thread(graceful_timeout=0.5) as server:
        for how in ("inf", "days"):
            with pytest.raises(requests.exceptions.ReadTimeout):
                requests.get(f"{server.url}/sleep/{how}", timeout=0.3)
        # A NaN is the application's mistake: a 500, and the loop goes on.
        assert requests.get(f"{server.url}/sleep/nan", timeout=DEADLINE).status_code == 500
        assert requests.get(f"{server.url}/ok", timeout=DEADLINE).text == "ok"
        assert server.reactor.is_running
    assert slept == ["inf", "days", "nan"]


@pytest.mark.parametrize("setting", ["graceful_timeout", "keepalive_timeout", "write_timeout",
                                     "body_timeout", "header_timeout", "handler_timeout"])
def test_an_infinite_timeout_setting_means_no_limit_and_still_stops(setting):
    app = App()
    app.get("/", lambda req, res: res.send("ok"))
    with app.run_in_thread(**{setting: float("inf")}) as server:
        assert requests.get(server.url + "/", timeout=DEADLINE).text == "ok"
        thread = threading.Thread(target=server.shutdown)  # from another thread: it waits
        thread.start()
        thread.join(DEADLINE)
        assert not thread.is_alive()


def test_an_int_past_a_float_is_an_infinite_delay():
    reactor = Reactor()
    ran = []
    reactor.call_later(10**400, ran.append, "never")
    reactor.call_later(-(10**400), ran.append, "now")
    reactor.run_once(0)
    assert ran == ["now"]
    reactor.close()
