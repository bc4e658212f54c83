"""Shared test set-up: the repository root on sys.path, the hypothesis profiles, a hang guard.

Profiles (select with HYPOTHESIS_PROFILE, default "ci"):
    ci:  bounded example counts so that every property runs on every test run (~60 s in all);
    dev: more examples, for a longer local run. fuzz/ has its own, much larger, "fuzz" profile.

The hang guard ends the run, with every thread's stack on stderr, when one phase of a test
(setup, call or teardown) runs longer than ``TEST_TIMEOUT`` seconds (120; the environment
variable EVSERVE_TEST_TIMEOUT sets another, 0 turns the guard off, e.g. to debug).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# When a property fails, hypothesis's pytest plugin imports its patch writer, which imports
# libcst, which emits a DeprecationWarning (via mypy_extensions) that the "error" warning
# filter of setup.cfg turns into an INTERNALERROR hiding the falsifying example. Import it
# now, with that warning silenced, so a failure is reported as a failure.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # evserve and tests.strategies, however pytest was started

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,  # CI runs the same examples every time; the dev profile and fuzz/ explore
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "dev",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# -- the hang guard ---------------------------------------------------------------------------
#
# A test that hangs must fail the run with every thread's stack instead of eating CI's budget.
# faulthandler's watchdog is a C thread: it fires even when the hung code holds the GIL, and it
# ends the process (exit status 1) after dumping the stacks. Each phase of a test (setup, call,
# teardown) gets TEST_TIMEOUT seconds; the slowest test takes under 30 s on a heavily loaded
# 2-core machine, so only a hang comes near it.

TEST_TIMEOUT = float(os.environ.get("EVSERVE_TEST_TIMEOUT", "120"))

_stderr_fd: int | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Keep a descriptor of the real stderr for the hang guard's dump.

    While a test runs pytest captures descriptor 2 into a temporary file, which nobody reads
    once the guard has ended the process: the dump must go to the stderr pytest started with.
    """
    global _stderr_fd
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        _stderr_fd = os.dup(sys.stderr.fileno())


def pytest_unconfigure(config: pytest.Config) -> None:
    """Disarm the hang guard and close its descriptor."""
    global _stderr_fd
    faulthandler.cancel_dump_traceback_later()
    if _stderr_fd is not None:
        os.close(_stderr_fd)
        _stderr_fd = None


def _arm_hang_guard() -> None:
    # Re-armed at every phase: pytest's own faulthandler plugin cancels any pending dump when a
    # phase fails (pytest_exception_interact), and the teardown after a failure must be guarded too.
    if _stderr_fd is not None and TEST_TIMEOUT > 0:
        faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True, file=_stderr_fd)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    _arm_hang_guard()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    _arm_hang_guard()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _arm_hang_guard()
    yield
    faulthandler.cancel_dump_traceback_later()
