"""What the connection machine's peer sends, and the limits it is checked against.

``ReqSpec`` is one valid request whose target tells the fuzz application how to answer it
(``/r/<id>/<mode>/<size>``); ``req_specs`` draws them; ``garbage`` draws invalid or mutated
bytes (random, byte-level mutations of valid requests, and ``NASTY`` ones: huge lengths, bare
CR/LF, over-long and never-ending heads, bodies over the limit); ``cut`` splits bytes into reads.
The bounds (``HEAD_BOUND``, ``BODY_BOUND``, ``READ_SIZE``, ``PAUSED_READ_SIZE``) are what the parser may hold at most
under ``LIMITS``; see ``fuzz/CONNECTION.md``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from hypothesis import strategies as st

from evserve.parser import MAX_CHUNK_LINE
from tests.strategies import Drawn, mutate

__all__ = [
    "BODY_BOUND",
    "CLOSING_MODES",
    "CONTINUE",
    "HEAD_BOUND",
    "LIMITS",
    "MODES",
    "NASTY",
    "PAUSED_READ_SIZE",
    "READ_SIZE",
    "TARGET",
    "TIMEOUTS",
    "ReqSpec",
    "cut",
    "garbage",
    "req_specs",
]

LIMITS = {"max_header_size": 512, "max_headers": 12, "max_target_size": 128, "max_body_size": 2048}
TIMEOUTS = {"keepalive_timeout": 5.0, "header_timeout": 10.0, "body_timeout": 30.0, "write_timeout": 20.0}
READ_SIZE = 4096  # most bytes one read delivers (the fake socket's recv size)
# Most bytes read while the connection has paused reading (it keeps them unprocessed), as
# SocketTransport's PAUSED_READ_SIZE; smaller here, so that runs reach the bound.
PAUSED_READ_SIZE = 2 * READ_SIZE
# Most bytes of an unfinished request head the parser may hold before it must refuse it (414 or
# 431): the request line with its CRLF (target + 64 + 2), then the header lines (+3 for a
# CRLFCRLF in progress); see RequestParser._check_partial_head.
HEAD_BOUND = LIMITS["max_target_size"] + 66 + LIMITS["max_header_size"] + 3
# Most bytes the parser may hold inside a body: a chunk-size line in progress (with its CR), or
# a trailer section in progress. A Content-Length body is handed on as it arrives.
BODY_BOUND = max(MAX_CHUNK_LINE, LIMITS["max_header_size"]) + 1

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
MODES = ("now", "later", "stream", "pump", "pumpfail", "raise", "raisestream", "close", "sendclose", "empty")
# Modes after which the connection closes whatever the request said.
CLOSING_MODES = frozenset({"close", "sendclose", "raise", "raisestream", "pumpfail"})
# Drawn from with repetitions: the modes that keep the connection open come up more often.
GENERATED_MODES = (*MODES, "now", "now", "later", "later", "stream", "pump")
METHODS = ("GET", "GET", "POST", "PUT", "HEAD", "DELETE")
TARGET = re.compile(r"/r/([0-9]+)/([a-z]+)/([0-9]+)")


@dataclass(frozen=True)
class ReqSpec:
    """A valid request, minus its id (given when it is fed)."""

    method: str
    version: str
    connection: str | None  # the Connection header, if any
    expect: bool
    framing: str  # "none", "length" or "chunked"
    body: bytes
    chunk_cuts: tuple[int, ...]
    mode: str  # how the application answers it
    size: int  # the size of the body (or of each streamed piece) the application sends
    leading_blank: bool
    filler: int  # extra header lines

    @property
    def keep_alive(self) -> bool:
        """Whether the request lets the connection carry another one."""
        if self.version == "1.1":
            return self.connection != "close"
        return self.connection == "keep-alive"

    def ends_connection(self) -> bool:
        """Whether the connection closes after answering this request."""
        if not self.keep_alive:
            return True
        if self.method == "HEAD" and self.mode in ("pumpfail", "raisestream"):
            return False  # the head is the whole response: it is over before the failure
        if self.mode in CLOSING_MODES:
            return True
        # A streamed response to HTTP/1.0 is close-delimited (unless it may carry no body).
        return self.mode in ("stream", "pump") and self.version == "1.0" and self.method != "HEAD"

    def render(self, rid: int) -> bytes:
        """The request's bytes, with id ``rid`` in its target."""
        head, body = self.render_parts(rid)
        return head + body

    def render_parts(self, rid: int) -> tuple[bytes, bytes]:
        """The request's head (with any leading blank line) and its framed body."""
        lines = [f"{self.method} /r/{rid}/{self.mode}/{self.size} HTTP/{self.version}", "Host: fuzz"]
        lines += [f"X-Fill-{i}: {'v' * (7 * i)}" for i in range(self.filler)]
        if self.connection is not None:
            lines.append(f"Connection: {self.connection}")
        if self.expect:
            lines.append("Expect: 100-continue")
        body = self.body
        if self.framing == "length":
            lines.append(f"Content-Length: {len(body)}")
        elif self.framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
            pieces, start = [], 0
            for cut_at in sorted({c % (len(body) + 1) for c in self.chunk_cuts} | {len(body)}):
                if cut_at > start:
                    piece = body[start:cut_at]
                    pieces.append(b"%x\r\n%s\r\n" % (len(piece), piece))
                    start = cut_at
            body = b"".join(pieces) + b"0\r\n\r\n"
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return (b"\r\n" if self.leading_blank else b"") + head, body


