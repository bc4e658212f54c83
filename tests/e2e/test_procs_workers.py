"""Worker processes as a process manager and a user at a terminal see them, with real processes.

``python -m evserve module:app --workers 2`` runs as a child with its output in a file. The
workers leave when the master is killed (``PR_SET_PDEATHSIG``, and the master's pipe where that
is not used); SIGHUP replaces them while every request is still answered, imports the
application again, and keeps the old workers when the new ones cannot start; a second Ctrl-C
ends everything at once (status 130); a master whose workers die right after their start gives
up with status 1 and a log line.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import DEADLINE, RawClient, stop_process, subprocess_env, wait_until
from .test_workers import gone, refused

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need os.fork")

APP = '''\
import os
import time

import evserve.workers
from evserve import App, to_thread

if os.environ.get("ONLY_PIPE"):  # the master's pipe is the only way to learn of its death
    evserve.workers._die_with_parent = lambda: None
if os.environ.get("ONLY_PDEATHSIG"):  # the kernel's signal is the only way
    evserve.workers._on_master_gone = lambda reactor, fd, grace: reactor.remove_reader(fd)


def fail_when_flagged():
    if os.path.exists("fail-new-workers"):
        os._exit(3)


os.register_at_fork(after_in_child=fail_when_flagged)

VERSION = "one"
app = App()


@app.get("/")
def index(req, res):
    res.send(f"{os.getpid()} {VERSION}")


@app.get("/block")
def block(req, res):
    open(f"blocked-{os.getpid()}", "w").close()
    time.sleep(60)  # holds the reactor: only a forced stop ends this process soon


@app.get("/thread")
async def in_thread(req, res):
    open(f"blocked-{os.getpid()}", "w").close()
    await to_thread(time.sleep, 60)  # holds a pool thread, which exit would wait for
    res.send("late")
'''

CRASHING_APP = '''\
import os

from evserve import App

os.register_at_fork(after_in_child=lambda: os._exit(3))  # every worker dies as it starts
app = App()
'''

STARTUP = re.compile(r"evserve listening on http://127\.0\.0\.1:(\d+)")


class Cli:
    """``python -m evserve ARGS`` in ``cwd`` with its stdout and stderr in one file."""

    def __init__(self, cwd: Path, *args: str, new_session: bool = False, env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.new_session = new_session
        self.log_path = cwd / "evserve.log"
        environment = {**subprocess_env(), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "evserve", *args], cwd=str(cwd), env=environment,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, count: int = 1) -> None:
        """Wait until ``pattern`` (a regex) has appeared ``count`` times in the output."""
        def seen() -> bool:
            if len(re.findall(pattern, self.log())) >= count:
                return True
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode} before {pattern!r}:\n{self.log()}")
            return False

        wait_until(seen, interval=0.01, message=f"{pattern!r} not logged:\n{self.log()}")

    def port(self) -> int:
        self.wait_log(STARTUP.pattern)
        found = STARTUP.search(self.log())
        assert found
        return int(found.group(1))

    def close(self) -> None:
        if self.new_session:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stop_process(self.proc)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "procs_app.py").write_text(APP)
    (tmp_path / "crashing_app.py").write_text(CRASHING_APP)
    return tmp_path


@pytest.fixture
def started(workdir: Path) -> Iterator[list[Cli]]:
    """The ``Cli`` runs a test starts; whatever is left of them is killed after, workers too,
    even orphaned ones (every process whose working directory is the test's)."""
    runs: list[Cli] = []
    yield runs
    for run in runs:
        run.close()
    for pid in processes_in(workdir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def processes_in(cwd: Path) -> set[int]:
    """The processes running in directory ``cwd`` (from /proc; empty where there is none)."""
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(entry / "cwd") == str(cwd):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def start(started: list[Cli], cwd: Path, *args: str, **kwargs: object) -> Cli:
    run = Cli(cwd, *args, **kwargs)  # type: ignore[arg-type]
    started.append(run)
    return run


def fetch(port: int, path: str = "/", timeout: float = DEADLINE) -> str:
    """The body of ``GET path`` on a fresh connection (raises on any failure)."""
    with RawClient(("127.0.0.1", port), timeout=timeout) as client:
        client.request("GET", path)
        res = client.read_response(timeout=timeout)
    assert res.status == 200, res
    return res.text


def serving_pids(port: int, want: int = 2) -> set[int]:
    """The pids of ``want`` distinct workers answering fresh connections."""
    seen: set[int] = set()

    def enough() -> bool:
        seen.add(int(fetch(port).split()[0]))
        return len(seen) >= want

    wait_until(enough, interval=0.0, message=f"fewer than {want} workers answered: {seen}")
    return seen


def worker_pids(master: int) -> set[int]:
    """The live children of ``master`` (from /proc; empty where there is none)."""
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == master and fields[0] != "Z":
            found.add(int(entry.name))
    return found




def blocked_marker(cwd: Path) -> bool:
    return any(cwd.glob("blocked-*"))


def send_without_waiting(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return sock


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


# -- the master dies ---------------------------------------------------------------------------


@needs_proc
@pytest.mark.parametrize("way", [
    pytest.param("pdeathsig", marks=pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")),
    "pipe",
])
def test_workers_leave_when_the_master_is_killed(workdir, started, way):
    env = {"ONLY_PIPE": "1"} if way == "pipe" else {"ONLY_PDEATHSIG": "1"}
    run = start(started, workdir, "procs_app:app", "--port", "0", "--workers", "2",
                "--graceful-timeout", "1", env=env)
    port = run.port()
    workers = serving_pids(port)
    assert workers == worker_pids(run.proc.pid)
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait(DEADLINE)
    wait_until(lambda: all(gone(pid) for pid in workers), timeout=DEADLINE * 2,
               message=f"workers outlived their master:\n{run.log()}")
    assert refused(port)
    if way == "pipe":
        assert "the master process is gone; shutting down" in run.log()
    else:
        assert "SIGTERM: shutting down gracefully" in run.log()


# -- SIGHUP -------------------------------------------------------------------------------------


class Hammer:
    """A thread sending requests on fresh connections back to back, recording every outcome."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.pids: list[int] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.pids.append(int(fetch(self.port).split()[0]))
            except (OSError, AssertionError) as exc:
                self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(DEADLINE * 2)
        assert not self._thread.is_alive()


@needs_proc
def test_sighup_replaces_the_workers_and_every_request_is_answered(workdir, started):
    run = start(started, workdir, "procs_app:app", "--port", "0", "--workers", "2",
                "--graceful-timeout", "2")
    port = run.port()
    old = serving_pids(port)
    hammer = Hammer(port)
    try:
        wait_until(lambda: len(hammer.pids) >= 20, message="the hammer got no answers")
        run.proc.send_signal(signal.SIGHUP)
        run.wait_log(r"reload done")
        wait_until(lambda: all(gone(pid) for pid in old), message=f"old workers still running:\n{run.log()}")
        count = len(hammer.pids)
        wait_until(lambda: len(hammer.pids) >= count + 20, message="no answers after the reload")
    finally:
        hammer.stop()
    assert hammer.errors == [], run.log()
    new = worker_pids(run.proc.pid)
    assert len(new) == 2 and not new & old
    assert set(hammer.pids[-20:]) <= new  # the new workers answer now
    assert run.proc.poll() is None
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(DEADLINE) == 0, run.log()
    assert "Traceback" not in run.log()


@needs_proc
def test_sighup_imports_the_application_again_and_keeps_serving_a_broken_one(workdir, started):
    run = start(started, workdir, "procs_app:app", "--port", "0", "--workers", "2",
                "--graceful-timeout", "2")
    port = run.port()
    assert fetch(port).endswith(" one")
    old = serving_pids(port)
    module = workdir / "procs_app.py"
    module.write_text(APP.replace('VERSION = "one"', 'VERSION = "two, after the reload"'))
    run.proc.send_signal(signal.SIGHUP)
    run.wait_log(r"reload done")
    wait_until(lambda: all(gone(pid) for pid in old))
    for _ in range(4):
        assert fetch(port).endswith(" two, after the reload")
    serving = worker_pids(run.proc.pid)
    assert len(serving) == 2

    module.write_text(APP + "\ndef broken(:\n")
    run.proc.send_signal(signal.SIGHUP)
    run.wait_log(r"loading the application again failed")
    run.wait_log(r"SyntaxError")
    assert 'procs_app.py", line' in run.log()  # the traceback names the user's file
    for _ in range(4):
        assert fetch(port).endswith(" two, after the reload")
    assert worker_pids(run.proc.pid) == serving
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(DEADLINE) == 0, run.log()


@needs_proc
def test_a_reload_whose_new_workers_die_at_start_keeps_the_old_ones(workdir, started):
    run = start(started, workdir, "procs_app:app", "--port", "0", "--workers", "2",
                "--graceful-timeout", "2")
    port = run.port()
    old = serving_pids(port)
    (workdir / "fail-new-workers").touch()
    run.proc.send_signal(signal.SIGHUP)
    run.wait_log(r"new worker \d+ died \(exit status 3\) before serving; worker \d+ keeps serving", count=2)
    assert worker_pids(run.proc.pid) == old
    assert serving_pids(port) == old
    assert run.proc.poll() is None  # a bad reload is not a crash loop

    (workdir / "fail-new-workers").unlink()
    run.proc.send_signal(signal.SIGHUP)
    run.wait_log(r"reload done")
    wait_until(lambda: all(gone(pid) for pid in old))
    assert not serving_pids(port) & old
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(DEADLINE) == 0, run.log()


# -- Ctrl-C twice ------------------------------------------------------------------------------


@needs_proc
@pytest.mark.parametrize("target", ["master", "process group"])
def test_a_second_ctrl_c_kills_the_workers_and_exits_at_once(workdir, started, target):
    run = start(started, workdir, "procs_app:app", "--port", "0", "--workers", "2",
                "--graceful-timeout", "60", new_session=True)
    port = run.port()
    workers = serving_pids(port)
    held = send_without_waiting(port, "/block")
    try:
        wait_until(lambda: blocked_marker(workdir))

        def interrupt() -> None:
            if target == "master":
                run.proc.send_signal(signal.SIGINT)
            else:  # what a terminal does: everyone in the foreground group
                os.killpg(run.proc.pid, signal.SIGINT)

        interrupt()
        run.wait_log(r"SIGINT: stopping \d workers gracefully \(press Ctrl-C again to force\)")
        assert run.proc.poll() is None  # the graceful stop is under way; a blocked handler holds it
        began = time.monotonic()
        interrupt()
        assert run.proc.wait(DEADLINE) == 130, run.log()
        assert time.monotonic() - began < DEADLINE
        wait_until(lambda: all(gone(pid) for pid in workers), message=run.log())
    finally:
        held.close()
    assert "exiting now" in run.log()
    assert refused(port)


# -- a crash loop ------------------------------------------------------------------------------


def test_a_master_whose_workers_die_at_start_gives_up_with_status_1(workdir, started):
    run = start(started, workdir, "crashing_app:app", "--port", "0", "--workers", "2")
    assert run.proc.wait(DEADLINE * 2) == 1, run.log()
    lines = [line for line in run.log().splitlines() if "giving up" in line]
    assert len(lines) == 1, run.log()
    assert re.search(r"ERROR evserve: workers keep dying right after they start \(5 in a row, the last "
                     r"worker \d+: exit status 3 after [\d.]+ s\): giving up", lines[0]), lines[0]
