"""examples/embed.py: the reactor inside a host loop, serving HTTP and a line-echo socket."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from .conftest import (
    DEADLINE,
    ROOT,
    RawClient,
    read_line,
    stop_process,
    subprocess_env,
    wait_until,
)

EMBED = str(ROOT / "examples" / "embed.py")


def start_example(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, EMBED, "--port", "0", "--echo-port", "0", *args],
        cwd=str(ROOT), env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def get_status(port: int) -> dict:
    with RawClient(("127.0.0.1", port)) as client:
        client.request(target="/status")
        res = client.read_response()
    assert res.status == 200
    return json.loads(res.body)


def test_importing_the_example_has_no_side_effects():
    code = "import examples.embed as m; print(callable(m.app), callable(m.main), m.status)"
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=subprocess_env(),
                         capture_output=True, text=True, timeout=DEADLINE, check=True)
    assert out.stdout.strip() == "True True {'ticks': 0, 'frames': 0, 'echoed': 0, 'requests': 0}"
    assert out.stderr == ""


def test_http_and_line_echo_are_served_from_one_host_loop():
    proc = start_example("--duration", "60", "--tick", "0.02")
    try:
        line = read_line(proc)
        fields = dict(part.split("=") for part in line.split()[1:])
        http_port, echo_port = int(fields["http"]), int(fields["echo"])

        first = get_status(http_port)
        assert first["path"] == "/status"

        with RawClient(("127.0.0.1", echo_port)) as echo:
            echo.send(b"hello\nwor")  # one whole line and half of another
            echo.send(b"ld\n")
            assert echo.read_until(b"world\n") == b"hello\nworld\n"
        # The timer and the host loop run too, in the same thread as both servers.
        later = wait_until(lambda: (s := get_status(http_port))["ticks"] > 0 and s["frames"] > 0 and s)
        assert later["echoed"] == 2
        assert later["requests"] > first["requests"]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
        out = proc.stdout.read()  # type: ignore[union-attr]
        assert "stopped" in out
        assert "echoed=2" in out
    finally:
        stop_process(proc)


def test_the_example_runs_to_completion_for_its_duration():
    proc = start_example("--duration", "0.3", "--tick", "0.05")
    try:
        assert read_line(proc).startswith("listening http=")
        assert proc.wait(DEADLINE) == 0
        out = proc.stdout.read()  # type: ignore[union-attr]
        stats = dict(part.split("=") for part in out.split()[1:])
        assert out.startswith("stopped")
        assert int(stats["frames"]) > 0
        assert int(stats["ticks"]) > 0
    finally:
        stop_process(proc)