@st.composite
def req_specs(draw: st.DrawFn) -> ReqSpec:
    """A valid request for the fuzz application (see ``ReqSpec``)."""
    version = draw(st.sampled_from(("1.1", "1.1", "1.1", "1.0")))
    method = draw(st.sampled_from(METHODS))
    connection = draw(st.sampled_from((None, None, None, "close", "keep-alive")))
    framing = draw(st.sampled_from(("none", "length", "chunked") if version == "1.1" else ("none", "length")))
    body = b""
    if framing != "none":
        body = draw(st.one_of(st.binary(max_size=40), st.integers(0, LIMITS["max_body_size"]).map(lambda n: b"z" * n)))
    return ReqSpec(
        method=method,
        version=version,
        connection=connection,
        expect=draw(st.integers(0, 3)) == 0,
        framing=framing,
        body=body,
        chunk_cuts=tuple(draw(st.lists(st.integers(0, 1 << 12), max_size=4))),
        mode=draw(st.sampled_from(GENERATED_MODES)),
        size=draw(st.one_of(st.sampled_from((0, 1, 10, 100)), st.integers(0, 3000))),
        leading_blank=draw(st.integers(0, 9)) == 0,
        filler=draw(st.integers(0, 3)),
    )


_OVER = LIMITS["max_body_size"] + 1
NASTY = (
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + b"x" * 2048 + b"\r\n1\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
    b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"b" * 600 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(20)) + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"\r\n\r\n\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    # Heads that never end, longer than the limits allow: refused before they fill the buffer.
    b"GET /" + b"a" * 3000,
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"c" * 3000,
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Many: 1\r\n" * 300,
    # Bodies over max_body_size, sent whole: refused, never handed to the application.
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % _OVER + b"x" * _OVER,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"400\r\n" + b"y" * 1024 + b"\r\n" + b"401\r\n" + b"y" * 1025 + b"\r\n0\r\n\r\n",
    # A chunked body whose trailer section never ends.
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\nX-T: " + b"t" * 2000,
)


@st.composite
def over_limit(draw: st.DrawFn) -> bytes:
    """A request just over one of ``LIMITS`` (by 1 to 40), otherwise valid: it must be refused."""
    over = draw(st.integers(1, 40))
    which = draw(st.sampled_from(("target", "headers", "header bytes", "body", "chunked body")))
    target, lines, body = "/", ["Host: a"], b""
    if which == "target":
        target = "/" + "t" * (LIMITS["max_target_size"] - 1 + over)
    elif which == "headers":
        lines += [f"X-{i}: 1" for i in range(LIMITS["max_headers"] - 1 + over)]
    elif which == "header bytes":
        # The header section counted by the parser: every line with its CRLF.
        lines.append("X-Pad: " + "p" * (LIMITS["max_header_size"] - len("Host: a\r\nX-Pad: \r\n") + over))
    else:
        body = b"b" * (LIMITS["max_body_size"] + over)
    if which == "chunked body":
        lines.append("Transfer-Encoding: chunked")
        half = len(body) // 2
        body = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])
    elif body:
        lines.append(f"Content-Length: {len(body)}")
    return f"POST {target} HTTP/1.1\r\n{''.join(line + chr(13) + chr(10) for line in lines)}\r\n".encode() + body


@st.composite
def garbage(draw: st.DrawFn) -> bytes:
    """Bytes that are not (only) valid requests: random, mutated, ``NASTY``, or over a limit."""
    kind = draw(st.sampled_from(("bytes", "mutated", "mutated", "nasty", "nasty-mutated", "over-limit")))
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=300))
    if kind == "nasty":
        return draw(st.sampled_from(NASTY))
    if kind == "over-limit":
        return draw(over_limit())
    base = draw(st.sampled_from(NASTY)) if kind == "nasty-mutated" else draw(req_specs()).render(draw(st.integers(0, 99)))
    return mutate(Drawn(draw), base) or b"\x00"


def cut(data: bytes, cuts: list[int], tiny: int) -> list[bytes]:
    """``data`` split at ``cuts`` (taken modulo its length), or in ``tiny``-byte pieces; no piece
    longer than ``READ_SIZE``."""
    if tiny:
        return [data[i : i + tiny] for i in range(0, len(data), tiny)]
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points) if b > a]
    return [p[i : i + READ_SIZE] for p in pieces for i in range(0, len(p), READ_SIZE)]
