"""Results of a benchmark run and their markdown report: medians, ratios, the issue's targets.

Pure formatting over the numbers ``bench/run.py`` collects (and a few version look-ups for the
heading). Standard library only.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers import CLIENT_CPU, ROOT, SERVER_CPU, SERVERS, VENV_PYTHON, Server


@dataclass(frozen=True)
class Scenario:
    """One wrk load: a path, a connection count, extra headers and a Lua script."""

    name: str
    title: str
    path: str
    connections: int = 64
    headers: tuple[str, ...] = ()
    lua: str = ""
    # wrk's latency percentiles are wrong under pipelining: its coordinated-omission correction
    # adds samples below the recorded minimum, which percentile() then never reaches (it often
    # answers 0). Only requests/s is reported for a pipelined scenario.
    pipelined: bool = False


@dataclass(frozen=True)
class WrkRun:
    """One wrk run's numbers (times in microseconds)."""

    requests: int
    duration_us: int
    p50_us: float
    p99_us: float
    max_us: float
    connect: int
    read: int
    write: int
    status: int
    timeout: int
    client_cpu_s: float

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def socket_errors(self) -> int:
        """wrk's socket errors: connect + read + write + timeout."""
        return self.connect + self.read + self.write + self.timeout


@dataclass
class Result:
    """The runs of one server in one scenario, or why there are none."""

    runs: list[WrkRun] = field(default_factory=list)
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def median(self, attribute: str) -> float | None:
        """Median of ``attribute`` over the runs (None without runs)."""
        values = [getattr(run, attribute) for run in self.runs]
        return statistics.median(values) if values else None

    def errors_text(self) -> str:
        """Socket errors and non-2xx/3xx responses summed over the runs, e.g. ``0`` or ``read 12``."""
        parts = []
        for kind in ("connect", "read", "write", "timeout", "status"):
            total = sum(getattr(run, kind) for run in self.runs)
            if total:
                parts.append(f"{'non-2xx' if kind == 'status' else kind} {total:,}")
        return ", ".join(parts) or "0"


@dataclass
class Options:
    """What a run does, and how long (the report's heading quotes it)."""

    duration: float
    runs: int
    warmup: float
    idle_connections: int
    pin: bool
    workdir: Path


def fmt_rps(value: float | None) -> str:
    """``12,345`` or ``-``."""
    return "-" if value is None else f"{value:,.0f}"


def fmt_ms(value_us: float | None) -> str:
    """Microseconds as milliseconds, ``-`` for None."""
    return "-" if value_us is None else f"{value_us / 1000:.2f}"


