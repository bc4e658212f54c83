"""Benchmark (not a test): requests parsed per second by evserve's parser and by h11.

Three streams of typical browser traffic, each measured two ways:

* ``fresh``: one request per ``receive_data``, on a new parser each time (new
  ``RequestParser`` / ``h11.Connection``): pure parsing, the same work for both;
* ``pipelined``: many requests in one buffer on one connection. h11 will not parse a request
  before the previous one is answered, so its loop also sends a minimal ``204`` and starts the
  next cycle (the least its API allows); evserve's parser just goes on.

Each figure is the best of 3 runs of about 0.15 s (``time.perf_counter``); the whole run takes a
few seconds. Usage: ``python bench/parser.py`` from the repository root.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import h11

from evserve.parser import BodyChunk, EndOfMessage, RequestParser

BROWSER_GET = (
    b"GET /articles/2024/sans-io-parsers?ref=home&page=2 HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Referer: https://www.example.com/articles\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=3f1c2a9b7e6d5c4b; theme=dark; _ga=GA1.2.1234567890.1700000000\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"If-None-Match: W/\"5e15153d-120f\"\r\n"
    b"\r\n"
)

_ORDER = {"items": [{"id": i, "name": f"widget-{i}", "price": 9.99 + i, "tags": ["a", "b"]} for i in range(12)]}
_JSON = json.dumps({**_ORDER, "note": ""}).encode()
_JSON = json.dumps({**_ORDER, "note": "n" * (1024 - len(_JSON))}).encode()  # exactly 1 KiB
POST_JSON = (
    b"POST /api/orders HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\n"
    b"Accept: application/json\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Content-Type: application/json\r\n"
    b"Origin: https://www.example.com\r\n"
    b"Cookie: session=3f1c2a9b7e6d5c4b\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n" % len(_JSON)
) + _JSON

_PIECE = b"x" * 512
CHUNKED_UPLOAD = (
    b"PUT /upload/video.part HTTP/1.1\r\n"
    b"Host: upload.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n" + b"".join(b"%x\r\n%s\r\n" % (len(_PIECE), _PIECE) for _ in range(8)) + b"0\r\n\r\n"
)

STREAMS = {
    "GET, 10 headers": (BROWSER_GET, 0),
    "POST, 1 KiB JSON": (POST_JSON, len(_JSON)),
    "PUT, 8 chunks": (CHUNKED_UPLOAD, 8 * len(_PIECE)),
}
PIPELINE = 200  # requests per buffer in the pipelined mode


def evserve_fresh(request: bytes, count: int) -> int:
    body = 0
    for _ in range(count):
        p = RequestParser()
        p.receive_data(request)
        while True:
            event = p.next_event()
            if type(event) is BodyChunk:
                body += len(event.data)
            elif type(event) is EndOfMessage:
                break
    return body


def h11_fresh(request: bytes, count: int) -> int:
    body = 0
    for _ in range(count):
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(request)
        while True:
            event = conn.next_event()
            if type(event) is h11.Data:
                body += len(event.data)
            elif type(event) is h11.EndOfMessage:
                break
    return body


def evserve_pipelined(request: bytes, count: int) -> int:
    buffer = request * PIPELINE
    body = 0
    for _ in range(count // PIPELINE):
        p = RequestParser()
        p.receive_data(buffer)
        while (event := p.next_event()) is not None:
            if type(event) is BodyChunk:
                body += len(event.data)
    return body


_NO_CONTENT = h11.Response(status_code=204, headers=[])
_END = h11.EndOfMessage()


def h11_pipelined(request: bytes, count: int) -> int:
    buffer = request * PIPELINE
    body = 0
    for _ in range(count // PIPELINE):
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(buffer)
        for _ in range(PIPELINE):
            while True:
                event = conn.next_event()
                if type(event) is h11.Data:
                    body += len(event.data)
                elif type(event) is h11.EndOfMessage:
                    break
            conn.send(_NO_CONTENT)  # h11 parses the next request only once this one is answered
            conn.send(_END)
            conn.start_next_cycle()
    return body


def rate(run: Callable[[bytes, int], int], request: bytes, body_size: int) -> float:
    """Requests per second: best of 3 runs of about 0.15 s each."""
    count = PIPELINE
    while True:  # calibrate
        start = time.perf_counter()
        run(request, count)
        if time.perf_counter() - start > 0.03:
            break
        count *= 2
    count = max(PIPELINE, int(count * 0.15 / max(time.perf_counter() - start, 1e-9)) // PIPELINE * PIPELINE)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        body = run(request, count)
        best = min(best, time.perf_counter() - start)
        assert body == body_size * count, (run.__name__, body, body_size * count)  # parsed right
    return count / best


def main() -> None:
    print(f"Python {sys.version.split()[0]}, h11 {h11.__version__}; requests/s, best of 3")
    print(f"{'stream':20} {'mode':10} {'evserve':>10} {'h11':>10} {'ratio':>7}")
    for name, (request, body_size) in STREAMS.items():
        for mode, ours, theirs in (
            ("fresh", evserve_fresh, h11_fresh),
            ("pipelined", evserve_pipelined, h11_pipelined),
        ):
            a = rate(ours, request, body_size)
            b = rate(theirs, request, body_size)
            print(f"{name:20} {mode:10} {a:10,.0f} {b:10,.0f} {a / b:6.1f}x", flush=True)
    print(f"fresh: one request per receive_data on a new parser; pipelined: {PIPELINE} requests per buffer")
    print("on one connection (h11 also answers each with a 204, which its API requires).")


if __name__ == "__main__":
    main()
