"""The entry points a program's main calls (``app.listen``, ``serve``) and their siblings.

A second Ctrl-C ends a single process at once (status 130), even with a handler blocking the
reactor or a thread; ``app.listen`` shows its URL when logging is not configured and reports
an address it cannot listen on in one line; every entry point defaults to 127.0.0.1; settings
an entry point cannot honour, and misspelt App settings, raise ``TypeError``; a connection that
has not sent its request yet when a graceful shutdown begins still gets its answer.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from evserve import App, Reactor, serve
from evserve.cli import _parser
from evserve.server import run_in_thread

from .conftest import DEADLINE, RawClient, stop_process, subprocess_env, wait_until
from .test_procs_workers import APP, Cli, blocked_marker, fetch, send_without_waiting

LISTEN_SCRIPT = '''\
import logging, os, sys
from evserve import App, serve

if "--configured" in sys.argv:
    logging.basicConfig(level=logging.INFO, format="configured %(name)s: %(message)s")
app = App()
app.get("/", lambda req, res: res.send(str(os.getpid())))
host = os.environ.get("HOST", "127.0.0.1")
if "--serve-workers" in sys.argv:
    serve(app, host, int(sys.argv[1]), workers=2)
else:
    app.listen(int(sys.argv[1]), host)
print("after listen", flush=True)
'''

URL_LINE = re.compile(r"evserve listening on (http://127\.0\.0\.1:(\d+)) \(press Ctrl-C to quit\)")


def run_script(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    script = tmp_path / "listen_script.py"
    script.write_text(LISTEN_SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), *args], cwd=str(tmp_path), env={**subprocess_env(), **(env or {})},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@contextlib.contextmanager
def bounded(seconds: float = DEADLINE) -> Iterator[None]:
    """Raise ``TimeoutError`` in the block if it runs longer than ``seconds`` (for calls that
    would serve forever if they did not refuse their arguments)."""
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_stderr_line(proc: subprocess.Popen[str]) -> str:
    """The child's next line on stderr, waiting at most DEADLINE for it."""
    assert proc.stderr is not None
    readable, _, _ = select.select([proc.stderr], [], [], DEADLINE)
    assert readable, "the child wrote nothing on stderr"
    return proc.stderr.readline()


# -- Ctrl-C twice, one process -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/block", "/thread"])
def test_a_second_ctrl_c_ends_a_single_process_at_once(tmp_path, path):
    (tmp_path / "procs_app.py").write_text(APP)
    run = Cli(tmp_path, "procs_app:app", "--port", "0", "--graceful-timeout", "60")
    try:
        port = run.port()
        held = send_without_waiting(port, path)
        try:
            wait_until(lambda: blocked_marker(tmp_path))
            run.proc.send_signal(signal.SIGINT)
            run.wait_log(r"SIGINT: shutting down gracefully \(press Ctrl-C again to force\)")
            assert run.proc.poll() is None  # the graceful stop waits for the handler
            run.proc.send_signal(signal.SIGINT)
            assert run.proc.wait(DEADLINE) == 130, run.log()
        finally:
            held.close()
        assert re.search(r"SIGINT again: exiting now, dropping 1 connection", run.log()), run.log()
    finally:
        run.close()


def test_a_repeated_sigterm_does_not_force(tmp_path):
    """A process manager signalling the whole group sends SIGTERM to every process: only a
    second Ctrl-C forces."""
    (tmp_path / "procs_app.py").write_text(APP)
    run = Cli(tmp_path, "procs_app:app", "--port", "0", "--graceful-timeout", "60")
    try:
        port = run.port()
        held = send_without_waiting(port, "/block")
        try:
            wait_until(lambda: blocked_marker(tmp_path))
            run.proc.send_signal(signal.SIGTERM)
            run.wait_log(r"SIGTERM: shutting down gracefully")
            run.proc.send_signal(signal.SIGTERM)
            run.wait_log(r"SIGTERM: already shutting down")
            assert run.proc.poll() is None
            run.proc.send_signal(signal.SIGINT)
            assert run.proc.wait(DEADLINE) == 130, run.log()
        finally:
            held.close()
    finally:
        run.close()


# -- app.listen and serve as a program's main ----------------------------------------------------


@pytest.mark.parametrize("configured", [False, True])
def test_app_listen_shows_its_url_once_and_a_ctrl_c_returns(tmp_path, configured):
    proc = run_script(tmp_path, "0", *(["--configured"] if configured else []))
    try:
        line = read_stderr_line(proc)
        found = URL_LINE.search(line)
        assert found, line
        if configured:
            assert line.startswith("configured evserve: "), line  # the program's format, not ours
        assert fetch(int(found.group(2))).isdigit()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0
        assert out == "after listen\n"  # listen returned after the graceful stop
        assert "listening" not in err  # said once
        assert "shutting down gracefully" in err
    finally:
        stop_process(proc)


@pytest.mark.parametrize("mode", ["listen", "serve-workers"])
def test_a_taken_port_is_one_line_and_exit_status_1(tmp_path, mode):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_script(tmp_path, str(port), *(["--serve-workers"] if mode != "listen" else []))
        out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 1
    assert out == ""
    found = re.fullmatch(rf"error: port {port} on 127\.0\.0\.1 is already in use; try port (\d+)\n", err)
    assert found, err
    assert int(found.group(1)) != port


def test_an_address_of_another_machine_is_one_line(tmp_path):
    proc = run_script(tmp_path, "0", env={"HOST": "192.0.2.1"})  # TEST-NET-1: never local
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 1
    assert err == "error: cannot listen on 192.0.2.1: it is not an address of this machine\n"


