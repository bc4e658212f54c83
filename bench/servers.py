"""The servers under test: how to start each one, check it, measure it from /proc and stop it.

Every server is a child process of ``bench/run.py`` in a process group of its own, started with
``taskset`` when pinning, and always stopped: SIGTERM to the group, SIGKILL after
``STOP_TIMEOUT``. Before any load a server must answer the three benchmark endpoints correctly.
Only 127.0.0.1 is ever contacted. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / "peers"
VENV_PYTHON = BENCH / ".venv-peers" / "bin" / "python"
HOST = "127.0.0.1"
SERVER_CPU = 0  # taskset -c for the server
CLIENT_CPU = 1  # taskset -c for wrk, the idle helper and this harness

START_TIMEOUT = 30.0  # seconds for a server to answer its first request
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL (evserve's graceful_timeout is 10)

POST_BODY = json.dumps(
    {
        "id": 12345,
        "name": "evserve benchmark",
        "email": "bench@example.com",
        "tags": ["http", "python", "benchmark", "json"],
        "active": True,
        "score": 98.6,
        "address": {"street": "1 Reactor Road", "city": "Selectors", "zip": "10101"},
        "notes": "about two hundred bytes of JSON",
    }
)


class BenchError(Exception):
    """A server or a load run failed; the message says why (with the server's log tail)."""


@dataclass(frozen=True)
class Server:
    """How to start one server: ``python`` + ``args`` + ``--host 127.0.0.1 --port P``."""

    name: str
    label: str
    args: tuple[str, ...]
    is_peer: bool = True

    def command(self, port: int, extra: Sequence[str] = ()) -> list[str]:
        """The argv that serves on ``port``."""
        python = str(VENV_PYTHON) if self.is_peer else sys.executable
        return [python, *self.args, *extra, "--host", HOST, "--port", str(port)]


SERVERS: tuple[Server, ...] = (
    Server(
        "evserve",
        "evserve",
        (
            str(BENCH / "app.py"),
            "--keepalive-timeout",
            "75",
            "--max-connections",
            "12000",
            "--backlog",
            "1024",
        ),
        is_peer=False,
    ),
    Server(
        "uvicorn-httptools",
        "uvicorn+httptools+uvloop (raw ASGI)",
        (str(PEERS / "asgi_uvicorn.py"),),
    ),
    Server("starlette", "Starlette on uvicorn+httptools", (str(PEERS / "starlette_uvicorn.py"),)),
    Server("aiohttp", "aiohttp", (str(PEERS / "aiohttp_server.py"),)),
    Server("waitress", "waitress (WSGI, 4 threads)", (str(PEERS / "waitress_server.py"),)),
    Server(
        "uvicorn-h11",
        "uvicorn+h11+asyncio (raw ASGI)",
        (str(PEERS / "asgi_uvicorn.py"), "--http", "h11", "--loop", "asyncio"),
    ),
    Server("tornado", "tornado", (str(PEERS / "tornado_server.py"),)),
    Server("naive", "naive thread-per-connection (floor)", (str(PEERS / "naive_threads.py"),)),
)


def raise_nofile_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def pin_prefix(cpus: str | None) -> list[str]:
    """``taskset -c CPUS`` to prefix a command with, or nothing when not pinning."""
    return ["taskset", "-c", cpus] if cpus is not None else []


_used_ports: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 below the ephemeral range, never handed out twice per run."""
    for port in range(18100, 32000):
        if port in _used_ports:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise BenchError("no free port in 18100-32000")


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a server log, indented for an error message."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n    | {line}" for line in text)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group started for ``proc``; SIGKILL it if still there after a bound."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    # Pre-forked workers that outlived their master are still in the group: make sure.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def http_request(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send one raw request on a fresh connection; return (status, body) of the response."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                head = data[:head_end].decode("latin-1")
                length = next(
                    (
                        int(line.split(":", 1)[1])
                        for line in head.split("\r\n")[1:]
                        if line.lower().startswith("content-length:")
                    ),
                    None,
                )
                if length is not None and len(data) >= head_end + 4 + length:
                    return int(head.split(" ", 2)[1]), data[head_end + 4 : head_end + 4 + length]
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    raise BenchError(f"incomplete response: {data[:200]!r}")


def get_request(path: str, extra: str = "") -> bytes:
    """A minimal HTTP/1.1 GET (``Connection: close``, so nothing lingers)."""
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n".encode()


def check_endpoints(port: int) -> None:
    """Raise BenchError unless the server gives the three benchmark answers."""
    status, body = http_request(port, get_request("/plaintext"))
    if status != 200 or body != b"Hello, World!":
        raise BenchError(f"GET /plaintext gave {status} {body[:80]!r}")
    status, body = http_request(port, get_request("/user/42"))
    if status != 200 or json.loads(body) != {"user_id": "42"}:
        raise BenchError(f"GET /user/42 gave {status} {body[:80]!r}")
    data = POST_BODY.encode()
    post = (
        f"POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode() + data
    status, body = http_request(port, post)
    if status != 200 or json.loads(body) != json.loads(data):
        raise BenchError(f"POST /echo gave {status} {body[:80]!r}")


@contextlib.contextmanager
def running(
    server: Server, workdir: Path, cpus: str | None, extra: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen[Any], int]]:
    """Start ``server``, wait until it answers correctly, yield (process, port), always stop it."""
    if server.is_peer and not VENV_PYTHON.exists():
        raise BenchError(f"{VENV_PYTHON} missing: run bash bench/setup_peers.sh")
    port = free_port()
    log_path = workdir / f"{server.name}-{port}.log"
    env = dict(os.environ)
    if not server.is_peer:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*pin_prefix(cpus), *server.command(port, extra)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,  # its own process group, so workers are stopped with it
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise BenchError(f"{server.name} exited with {proc.returncode}{log_tail(log_path)}")
            try:
                check_endpoints(port)
                break
            except (OSError, BenchError, ValueError) as exc:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{server.name} not ready after {START_TIMEOUT:.0f} s: {exc}{log_tail(log_path)}"
                    ) from None
                time.sleep(0.1)
        yield proc, port
    finally:
        stop_process(proc)


def vm_rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def socket_count(pid: int) -> int:
    """Open sockets of ``pid`` (its /proc/<pid>/fd entries that are ``socket:[...]``)."""
    count = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            count += os.readlink(fd_dir / entry).startswith("socket:")
    return count


def cpu_idle_seconds(cpu: int) -> float:
    """Seconds CPU ``cpu`` has been idle (idle + iowait in /proc/stat) since boot."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            fields = line.split()
            return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")
    raise BenchError(f"no cpu{cpu} in /proc/stat")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its direct children (pre-forked workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1] is the ppid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick
