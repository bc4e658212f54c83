"""CPU time per request of evserve's Python path, without sockets or a reactor.

``Connection`` is driven with a fake transport that discards what it is given, serving
``bench/app.py``'s app; each scenario repeats one request ``--requests`` times on one
connection, and the best of ``--repeat`` rounds is printed in microseconds of CPU time (so
other load on the machine matters less than for wall-clock figures). Run it before and after a
change to the hot path: ``python bench/micro.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.app import app
from evserve.config import Config
from evserve.connection import Connection

BODY = b'{"name":"' + b"x" * 183 + b'","n":1}'
REQUESTS = {
    "plaintext": b"GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\n\r\n",
    "/user/42": b"GET /user/42 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n",
    "POST JSON": b"POST /echo HTTP/1.1\r\nHost: localhost:8080\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
}


class NullTransport:
    """A transport that accepts everything and counts the bytes written."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def send_file(self, file: Any, offset: int, count: int) -> None:
        file.close()

    def buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def measure(request: bytes, count: int, repeat: int) -> float:
    """The best CPU seconds per request over ``repeat`` rounds of ``count`` requests."""
    config = Config()
    best = float("inf")
    for _ in range(repeat):
        transport = NullTransport()
        conn = Connection(app, config, transport)
        started = time.process_time()
        for _ in range(count):
            conn.data_received(request)
        best = min(best, (time.process_time() - started) / count)
        if conn.requests_served != count:
            raise SystemExit(f"only {conn.requests_served} of {count} requests were answered")
    return best


def main(argv: list[str] | None = None) -> None:
    """Print the CPU time per request of each scenario."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30000, help="requests per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the best is printed")
    args = parser.parse_args(argv)
    for name, request in REQUESTS.items():
        seconds = measure(request, args.requests, args.repeat)
        print(f"{name:10s} {seconds * 1e6:6.2f} us CPU per request")


if __name__ == "__main__":
    main()