def ratio(ours: float | None, theirs: float | None) -> str:
    """``ours/theirs`` as ``1.23x`` (empty when either is missing or zero)."""
    if not ours or not theirs:
        return ""
    return f"{ours / theirs:.2f}x"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A markdown table; ``align`` has one ``l`` or ``r`` per column."""
    marks = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def throughput_table(
    servers: Sequence[Server], scenarios: Sequence[Scenario], results: dict[tuple[str, str], Result]
) -> str:
    """Requests/s medians per server and scenario, with evserve/peer ratios in brackets."""
    rows = []
    for server in servers:
        row = [server.label]
        for scenario in scenarios:
            res = results.get((server.name, scenario.name))
            if res is None or not res.runs:
                row.append("failed" if res is not None else "")
                continue
            ours = results.get(("evserve", scenario.name))
            cell = fmt_rps(res.median("rps"))
            if server.name != "evserve" and ours is not None:
                r = ratio(ours.median("rps"), res.median("rps"))
                cell += f" ({r})" if r else ""
            if res.errors_text() != "0":
                cell += " *"
            row.append(cell)
        rows.append(row)
    return table(["server", *(s.title for s in scenarios)], rows, "l" + "r" * len(scenarios))


def c1000_table(servers: Sequence[Server], results: dict[tuple[str, str], Result]) -> str:
    """The 1,000-connection scenario in detail."""
    ours = results.get(("evserve", "c1000"))
    rows = []
    for server in servers:
        res = results.get((server.name, "c1000"))
        if res is None:
            continue
        if not res.runs:
            rows.append([server.label, "failed", "", "", "", "", ""])
            continue
        rows.append(
            [
                server.label,
                fmt_rps(res.median("rps")),
                fmt_ms(res.median("p50_us")),
                fmt_ms(res.median("p99_us")),
                fmt_ms(res.median("max_us")),
                res.errors_text(),
                ""
                if server.name == "evserve" or ours is None
                else ratio(ours.median("p99_us"), res.median("p99_us")),
            ]
        )
    header = [
        "server",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "socket errors (sum of runs)",
        "evserve p99 / peer p99",
    ]
    return table(header, rows, "lrrrrrr")


def idle_table(
    servers: Sequence[Server], results: dict[tuple[str, str], Result], count: int
) -> str:
    """The idle-connections scenario: held, RSS per connection, fresh-request latency."""
    rows = []
    for server in servers:
        res = results.get((server.name, "idle"))
        if res is None:
            continue
        if res.error:
            rows.append(
                [server.label, "failed: " + res.error.splitlines()[0][:60], "", "", "", "", "", ""]
            )
            continue
        x = res.extra
        answered = f"{x['answered']:,}/{count:,}" + (
            f" ({x['first_error']})" if x["failed"] else ""
        )
        per_conn = "-" if x["kib_per_conn"] is None else f"{x['kib_per_conn']:.1f}"
        probes = (
            "-"
            if x["probe_p50_ms"] is None
            else f"{x['probe_p50_ms']:.1f} / {x['probe_max_ms']:.1f}"
        )
        if x["probe_failed"]:
            probes += f" ({x['probe_failed']} failed)"
        rows.append(
            [
                server.label,
                answered,
                f"{x['open_seconds']:.1f}",
                f"{x['held']:,} / {x['held_end']:,}",
                f"{x['alive']:,}",
                f"{x['rss_before_kib'] / 1024:.1f} → {x['rss_after_kib'] / 1024:.1f}",
                per_conn,
                probes,
            ]
        )
    header = [
        "server",
        "answered",
        "open s",
        "server sockets (start / end of hold)",
        "alive at end",
        "RSS MiB",
        "KiB / conn",
        "fresh request p50 / max ms",
    ]
    return table(header, rows, "lrrrrrrr")


def cpu_table(
    servers: Sequence[Server],
    scenarios: Sequence[Scenario],
    results: dict[tuple[str, str], Result],
    duration: float,
) -> str:
    """CPU the server used during the timed runs and, in brackets, how idle its core was (cores)."""
    rows = []
    for server in servers:
        row = [server.label]
        for scenario in scenarios:
            res = results.get((server.name, scenario.name))
            used = res.extra.get("server_cpu_s") if res is not None else None
            idle = res.extra.get("server_core_idle_s") if res is not None else None
            cell = f"{statistics.median(used) / duration:.2f}" if used else ""
            if cell and idle:
                cell += f" (idle {statistics.median(idle) / duration:.2f})"
            row.append(cell)
        rows.append(row)
    return table(["server", *(s.title for s in scenarios)], rows, "l" + "r" * len(scenarios))


def targets_table(results: dict[tuple[str, str], Result], idle_count: int) -> str:
    """Issue 7's "done when" list, checked against this run (the naive floor is not a peer)."""
    peers = [s.name for s in SERVERS if s.name not in ("evserve", "naive")]
    labels = {s.name: s.label for s in SERVERS}
    rows: list[list[str]] = []

    def rps(server: str, scenario: str) -> float | None:
        res = results.get((server, scenario))
        return res.median("rps") if res is not None and res.runs else None

    def add(target: str, measured: str, met: bool | None) -> None:
        rows.append([target, measured, "n/a" if met is None else ("yes" if met else "**no**")])

    def versus(scenario: str, others: Sequence[str], factor: float, target: str) -> None:
        ours = rps("evserve", scenario)
        theirs = [(rps(name, scenario), name) for name in others]
        known = [(value, name) for value, name in theirs if value]
        if not ours or not known:
            add(target, "not measured", None)
            return
        best, name = max(known)
        add(
            target, f"{ours / best:.2f}x ({labels[name]}: {best:,.0f} req/s)", ours >= factor * best
        )

    for scenario, title in (("plaintext", "keep-alive plaintext"), ("user", "keep-alive /user/42")):
        versus(scenario, ["uvicorn-httptools"], 1.0, f"{title} >= 1.0x uvicorn+httptools+uvloop")
        versus(
            scenario,
            ["tornado", "uvicorn-h11", "waitress"],
            3.0,
            f"{title} >= 3x best of tornado, uvicorn+h11, waitress",
        )
    versus("post", ["uvicorn-httptools"], 1.0, "POST JSON >= 1.0x uvicorn+httptools+uvloop")
    versus("close", peers, 1.0, "Connection: close >= best peer")
    ours = results.get(("evserve", "c1000"))
    theirs = [
        (res.median("p99_us"), name)
        for name in peers
        if (res := results.get((name, "c1000"))) and res.runs
    ]
    if ours is None or not ours.runs:
        add("1,000 connections: no socket errors, p99 below every peer's", "not measured", None)
    else:
        errors = ours.errors_text()
        add("1,000 connections: no socket errors", errors, errors == "0")
        if theirs:
            best_p99, name = min((value or 0.0, name) for value, name in theirs)
            p99 = ours.median("p99_us") or 0.0
            add(
                "1,000 connections: p99 below every peer's",
                f"{p99 / 1000:.1f} ms vs {best_p99 / 1000:.1f} ms ({labels[name]})",
                p99 < best_p99,
            )
    idle = results.get(("evserve", "idle"))
    if idle is None or idle.error:
        add(
            f"{idle_count:,} idle connections held, fresh request < 50 ms, <= 4 KiB each",
            "not measured",
            None,
        )
    else:
        x = idle.extra
        add(
            f"{idle_count:,} idle connections all held",
            f"{x['alive']:,} alive",
            x["alive"] == idle_count,
        )
        worst = x["probe_max_ms"]
        add(
            "fresh request answered in under 50 ms meanwhile",
            "failed" if worst is None else f"max {worst:.1f} ms of {x['probes']}",
            worst is not None and worst < 50 and not x["probe_failed"],
        )
        per_conn = x["kib_per_conn"]
        add(
            "<= 4 KiB RSS per idle connection",
            "-" if per_conn is None else f"{per_conn:.1f} KiB",
            per_conn is not None and per_conn <= 4,
        )
    return table(["target", "this run", "met"], rows, "lll")


