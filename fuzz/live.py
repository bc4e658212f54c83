"""The live fuzzer: random and mutated byte streams against a real server on 127.0.0.1.

A server (``run_in_thread`` with timeouts of half a second) runs a small App. Each fuzz case
opens its own connection and sends one byte stream — valid pipelined requests, or the same with
byte-level mutations, CR/LF games, huge lengths, truncations, or plain random bytes — cut into
random pieces with tiny pauses between them, then half-closes or just waits. Every connection
must then get a status line (any 1xx-5xx, and nothing but HTTP/1.1 responses) or a close, and be
closed by the server within its deadline: never a hang. Afterwards the server must be healthy:
a normal request succeeds, no connection is left open, and nothing was logged at ERROR.

Run at scale: ``python -m fuzz.live --connections 2000 [--seed S] [--concurrency N]``; replay one
case with ``--seed S --only I`` (its bytes and pieces are printed on failure).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import logging
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # evserve and tests.* from a checkout, however started

from evserve import App  # noqa: E402
from evserve.server import Server, run_in_thread  # noqa: E402
from tests.strategies import Seeded, build_stream, mutate  # noqa: E402

__all__ = ["Case", "Summary", "make_app", "make_case", "run"]

TIMEOUTS = {"header_timeout": 0.5, "body_timeout": 0.5, "keepalive_timeout": 0.5, "write_timeout": 1.0}
# A connection must be closed by the server this long after our last byte: a request head
# (header_timeout) then a body (body_timeout), or the last response then the idle time
# (keepalive_timeout), plus the deadline sweep's tick and a generous margin for a busy machine.
CLOSE_DEADLINE = TIMEOUTS["header_timeout"] + TIMEOUTS["body_timeout"] + TIMEOUTS["keepalive_timeout"] + 2.0
MAX_PAUSES = 0.3  # seconds of pauses between pieces, at most, per connection
STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) ")


KINDS = (
    ("valid", 15),
    ("mutated", 30),
    ("crlf", 12),
    ("huge", 10),
    ("truncated", 10),
    ("random", 10),
    ("slow-head", 5),
    ("nothing", 3),
    ("expect", 5),
)


def make_app() -> App:
    """The app under fuzz: a few routes that answer at once, later, streamed, or echo the body."""
    app = App()

    def hello(req: Any, res: Any) -> None:
        res.send("ok")

    def echo(req: Any, res: Any) -> None:
        res.type("bin").send(req.raw_body)

    def later(req: Any, res: Any) -> None:
        req.reactor.call_later(0.01, res.send, "later")

    def stream(req: Any, res: Any) -> None:
        res.stream(b"piece %d\n" % i for i in range(20))

    app.get("/", hello)
    app.post("/echo", echo)
    app.put("/echo", echo)
    app.get("/later", later)
    app.get("/stream", stream)
    app.use(hello)  # everything else: 200 ok
    return app


# -- cases --------------------------------------------------------------------------------------


@dataclass
class Case:
    """One connection's worth of fuzz: the pieces sent, the pause before each, and the end."""

    index: int
    kind: str
    pieces: list[bytes]
    pauses: list[float]
    half_close: bool

    def describe(self) -> str:
        data = b"".join(self.pieces)
        return (f"case {self.index} ({self.kind}, {len(data)} bytes in {len(self.pieces)} pieces, "
                f"half_close={self.half_close}): {data[:600]!r}{'...' if len(data) > 600 else ''}\n"
                f"  pieces: {[len(p) for p in self.pieces]}\n  pauses: {[round(p, 3) for p in self.pauses]}")


_ROUTES = (b"/", b"/echo", b"/later", b"/stream", b"/nowhere")


def _valid(rng: Seeded) -> bytes:
    """A few valid pipelined requests, some of them to the app's own routes."""
    _, data = build_stream(rng, max_requests=3)
    if rng.random() < 0.5:
        route = rng.choice(_ROUTES)
        method = b"POST" if route == b"/echo" else b"GET"
        data += b"%s %s HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 5\r\n\r\nhello" % (method, route)
    return data


def _crlf_games(rng: Seeded, data: bytes) -> bytes:
    out = data
    for _ in range(rng.randint(1, 3)):
        game = rng.randrange(5)
        positions = [m.start() for m in re.finditer(rb"\r\n", out)] or [0]
        at = rng.choice(positions)
        if game == 0:
            out = out[:at] + b"\n" + out[at + 2 :]  # bare LF
        elif game == 1:
            out = out[:at] + b"\r" + out[at + 2 :]  # bare CR
        elif game == 2:
            out = out[:at] + b"\r\r\n" + out[at + 2 :]
        elif game == 3:
            out = out[:at] + b"\r\n \r\n" + out[at + 2 :]  # obs-fold / whitespace line
        else:
            out = out.replace(b"\r\n", b"\n")
    return out


