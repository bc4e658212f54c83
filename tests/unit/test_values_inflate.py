"""Unit: inflating a compressed body costs work linear in its size, whatever its structure.

Measured deterministically, not by the clock: every decompressor the body parser creates is
wrapped to count the compressed bytes handed to it and the bytes it gives back. zlib copies the
input it has not consumed (``unused_data`` at the end of a stream, ``unconsumed_tail`` when
the output bound stops it), so bytes handed in bound the work done on the input.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

import pytest

from evserve.errors import HTTPError
from evserve.middleware.body_parser import _inflate


@dataclass
class Counts:
    decompressors: int = 0
    calls: int = 0
    fed: int = 0
    produced: int = 0
    leftover: int = 0


class CountingDecompressor:
    """A zlib decompressor that reports what passes through it."""

    def __init__(self, real, counts: Counts) -> None:
        self._real = real
        self._counts = counts
        counts.decompressors += 1

    def decompress(self, data, max_length=0):
        self._counts.calls += 1
        self._counts.fed += len(data)
        out = self._real.decompress(data, max_length)
        self._counts.produced += len(out)
        self._counts.leftover += len(self._real.unconsumed_tail)
        if self._real.eof:
            self._counts.leftover += len(self._real.unused_data)
        return out

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def counts(monkeypatch) -> Counts:
    counts = Counts()
    real = zlib.decompressobj
    monkeypatch.setattr(zlib, "decompressobj", lambda *args: CountingDecompressor(real(*args), counts))
    return counts


def test_many_tiny_gzip_members_cost_linear_work(counts):
    members = [gzip.compress(b"%d," % i, mtime=0) for i in range(5000)]
    data = b"".join(members)
    assert _inflate(data, "gzip", 1 << 20) == b"".join(b"%d," % i for i in range(5000))
    assert counts.decompressors == 5000
    # Each member is handed in once, with at most one small slice of the next: before, every
    # member was handed the whole rest of the body (about 5000 * len(data) / 2 bytes in all).
    assert counts.fed <= 4 * len(data)
    assert counts.leftover <= 4 * len(data)
    assert counts.calls <= 2 * 5000


def test_empty_gzip_members_cost_linear_work(counts):
    data = gzip.compress(b"", mtime=0) * 20_000  # 20 bytes each, the smallest member there is
    assert _inflate(data, "gzip", 100) == b""
    assert counts.fed <= 4 * len(data)
    assert counts.leftover <= 4 * len(data)


def test_one_large_member_is_handed_in_once(counts):
    payload = bytes(range(256)) * 4096  # 1 MiB that compresses poorly
    data = gzip.compress(payload, mtime=0)
    assert _inflate(data, "gzip", len(payload)) == payload
    assert counts.decompressors == 1
    assert counts.fed == len(data)
    assert counts.calls <= 32  # slices doubling from a small first one


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_mixed_member_sizes_cost_linear_work(counts, encoding):
    big = bytes(range(256)) * 800
    if encoding == "gzip":
        data = b"".join(gzip.compress(big if i % 50 == 0 else b"x", mtime=0) for i in range(1000))
        expected = b"".join(big if i % 50 == 0 else b"x" for i in range(1000))
    else:
        data = zlib.compress(big) + b"\x00" * 200_000  # whatever follows the stream is ignored
        expected = big
    assert _inflate(data, encoding, 1 << 24) == expected
    assert counts.fed <= 4 * len(data)
    assert counts.leftover <= 4 * len(data)


@pytest.mark.parametrize("limit", [0, 1, 1000, 65536, 1 << 20])
def test_a_bomb_is_stopped_after_the_limit_of_output(counts, limit):
    bomb = gzip.compress(b"\0" * (16 << 20), 9, mtime=0)
    with pytest.raises(HTTPError) as info:
        _inflate(bomb, "gzip", limit)
    assert info.value.status == 413
    assert counts.produced <= limit + 1


def test_a_bomb_of_many_members_is_stopped_after_the_limit_of_output(counts):
    member = gzip.compress(b"\0" * (1 << 20), 9, mtime=0)
    with pytest.raises(HTTPError) as info:
        _inflate(member * 1000, "gzip", 3 << 20)
    assert info.value.status == 413
    assert counts.produced <= (3 << 20) + 1
    assert counts.decompressors <= 4
    assert counts.fed <= 8 * len(member)


@pytest.mark.parametrize(
    ("data", "encoding", "message"),
    [
        (gzip.compress(b"abc")[:-1], "gzip", "unexpected end of data"),
        (gzip.compress(b"abc") + gzip.compress(b"def")[:15], "gzip", "unexpected end of data"),
        (gzip.compress(b"abc") + b"\x1f", "gzip", "unexpected end of data"),
        (gzip.compress(b"abc") + b"junk", "gzip", "incorrect header check"),
        (zlib.compress(b"abc")[:-5], "deflate", "unexpected end of data"),
    ],
)
def test_truncated_and_corrupt_bodies_are_still_400(data, encoding, message):
    with pytest.raises(HTTPError) as info:
        _inflate(data, encoding, 1000)
    assert info.value.status == 400
    assert info.value.message == f"invalid {encoding} body: {message}"
