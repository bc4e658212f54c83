"""Helpers for end-to-end tests on real sockets: servers, a raw-byte HTTP client, polling, probes.

Every wait here has a deadline; nothing synchronises by sleeping. ``wait_until`` polls a
predicate (the short sleep between polls is pacing, never the thing the test relies on), and
every socket read runs under the client's deadline, so a broken server fails a test instead of
hanging it. Servers started with the ``serve`` fixture (or ``running``) stop within about a
second when the test ends, whatever it left in flight.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # evserve from this checkout, however pytest was started
    sys.path.insert(0, str(ROOT))

from evserve.reactor import Reactor  # noqa: E402
from evserve.server import Server  # noqa: E402

DEADLINE = 10.0  # seconds any single wait may take before the test fails (generous on purpose)
T = TypeVar("T")



def wait_until(predicate: Callable[[], T], timeout: float = DEADLINE, interval: float = 0.005,
               message: str | None = None) -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"timed out after {timeout} s waiting for {predicate!r}")
        time.sleep(interval)


def on_reactor(server: Server, fn: Callable[..., T], *args: Any, timeout: float = DEADLINE) -> T:
    """Run ``fn(*args)`` on the server's reactor thread and return its result."""
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc
        finally:
            done.set()

    server.reactor.call_soon_threadsafe(run)
    if not done.wait(timeout):
        raise AssertionError("the reactor did not run the probe in time")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def wait_idle(server: Server, timeout: float = DEADLINE) -> None:
    """Wait until the server holds no connection."""
    wait_until(lambda: server.connection_count == 0, timeout,
               message=f"connections left open: {server.connection_count}")


def raise_nofile(wanted: int) -> None:
    """Raise the soft RLIMIT_NOFILE to ``wanted`` (skip the test if the hard limit is lower)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for servers that must be told their port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ipv6_available() -> bool:
    """Whether a socket can be bound on ::1."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python that must import evserve from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONWARNINGS", None)
    return env


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Kill a child that is still running and reap it (test clean-up)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(DEADLINE)
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            stream.close()


def read_line(proc: subprocess.Popen[str], timeout: float = DEADLINE) -> str:
    """The next line of a child's stdout, waiting at most ``timeout`` seconds for it.

    For children that print a line and then wait: a second line already read into the pipe
    reader's buffer would not make the pipe readable again.
    """
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    if not readable:
        raise AssertionError(f"the child printed nothing within {timeout} s")
    return proc.stdout.readline()


# -- parsing responses ----------------------------------------------------------------------


@dataclass
class RawResponse:
    """One response as it came off the wire."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The header ``name`` (case-insensitive), lines joined by ", ", or None."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class NeedMore(Exception):
    """The buffer does not hold a whole response yet."""


def parse_response(buf: bytes | bytearray, method: str = "GET", *, eof: bool = False) -> tuple[RawResponse, int]:
    """Parse one response from the front of ``buf``; returns it and the bytes it used.

    Raises ``NeedMore`` when incomplete. A body with neither Content-Length nor chunked framing
    runs to the end of the connection, so it is complete only with ``eof``.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise NeedMore
    head = bytes(buf[:end]).decode("latin-1")
    status_line, *lines = head.split("\r\n")
    version, status_text, *rest = status_line.split(" ", 2)
    status = int(status_text)
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon, f"malformed header line in response: {line!r}"
        headers.append((name, value.strip()))
    res = RawResponse(version, status, rest[0] if rest else "", headers)
    pos = end + 4
    te = res.header("transfer-encoding")
    cl = res.header("content-length")
    if method == "HEAD" or status < 200 or status in (204, 304):
        body = b""
    elif te is not None and "chunked" in te.lower():
        parts = []
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                raise NeedMore
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", pos - 2)
                if trailer_end < 0:
                    raise NeedMore
                pos = trailer_end + 4
                break
            if len(buf) < pos + size + 2:
                raise NeedMore
            parts.append(bytes(buf[pos : pos + size]))
            assert buf[pos + size : pos + size + 2] == b"\r\n", "chunk data not followed by CRLF"
            pos += size + 2
        body = b"".join(parts)
    elif cl is not None:
        length = int(cl)
        if len(buf) < pos + length:
            raise NeedMore
        body = bytes(buf[pos : pos + length])
        pos += length
    else:
        if not eof:
            raise NeedMore
        body = bytes(buf[pos:])
        pos = len(buf)
    res.body = body
    res.raw = bytes(buf[:pos])
    return res, pos


# -- the raw client -------------------------------------------------------------------------