def workers_table(results: dict[str, Result], duration: float) -> str:
    """evserve workers=1 vs workers=2, with the CPU each side used."""
    base = results.get("w1 pinned")
    rows = []
    for name, res in results.items():
        if not res.runs:
            rows.append([name, "failed", "", "", ""])
            continue
        server_cpu = statistics.median(res.extra.get("server_cpu_s", [0.0])) / duration
        client_cpu = res.median("client_cpu_s") or 0.0
        rows.append(
            [
                name,
                fmt_rps(res.median("rps")),
                ratio(res.median("rps"), base.median("rps")) if base and base.runs else "",
                f"{server_cpu:.2f}",
                f"{client_cpu / duration:.2f}",
            ]
        )
    return table(
        ["evserve", "req/s", "vs workers=1 pinned", "server CPU (cores)", "wrk CPU (cores)"],
        rows,
        "lrrrr",
    )


def evserve_revision() -> str:
    """The checkout's commit, e.g. ``1861fad`` or ``1861fad + uncommitted changes``."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "evserve"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{commit or 'unknown commit'}{' + uncommitted changes' if dirty else ''}"


def environment(revision_start: str) -> list[str]:
    """Lines describing the machine, the interpreter and the versions measured."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    revision_end = evserve_revision()
    if revision_end != revision_start:
        # Each server start imports the working tree as it is then: scenarios may differ.
        revision = f"{revision_start} at the start, {revision_end} at the end (the tree changed during the run)"
    else:
        revision = revision_start
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    lines = [
        f"- machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}",
        f"- evserve {revision} on Python {platform.python_version()}",
        f"- load: {(wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else 'wrk'}",
    ]
    if VENV_PYTHON.exists():
        code = (
            "from importlib.metadata import version\n"
            "print(', '.join(f'{n} {version(n)}' for n in "
            "('uvicorn', 'httptools', 'uvloop', 'h11', 'starlette', 'aiohttp', 'tornado', 'waitress')))"
        )
        peers = subprocess.run(
            [str(VENV_PYTHON), "-c", code], capture_output=True, text=True, check=False
        )
        lines.append(f"- peers: {peers.stdout.strip() or peers.stderr.strip()[-200:]}")
    return lines


