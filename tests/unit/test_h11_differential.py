"""Differential tests against h11: on the same bytes, evserve and h11 accept or reject alike,
and when both accept they agree on every request's method, target, version, headers, body and
trailers (and on keep-alive and Expect: 100-continue).

h11 is a well-tested reference but not the contract: where it is laxer or stricter than
RFC 9112 and SPEC section 7, the difference is listed in ``KNOWN_DIFFERENCES`` with the rule
that decides it, and a disagreement is accepted only when one of those explains it. evserve is
never weakened to match h11.

``check_differential`` is the property; ``python -m fuzz`` runs it at scale.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest
from hypothesis import example, given

from evserve.errors import ParseError
from evserve.parser import MAX_CHUNK_LINE, BodyChunk, EndOfMessage, RequestHead, RequestParser
from tests.strategies import GenRequest, mutated_streams, parse_stream, request_streams

# Limits out of the way: they are evserve policy (checked in test_parser.py), not syntax.
BIG = {"max_target_size": 1 << 20, "max_header_size": 1 << 20, "max_headers": 1 << 16, "max_body_size": 1 << 40}


@dataclass
class Message:
    """One request as a parser saw it, in bytes, for comparison across parsers."""

    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    keep_alive: bool = True
    expect_continue: bool = False
    complete: bool = False


@dataclass
class Run:
    """What a parser made of a stream: the messages it started, then how it stopped.

    ``stop`` is "eof" (clean end), "error", "closed" (no further request can follow: the
    connection is not persistent) or "paused" (h11 waits for a protocol switch).
    """

    messages: list[Message]
    stop: str
    status: int | None = None
    starts: list[int] = field(default_factory=list)  # evserve only: where each message began


def run_evserve(data: bytes) -> Run:
    p = RequestParser(**BIG)
    p.receive_data(data)
    p.receive_data(b"")
    messages: list[Message] = []
    starts = [0]
    try:
        while (event := p.next_event()) is not None:
            if isinstance(event, RequestHead):
                messages.append(
                    Message(
                        event.method.encode("latin-1"),
                        event.target.encode("latin-1"),
                        event.http_version.encode(),
                        [(n.encode("latin-1"), v.encode("latin-1")) for n, v in event.headers.items()],
                        keep_alive=event.keep_alive,
                        expect_continue=event.expect_continue,
                    )
                )
            elif isinstance(event, BodyChunk):
                messages[-1].body += event.data
            elif isinstance(event, EndOfMessage):
                messages[-1].trailers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in event.trailers]
                messages[-1].complete = True
                starts.append(len(data) - p.buffered)
    except ParseError as exc:
        return Run(messages, "error", exc.status, starts)
    return Run(messages, "closed" if p.is_done else "eof", None, starts)


def run_h11(data: bytes) -> Run:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 22)
    conn.receive_data(data)
    conn.receive_data(b"")
    messages: list[Message] = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.PAUSED:
                return Run(messages, "paused")
            if event is h11.NEED_DATA:  # pragma: no cover - EOF was received
                raise AssertionError("h11 needs data after EOF")
            if isinstance(event, h11.ConnectionClosed):
                return Run(messages, "eof")
            if isinstance(event, h11.Request):
                messages.append(
                    Message(
                        bytes(event.method),
                        bytes(event.target),
                        bytes(event.http_version),
                        [(bytes(n), bytes(v)) for n, v in event.headers],
                        expect_continue=conn.they_are_waiting_for_100_continue,
                    )
                )
            elif isinstance(event, h11.Data):
                messages[-1].body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                msg = messages[-1]
                msg.trailers = [(bytes(n), bytes(v)) for n, v in event.headers]
                msg.complete = True
                if conn.their_state is h11.MIGHT_SWITCH_PROTOCOL:
                    return Run(messages, "paused")  # CONNECT or Upgrade: h11 waits for a 2xx/101
                conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
                msg.keep_alive = conn.our_state is not h11.MUST_CLOSE
                if not msg.keep_alive:
                    return Run(messages, "closed")
                conn.start_next_cycle()
    except h11.RemoteProtocolError as exc:
        return Run(messages, "error", exc.error_status_hint)


def h11_view(msg: Message) -> Message:
    """evserve's message as h11 would report it.

    h11 keeps one Content-Length line, with a list of identical values reduced to one, and
    lowercases Transfer-Encoding: normalisations, not differences of meaning (RFC 9110 section
    8.6). h11 also never keeps an HTTP/1.0 connection open, where RFC 9112 section 9.3 and
    SPEC section 7 honour "Connection: keep-alive" (covered by test_parser.py).
    """
    headers: list[tuple[bytes, bytes]] = []
    seen_length = False
    for name, value in msg.headers:
        if name == b"content-length":
            if seen_length:
                continue
            seen_length = True
            value = value.split(b",")[0].strip()
        elif name == b"transfer-encoding":
            value = value.lower()
        headers.append((name, value))
    keep_alive = msg.keep_alive and msg.version != b"1.0"
    return Message(
        msg.method, msg.target, msg.version, headers, msg.body, msg.trailers, keep_alive, msg.expect_continue, msg.complete
    )


# -- known differences --------------------------------------------------------------------------
# Each takes the bytes from the start of the first request the parsers disagree on and says
# whether the difference explains the disagreement. "evserve" means evserve rejects and h11
# accepts; "h11" the other way round. Predicates look at the request's head, found as h11 would.


def _head(rest: bytes) -> bytes:
    match = re.search(rb"\n\r?\n", rest)
    return rest if match is None else rest[: match.start()].removesuffix(b"\r")


def _request_line(rest: bytes) -> list[bytes]:
    return _head(rest).split(b"\n", 1)[0].rstrip(b"\r").split(b" ")


def _header_values(rest: bytes, name: bytes) -> list[bytes]:
    out = []
    for line in re.split(rb"\r?\n", _head(rest))[1:]:
        key, colon, value = line.partition(b":")
        if colon and key.lower() == name:
            out.append(value.strip(b" \t"))
    return out


_BARE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_CTL_H11_ALLOWS = re.compile(rb"[\x01-\x08\x0e-\x1f\x7f]")
# RFC 9110 section 7.2 / RFC 3986 section 3.2.2: uri-host [ ":" port ]
_RFC_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[\x21-\x7e]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?"
)
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# RFC 9112 section 7.1: chunk-size [ chunk-ext ] CRLF, chunk-ext with BWS around ";" and "="
_RFC_CHUNK_LINE = re.compile(
    rb"[0-9A-Fa-f]+(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)
_H11_CHUNK_LINE = re.compile(rb"[0-9A-Fa-f]{1,20}(?:;.*)?[ \t]*")


def _bare_line_ends(rest: bytes, ev: int | None) -> bool:
    # RFC 9112 section 2.2 lets a recipient accept a bare LF; SPEC section 7 answers 400.
    return ev == 400 and _BARE_CR_OR_LF.search(rest) is not None


def _obs_fold(rest: bytes, ev: int | None) -> bool:
    # RFC 9112 section 5.2: a server may reject obs-fold with 400 (SPEC does); h11 unfolds it.
    return ev == 400 and re.search(rb"\n[ \t]", rest) is not None


def _control_characters(rest: bytes, ev: int | None) -> bool:
    # RFC 9110 section 5.5: field values are VCHAR, obs-text, SP, HTAB. h11 also lets other
    # control characters (not NUL) through, for compatibility (python-hyper/h11 issue 57).
    return ev == 400 and _CTL_H11_ALLOWS.search(rest) is not None


def _target_form(rest: bytes, ev: int | None) -> bool:
    # RFC 9112 section 3.2: origin-form for most methods, absolute-form, authority-form for
    # CONNECT only, asterisk-form for OPTIONS only. h11 accepts any visible characters.
    line = _request_line(rest)
    return ev == 400 and len(line) == 3 and (not line[1].startswith(b"/") or line[0] == b"CONNECT")


def _host_value(rest: bytes, ev: int | None) -> bool:
    # RFC 9112 section 3.2: a Host with an invalid field value gets 400. h11 does not look.
    return ev == 400 and any(_RFC_HOST.fullmatch(v) is None for v in _header_values(rest, b"host"))


def _http_version(rest: bytes, ev: int | None) -> bool:
    # RFC 9110 section 15.6.6 / SPEC section 7: versions other than 1.0 and 1.1 get 505.
    # h11 accepts any HTTP/d.d and treats it as HTTP/1.1 (or 1.0 below 1.1).
    line = _request_line(rest)
    return ev == 505 and len(line) == 3 and line[2] not in (b"HTTP/1.0", b"HTTP/1.1")


def _length_and_chunked(rest: bytes, ev: int | None) -> bool:
    # RFC 9112 section 6.1: a server MAY reject a request with both (SPEC: 400); h11 lets
    # Transfer-Encoding override Content-Length.
    return ev == 400 and bool(_header_values(rest, b"content-length")) and bool(_header_values(rest, b"transfer-encoding"))


def _chunked_in_http10(rest: bytes, ev: int | None) -> bool:
    # RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing;
    # evserve rejects it with 400, h11 decodes it.
    line = _request_line(rest)
    return ev == 400 and len(line) == 3 and line[2] == b"HTTP/1.0" and bool(_header_values(rest, b"transfer-encoding"))


def _chunk_line_grammar(rest: bytes, ev: int | None) -> bool:
    # RFC 9112 section 7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ).
    # h11 accepts anything after ";" and whitespace after the size, for compatibility.
    if ev != 400:
        return False
    lines = rest.split(b"\r\n")
    return any(_H11_CHUNK_LINE.fullmatch(x) and not _RFC_CHUNK_LINE.fullmatch(x) for x in lines)


def _chunk_line_limit(rest: bytes, ev: int | None) -> bool:
    # evserve policy: a chunk-size line (with its extensions) longer than MAX_CHUNK_LINE is
    # abuse (400); h11 bounds only the whole buffered event.
    return ev == 400 and any(len(x) > MAX_CHUNK_LINE and x[:1].isalnum() for x in rest.split(b"\r\n"))


def _chunk_extension_space(rest: bytes, h11_status: int | None) -> bool:
    # RFC 9112 section 7.1.1 allows BWS before the ";" of a chunk extension; h11 does not.
    if h11_status != 400:
        return False
    return any(_RFC_CHUNK_LINE.fullmatch(x) and not _H11_CHUNK_LINE.fullmatch(x) for x in rest.split(b"\r\n"))


def _transfer_coding_list(rest: bytes, h11_status: int | None) -> bool:
    # RFC 9110 sections 5.3 and 5.6.1: a list may be split over several lines and may hold
    # empty elements; RFC 9112 section 7: codings may have parameters. h11 accepts only one
    # line reading exactly "chunked" (and answers 501); evserve accepts ", chunked" and
    # "chunked;x=1" (501 is kept for codings it does not implement).
    values = _header_values(rest, b"transfer-encoding")
    return h11_status == 501 and (len(values) != 1 or values[0].lower() != b"chunked")


def _leading_empty_lines(rest: bytes, h11_status: int | None) -> bool:
    # RFC 9112 section 2.2: a server SHOULD ignore at least one empty line (CRLF) received
    # before the request-line; evserve ignores any number, h11 rejects them.
    return h11_status == 400 and rest.startswith(b"\r\n")


def _long_digit_runs(rest: bytes, h11_status: int | None) -> bool:
    # h11 caps Content-Length and chunk-size at 20 digits, leading zeros included; RFC 9112
    # has no such cap and evserve applies its body limit to the value (413 when too large).
    return h11_status == 400 and re.search(rb"[0-9A-Fa-f]{21,}", rest) is not None


def _unknown_expectation(rest: bytes, ev: int | None) -> bool:
    # RFC 9110 section 10.1.1: a server MAY answer 417 to an expectation other than
    # 100-continue (evserve does, as Node); h11 passes Expect through to the application.
    if ev != 417:
        return False
    line = _request_line(rest)
    members = {m.strip(b" \t").lower() for v in _header_values(rest, b"expect") for m in v.split(b",")}
    return len(line) == 3 and line[2] == b"HTTP/1.1" and bool(members - {b"", b"100-continue"})


Explainer = Callable[[bytes, "int | None"], bool]

KNOWN_DIFFERENCES: dict[str, tuple[str, Explainer]] = {
    "bare CR/LF line ends": ("evserve", _bare_line_ends),
    "obs-fold": ("evserve", _obs_fold),
    "control characters in values": ("evserve", _control_characters),
    "request-target form": ("evserve", _target_form),
    "Host value": ("evserve", _host_value),
    "HTTP version": ("evserve", _http_version),
    "Content-Length with Transfer-Encoding": ("evserve", _length_and_chunked),
    "chunked in HTTP/1.0": ("evserve", _chunked_in_http10),
    "chunk extension grammar": ("evserve", _chunk_line_grammar),
    "chunk line length limit": ("evserve", _chunk_line_limit),
    "unknown expectation": ("evserve", _unknown_expectation),
    "Transfer-Encoding list": ("h11", _transfer_coding_list),
    "leading empty lines": ("h11", _leading_empty_lines),
    "space before chunk extension": ("h11", _chunk_extension_space),
    "20-digit cap": ("h11", _long_digit_runs),
}


def explain(rest: bytes, strict_side: str, status: int | None) -> str | None:
    """The name of the known difference that explains ``strict_side`` rejecting ``rest``."""
    for name, (side, predicate) in KNOWN_DIFFERENCES.items():
        if side == strict_side and predicate(rest, status):
            return name
    return None


# -- the property -------------------------------------------------------------------------------


def check_differential(
    data: bytes,
    *,
    evserve: Callable[[bytes], Run] = run_evserve,
    reference: Callable[[bytes], Run] = run_h11,
) -> str | None:
    """Compare evserve and h11 on ``data``; return the known difference met, if any."""
    ev = evserve(data)
    ref = reference(data)
    n = sum(m.complete for m in ev.messages)
    n_ref = sum(m.complete for m in ref.messages)
    for i in range(min(n, n_ref)):
        assert h11_view(ev.messages[i]) == ref.messages[i], (i, ev.messages[i], ref.messages[i], data)
    if ref.stop in ("closed", "paused") and n_ref <= n:
        # h11 parses nothing more: the last request closes the connection (HTTP/1.0 always
        # does, for h11), or h11 waits after CONNECT or Upgrade for a protocol switch.
        return None
    if n == n_ref and (ev.stop == "error") == (ref.stop == "error"):
        return None  # the same requests; then both rejected the rest, or both ended cleanly
    first = min(n, n_ref)  # the first request they disagree on
    if n < n_ref or (n == n_ref and ev.stop == "error"):
        side, stop, status = "evserve", ev.stop, ev.status
    else:
        side, stop, status = "h11", ref.stop, ref.status
    rest = data[ev.starts[first] :]
    reason = explain(rest, side, status) if stop == "error" else None
    assert reason is not None, (
        f"evserve and h11 disagree at request {first}: evserve {ev.stop} {ev.status} after "
        f"{n} requests, h11 {ref.stop} {ref.status} after {n_ref}; from there: {rest[:300]!r}"
    )
    return reason


# -- the tests ----------------------------------------------------------------------------------


def check_generated_agree(reqs: list[GenRequest], data: bytes) -> None:
    """Valid requests without the known differences: both parsers accept them, identically."""
    ev, ref = run_evserve(data), run_h11(data)
    assert ev.stop in ("eof", "closed") and ref.stop in ("eof", "closed"), (ev, ref)
    assert [h11_view(m) for m in ev.messages] == ref.messages
    assert len(ev.messages) == len(reqs) or not ev.messages[-1].keep_alive


@given(request_streams(h11_compatible=True))
def test_generated_requests_agree_exactly(pair: tuple[list[GenRequest], bytes]) -> None:
    check_generated_agree(*pair)


@given(mutated_streams(request_streams(h11_compatible=True).map(lambda pair: pair[1])))
@example(b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n")
@example(b"GET / HTTP/1.1\nHost: a\n\n")
def test_mutated_requests_accepted_or_rejected_alike(data: bytes) -> None:
    check_differential(data)


# Each known difference, demonstrated: the explainer must be needed and must be right.
DIFFERENCES = [
    ("bare CR/LF line ends", b"GET / HTTP/1.1\nHost: a\n\n"),
    ("bare CR/LF line ends", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\n"),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
    ("control characters in values", b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=\x01\r\n\r\n"),
    ("request-target form", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("request-target form", b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("request-target form", b"GET example.com HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("Host value", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
    ("HTTP version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
    ("HTTP version", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
    ("Content-Length with Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("chunked in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("chunk extension grammar", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n"),
    ("chunk extension grammar", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a b\r\nx\r\n0\r\n\r\n"),
    ("Transfer-Encoding list", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n"),
    ("Transfer-Encoding list", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n"),
    ("chunk line length limit", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * 5000 + b"\r\nx\r\n0\r\n\r\n"),
    ("leading empty lines", b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("space before chunk extension", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 ;a\r\nx\r\n0\r\n\r\n"),
    ("20-digit cap", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 000000000000000000001\r\n\r\nx"),
]


@pytest.mark.parametrize(("name", "data"), DIFFERENCES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(DIFFERENCES)])
def test_known_differences(name: str, data: bytes) -> None:
    ev, ref = run_evserve(data), run_h11(data)
    assert (ev.stop == "error") != (ref.stop == "error"), (ev, ref)  # a real difference
    assert check_differential(data) == name


CORPUS = sorted((Path(__file__).resolve().parents[2] / "fuzz" / "corpus").glob("*.http"))


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_seed_corpus(path: Path) -> None:
    # The fuzz seed corpus (fuzz/corpus/*.http): events or a ParseError, the same fed whole or
    # byte by byte; and any disagreement with h11 is a known one.
    data = path.read_bytes()
    whole = parse_stream([data])
    bytewise = parse_stream([data[i : i + 1] for i in range(len(data))])
    assert (whole.events, whole.error) == (bytewise.events, bytewise.error)
    assert (whole.error is None) == path.name.startswith("valid-"), whole
    check_differential(data)


def test_seed_corpus_is_there() -> None:
    assert len(CORPUS) >= 50


def test_http10_keep_alive_is_a_known_difference() -> None:
    data = b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n"
    ev, ref = run_evserve(data), run_h11(data)
    assert len(ev.messages) == 2 and len(ref.messages) == 1 and ref.stop == "closed"
    assert check_differential(data) is None


def test_an_unexplained_disagreement_fails() -> None:
    # evserve rejecting (or h11 accepting) a valid request for no documented reason must fail.
    def rejecting(data: bytes) -> Run:
        return Run([], "error", 400, [0])

    valid = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    with pytest.raises(AssertionError, match="disagree"):
        check_differential(valid, evserve=rejecting)
    with pytest.raises(AssertionError, match="disagree"):
        check_differential(valid, reference=rejecting)
    with pytest.raises(AssertionError):
        check_differential(valid + valid, evserve=lambda data: run_evserve(data[: len(valid)]))