_HUGE = (b"99999999999999999999", b"18446744073709551616", b"1048577", b"4294967296", b"-1", b"1e9")


def _huge(rng: Seeded, data: bytes) -> bytes:
    if rng.random() < 0.5:
        value = rng.choice(_HUGE)
        head = b"POST /echo HTTP/1.1\r\nHost: fuzz\r\nContent-Length: %s\r\n\r\n" % value
        return head + rng.randbytes(rng.randint(0, 64))
    size = rng.choice((b"ffffffffffffffff", b"100001", b"7fffffffffffffffffff", b"0" * 40 + b"1"))
    return b"POST /echo HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n%s\r\nabc" % size


def make_case(seed: int, index: int) -> Case:
    """The ``index``-th case of a run seeded with ``seed`` (the same every time)."""
    rng = Seeded(seed * 1_000_003 + index)
    kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
    if kind == "valid":
        data = _valid(rng)
    elif kind == "mutated":
        data = mutate(rng, _valid(rng))
    elif kind == "crlf":
        data = _crlf_games(rng, _valid(rng))
    elif kind == "huge":
        data = _huge(rng, _valid(rng))
    elif kind == "truncated":
        whole = _valid(rng)
        data = whole[: rng.randrange(1, len(whole))] if len(whole) > 1 else whole
    elif kind == "random":
        data = rng.randbytes(rng.randint(1, 400))
    elif kind == "slow-head":
        data = b"GET / HTTP/1.1\r\nHost: fuzz\r\n" + b"X-Slow: 1\r\n" * rng.randint(1, 5)
    elif kind == "expect":
        data = (b"POST /echo HTTP/1.1\r\nHost: fuzz\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"
                + b"0123456789"[: rng.randint(0, 10)])
    else:
        data = b""
    # Cut into pieces: random cuts, or tiny pieces, with short pauses (longer ones now and then).
    if data and rng.random() < 0.2:
        k = rng.randint(1, 5)
        pieces = [data[i : i + k] for i in range(0, len(data), k)][:60]  # a trickle, cut short
    else:
        cuts = sorted({rng.randrange(len(data) + 1) for _ in range(rng.randint(0, 6))} | {0, len(data)})
        pieces = [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]
    pauses = []
    budget = MAX_PAUSES
    for _ in pieces:
        pause = rng.choice((0.0, 0.0, 0.001, 0.005, 0.02)) if rng.random() < 0.95 else rng.uniform(0.05, 0.15)
        pause = min(pause, budget)
        budget -= pause
        pauses.append(pause)
    return Case(index, kind, pieces, pauses, half_close=rng.random() < 0.4)


# -- running a case -----------------------------------------------------------------------------


@dataclass
class Outcome:
    index: int
    status: int | None = None  # the first final status (None: closed without one)
    closed: bool = False
    reset: bool = False
    seconds_to_status: float | None = None  # from the last byte sent
    seconds_to_close: float | None = None
    error: str | None = None


def run_case(port: int, case: Case) -> Outcome:
    """Send ``case`` on a new connection and read until the server closes (or the deadline)."""
    out = Outcome(case.index)
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent_all = True
        for piece, pause in zip(case.pieces, case.pauses, strict=True):
            if pause:
                time.sleep(pause)  # pacing of the fuzz input, not synchronisation
            try:
                sock.sendall(piece)
            except OSError:  # the server closed (or reset) early: allowed, it is rejecting us
                sent_all = False
                break
        last_sent = time.monotonic()
        if sent_all and case.half_close:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        deadline = last_sent + CLOSE_DEADLINE
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                out.error = f"hang: not closed {CLOSE_DEADLINE:.1f} s after the last byte; got {bytes(received[:200])!r}"
                break
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                out.reset = True
                data = b""
            if out.seconds_to_status is None and data:
                out.seconds_to_status = time.monotonic() - last_sent
            if not data:
                out.closed = True
                out.seconds_to_close = time.monotonic() - last_sent
                break
            received += data
    if case.kind in ("valid", "expect") and not received and out.error is None:
        out.error = "valid requests, but the connection closed without a response"
    if received:
        match = STATUS_LINE.match(received)
        if match is None:
            out.error = out.error or f"not an HTTP/1.1 status line: {bytes(received[:120])!r}"
        else:
            statuses = [int(m[1]) for m in STATUS_LINE.finditer(received)]
            final = [s for s in statuses if s >= 200]
            out.status = final[0] if final else statuses[0]
    return out


