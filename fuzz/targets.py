"""The fuzz targets: the properties of tests/unit, with the same strategies, at scale.

Each ``Target`` pairs a strategy of argument tuples with a ``check_*`` function imported from
the test modules, so that a failure found here is reproduced by pasting one call into a test.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # evserve and tests.* from a checkout, however started

from hypothesis import strategies as st  # noqa: E402

from tests import strategies as gen  # noqa: E402
from tests.unit.test_h11_differential import (  # noqa: E402
    check_differential,
    check_generated_agree,
)
from tests.unit.test_parser_properties import (  # noqa: E402
    any_limits,
    check_limits,
    check_never_raises_but_parse_error,
    check_round_trip,
    check_split_invariance,
    check_truncation,
    prefixes,
)
from tests.unit.test_writer import check_clients_read_what_was_written, responses  # noqa: E402

__all__ = ["CORPUS", "TARGETS", "Target", "corpus_files", "replay_corpus"]

CORPUS = Path(__file__).resolve().parent / "corpus"


Build = Callable[[gen.Choices], tuple[Any, ...]]


@dataclass(frozen=True)
class Target:
    """A property to fuzz: ``check(*args)`` for generated ``args``.

    ``source`` is either a builder of ``args`` from a ``Choices`` (run fast from seeds, and
    with hypothesis draws to shrink a failure) or a hypothesis strategy of ``args``.
    """

    name: str
    description: str
    source: Build | st.SearchStrategy[tuple[Any, ...]]
    check: Callable[..., object]
    module: str  # where ``check`` lives, for the regression test printed on failure

    def fast(self) -> st.SearchStrategy[tuple[Any, ...]]:
        """The strategy to fuzz with."""
        if isinstance(self.source, st.SearchStrategy):
            return self.source
        return gen.seeded(self.source)

    def shrinkable(self) -> st.SearchStrategy[tuple[Any, ...]] | None:
        """The same examples drawn choice by choice, so that hypothesis can shrink a failure."""
        if isinstance(self.source, st.SearchStrategy):
            return None
        build = self.source
        return st.composite(lambda draw: build(gen.Drawn(draw)))()


# Request-based targets build each example from one seed (``gen.Seeded``): the same generators
# as the tests, about ten times faster than hypothesis drawing every choice. A failure prints
# the built arguments, so the regression test does not depend on the seed.


def _limits(c: gen.Choices) -> dict[str, int]:
    if c.boolean():
        return {}
    return {
        "max_target_size": c.integer(1, 80),
        "max_header_size": c.integer(0, 300),
        "max_headers": c.integer(0, 8),
        "max_body_size": c.integer(0, 300),
    }


def _cuts(c: gen.Choices, data: bytes) -> list[int]:
    return [c.index(len(data) + 1) for _ in range(c.integer(0, 24))]


@st.composite
def _arbitrary(draw: st.DrawFn) -> tuple[bytes, list[int], dict[str, int]]:
    # Raw bytes stay with hypothesis, whose mutator is good at them.
    data = draw(st.one_of(st.binary(max_size=2000), st.tuples(prefixes, st.binary(max_size=600)).map(b"".join)))
    return data, draw(st.lists(st.integers(0, max(len(data), 1)), max_size=24)), draw(any_limits)


def _mutated(c: gen.Choices) -> tuple[bytes, list[int], dict[str, int]]:
    data = gen.mutate(c, gen.build_stream(c)[1])
    return data, _cuts(c, data), _limits(c)


def _split(c: gen.Choices) -> tuple[list[gen.GenRequest], bytes, list[bytes]]:
    reqs, data = gen.build_stream(c, max_requests=6)
    return reqs, data, gen.choose_splits(c, data)


def _roundtrip(c: gen.Choices) -> tuple[list[gen.GenRequest], bytes]:
    return gen.build_stream(c, max_requests=6)


def _small_limits(c: gen.Choices) -> tuple[list[gen.GenRequest], bytes, list[bytes], dict[str, int]]:
    reqs, data = gen.build_stream(c)
    limits = {}
    while not limits:
        limits = _limits(c)
    return reqs, data, gen.choose_splits(c, data), limits


def _truncated(c: gen.Choices) -> tuple[list[gen.GenRequest], bytes, int]:
    reqs, data = gen.build_stream(c)
    return reqs, data, c.index(len(data) + 1)


def _h11_mutated(c: gen.Choices) -> tuple[bytes]:
    return (gen.mutate(c, gen.build_stream(c, max_requests=5, h11_compatible=True)[1]),)


def _h11_valid(c: gen.Choices) -> tuple[list[gen.GenRequest], bytes]:
    return gen.build_stream(c, max_requests=5, h11_compatible=True)


PARSER = "tests.unit.test_parser_properties"
DIFFERENTIAL = "tests.unit.test_h11_differential"

TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("arbitrary", "arbitrary bytes: only ParseError, split-independent", _arbitrary(), check_never_raises_but_parse_error, PARSER),
        Target("mutated", "mutated valid streams: only ParseError, split-independent", _mutated, check_never_raises_but_parse_error, PARSER),
        Target("split", "valid streams split any way: the events of the whole", _split, check_split_invariance, PARSER),
        Target("roundtrip", "generated requests come back field by field", _roundtrip, check_round_trip, PARSER),
        Target("limits", "small limits: the right status at the right request", _small_limits, check_limits, PARSER),
        Target("truncation", "EOF mid-request is a 400, between requests clean", _truncated, check_truncation, PARSER),
        Target("h11", "mutated streams: evserve and h11 accept/reject alike", _h11_mutated, check_differential, DIFFERENTIAL),
        Target("h11-valid", "generated streams: evserve and h11 agree exactly", _h11_valid, check_generated_agree, DIFFERENTIAL),
        Target("writer", "writer output read back by h11 and http.client", responses, check_clients_read_what_was_written, "tests.unit.test_writer"),
    ]
}


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.http"))


def replay_corpus() -> list[tuple[str, str]]:
    """Replay every corpus file; return ``(file, outcome)`` pairs, raising on any failure.

    Each file is parsed whole, byte by byte and in pieces of 2, 3 and 7 bytes (it must give
    events or a ParseError, the same way each time), then compared with h11.
    """
    results = []
    for path in corpus_files():
        data = path.read_bytes()
        for step in (1, 2, 3, 7):
            check_never_raises_but_parse_error(data, list(range(0, len(data), step)), {})
        outcome = gen.parse_stream([data])
        difference = check_differential(data)
        verdict = f"{len(outcome.events)} events" + (f", then {outcome.error}" if outcome.error else "")
        if difference:
            verdict += f" (h11 differs: {difference})"
        results.append((path.name, verdict))
    return results
