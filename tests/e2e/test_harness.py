"""The test harness itself: a hung test ends the run with its stack, and a test's servers stop
quickly whatever the test left behind.

A suite of about 2,400 tests runs in CI under a time budget, on machines busy with other work:
one hang must cost minutes, not the budget, and say where it hung; one failing test must not
make its teardown wait out a server's 10 s grace or 30 s write timeout.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .conftest import DEADLINE, RawClient, running, subprocess_env, wait_until

STUCK_TESTS = '''
import time

import pytest


@pytest.fixture
def stuck_teardown():
    yield
    time.sleep(60)


def test_passes():
    pass


def test_stuck_in_the_call():
    time.sleep(60)


def test_fails_then_sticks_in_teardown(stuck_teardown):
    assert False, "the failure"
'''


@pytest.mark.parametrize("name", ["test_stuck_in_the_call", "test_fails_then_sticks_in_teardown"])
def test_a_hung_test_ends_the_run_and_prints_where_it_hung(tmp_path, name):
    (tmp_path / "test_stuck.py").write_text(STUCK_TESTS)
    env = subprocess_env()
    env["EVSERVE_TEST_TIMEOUT"] = "1"
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # a quicker start; pytest's own plugins still load
    # The repository's tests/conftest.py as a plugin of a pytest run in a directory of its own.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
               "test_stuck.py::test_passes", f"test_stuck.py::{name}"]
    # Without the guard the child sleeps 60 s: the timeout here fails the test first.
    proc = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=DEADLINE * 3)
    assert proc.returncode != 0
    # The stacks are on the real stderr, not in the capture of the hung test (lost on exit).
    assert "Timeout (0:00:01)!" in proc.stderr, proc.stderr
    where = "in test_stuck_in_the_call" if name == "test_stuck_in_the_call" else "in stuck_teardown"
    assert where in proc.stderr, proc.stderr


def test_leaving_a_server_with_an_unanswered_request_and_an_open_client_is_quick():
    held = []
    with running(lambda req, res: held.append(res), graceful_timeout=60) as server:
        client = RawClient(server)  # deliberately left open when the block ends
        client.request()
        wait_until(lambda: held)
        leaving = time.monotonic()
    left = time.monotonic()
    try:
        # The server gave the request a moment (TEARDOWN_GRACE), not its graceful_timeout of 60 s;
        # the bound is loose on purpose, for a loaded machine.
        assert left - leaving < 30, f"leaving the block took {left - leaving:.1f} s"
        assert server.is_closed
        assert held[0].req.aborted
        client.wait_closed()
    finally:
        client.close()
