"""End to end: the command line, ``python -m evserve TARGET [options]`` (SPEC section 6, issue 6).

Each test runs the real command as a child process with its output in a file: start by module
path and by file path, the startup line, a request, SIGINT ending it with status 0; a bad target,
a taken port, an address of another machine and a bad option each give a clear one-line error
and a non-zero status; an error inside the target's own code shows its traceback.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import DEADLINE, ROOT, RawClient, free_port, stop_process, subprocess_env, wait_until

HELLO_APP = '''\
from evserve import App

app = App()
app.get("/", lambda req, res: res.send("hello from " + __name__))
app.post("/echo", lambda req, res: res.send("got it"))
not_an_app = 42
'''

STARTUP = re.compile(r"evserve listening on (http://\S+)")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory holding ``hello_app.py``, ``apps/site.py`` and a broken module."""
    (tmp_path / "hello_app.py").write_text(HELLO_APP)
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "site.py").write_text(HELLO_APP)
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('this module cannot be imported')\n")
    (tmp_path / "syntax_app.py").write_text("from evserve import App\n\napp = App(\n")
    (tmp_path / "needs_missing.py").write_text("import os\nimport no_such_dependency\n")
    (tmp_path / "apps" / "__init__.py").write_text("")
    (tmp_path / "apps" / "broken_import.py").write_text("from apps import not_there  # a bug\n")
    return tmp_path


class Cli:
    """``python -m evserve ARGS`` running in ``cwd``, its stdout and stderr in one log file."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log_path = cwd / "cli.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "evserve", *args], cwd=str(cwd), env=env or subprocess_env(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"python -m evserve exited with {self.proc.returncode}:\n{self.log()}")

    def startup_url(self) -> str:
        """Wait for the startup line; returns the URL it announces."""
        def announced() -> str | None:
            found = STARTUP.search(self.log())
            if found:
                return found.group(1)
            self._alive()
            return None

        return wait_until(announced, message="no startup line")

    def wait_port(self, port: int, host: str = "127.0.0.1") -> None:
        """Poll until ``host:port`` accepts a connection (for runs without a startup line)."""
        def accepting() -> bool:
            self._alive()
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_until(accepting, interval=0.02, message=f"nothing listening on {host}:{port}")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT, then the exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(DEADLINE)

    def close(self) -> None:
        stop_process(self.proc)


@contextlib.contextmanager
def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Cli]:
    running = Cli(cwd, *args, env=env)
    try:
        yield running
    finally:
        running.close()


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a command that is expected to exit by itself."""
    return subprocess.run([sys.executable, "-m", "evserve", *args], cwd=str(cwd), env=subprocess_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE)


# -- starting and stopping ---------------------------------------------------------------------


def test_module_target_on_a_given_port_then_ctrl_c_exits_0(workdir):
    port = free_port()
    with cli(workdir, "hello_app:app", "--port", str(port)) as server:
        url = server.startup_url()
        assert url == f"http://127.0.0.1:{port}"
        server.wait_port(port)
        res = requests.get(url + "/", timeout=DEADLINE)
        assert (res.status_code, res.text) == (200, "hello from hello_app")
        assert server.interrupt() == 0, server.log()
    assert "shutting down" in server.log()
    assert "Traceback" not in server.log()


def test_the_attribute_defaults_to_app(workdir):
    with cli(workdir, "hello_app", "--port", "0") as server:
        res = requests.get(server.startup_url() + "/", timeout=DEADLINE)
        assert res.text == "hello from hello_app"
        assert server.interrupt() == 0, server.log()


def test_file_path_target(workdir):
    with cli(workdir, "apps/site.py:app", "--port", "0") as server:
        res = requests.get(server.startup_url() + "/", timeout=DEADLINE)
        assert (res.status_code, res.text) == (200, "hello from site")
        assert server.interrupt() == 0, server.log()


def test_the_crud_example_by_file_path_uses_crud_db(workdir):
    db = workdir / "cli.sqlite3"
    env = {**subprocess_env(), "CRUD_DB": str(db)}
    with cli(workdir, str(ROOT / "examples" / "crud.py") + ":app", "--port", "0", env=env) as server:
        url = server.startup_url()
        assert requests.get(url + "/echo?message=hi", timeout=DEADLINE).text == "Echo: hi"
        created = requests.post(url + "/data", json={"via": "cli"}, timeout=DEADLINE)
        assert created.status_code == 201
        assert server.interrupt() == 0, server.log()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT data FROM records").fetchall() == [(json.dumps({"via": "cli"}),)]
    assert not (workdir / "crud.sqlite3").exists()


def test_sigterm_also_stops_gracefully(workdir):
    with cli(workdir, "hello_app:app", "--port", "0") as server:
        server.startup_url()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(DEADLINE) == 0, server.log()


def test_every_limit_option_is_accepted_and_applied(workdir):
    port = free_port()
    args = [
        "hello_app:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING",
        "--keepalive-timeout", "2.5", "--header-timeout", "3", "--body-timeout", "3",
        "--write-timeout", "3", "--graceful-timeout", "2", "--max-header-size", "4096",
        "--max-headers", "8", "--max-target-size", "64", "--max-body-size", "10",
        "--max-connections", "50", "--backlog", "16", "--workers", "1", "--write-buffer-size", "8192",
    ]
    with cli(workdir, *args) as server:
        server.wait_port(port)  # --log-level WARNING (any case): no startup line to wait for
        with RawClient(("127.0.0.1", port)) as client:
            client.request("GET", "/")
            assert client.read_response().text == "hello from hello_app"
            client.request("POST", "/echo", body=b"short")
            assert client.read_response().text == "got it"
        with RawClient(("127.0.0.1", port)) as client:
            client.request("POST", "/echo", body=b"x" * 11)  # --max-body-size 10
            assert client.read_response().status == 413
        with RawClient(("127.0.0.1", port)) as client:
            client.request("GET", "/" + "a" * 64)  # --max-target-size 64
            assert client.read_response().status == 414
        with RawClient(("127.0.0.1", port)) as client:
            client.request("GET", "/", headers={f"X-{n}": "v" for n in range(8)})  # --max-headers 8
            assert client.read_response().status == 431
        assert server.interrupt() == 0, server.log()
    assert "listening" not in server.log()  # warning level hides the info line


