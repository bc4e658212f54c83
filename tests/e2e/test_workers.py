"""Pre-forked workers: ``serve(app, workers=2)`` in a child process, killed and stopped by signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import (
    DEADLINE,
    ROOT,
    RawClient,
    free_port,
    python_child,
    stop_process,
    subprocess_env,
    wait_until,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need os.fork")

CHILD = """
import os, sys
from evserve.server import serve

def app(req, res):
    res.send(str(os.getpid()))

serve(app, "127.0.0.1", int(sys.argv[1]), workers=2, graceful_timeout=5)
"""


def fetch_pid(port: int) -> int | None:
    """The pid of the worker answering a fresh connection, or None if none answered."""
    try:
        with RawClient(("127.0.0.1", port), timeout=2) as client:
            client.request()
            res = client.read_response()
    except (OSError, TimeoutError):
        return None
    return int(res.text) if res.status == 200 else None


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer exists (or is a zombie nobody will reap: it is not running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE):
            return False
    except ConnectionRefusedError:
        return True


def pids_seen(port: int, want: int, seen: set[int]) -> bool:
    pid = fetch_pid(port)
    if pid is not None:
        seen.add(pid)
    return len(seen) >= want


def test_two_workers_serve_survive_a_killed_worker_and_stop_on_sigterm():
    port = free_port()
    proc = python_child(CHILD, str(port))
    try:
        first: set[int] = set()
        wait_until(lambda: pids_seen(port, 2, first), timeout=DEADLINE * 2, interval=0.01,
                   message="two distinct workers never answered")
        assert len(first) == 2
        assert all(parent_of(pid) == proc.pid for pid in first)

        victim = min(first)
        survivor = max(first)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: gone(victim))
        # The master starts a replacement; requests keep being answered meanwhile.
        later: set[int] = set()

        def replaced() -> bool:
            pid = fetch_pid(port)
            if pid is not None:
                later.add(pid)
            return any(p not in first for p in later)

        wait_until(replaced, timeout=DEADLINE * 2, interval=0.01, message="no replacement worker")
        assert victim not in later
        workers = {p for p in later if p not in first} | {survivor}
        assert all(parent_of(pid) == proc.pid for pid in workers)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE * 2) == 0
        wait_until(lambda: all(gone(pid) for pid in workers))
        assert refused(port)
    finally:
        stop_process(proc)


def test_sigterm_to_the_whole_process_group_stops_everything_cleanly():
    """What a process manager does (systemd's KillMode=control-group): everyone at once."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port)], cwd=str(ROOT), env=subprocess_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        seen: set[int] = set()
        wait_until(lambda: pids_seen(port, 2, seen), timeout=DEADLINE * 2, interval=0.01)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(DEADLINE * 2) == 0
        wait_until(lambda: all(gone(pid) for pid in seen))
        assert refused(port)
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        stop_process(proc)
