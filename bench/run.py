"""Benchmark evserve against its peers with wrk and print markdown tables of medians.

Each server is started by this script pinned to CPU 0 (``taskset -c 0``), waits until it answers
and serves the three benchmark endpoints correctly, is driven by ``wrk -t1`` pinned to CPU 1, and
is stopped (SIGTERM, SIGKILL after a bound). Every scenario gets a fresh server process, a short
untimed warm-up, then ``--runs`` timed runs whose medians are reported with evserve/peer ratios.

Scenarios (``--scenarios``, comma-separated; default all):

- ``plaintext``: keep-alive ``GET /plaintext``, 64 connections;
- ``user``: keep-alive ``GET /user/42`` (routing + JSON), 64 connections;
- ``post``: keep-alive ``POST /echo`` with a ~200-byte JSON body, 64 connections;
- ``varied``: keep-alive ``GET /user/N`` with a browser's head (about 12 headers, ~400 bytes of
  cookies) whose values change every request: no head repeats, so no head cache helps;
- ``close``: ``GET /plaintext`` with ``Connection: close`` (a TCP connection per request);
- ``c1000``: keep-alive ``GET /plaintext`` over 1,000 connections: req/s, p50, p99, errors;
- ``pipeline``: 16 pipelined ``GET /plaintext`` per connection write, 64 connections;
- ``idle``: 10,000 idle keep-alive connections (each after one request) held by a helper
  process (``bench/idle_clients.py``): how many the server holds, its RSS per connection (VmRSS
  before/after) and the latency of fresh requests on new connections meanwhile;
- ``workers``: evserve ``workers=2`` against ``workers=1`` (plaintext).

Every server is configured alike where it has the knob: listen backlog 1024, keep-alive timeout
75 s (so the idle connections outlive the measurement), no access log, connection limits above
10,000. Only 127.0.0.1 is ever contacted. Peers run from ``bench/.venv-peers`` (made by
``bench/setup_peers.sh``); evserve runs on this interpreter. Standard library only.

    bash bench/setup_peers.sh && python bench/run.py           # everything, ~35 minutes
    python bench/run.py --quick --only evserve,aiohttp          # smoke test: 3 s x 1 run
"""

from __future__ import annotations

import argparse
import atexit
import io
import json
import os
import resource
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from report import Options, Result, Scenario, WrkRun, evserve_revision, render
from servers import (
    BENCH,
    CLIENT_CPU,
    HOST,
    POST_BODY,
    ROOT,
    SERVER_CPU,
    SERVERS,
    VENV_PYTHON,
    BenchError,
    Server,
    cpu_idle_seconds,
    get_request,
    http_request,
    pin_prefix,
    raise_nofile_limit,
    running,
    socket_count,
    stop_process,
    tree_cpu_seconds,
    vm_rss_kib,
)

WRK_SLACK = 30.0  # seconds a wrk run may take beyond its duration before it is killed
IDLE_PROBES = 20  # fresh requests timed while the idle connections are held
IDLE_SETUP_TIMEOUT = 300.0  # seconds to open and use the idle connections (waitress needs ~60)

# wrk calls done() once at the end; this prints what the tables need as one JSON line.
WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p99_us": %.0f, '
    .. '"max_us": %.0f, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""

PIPELINE_LUA = """
local depth = 16
init = function(args)
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil, wrk.path) end
  batch = table.concat(r)
end
request = function() return batch end
"""

POST_LUA = f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{POST_BODY}]]
"""


# A browser's request for a different page each time: ~12 headers and ~400 bytes of cookies
# whose values change with every request, so no head repeats and no cache of parsed heads helps.
VARIED_LUA = """
local n = 0
local filler = string.rep("abcdefghij", 28)
request = function()
  n = n + 1
  local id = n % 997
  return wrk.format("GET", "/user/" .. id, {
    ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
      .. "Chrome/131.0.0.0 Safari/537.36",
    ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    ["Accept-Language"] = "en-US,en;q=0.9,fr;q=0.8",
    ["Accept-Encoding"] = "gzip, deflate, br, zstd",
    ["Cookie"] = string.format("sid=%08x%08x; theme=dark; _ga=GA1.1.%d.%d; prefs=%s", n, n * 7919,
      n * 31, n * 17, filler),
    ["Referer"] = "http://127.0.0.1/user/" .. ((id + 1) % 997),
    ["Sec-Fetch-Site"] = "same-origin",
    ["Sec-Fetch-Mode"] = "navigate",
    ["Sec-Fetch-Dest"] = "document",
    ["Upgrade-Insecure-Requests"] = "1",
    ["X-Request-Id"] = tostring(n),
  })