def test_an_embedding_program_can_catch_the_exit_and_see_the_oserror():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with bounded(), pytest.raises(SystemExit) as stop:
            serve(App(), "127.0.0.1", port)
        assert isinstance(stop.value.__cause__, OSError)
        with pytest.raises(OSError), App().run_in_thread(port=port):
            pass  # the embedding entry points raise the OSError itself


# -- one default host --------------------------------------------------------------------------


def test_every_entry_point_defaults_to_the_loopback_interface():
    defaults = {
        "App.listen": inspect.signature(App.listen).parameters["host"].default,
        "App.run_in_thread": inspect.signature(App.run_in_thread).parameters["host"].default,
        "serve": inspect.signature(serve).parameters["host"].default,
        "run_in_thread": inspect.signature(run_in_thread).parameters["host"].default,
        "Reactor.listen": inspect.signature(Reactor.listen).parameters["host"].default,
        "cli": _parser().get_default("host"),
    }
    assert set(defaults.values()) == {"127.0.0.1"}, defaults


# -- settings an entry point cannot honour -----------------------------------------------------


@pytest.mark.parametrize("start", [
    lambda reactor: App().run_in_thread(workers=2).__enter__(),
    lambda reactor: run_in_thread(App(), workers=3).__enter__(),
    lambda reactor: reactor.listen(App(), workers=2),
])
def test_workers_where_nothing_forks_is_a_type_error(start):
    reactor = Reactor()
    try:
        with pytest.raises(TypeError, match=r"workers=\d cannot be honoured here.*serve\(\), app\.listen\(\)"):
            start(reactor)
    finally:
        reactor.close()


def test_workers_1_is_fine_everywhere():
    app = App()
    app.get("/", lambda req, res: res.send("one"))
    with app.run_in_thread(workers=1) as server:
        assert fetch(server.port) == "one"


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: App(trust_prxy=True), TypeError,
     r"unknown App setting 'trust_prxy' \(did you mean 'trust_proxy'\?\); App settings are case_sensitive, "),
    (lambda: App(viewz="v"), TypeError, r"unknown App setting 'viewz' \(did you mean 'views'\?\)"),
    (lambda: App(keepalive_timeout=5), TypeError,
     r"'keepalive_timeout' is a server setting, not an App setting: pass it to app\.listen\(\), .*"
     r"--keepalive-timeout"),
    (lambda: App(workers=2), TypeError, r"'workers' is a server setting"),
    (lambda: App().listen(0, trust_proxy=True), TypeError,
     r"'trust_proxy' is an App setting, not a server setting: pass it to App\(trust_proxy=\.\.\.\)"),
    (lambda: App().listen(0, keepalive=5), TypeError, r"unknown server setting\(s\): keepalive"),
    (lambda: App().run_in_thread(case_sensitive=True).__enter__(), TypeError, r"'case_sensitive' is an App setting"),
    (lambda: serve(App(), workers=0), ValueError, r"workers must be >= 1"),
    (lambda: serve(App(), port=70000), ValueError, r"port must be in 0-65535"),
    (lambda: App().listen(8080.5), TypeError, r"port must be an int"),
    (lambda: serve(App(), port=-1), ValueError, r"port must be in 0-65535"),
    (lambda: run_in_thread(App(), "127.0.0.1", 65536).__enter__(), ValueError, r"port must be in 0-65535"),
])
def test_a_setting_that_cannot_apply_raises_before_anything_starts(call, error, message):
    handler = signal.getsignal(signal.SIGINT)
    with bounded(), pytest.raises(error, match=message):
        call()
    assert signal.getsignal(signal.SIGINT) is handler  # nothing was taken over


def test_the_applications_own_settings_go_through_set_and_are_inherited():
    root = App(json_spaces=1)
    mid = App()
    leaf = App()
    assert mid.set("title", "mid") is mid
    mid.use("/leaf", leaf)
    root.use("/mid", mid)
    root.set("title", "root").set("owner", "root")
    leaf.get("/", lambda req, res: res.json([req.app.settings["title"], req.app.settings["owner"]]))
    with root.run_in_thread() as server:
        assert fetch(server.port, "/mid/leaf") == '[\n "mid",\n "root"\n]'


# -- graceful shutdown and connections that have not spoken yet --------------------------------


def test_a_connection_accepted_just_before_a_shutdown_still_gets_its_answer():
    app = App()
    app.get("/", lambda req, res: res.send("answered"))
    with app.run_in_thread(graceful_timeout=DEADLINE) as server:
        port = server.port
        with RawClient(("127.0.0.1", port)) as client:
            wait_until(lambda: server.connection_count == 1)  # accepted, nothing sent yet
            stopper = threading.Thread(target=server.shutdown)
            stopper.start()
            wait_until(lambda: not server.is_listening)
            client.request("GET", "/")
            res = client.read_response()
            assert (res.status, res.text) == (200, "answered")
            assert client.wait_closed()  # then the server closes it
        stopper.join(DEADLINE)
        assert not stopper.is_alive()
        assert server.is_closed


def test_a_connection_that_never_speaks_is_closed_soon_after_a_shutdown():
    app = App()
    with app.run_in_thread(graceful_timeout=DEADLINE) as server, \
            RawClient(("127.0.0.1", server.port)) as client:
        wait_until(lambda: server.connection_count == 1)
        stopper = threading.Thread(target=server.shutdown)
        stopper.start()
        assert client.wait_closed(timeout=DEADLINE / 2)  # after a short grace, not graceful_timeout
        assert client.buffer == b""
        stopper.join(DEADLINE)
        assert server.is_closed