def test_workers_share_the_port(workdir):
    with cli(workdir, "hello_app:app", "--port", "0", "--workers", "2") as server:
        url = server.startup_url()
        assert "with 2 workers" in server.log()
        assert requests.get(url + "/", timeout=DEADLINE).text == "hello from hello_app"
        assert server.interrupt() == 0, server.log()


def test_help_lists_every_setting():
    out = run_cli(ROOT, "--help")
    assert out.returncode == 0
    for option in ("--host", "--port", "--workers", "--log-level", "--keepalive-timeout", "--header-timeout",
                   "--body-timeout", "--write-timeout", "--graceful-timeout", "--max-header-size",
                   "--max-headers", "--max-target-size", "--max-body-size", "--max-connections", "--backlog"):
        assert option in out.stdout


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "expected"), [
    ("no_such_module:app", r"no module named 'no_such_module'"),
    ("hello_app:missing", r"has no attribute 'missing'"),
    ("hello_app:not_an_app", r"not callable"),
    ("missing.py:app", r"no such file: missing\.py"),
    ("apps/nope.py:app", r"no such file"),
    ("apps.nope:app", r"no module named 'apps\.nope'"),
    (":app", r"bad target"),
])
def test_a_bad_target_is_a_one_line_error_and_exit_2(workdir, target, expected):
    out = run_cli(workdir, target, "--port", "0")
    assert out.returncode == 2, out
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ")
    assert re.search(expected, lines[0]), lines[0]


@pytest.mark.parametrize(("target", "first", "last", "where"), [
    ("broken_app:app", "importing broken_app failed: RuntimeError: this module cannot be imported",
     "RuntimeError: this module cannot be imported", 'broken_app.py", line 1, in <module>'),
    ("broken_app.py:app", "importing broken_app.py failed: RuntimeError: this module cannot be imported",
     "RuntimeError: this module cannot be imported", 'broken_app.py", line 1, in <module>'),
    ("syntax_app:app", "importing syntax_app failed: SyntaxError: ", "SyntaxError: ", 'syntax_app.py", line 3'),
    ("needs_missing:app", "importing needs_missing failed: ModuleNotFoundError: No module named 'no_such_dependency'",
     "ModuleNotFoundError: No module named 'no_such_dependency'", 'needs_missing.py", line 2, in <module>'),
    ("apps.broken_import:app", "importing apps.broken_import failed: ImportError: cannot import name 'not_there'",
     "ImportError: cannot import name 'not_there'", 'broken_import.py", line 1, in <module>'),
])
def test_an_error_inside_the_target_shows_its_traceback_and_exit_2(workdir, target, first, last, where):
    out = run_cli(workdir, target, "--port", "0")
    assert out.returncode == 2, out
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines[0].startswith("error: " + first), out.stderr
    assert lines[-1].startswith(last), out.stderr
    assert where in out.stderr  # the user's file and line
    assert "evserve" not in "".join(lines[1:]).replace(str(workdir), "")  # no frame of ours
    assert "importlib" not in out.stderr


def test_a_port_in_use_is_an_error_suggesting_another_port(workdir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli(workdir, "hello_app:app", "--port", str(port))
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    found = re.fullmatch(rf"error: port {port} on 127\.0\.0\.1 is already in use; try --port (\d+)", lines[0])
    assert found, lines[0]
    assert int(found.group(1)) != port


def test_a_port_in_use_with_workers_is_the_same_one_line(workdir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli(workdir, "hello_app:app", "--port", str(port), "--workers", "2")
    assert out.returncode == 1, out
    assert re.fullmatch(rf"error: port {port} on 127\.0\.0\.1 is already in use; try --port \d+\n", out.stderr), out.stderr


def test_an_address_of_another_machine_is_a_one_line_error(workdir):
    out = run_cli(workdir, "hello_app:app", "--host", "192.0.2.1", "--port", "0")  # TEST-NET-1
    assert out.returncode == 1, out
    assert out.stderr == "error: cannot listen on 192.0.2.1: it is not an address of this machine\n"


@pytest.mark.parametrize(("args", "expected"), [
    (["--bogus"], r"unrecognized arguments: --bogus"),
    (["--work", "2"], r"unrecognized arguments: --work 2"),  # no abbreviations: a typo is an error
    (["--keepalive", "3"], r"unrecognized arguments: --keepalive 3"),
    (["--port", "abc"], r"--port: invalid int value: 'abc'"),
    (["--port", "70000"], r"70000"),
    (["--log-level", "loud"], r"--log-level: invalid choice: 'loud'"),
    (["--keepalive-timeout", "-1"], r"keepalive_timeout"),
    (["--max-body-size", "lots"], r"--max-body-size: invalid int value"),
    (["--workers", "0"], r"workers"),
    ([], None),  # the target itself is missing
])
def test_a_bad_option_is_an_error_and_exit_2(workdir, args, expected):
    out = run_cli(workdir, *(["hello_app:app"] if expected else []), *args)
    assert out.returncode == 2, out
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr  # one line: the usage block stays behind --help
    last = lines[0]
    assert last.startswith("error: ") and last.endswith("(see python -m evserve --help)"), last
    assert re.search(expected or "required: target", last), last
    assert "Traceback" not in out.stderr
