"""Shared test set-up: the repository root on sys.path and the hypothesis profiles.

Profiles (select with HYPOTHESIS_PROFILE, default "ci"):
    ci:  bounded example counts so that every property runs on every test run (~60 s in all);
    dev: more examples, for a longer local run. fuzz/ has its own, much larger, "fuzz" profile.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import warnings
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


TEST_TIMEOUT = 300.0  # seconds: no single test comes near it; a hang must not eat CI's budget


@pytest.fixture(autouse=True)
def _hang_guard():
    """Dump every thread's stack and exit if one test runs for ``TEST_TIMEOUT`` seconds."""
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