end
"""


WRK_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("plaintext", "plaintext", "/plaintext"),
    Scenario("user", "/user/42", "/user/42"),
    Scenario("post", "POST JSON", "/echo", lua=POST_LUA),
    Scenario("varied", "varied browser heads", "/user/0", lua=VARIED_LUA),
    Scenario("close", "Connection: close", "/plaintext", headers=("Connection: close",)),
    Scenario("c1000", "1,000 conns", "/plaintext", connections=1000),
    Scenario("pipeline", "pipelined x16", "/plaintext", lua=PIPELINE_LUA, pipelined=True),
)
SCENARIO_NAMES = (*(s.name for s in WRK_SCENARIOS), "idle", "workers")


def run_wrk(
    scenario: Scenario, port: int, duration: float, script: Path, cpus: str | None
) -> WrkRun:
    """One wrk run of ``scenario`` against ``port``."""
    argv = [
        *pin_prefix(cpus),
        "wrk",
        "-t1",
        f"-c{scenario.connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-s",
        str(script),
    ]
    for header in scenario.headers:
        argv += ["-H", header]
    argv.append(f"http://{HOST}:{port}{scenario.path}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + WRK_SLACK, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + WRK_SLACK:.0f} s") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            return WrkRun(**json.loads(line.removeprefix("WRK_RESULT ")), client_cpu_s=cpu)
    raise BenchError(
        f"wrk exited with {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
    )


def write_script(workdir: Path, scenario: Scenario) -> Path:
    """The scenario's Lua plus the shared ``done()`` reporter, as a file for ``wrk -s``."""
    path = workdir / f"{scenario.name}.lua"
    path.write_text(scenario.lua + WRK_DONE)
    return path


def bench_wrk(
    server: Server,
    scenario: Scenario,
    opts: Options,
    extra: Sequence[str] = (),
    pinned: bool = True,
) -> Result:
    """Fresh server, warm-up, then ``opts.runs`` timed wrk runs."""
    result = Result()
    script = write_script(opts.workdir, scenario)
    server_cpus = str(SERVER_CPU) if pinned and opts.pin else None
    client_cpus = str(CLIENT_CPU) if pinned and opts.pin else None
    try:
        with running(server, opts.workdir, server_cpus, extra) as (proc, port):
            if opts.warmup > 0:
                run_wrk(scenario, port, opts.warmup, script, client_cpus)
            for i in range(opts.runs):
                cpu_before, idle_before = tree_cpu_seconds(proc.pid), cpu_idle_seconds(SERVER_CPU)
                run = run_wrk(scenario, port, opts.duration, script, client_cpus)
                cpu = tree_cpu_seconds(proc.pid) - cpu_before
                result.extra.setdefault("server_cpu_s", []).append(cpu)
                idle = cpu_idle_seconds(SERVER_CPU) - idle_before
                result.extra.setdefault("server_core_idle_s", []).append(idle)
                result.runs.append(run)
                latency = (
                    ""
                    if scenario.pipelined
                    else f"  p50 {run.p50_us / 1000:7.2f} ms  p99 {run.p99_us / 1000:8.2f} ms"
                )
                progress(
                    f"  {server.name:18} {scenario.name:9} run {i + 1}/{opts.runs}: {run.rps:10,.0f} req/s"
                    f"{latency}  errors {run.socket_errors + run.status}"
                )
    except BenchError as exc:
        result.error = str(exc)
        progress(f"  {server.name:18} {scenario.name:9} FAILED: {exc}")
    return result


