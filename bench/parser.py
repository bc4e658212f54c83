"""Benchmark (not a test): requests parsed per second by evserve's parser and by h11.

Four streams of typical browser traffic, each measured on two kinds of input and two ways.

The input, one column group each:

* ``repeated head (cache hits)``: the same request over and over, as a benchmark client or a
  health check sends it. evserve's parser keeps a head of at most 1 KiB that it has seen twice
  and reuses it for the same bytes on any connection, so this column shows it at its best (the
  Chromium head is larger: it is parsed every time);
* ``varied heads (no cache)``: a pool of 1,000 requests of the same shape whose path, cookie
  and header values all differ, cycled, so that no head is seen again while any cache could
  still hold it: what parsing costs when it has to be done (real traffic is in between).

The ways, one row each:

* ``fresh``: one request per ``receive_data``, on a new parser each time (new
  ``RequestParser`` / ``h11.Connection``): pure parsing, the same work for both;
* ``pipelined``: many requests in one buffer on one connection. h11 will not parse a request
  before the previous one is answered, so its loop also sends a minimal ``204`` and starts the
  next cycle (the least its API allows); evserve's parser just goes on.

Each figure is the best of 3 runs of about 0.15 s (``time.perf_counter``); the whole run takes
about half a minute. Usage: ``python bench/parser.py`` from the repository root.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import h11

from evserve.parser import BodyChunk, EndOfMessage, RequestParser

POOL = 1000  # distinct requests in a varied stream: well past the 256 heads any cache keeps
PIPELINE = 200  # requests per buffer in the pipelined mode (POOL is a multiple of it)


def _hex(rng: random.Random, size: int) -> str:
    return f"{rng.getrandbits(4 * size):0{size}x}"


def browser_get(n: int) -> bytes:
    """The ``n``-th request of a Firefox page view (n = 0 is the repeated one)."""
    if n == 0:
        path, session, etag = "/articles/2024/sans-io-parsers?ref=home&page=2", "3f1c2a9b7e6d5c4b", "5e15153d-120f"
    else:
        rng = random.Random(n)
        path = f"/articles/{2000 + n % 25}/{_hex(rng, 12)}?ref=home&page={n}"
        session, etag = _hex(rng, 16), f"{_hex(rng, 8)}-{_hex(rng, 4)}"
    return (
        b"GET %s HTTP/1.1\r\n"
        b"Host: www.example.com\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
        b"Accept-Language: en-US,en;q=0.5\r\n"
        b"Accept-Encoding: gzip, deflate, br\r\n"
        b"Referer: https://www.example.com/articles\r\n"
        b"Connection: keep-alive\r\n"
        b"Cookie: session=%s; theme=dark; _ga=GA1.2.1234567890.1700000000\r\n"
        b"Upgrade-Insecure-Requests: 1\r\n"
        b"If-None-Match: W/\"%s\"\r\n"
        b"\r\n" % (path.encode(), session.encode(), etag.encode())
    )


_LANGUAGES = ("en-US,en;q=0.9", "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", "de-DE,de;q=0.9,en;q=0.8",
              "es-ES,es;q=0.9", "ja,en-US;q=0.9,en;q=0.8", "pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7")
_SITES = ("none", "same-origin", "same-site", "cross-site")
_PLATFORMS = ('"Linux"', '"Windows"', '"macOS"', '"Android"', '"Chrome OS"')


def chromium_get(n: int) -> bytes:
    """The ``n``-th page view of a Chromium browser with a cookie of about 400 bytes: sixteen
    header lines, every value but a few fixed tokens different from one request to the next."""
    rng = random.Random(-1 - n)
    major = 110 + n % 20
    build = f"{major}.0.{rng.randrange(5000, 7000)}.{rng.randrange(200)}"
    brand = rng.choice(("Not-A.Brand", "Not/A)Brand", "Not_A Brand", "Not.A/Brand"))
    cookie = (
        f"_ga=GA1.1.{rng.randrange(10**9, 10**10)}.{rng.randrange(17 * 10**8, 18 * 10**8)}; "
        f"_gid=GA1.2.{rng.randrange(10**9, 10**10)}.{rng.randrange(17 * 10**8, 18 * 10**8)}; "
        f"_fbp=fb.1.{rng.randrange(10**12, 10**13)}.{rng.randrange(10**9, 10**10)}; "
        f"csrftoken={_hex(rng, 64)}; sessionid={_hex(rng, 48)}; "
        f"prefs={_hex(rng, 80)}; cart={_hex(rng, 24)}; consent=v{n % 7}.{_hex(rng, 20)}; "
        f"ab={rng.choice('abcd')}{n}"
    )
    lines = [
        f"GET /shop/{_hex(rng, 6)}/item-{n}?utm_source={_hex(rng, 8)}&page={n % 50} HTTP/1.1",
        "Host: www.example.com",
        "Connection: keep-alive",
        f'sec-ch-ua: "Chromium";v="{major}", "Google Chrome";v="{major}", "{brand}";v="{8 + n % 92}"',
        f"sec-ch-ua-mobile: ?{n % 2}",
        f"sec-ch-ua-platform: {rng.choice(_PLATFORMS)}",
        "Upgrade-Insecure-Requests: 1",
        f"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{build} Safari/537.36",
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
        f"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.{1 + n % 9}",
        f"Sec-Fetch-Site: {rng.choice(_SITES)}",
        "Sec-Fetch-Mode: navigate",
        f"Sec-Fetch-User: ?{1 - n % 2}",
        "Sec-Fetch-Dest: document",
        f"Referer: https://www.example.com/shop/{_hex(rng, 6)}?q={_hex(rng, 10)}",
        f"Accept-Encoding: gzip, deflate, br{', zstd' if n % 3 else ''}",
        f"Accept-Language: {rng.choice(_LANGUAGES)}",
        f"Cookie: {cookie}",
        f'If-None-Match: W/"{_hex(rng, 8)}-{_hex(rng, 12)}"',
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


_ORDER = {"items": [{"id": i, "name": f"widget-{i}", "price": 9.99 + i, "tags": ["a", "b"]} for i in range(12)]}
_JSON = json.dumps({**_ORDER, "note": ""}).encode()
_JSON = json.dumps({**_ORDER, "note": "n" * (1024 - len(_JSON))}).encode()  # exactly 1 KiB


def post_json(n: int) -> bytes:
    """The ``n``-th POST of 1 KiB of JSON from a page's script (n = 0 is the repeated one)."""
    path, session = (b"/api/orders", b"3f1c2a9b7e6d5c4b") if n == 0 else \
        (b"/api/orders/%d" % n, _hex(random.Random(n), 16).encode())
    return (
        b"POST %s HTTP/1.1\r\n"
        b"Host: api.example.com\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\n"
        b"Accept: application/json\r\n"
        b"Accept-Language: en-US,en;q=0.5\r\n"
        b"Content-Type: application/json\r\n"
        b"Origin: https://www.example.com\r\n"
        b"Cookie: session=%s\r\n"
        b"Content-Length: %d\r\n"
        b"\r\n" % (path, session, len(_JSON))
    ) + _JSON