def render(
    servers: Sequence[Server],
    scenarios: Sequence[Scenario],
    results: dict[tuple[str, str], Result],
    workers: dict[str, Result],
    opts: Options,
    load_start: float,
    revision_start: str,
    elapsed: float,
) -> str:
    """The whole markdown report: heading, tables, targets and notes."""
    runs = (
        f"median of {opts.runs} x {opts.duration:g} s"
        if opts.runs > 1
        else f"1 run x {opts.duration:g} s"
    )
    pinning = (
        f"server on CPU {SERVER_CPU}, wrk -t1 on CPU {CLIENT_CPU}" if opts.pin else "not pinned"
    )
    out = [
        f"## evserve benchmark ({runs}; {pinning}; {elapsed / 60:.1f} min)",
        "",
        *environment(revision_start),
    ]
    out += [
        f"- load average (1 min) at start {load_start:.2f}, at end {os.getloadavg()[0]:.2f}",
        "",
    ]
    if scenarios:
        out += [
            "### Requests per second (evserve/peer in brackets; > 1 means evserve is faster)",
            "",
            throughput_table(servers, scenarios, results),
            "",
        ]
        if any(res.runs and res.errors_text() != "0" for res in results.values()):
            out += ["`*`: socket errors or non-2xx responses in that cell; see the notes.", ""]
    if any(s.name == "c1000" for s in scenarios):
        out += [
            "### 1,000 connections (keep-alive plaintext)",
            "",
            c1000_table(servers, results),
            "",
        ]
    if any(name == "idle" for _, name in results):
        out += [
            f"### {opts.idle_connections:,} idle keep-alive connections",
            "",
            idle_table(servers, results, opts.idle_connections),
            "",
            f"Each connection made one `GET /plaintext` and then stayed idle for {opts.duration:g} s; "
            "server sockets are counted in /proc/<pid>/fd, RSS is VmRSS before opening them and once "
            "they are all accepted; fresh requests: new connections while they are held.",
            "",
        ]
    if scenarios:
        out += [
            "### Server CPU during the timed runs (cores; 1.00 = all of the pinned core)",
            "",
            cpu_table(servers, scenarios, results, opts.duration),
            "",
            "In brackets, how idle the server's core was meanwhile. A single-process server well "
            "below 1.00 on a core that was not idle was sharing it with other processes on the "
            "machine (its figure is then too low); on an idle core it was waiting for the network "
            "or the client.",
            "",
        ]
    out += [
        "### Performance targets (the naive floor is not counted as a peer)",
        "",
        targets_table(results, opts.idle_connections),
        "",
    ]
    if workers:
        out += [
            "### evserve workers (keep-alive plaintext, 64 connections)",
            "",
            workers_table(workers, opts.duration),
            "",
            "Unpinned, the server processes and wrk share both cores: on a 2-core machine a second "
            "worker competes with the load generator for the core it would need, so workers=2 "
            "measures the sharing as much as the server.",
            "",
        ]
    notes = []
    for (server, scenario), res in results.items():
        if res.error:
            notes.append(f"- {server} / {scenario}: failed: {res.error}")
        elif res.runs and res.errors_text() != "0":
            notes.append(
                f"- {server} / {scenario}: {res.errors_text()} (sum over {len(res.runs)} runs)"
            )
    for name, res in workers.items():
        if res.error:
            notes.append(f"- evserve {name}: failed: {res.error}")
    if notes:
        out += ["### Notes", "", *notes, ""]
    return "\n".join(out).rstrip()
