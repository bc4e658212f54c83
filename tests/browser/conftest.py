"""The browser tests: headless Chromium (Debian's ``chromium``) driven by Playwright's Python package.

Playwright never downloads a browser here: it launches the system's Chromium by path. In CI a
missing browser or Playwright is a failure (``.ci/run`` installs both); elsewhere the tests are
skipped with the reason, so a checkout without Chromium can still run the rest of the suite.

The server is the example as a newcomer runs it: ``python examples/crud.py --port 0 --db FILE``,
a process of its own, one per test, on a fresh database.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRUD_PY = ROOT / "examples" / "crud.py"
DEADLINE = 10.0  # seconds any single wait may take
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def unavailable(reason: str) -> None:
    """Skip, except in CI, where the browser test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser tests (.ci/run installs Chromium)", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    """``$CHROMIUM``, else ``chromium`` on the PATH (Debian's package), else None."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed (pip install -e '.[test]')")
    executable = chromium_path()
    if executable is None:
        unavailable("no Chromium found (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                              timeout=DEADLINE * 3 * 1000)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (own context: no shared cache or storage); uncaught script errors fail the test."""
    context = browser.new_context()
    context.set_default_timeout(DEADLINE * 1000)
    new_page = context.new_page()
    script_errors: list[str] = []
    new_page.on("pageerror", lambda error: script_errors.append(str(error)))
    try:
        yield new_page
    finally:
        context.close()
    assert script_errors == [], f"uncaught errors in the page: {script_errors}"


def _wait_for_url(proc: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + DEADLINE
    while True:
        found = re.search(r"listening on (http://\S+)", log_path.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"the example exited with {proc.returncode}:\n{log_path.read_text()}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"the example did not start:\n{log_path.read_text()}")
        time.sleep(0.01)  # pacing between polls


@pytest.fixture
def example_url(tmp_path: Path) -> Iterator[str]:
    """The URL of ``python examples/crud.py`` running on a fresh database."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONWARNINGS", None)
    log_path = tmp_path / "example.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(CRUD_PY), "--port", "0", "--db", str(tmp_path / "page.sqlite3")],
            cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        yield _wait_for_url(proc, log_path)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DEADLINE)