_PIECE = b"x" * 512
_CHUNKS = b"".join(b"%x\r\n%s\r\n" % (len(_PIECE), _PIECE) for _ in range(8)) + b"0\r\n\r\n"


def chunked_upload(n: int) -> bytes:
    """The ``n``-th upload of 8 chunks of 512 bytes (n = 0 is the repeated one)."""
    name = b"video" if n == 0 else b"video-%d-%s" % (n, _hex(random.Random(n), 8).encode())
    return (
        b"PUT /upload/%s.part HTTP/1.1\r\n"
        b"Host: upload.example.com\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"\r\n" % name
    ) + _CHUNKS


# name: (the n-th request, body bytes per request)
STREAMS: dict[str, tuple[Callable[[int], bytes], int]] = {
    "GET, 10 headers": (browser_get, 0),
    "GET, Chromium, 17 h.": (chromium_get, 0),
    "POST, 1 KiB JSON": (post_json, len(_JSON)),
    "PUT, 8 chunks": (chunked_upload, 8 * len(_PIECE)),
}
# BROWSER_GET, POST_JSON and CHUNKED_UPLOAD: the repeated requests, by their former names.
BROWSER_GET, POST_JSON, CHUNKED_UPLOAD = browser_get(0), post_json(0), chunked_upload(0)