class RawClient:
    """A blocking client that sends exact bytes and reads whole responses under a deadline.

    Args:
        address: ``(host, port)`` of the server, or a ``Server``.
        timeout: seconds each ``read_*``/``wait_closed`` call may take at most.
        rcvbuf: a small SO_RCVBUF (set before connecting) for tests that must not read.
        connect: connect now (else call ``sock.connect`` yourself).
    """

    def __init__(self, address: Any, *, timeout: float = DEADLINE, rcvbuf: int | None = None,
                 connect: bool = True) -> None:
        if isinstance(address, Server):
            host = address.url.rsplit(":", 1)[0].split("//", 1)[1].strip("[]")
            address = (host, address.port)
        self.address = address
        self.timeout = timeout
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.buffer = bytearray()
        self.eof = False
        self.reset = False
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if rcvbuf is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            if connect:
                self.sock.connect(address)
        except BaseException:
            self.sock.close()
            raise

    # -- lifetime ---------------------------------------------------------------------------

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def close_with_reset(self) -> None:
        """Close so that the kernel sends RST (what a killed client looks like)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()

    # -- sending ----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def request(self, method: str = "GET", target: str = "/", headers: dict[str, str] | None = None,
                body: bytes = b"", version: str = "1.1") -> bytes:
        """Build (and send) a well-formed request; returns the bytes sent."""
        lines = [f"{method} {target} HTTP/{version}", "Host: test"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in (headers or {})):
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        self.send(data)
        return data

    # -- receiving --------------------------------------------------------------------------

    def _recv(self, deadline: float) -> bytes:
        """One recv under ``deadline``; b"" at EOF (or reset, noted in ``self.reset``)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed waiting for the server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            self.reset = True
            data = b""
        except TimeoutError:
            raise TimeoutError(f"no data from the server within {self.timeout} s") from None
        if not data:
            self.eof = True
        return data

    def read_response(self, method: str = "GET", timeout: float | None = None) -> RawResponse:
        """Read the next whole response (a 1xx interim response counts as one)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                res, used = parse_response(self.buffer, method, eof=self.eof)
            except NeedMore:
                if self.eof:
                    raise ConnectionError(
                        f"connection closed before a whole response; got {bytes(self.buffer)[:200]!r}"
                    ) from None
                self.buffer += self._recv(deadline)
                continue
            del self.buffer[:used]
            return res

    def read_responses(self, count: int, method: str = "GET") -> list[RawResponse]:
        return [self.read_response(method) for _ in range(count)]

    def read_until_close(self, timeout: float | None = None) -> bytes:
        """Everything the server sends until it closes the connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            self.buffer += self._recv(deadline)
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def read_until(self, marker: bytes, timeout: float | None = None) -> bytes:
        """Read until ``marker`` arrives; returns the bytes up to and including it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (end := self.buffer.find(marker)) < 0:
            if self.eof:
                raise ConnectionError(f"connection closed before {marker!r}; got {bytes(self.buffer)[:200]!r}")
            self.buffer += self._recv(deadline)
        data = bytes(self.buffer[: end + len(marker)])
        del self.buffer[: end + len(marker)]
        return data

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait for the server to close (FIN or RST); returns True, or raises on the deadline.

        Bytes that arrive meanwhile stay in ``buffer``.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            self.buffer += self._recv(deadline)
        return True

    def has_data(self, timeout: float = 0.0) -> bool:
        """Whether the socket is readable (data or EOF) within ``timeout``."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        return bool(readable)


@pytest.fixture(autouse=True)
def _requests_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give every ``requests`` call a deadline: a server that never answers fails the test."""
    import requests

    original = requests.Session.request

    def request(self: Any, method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", DEADLINE)
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", request)


@pytest.fixture
def clients(serve: Callable[..., Server]) -> Iterator[Callable[..., RawClient]]:
    """A factory of ``RawClient``s, all closed when the test ends (before its servers stop)."""
    opened: list[RawClient] = []

    def connect(address: Any, **kwargs: Any) -> RawClient:
        client = RawClient(address, **kwargs)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


TEARDOWN_GRACE = 1.0  # seconds a test's servers give unfinished requests when the test ends


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1", **config: Any) -> Iterator[Server]:
    """``app`` served on port 0 by a reactor on a background thread, for a ``with`` block.

    Like ``run_in_thread``, but its exit is bounded for tests: the server gets ``TEARDOWN_GRACE``
    seconds, not its ``graceful_timeout``, for what is still in flight (a test that failed
    midway may leave a request unanswered or a response unread), and a reactor thread that does
    not stop (a handler blocking it) fails the test after ``DEADLINE`` instead of being left
    behind. Close clients before leaving the block, so that nothing waits on them.
    """
    reactor = Reactor()
    server = Server(reactor, app, host, 0, **config)
    started = threading.Event()
    reactor.call_soon(started.set)
    thread = threading.Thread(target=reactor.run, name=f"evserve-test-{server.port}", daemon=True)
    thread.start()
    try:
        if not started.wait(DEADLINE):
            raise AssertionError("the server's reactor thread did not start")
        yield server
    finally:
        # shutdown() waits for the close itself; from a helper thread, so that the wait here is
        # bounded whatever happens on the reactor thread.
        grace = min(TEARDOWN_GRACE, server.config.graceful_timeout)
        stopper = threading.Thread(target=server.shutdown, args=(grace,), daemon=True)
        stopper.start()
        stopper.join(grace + DEADLINE)
        reactor.stop()
        thread.join(DEADLINE)
        if thread.is_alive() or stopper.is_alive():
            raise AssertionError(
                f"{server!r} has not stopped {grace + 2 * DEADLINE:.0f} s after the test asked it "
                "to (does a handler block the reactor thread?)"
            )
        reactor.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """``serve(app, **config)`` starts ``app`` (see ``running``); stopped when the test ends."""
    with contextlib.ExitStack() as stack:

        def start(app: Any, host: str = "127.0.0.1", **config: Any) -> Server:
            return stack.enter_context(running(app, host, **config))

        yield start


def python_child(code: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python -c code args...`` with this checkout importable; stdout/stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=str(ROOT),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
