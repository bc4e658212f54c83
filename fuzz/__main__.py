"""Command line: ``python -m fuzz [--examples N] [--target NAME] [--seed S] [--jobs J]``.

Replays the seed corpus, then runs each target with the "fuzz" hypothesis profile
(``max_examples=N`` per target, no deadline). A failure is printed as a ready-to-paste pytest
regression test. Exit status 0 when everything passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import pprint
import sys
import textwrap
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass
class Result:
    name: str
    examples: int
    seconds: float
    error: str | None = None
    regression: str | None = None


def _register_profile(examples: int) -> None:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "fuzz",
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=True,
    )
    settings.load_profile("fuzz")


def render_regression(target_name: str, module: str, check: str, args: tuple[Any, ...]) -> str:
    """A pytest test that replays one failing example."""
    digest = hashlib.sha1(repr(args).encode()).hexdigest()[:8]
    body = textwrap.indent(pprint.pformat(args, width=92), "    " * 2)
    lines = [
        f"# From `python -m fuzz --target {target_name}`: paste into tests/unit/test_fuzz_regressions.py",
        f"from {module} import {check}",
    ]
    if "GenRequest(" in body:
        lines.append("from tests.strategies import GenRequest")
    lines += [
        "",
        "",
        f"def test_fuzz_{target_name.replace('-', '_')}_{digest}() -> None:",
        f"    {check}(",
        f"        *{body.lstrip()}",
        "    )",
    ]
    return "\n".join(lines)


def _run(strategy: Any, check: Any, seed: int | None, examples: int | None = None) -> tuple[int, BaseException | None, tuple[Any, ...] | None]:
    """Run ``check`` under hypothesis; return (calls, error, last failing args)."""
    from hypothesis import given, settings
    from hypothesis import seed as hypothesis_seed

    calls = 0
    failing: list[tuple[Any, ...]] = []

    def body(args: tuple[Any, ...]) -> None:
        nonlocal calls
        calls += 1
        try:
            check(*args)
        except BaseException:
            failing.append(args)
            raise

    test = given(strategy)(body)
    if examples is not None:
        test = settings(max_examples=examples)(test)
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    try:
        test()
    except BaseException as exc:  # report whatever the property raised
        return calls, exc, failing[-1] if failing else None  # the minimal example runs last
    return calls, None, None


def run_target(name: str, examples: int, seed: int | None) -> Result:
    """Run one target to ``examples`` examples (in this process); never raises.

    A failure of a seeded target is looked for again with hypothesis drawing every choice
    (up to 20,000 examples), so that the regression test printed is a shrunk one.
    """
    _register_profile(examples)
    from fuzz.targets import TARGETS

    target = TARGETS[name]
    start = time.perf_counter()
    calls, error, args = _run(target.fast(), target.check, seed)
    seconds = time.perf_counter() - start
    if error is None:
        return Result(name, calls, seconds)
    note = ""
    shrinkable = target.shrinkable()
    if shrinkable is not None:
        _, small_error, small_args = _run(shrinkable, target.check, seed, min(examples, 20_000))
        if small_error is not None and small_args is not None:
            error, args = small_error, small_args
            note = "# (shrunk: found again with hypothesis drawing every choice)\n"
        else:
            note = "# (not shrunk: hypothesis did not find it again drawing every choice)\n"
    text = "".join(traceback.format_exception(error))
    regression = None
    if args is not None:
        regression = note + render_regression(name, target.module, target.check.__name__, args)
    return Result(name, calls, seconds, text[-6000:], regression)


def main(argv: list[str] | None = None) -> int:
    from fuzz.targets import TARGETS, replay_corpus

    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="examples per target (default 10000)")
    parser.add_argument("--target", default="all", choices=["all", *TARGETS], help="one target, or all (default)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed, for a reproducible run")
    parser.add_argument("--jobs", type=int, default=1, help="targets run in parallel processes (default 1)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for target in TARGETS.values():
            print(f"{target.name:12} {target.description}")
        return 0

    started = time.perf_counter()
    print("replaying fuzz/corpus ...", flush=True)
    try:
        replayed = replay_corpus()
    except BaseException:
        traceback.print_exc()
        print("FAILED: the seed corpus (see above); fix this before fuzzing", flush=True)
        return 1
    for file, verdict in replayed:
        print(f"  {file:40} {verdict}")
    print(f"corpus: {len(replayed)} files ok in {time.perf_counter() - started:.1f} s", flush=True)

    names = list(TARGETS) if args.target == "all" else [args.target]
    print(f"fuzzing {', '.join(names)} with {args.examples} examples each"
          + (f", seed {args.seed}" if args.seed is not None else "") + f", {args.jobs} job(s)", flush=True)
    results: list[Result] = []
    if args.jobs > 1 and len(names) > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_target, n, args.examples, args.seed) for n in names]
            for future in futures:
                results.append(_report(future.result()))
    else:
        for n in names:
            results.append(_report(run_target(n, args.examples, args.seed)))

    total = time.perf_counter() - started
    failed = [r for r in results if r.error is not None]
    examples = sum(r.examples for r in results)
    print(f"total: {examples} examples, {len(failed)} failing target(s), {total:.1f} s ({total / 60:.1f} min)")
    return 1 if failed else 0


def _report(result: Result) -> Result:
    rate = result.examples / result.seconds if result.seconds else 0.0
    status = "ok" if result.error is None else "FAILED"
    print(f"  {result.name:12} {status:6} {result.examples:8} examples {result.seconds:8.1f} s  ({rate:,.0f}/s)", flush=True)
    if result.error is not None:
        print(textwrap.indent(result.error, "    | "))
        if result.regression:
            print("\n---- regression test ----\n" + result.regression + "\n-------------------------\n")
    return result


if __name__ == "__main__":
    sys.exit(main())