# -- a run --------------------------------------------------------------------------------------


@dataclass
class Summary:
    connections: int = 0
    seconds: float = 0.0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    closed_without_status: int = 0
    resets: int = 0
    max_to_status: float = 0.0
    max_to_close: float = 0.0
    failures: list[str] = field(default_factory=list)

    def report(self) -> str:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (f"{self.connections} connections in {self.seconds:.1f} s\n"
                f"  statuses: {statuses}\n"
                f"  closed without a status: {self.closed_without_status} (reset: {self.resets})\n"
                f"  max time from the last byte to a status: {self.max_to_status:.3f} s, "
                f"to the close: {self.max_to_close:.3f} s (deadline {CLOSE_DEADLINE:.1f} s)\n"
                f"  failures: {len(self.failures)}")


class _ErrorLog(logging.Handler):
    """Records what evserve logs at ERROR: nothing a peer sends should cause that."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        text = f"{record.name}: {record.getMessage()} ({exc!r})"
        self.records.append(text)


def check_health(server: Server, timeout: float = 10.0) -> list[str]:
    """A normal request is answered, then no connection is left open (polled with a deadline)."""
    problems = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n")
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1.1 200 ") or not data.endswith(b"ok"):
        problems.append(f"health check: a normal request got {data[:200]!r}")
    deadline = time.monotonic() + timeout
    while server.connection_count and time.monotonic() < deadline:
        time.sleep(0.01)  # polling, with a deadline
    if server.connection_count:
        problems.append(f"health check: {server.connection_count} connection(s) still open")
    return problems


def run(
    connections: int,
    seed: int | None = None,
    *,
    concurrency: int = 16,
    time_limit: float = 3600.0,
    only: int | None = None,
    progress: Callable[[str], object] | None = None,
) -> Summary:
    """Fuzz a fresh server with ``connections`` cases (fewer if ``time_limit`` seconds pass
    first), ``concurrency`` at a time; ``only`` runs just that case of the seed's sequence."""
    if seed is None:
        seed = random.randrange(1 << 32)
    summary = Summary()
    errors = _ErrorLog()
    evlog = logging.getLogger("evserve")
    evlog.addHandler(errors)
    lock = threading.Lock()
    start = time.monotonic()
    indices = [only] if only is not None else range(connections)
    try:
        with run_in_thread(make_app(), port=0, **TIMEOUTS) as server:  # type: ignore[arg-type]

            def one(index: int) -> None:
                if time.monotonic() - start > time_limit:
                    return
                case = make_case(seed, index)
                try:
                    out = run_case(server.port, case)
                except OSError as exc:
                    out = Outcome(index, error=f"{type(exc).__name__}: {exc}")
                with lock:
                    summary.connections += 1
                    if out.error is not None:
                        summary.failures.append(f"{out.error}\n  {case.describe()}\n  replay: --seed {seed} --only {index}")
                    if out.status is not None:
                        summary.statuses[out.status] += 1
                    elif out.closed:
                        summary.closed_without_status += 1
                    summary.resets += out.reset
                    if out.seconds_to_status is not None:
                        summary.max_to_status = max(summary.max_to_status, out.seconds_to_status)
                    if out.seconds_to_close is not None:
                        summary.max_to_close = max(summary.max_to_close, out.seconds_to_close)
                    if progress is not None and summary.connections % 500 == 0:
                        progress(f"  {summary.connections} connections, {time.monotonic() - start:.0f} s")

            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                for future in [pool.submit(one, i) for i in indices]:
                    future.result()
            summary.failures += check_health(server)
    finally:
        evlog.removeHandler(errors)
    summary.failures += [f"logged at ERROR: {text}" for text in errors.records]
    summary.seconds = time.monotonic() - start
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.live", description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=500, help="fuzz cases, one connection each (default 500)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the cases (default: random, printed)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections at a time (default 16)")
    parser.add_argument("--time-limit", type=float, default=3600.0, help="stop starting cases after this many seconds")
    parser.add_argument("--only", type=int, default=None, help="run only this case of the seed's sequence")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"live fuzz: {args.connections} connections, seed {seed}, concurrency {args.concurrency}", flush=True)
    summary = run(args.connections, seed, concurrency=args.concurrency, time_limit=args.time_limit,
                  only=args.only, progress=lambda text: print(text, flush=True))
    print(summary.report())
    for failure in summary.failures[:20]:
        print("FAILURE:", failure)
    if len(summary.failures) > 20:
        print(f"... and {len(summary.failures) - 20} more")
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