Pool = list[bytes]  # POOL requests, received one at a time or PIPELINE to a buffer


def evserve_fresh(pool: Pool, rounds: int) -> int:
    body = 0
    for _ in range(rounds):
        for request in pool:
            p = RequestParser()
            p.receive_data(request)
            while True:
                event = p.next_event()
                if type(event) is BodyChunk:
                    body += len(event.data)
                elif type(event) is EndOfMessage:
                    break
    return body


def h11_fresh(pool: Pool, rounds: int) -> int:
    body = 0
    for _ in range(rounds):
        for request in pool:
            conn = h11.Connection(h11.SERVER)
            conn.receive_data(request)
            while True:
                event = conn.next_event()
                if type(event) is h11.Data:
                    body += len(event.data)
                elif type(event) is h11.EndOfMessage:
                    break
    return body


def evserve_pipelined(buffers: Pool, rounds: int) -> int:
    body = 0
    for _ in range(rounds):
        for buffer in buffers:
            p = RequestParser()
            p.receive_data(buffer)
            while (event := p.next_event()) is not None:
                if type(event) is BodyChunk:
                    body += len(event.data)
    return body


_NO_CONTENT = h11.Response(status_code=204, headers=[])
_END = h11.EndOfMessage()


def h11_pipelined(buffers: Pool, rounds: int) -> int:
    body = 0
    for _ in range(rounds):
        for buffer in buffers:
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


def rate(run: Callable[[Pool, int], int], pool: Pool, body_size: int) -> float:
    """Requests per second: best of 3 runs of about 0.15 s each, over whole pools."""
    rounds = 1
    while True:  # calibrate
        start = time.perf_counter()
        run(pool, rounds)
        if time.perf_counter() - start > 0.03:
            break
        rounds *= 2
    rounds = max(1, round(rounds * 0.15 / max(time.perf_counter() - start, 1e-9)))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        body = run(pool, rounds)
        best = min(best, time.perf_counter() - start)
        assert body == body_size * POOL * rounds, (run.__name__, body, body_size * POOL * rounds)  # parsed right
    return POOL * rounds / best


def pools(make: Callable[[int], bytes], varied: bool, mode: str) -> Pool:
    """POOL requests (all the same unless ``varied``), one per item or PIPELINE per buffer."""
    requests = [make(n + 1) for n in range(POOL)] if varied else [make(0)] * POOL
    if varied and len(set(requests)) != POOL:
        raise SystemExit(f"{make.__name__}: the varied requests are not all different")
    if mode == "fresh":
        return requests
    return [b"".join(requests[i : i + PIPELINE]) for i in range(0, POOL, PIPELINE)]


def main() -> None:
    print(f"Python {sys.version.split()[0]}, h11 {h11.__version__}; requests/s, best of 3")
    print(f"{'':31} {'repeated head (cache hits)':>29}   {'varied heads (no cache)':>29}")
    print(f"{'stream':20} {'mode':10} {'evserve':>10} {'h11':>10} {'ratio':>7}"
          f"   {'evserve':>10} {'h11':>10} {'ratio':>7}")
    for name, (make, body_size) in STREAMS.items():
        for mode, ours, theirs in (
            ("fresh", evserve_fresh, h11_fresh),
            ("pipelined", evserve_pipelined, h11_pipelined),
        ):
            row = f"{name:20} {mode:10}"
            for varied in (False, True):
                pool = pools(make, varied, mode)
                a = rate(ours, pool, body_size)
                b = rate(theirs, pool, body_size)
                row += f" {a:10,.0f} {b:10,.0f} {a / b:6.1f}x  "
            print(row.rstrip(), flush=True)
    print(f"fresh: one request per receive_data on a new parser; pipelined: {PIPELINE} requests per buffer")
    print("on one connection (h11 also answers each with a 204, which its API requires).")
    print("repeated: one request over and over (evserve's parser reuses a head of at most 1 KiB once")
    print(f"seen twice); varied: {POOL} requests of the same shape whose path, cookie and header values")
    print("differ, so that no head repeats while a cache could hold it.")


if __name__ == "__main__":
    main()