def read_json_line(stream: IO[str], proc: subprocess.Popen[Any], timeout: float) -> dict[str, Any]:
    """The next JSON line the helper prints, within ``timeout`` seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise BenchError(f"idle helper silent for {timeout:.0f} s")
    line = stream.readline()
    if not line:
        raise BenchError(f"idle helper exited with {proc.wait(5)}")
    return dict(json.loads(line))


def fresh_request_ms(port: int) -> float | None:
    """Milliseconds from connect to the whole answer of ``GET /plaintext`` (None on failure)."""
    start = time.perf_counter()
    try:
        status, _ = http_request(port, get_request("/plaintext"), timeout=5.0)
    except (OSError, BenchError):
        return None
    return (time.perf_counter() - start) * 1000 if status == 200 else None


def bench_idle(server: Server, opts: Options) -> Result:
    """Hold ``opts.idle_connections`` idle keep-alive connections and measure the server meanwhile."""
    result = Result()
    server_cpus = str(SERVER_CPU) if opts.pin else None
    client_cpus = str(CLIENT_CPU) if opts.pin else None
    try:
        with running(server, opts.workdir, server_cpus) as (proc, port):
            sockets_before, rss_before = socket_count(proc.pid), vm_rss_kib(proc.pid)
            helper_argv = [
                *pin_prefix(client_cpus), sys.executable, str(BENCH / "idle_clients.py"),
                "--port", str(port), "--count", str(opts.idle_connections),
                "--setup-timeout", str(IDLE_SETUP_TIMEOUT),
            ]  # fmt: skip
            helper = subprocess.Popen(
                helper_argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            try:
                if helper.stdout is None or helper.stdin is None:  # unreachable: PIPE given above
                    raise BenchError("idle helper has no pipes")
                opened = read_json_line(helper.stdout, helper, IDLE_SETUP_TIMEOUT + 30)
                answered = int(opened["answered"])
                # Let the server finish accepting: poll its socket count (bounded), then measure.
                deadline = time.monotonic() + 10.0
                held = socket_count(proc.pid) - sockets_before
                while held < answered and time.monotonic() < deadline:
                    time.sleep(0.2)
                    held = socket_count(proc.pid) - sockets_before
                rss_after = vm_rss_kib(proc.pid)
                hold_until = time.monotonic() + opts.duration
                probes = [fresh_request_ms(port) for _ in range(IDLE_PROBES)]
                while time.monotonic() < hold_until and proc.poll() is None:
                    time.sleep(0.2)
                helper.stdin.write("check\n")
                helper.stdin.flush()
                alive = int(read_json_line(helper.stdout, helper, 60.0)["alive"])
                held_end = socket_count(proc.pid) - sockets_before if proc.poll() is None else 0
                helper.stdin.write("quit\n")
                helper.stdin.flush()
            finally:
                stop_process(helper)
            ok = [p for p in probes if p is not None]
            result.extra = {
                "answered": answered,
                "failed": int(opened["failed"]),
                "first_error": opened.get("first_error", ""),
                "open_seconds": float(opened["seconds"]),
                "held": held,
                "held_end": held_end,
                "alive": alive,
                "rss_before_kib": rss_before,
                "rss_after_kib": rss_after,
                "kib_per_conn": (rss_after - rss_before) / answered if answered else None,
                "probe_p50_ms": statistics.median(ok) if ok else None,
                "probe_max_ms": max(ok) if ok else None,
                "probe_failed": len(probes) - len(ok),
                "probes": len(probes),
            }
            progress(f"  {server.name:18} idle      {json.dumps(result.extra)}")
    except (BenchError, OSError, ValueError, KeyError) as exc:
        result.error = str(exc)
        progress(f"  {server.name:18} idle      FAILED: {exc}")
    return result


def progress(message: str) -> None:
    """A progress line on stderr (the tables go to stdout)."""
    print(message, file=sys.stderr, flush=True)


def baseline_server(rev: str) -> Server:
    """evserve as of git revision ``rev``: its tree exported to a temporary directory (removed at
    exit) and served by that tree's own ``bench/app.py`` with the same settings as evserve's."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"error: --baseline {rev}: not a revision of this repository ({exc})") from None
    tree = Path(tempfile.mkdtemp(prefix=f"evserve-{commit}-"))
    atexit.register(shutil.rmtree, tree, ignore_errors=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    # Run the old app with the old tree first on sys.path, whatever evserve is installed.
    code = (f"import runpy, sys; sys.path.insert(0, {str(tree)!r}); "
            f"runpy.run_path({str(tree / 'bench' / 'app.py')!r}, run_name='__main__')")
    own = SERVERS[0]
    return Server(f"evserve@{commit}", f"evserve at {commit}", ("-c", code, *own.args[1:]), is_peer=False)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="servers: " + ", ".join(s.name for s in SERVERS)
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per wrk run (default 10)"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="timed runs per scenario; the median is reported (default 3)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="untimed seconds of load before the runs (default 2)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated server names (evserve is always included for the ratios)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIO_NAMES),
        help=f"comma-separated, from {','.join(SCENARIO_NAMES)}",
    )
    parser.add_argument(
        "--idle-connections", type=int, default=10000, help="connections held in the idle scenario"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 s x 1 run, no warm-up")
    parser.add_argument("--output", type=Path, help="also write the markdown report to this file")
    parser.add_argument(
        "--baseline", metavar="REV",
        help="also run evserve as of git revision REV (e.g. HEAD~3), as the server evserve@REV, "
             "so a change is measured against its parent in the same run",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.runs, args.warmup = 3.0, 1, 0.0
    if args.duration < 1 or args.runs < 1:
        parser.error("--duration must be >= 1 and --runs >= 1")
    known = {s.name for s in SERVERS}
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if only - known:
        parser.error(
            f"unknown server(s) {', '.join(sorted(only - known))}; known: {', '.join(sorted(known))}"
        )
    args.servers = [s for s in SERVERS if not only or s.name in only or s.name == "evserve"]
    if args.baseline:
        args.servers.insert(1, baseline_server(args.baseline))
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    if set(scenarios) - set(SCENARIO_NAMES):
        parser.error(
            f"unknown scenario(s) {', '.join(sorted(set(scenarios) - set(SCENARIO_NAMES)))}"
        )
    args.scenario_list = scenarios
    return args


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM: unwind like Ctrl-C, so every server started so far is stopped."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios for the chosen servers and print the report."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    limit = raise_nofile_limit()
    if limit < args.idle_connections + 100 and "idle" in args.scenario_list:
        progress(
            f"warning: RLIMIT_NOFILE is {limit}; the idle scenario needs about {args.idle_connections + 100}"
        )
    cpus = os.sched_getaffinity(0)
    pin = {SERVER_CPU, CLIENT_CPU} <= cpus and subprocess.run(
        ["which", "taskset"], capture_output=True, check=False
    ).returncode == 0
    if pin:
        os.sched_setaffinity(0, {CLIENT_CPU})  # the harness itself never competes with the server
    else:
        progress("warning: not pinning (needs CPUs 0 and 1 and taskset): numbers will be noisier")
    if subprocess.run(["which", "wrk"], capture_output=True, check=False).returncode != 0:
        progress("wrk not found: sudo apt-get install -y wrk")
        return 2
    if not VENV_PYTHON.exists():
        progress(f"warning: {VENV_PYTHON} missing (bash bench/setup_peers.sh): peers will fail")

    started = time.monotonic()
    load_start, revision_start = os.getloadavg()[0], evserve_revision()
    results: dict[tuple[str, str], Result] = {}
    workers: dict[str, Result] = {}
    scenarios = [s for s in WRK_SCENARIOS if s.name in args.scenario_list]
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="evserve-bench-") as tmp:
        opts = Options(args.duration, args.runs, args.warmup, args.idle_connections, pin, Path(tmp))
        try:
            for scenario in scenarios:
                progress(f"== {scenario.name}")
                for server in args.servers:
                    results[server.name, scenario.name] = bench_wrk(server, scenario, opts)
            if "idle" in args.scenario_list:
                progress("== idle")
                for server in args.servers:
                    results[server.name, "idle"] = bench_idle(server, opts)
            if "workers" in args.scenario_list:
                progress("== workers")
                evserve, plaintext = SERVERS[0], WRK_SCENARIOS[0]
                for name, count, pinned in (
                    ("w1 pinned", 1, True),
                    ("w1 unpinned", 1, False),
                    ("w2 unpinned", 2, False),
                ):
                    workers[name] = bench_wrk(
                        evserve, plaintext, opts, ["--workers", str(count)], pinned
                    )
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: every server is already stopped
            interrupted = True
            progress("interrupted: reporting what was measured")

    elapsed = time.monotonic() - started
    report = render(
        args.servers, scenarios, results, workers, opts, load_start, revision_start, elapsed
    )
    if interrupted:
        report += "\n\n**Interrupted**: the tables above are partial."
    print(report)
    if args.output:
        args.output.write_text(report + "\n")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
