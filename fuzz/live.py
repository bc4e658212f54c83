"""The live fuzzer: random and mutated byte streams against a real server on 127.0.0.1.

A server (``run_in_thread`` with timeouts of half a second, a write timeout of one) runs a small
App. Each fuzz case opens its own connection and sends one byte stream — valid pipelined
requests, or the same with byte-level mutations, CR/LF games, huge lengths, truncations, plain
random bytes, a head that never ends, a body that never comes — cut into random pieces with
tiny pauses between them, then half-closes or just waits; or it asks for a large response and
does not read it. Every connection must get a status line (nothing but HTTP/1.1 responses) or a
close, and be closed by the server within its deadline: never a hang, never early. Valid
requests must each get a response. Afterwards the server must be healthy: a normal request
succeeds, no connection is left open, and nothing was logged at ERROR.

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

__all__ = ["CLOSE_DEADLINE", "TIMEOUTS", "Case", "Summary", "check_health", "make_app", "make_case", "parse_responses", "run"]

TIMEOUTS = {"header_timeout": 0.5, "body_timeout": 0.5, "keepalive_timeout": 0.5, "write_timeout": 1.0}
READ_TIMEOUTS = ("header_timeout", "body_timeout", "keepalive_timeout")
# The server's deadline sweep runs every tick (as Server computes it from the timeouts).
TICK = min(1.0, max(0.01, min(TIMEOUTS.values()) / 10))
# Slack for a busy machine (threads, the GIL, CI neighbours) on top of a deadline and its tick.
MARGIN = 0.75
# Deadlines count from the start of the server's state, never from a later byte, so after our
# last byte the server owes at most one more read deadline: the rest of a head or a body (408),
# or the idle time after the last response. It must have closed by then (plus tick and margin).
CLOSE_DEADLINE = max(TIMEOUTS[name] for name in READ_TIMEOUTS) + TICK + MARGIN
# Pauses between pieces add up to at most this per connection, well under every read timeout:
# a valid stream is never cut off by a deadline, however it is split.
MAX_PAUSES = 0.2
HEAD_RACE = 0.1  # seconds before its deadline a head may be sent and still count as late
TRICKLE_PIECES = 60  # a trickle of 1-5 byte pieces stops after this many (the rest is not sent)
BIG_SIZE = 8 << 20  # /big: more than the kernel buffers of a peer that does not read can hold
SMALL_RCVBUF = 4096  # the receive buffer of that peer
# A peer that reads nothing must be dropped once output has waited write_timeout: we wait that
# long (plus tick and margin) before reading, and must then find the response cut short.
NO_READ_WAIT = TIMEOUTS["write_timeout"] + TICK + MARGIN
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
    ("no-read", 3),
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

    def big(req: Any, res: Any) -> None:
        piece = b"b" * 65536
        res.stream(piece for _ in range(BIG_SIZE // len(piece)))

    app.get("/", hello)
    app.post("/echo", echo)
    app.put("/echo", echo)
    app.get("/later", later)
    app.get("/stream", stream)
    app.get("/big", big)
    app.use(hello)  # everything else: 200 ok
    return app


# -- cases --------------------------------------------------------------------------------------


@dataclass
class Case:
    """One connection's worth of fuzz: the pieces sent, the pause before each, and the end.

    ``expected`` lists the methods of the requests that must each get a final response, in
    order (valid requests, sent whole, up to the first that ends the connection); None when
    nothing can be said. ``waits`` names the read deadline the server must wait out before it
    answers or closes, when the case ends inside a request (or before one) and stays open.
    """

    index: int
    kind: str
    pieces: list[bytes]
    pauses: list[float]
    half_close: bool
    expected: list[str] | None = None
    waits: str | None = None
    head_end: int = 0  # for waits == "body_timeout": where the head ends in the stream

    def describe(self) -> str:
        """The case, for a failure report."""
        data = b"".join(self.pieces)
        return (f"case {self.index} ({self.kind}, {len(data)} bytes in {len(self.pieces)} pieces, "
                f"half_close={self.half_close}): {data[:600]!r}{'...' if len(data) > 600 else ''}\n"
                f"  pieces: {[len(p) for p in self.pieces]}\n  pauses: {[round(p, 3) for p in self.pauses]}")


_ROUTES = (b"/", b"/echo", b"/later", b"/stream", b"/nowhere")


def _valid(rng: Seeded) -> tuple[bytes, list[str]]:
    """A few valid pipelined requests, some of them to the app's own routes, and the methods of
    those that must be answered (up to the first that does not keep the connection alive)."""
    reqs, data = build_stream(rng, max_requests=3)
    methods = []
    for req in reqs:
        methods.append(req.method)
        if not req.keep_alive:
            return data, methods
    if rng.random() < 0.5:
        route = rng.choice(_ROUTES)
        method = b"POST" if route == b"/echo" else b"GET"
        data += b"%s %s HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 5\r\n\r\nhello" % (method, route)
        methods.append(method.decode())
    return data, methods


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


def _huge(rng: Seeded) -> bytes:
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
    expected: list[str] | None = None
    waits: str | None = None
    head_end = 0
    if kind == "valid":
        data, expected = _valid(rng)
    elif kind == "mutated":
        data = mutate(rng, _valid(rng)[0])
    elif kind == "crlf":
        data = _crlf_games(rng, _valid(rng)[0])
    elif kind == "huge":
        data = _huge(rng)
    elif kind == "truncated":
        whole = _valid(rng)[0]
        data = whole[: rng.randrange(1, len(whole))] if len(whole) > 1 else whole
    elif kind == "random":
        data = rng.randbytes(rng.randint(1, 400))
    elif kind == "slow-head":
        data = b"GET / HTTP/1.1\r\nHost: fuzz\r\n" + b"X-Slow: 1\r\n" * rng.randint(1, 5)
        waits = "header_timeout"
    elif kind == "expect":
        head = b"POST /echo HTTP/1.1\r\nHost: fuzz\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"
        data = head + b"0123456789"[: rng.randint(0, 9)]
        waits, head_end = "body_timeout", len(head)
    elif kind == "no-read":
        data = b"GET /big HTTP/1.1\r\nHost: fuzz\r\n\r\n" * rng.randint(1, 2)
    else:  # nothing: a new connection's first request is due within header_timeout (408)
        data = b""
        waits = "header_timeout"
    # Cut into pieces: random cuts, or tiny pieces, with short pauses (longer ones now and then).
    if data and kind != "no-read" and rng.random() < 0.2:
        k = rng.randint(1, 5)
        pieces = [data[i : i + k] for i in range(0, len(data), k)]
        if len(pieces) > TRICKLE_PIECES:  # a trickle, cut short: what was valid is no more
            pieces = pieces[:TRICKLE_PIECES]
            expected = None
            if kind == "expect" and k * TRICKLE_PIECES < head_end:
                waits = "header_timeout"
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
    half_close = kind != "no-read" and rng.random() < 0.4
    if half_close:
        waits = None  # EOF in the middle of a request ends it at once
    return Case(index, kind, pieces, pauses, half_close, expected, waits, head_end)


# -- reading responses --------------------------------------------------------------------------


def parse_responses(data: bytes, methods: list[str]) -> tuple[list[tuple[int, dict[str, str]]], str | None]:
    """The final responses in ``data``, read as answers to requests with ``methods`` (HEAD ones
    have no body), and what was wrong with the rest (None if nothing)."""
    out: list[tuple[int, dict[str, str]]] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            return out, f"an incomplete head at {pos}: {data[pos:pos + 80]!r}"
        status_line, *lines = data[pos:end].decode("latin-1").split("\r\n")
        match = STATUS_LINE.match(status_line.encode("latin-1") + b" ")
        if match is None:
            return out, f"not a status line at {pos}: {status_line[:80]!r}"
        status = int(match[1])
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        pos = end + 4
        if status < 200:
            continue
        method = methods[len(out)] if len(out) < len(methods) else "GET"
        out.append((status, headers))
        if method == "HEAD" or status in (204, 304):
            continue
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    return out, "an incomplete chunked body"
                size = int(data[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2 + size + 2
                if pos > len(data):
                    return out, "an incomplete chunked body"
                if size == 0:
                    break
        elif "content-length" in headers:
            pos += int(headers["content-length"])
            if pos > len(data):
                return out, "an incomplete body"
        else:
            pos = len(data)  # close-delimited
    return out, None


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


def _connect(port: int, kind: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if kind == "no-read":  # before connect: the window it advertises stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def run_case(port: int, case: Case) -> Outcome:
    """Send ``case`` on a new connection and read until the server closes (or the deadline)."""
    out = Outcome(case.index)
    received = bytearray()
    connected = time.monotonic()
    with _connect(port, case.kind) as sock:
        sent_all = True
        sent_at: list[float] = []  # when each piece began to be sent
        for piece, pause in zip(case.pieces, case.pauses, strict=True):
            if pause:
                time.sleep(pause)  # pacing of the fuzz input, not synchronisation
            sent_at.append(time.monotonic())
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
        if case.kind == "no-read":
            time.sleep(NO_READ_WAIT)  # the peer reads nothing: the server's write deadline passes
            deadline = time.monotonic() + CLOSE_DEADLINE
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                out.error = f"hang: not closed {CLOSE_DEADLINE:.2f} s after the last byte; got {bytes(received[:200])!r}"
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
    ended = time.monotonic()
    if received:
        match = STATUS_LINE.match(received)
        if match is None:
            out.error = out.error or f"not an HTTP/1.1 status line: {bytes(received[:120])!r}"
        else:
            statuses = [int(m[1]) for m in STATUS_LINE.finditer(received)]
            final = [s for s in statuses if s >= 200]
            out.status = final[0] if final else statuses[0]
    if out.error is None:
        out.error = _check(case, bytes(received), out, connected, sent_at, ended)
    return out


def _check(case: Case, received: bytes, out: Outcome, connected: float, sent_at: list[float], ended: float) -> str | None:
    """What is wrong with how the server treated ``case`` (None if nothing)."""
    if case.kind == "no-read":
        if len(received) >= BIG_SIZE:
            return (f"a peer that read nothing for {NO_READ_WAIT:.2f} s was not dropped: it then read "
                    f"{len(received)} bytes (write_timeout {TIMEOUTS['write_timeout']} s)")
        return None
    if case.expected is not None:
        responses, problem = parse_responses(received, case.expected)
        if problem is not None:
            return f"valid requests, but {problem}"
        statuses = [status for status, _ in responses]
        if len(responses) != len(case.expected):
            return f"{len(case.expected)} valid requests ({case.expected}) got {len(responses)} responses {statuses}"
        if any(status >= 400 for status in statuses):
            return f"valid requests got {statuses}"
    if case.waits is not None:
        # The server may act only once the deadline has passed, counted from when it can have
        # started it at the earliest: a byte is received after we send it.
        # A new connection starts with header_timeout, from the accept (after our connect).
        timeout = TIMEOUTS[case.waits]
        if case.waits == "keepalive_timeout" or case.waits == "header_timeout":
            start = connected
        else:
            offsets = itertools.accumulate(len(p) for p in case.pieces)
            started = [t for t, offset in zip(sent_at, offsets, strict=False) if offset >= case.head_end]
            if not started:
                return "the server closed before the whole head was sent"
            start = started[0]
            header_deadline = connected + TIMEOUTS["header_timeout"]
            if start > header_deadline - HEAD_RACE:
                # The head's end was sent about when its deadline passed (a loaded machine can
                # delay our sends): the server may have refused it with a header timeout.
                start, timeout = connected, TIMEOUTS["header_timeout"]
        if ended - start < timeout:
            return f"closed {ended - start:.3f} s after the {case.waits} ({timeout} s) began: early"
        if case.waits != "keepalive_timeout" and out.status != 408:
            return f"waited out the {case.waits}, but got {out.status} instead of 408"
    return None


# -- a run --------------------------------------------------------------------------------------


@dataclass
class Summary:
    connections: int = 0
    seconds: float = 0.0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    closed_without_status: int = 0
    resets: int = 0
    max_to_status: float = 0.0
    max_to_close: float = 0.0
    failures: list[str] = field(default_factory=list)

    def report(self) -> str:
        """A few lines: the counts, the statuses, the longest waits, the failures."""
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.kinds.items()))
        return (f"{self.connections} connections in {self.seconds:.1f} s ({kinds})\n"
                f"  statuses: {statuses}\n"
                f"  closed without a status: {self.closed_without_status} (reset: {self.resets})\n"
                f"  max time from the last byte to a status: {self.max_to_status:.3f} s, "
                f"to the close: {self.max_to_close:.3f} s (deadline {CLOSE_DEADLINE:.2f} s)\n"
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
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n")
            while chunk := sock.recv(65536):
                data += chunk
    except OSError as exc:
        problems.append(f"health check: {type(exc).__name__}: {exc} after {data[:200]!r}")
    if not data.startswith(b"HTTP/1.1 200 ") or not data.endswith(b"\r\n\r\nok"):
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
                    summary.kinds[case.kind] += 1
                    if out.error is not None:
                        summary.failures.append(f"{out.error}\n  {case.describe()}\n  replay: --seed {seed} --only {index}")
                    if out.status is not None:
                        summary.statuses[out.status] += 1
                    elif out.closed:
                        summary.closed_without_status += 1
                    summary.resets += out.reset
                    if case.kind != "no-read":  # (that peer waits on purpose before reading)
                        summary.max_to_status = max(summary.max_to_status, out.seconds_to_status or 0.0)
                        summary.max_to_close = max(summary.max_to_close, out.seconds_to_close or 0.0)
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
