"""Open many keep-alive connections to a server, make one request on each, then hold them idle.

The helper process of ``bench/run.py``'s idle scenario (stdlib only). It talks to its parent by
lines of JSON on stdout, one per command read from stdin:

1. on start: opens ``--count`` connections to ``127.0.0.1:--port`` (at most ``--in-flight``
   connecting at once, so a listen backlog is never the limit), sends ``GET /plaintext`` on each
   and waits for ``Hello, World!``; then prints
   ``{"opened": n, "answered": n, "failed": n, "seconds": s, "first_error": "..."}``;
2. ``check``: prints ``{"alive": n}``, the connections the server has not closed (a closed one
   is readable and ``recv(MSG_PEEK)`` gives ``b""`` or an error);
3. ``quit`` or end of input: closes everything and exits.

Every wait is bounded: the setup by ``--setup-timeout``, the whole process by ``--lifetime``
(``SIGALRM``), so a lost parent never leaves 10,000 sockets behind.
"""

from __future__ import annotations

import argparse
import errno
import json
import resource
import selectors
import signal
import socket
import sys
import time
from typing import cast

HOST = "127.0.0.1"
REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
EXPECTED = b"Hello, World!"


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def open_connections(
    port: int, count: int, in_flight: int, timeout: float
) -> tuple[list[socket.socket], int, str]:
    """Connect ``count`` sockets, one request each; return (answered sockets, failures, first error)."""
    sel = selectors.DefaultSelector()
    held: list[socket.socket] = []
    buffers: dict[socket.socket, bytes] = {}
    failed = 0
    first_error = ""
    started = 0
    pending = 0
    deadline = time.monotonic() + timeout

    def fail(sock: socket.socket, why: str) -> None:
        nonlocal failed, first_error, pending
        failed += 1
        pending -= 1
        first_error = first_error or why
        sel.unregister(sock)
        buffers.pop(sock, None)
        sock.close()

    while (started < count or pending) and time.monotonic() < deadline:
        while started < count and pending < in_flight:
            started += 1
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as exc:  # out of file descriptors: count the rest as failed
                failed += count - started + 1
                first_error = first_error or f"socket(): {exc}"
                started = count
                break
            sock.setblocking(False)
            err = sock.connect_ex((HOST, port))
            if err not in (0, errno.EINPROGRESS):
                failed += 1
                first_error = first_error or f"connect: {errno.errorcode.get(err, err)}"
                sock.close()
                continue
            sel.register(sock, selectors.EVENT_WRITE)
            buffers[sock] = b""
            pending += 1
        for key, events in sel.select(0.2):
            sock = cast(socket.socket, key.fileobj)
            if events & selectors.EVENT_WRITE:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(sock, f"connect: {errno.errorcode.get(err, err)}")
                    continue
                try:
                    sock.send(REQUEST)  # 46 bytes: fits any fresh socket buffer
                except OSError as exc:
                    fail(sock, f"send: {exc}")
                    continue
                sel.modify(sock, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)
            except OSError as exc:
                fail(sock, f"recv: {exc}")
                continue
            if not data:
                fail(sock, "closed by the server before answering")
                continue
            buffers[sock] += data
            if EXPECTED in buffers[sock]:
                sel.unregister(sock)
                del buffers[sock]
                held.append(sock)
                pending -= 1
    for sock in list(buffers):  # still connecting or waiting at the deadline
        fail(sock, "timed out")
    failed += count - started
    sel.close()
    return held, failed, first_error


def count_alive(held: list[socket.socket]) -> int:
    """How many of ``held`` the server has not closed (it sent nothing more on a live one)."""
    alive = 0
    with selectors.DefaultSelector() as sel:
        for sock in held:
            sel.register(sock, selectors.EVENT_READ)
        readable = {key.fileobj for key, _ in sel.select(0.5)}
    for sock in held:
        if sock not in readable:
            alive += 1
            continue
        try:
            alive += bool(sock.recv(1, socket.MSG_PEEK))
        except OSError:
            pass
    return alive


def main() -> int:
    """Open, report, then answer ``check``/``quit`` from stdin."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--in-flight", type=int, default=256, help="connections opening at once")
    parser.add_argument("--setup-timeout", type=float, default=120.0, help="seconds")
    parser.add_argument("--lifetime", type=int, default=900, help="seconds before giving up")
    args = parser.parse_args()
    signal.alarm(args.lifetime)
    limit = raise_nofile_limit()
    if limit < args.count + 16:
        print(f"warning: RLIMIT_NOFILE {limit} < {args.count} connections", file=sys.stderr)
    start = time.monotonic()
    held, failed, first_error = open_connections(
        args.port, args.count, args.in_flight, args.setup_timeout
    )
    report = {
        "opened": len(held) + failed,
        "answered": len(held),
        "failed": failed,
        "seconds": round(time.monotonic() - start, 3),
        "first_error": first_error,
    }
    print(json.dumps(report), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "check":
            print(json.dumps({"alive": count_alive(held)}), flush=True)
        elif command == "quit":
            break
    for sock in held:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
