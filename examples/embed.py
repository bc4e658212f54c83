"""Embedding evserve in a host program that has its own loop and its own sockets.

One thread does everything. The host loop runs at a fixed frame rate (like a game, a device
poller or a GUI would) and hands the reactor the time left until its next frame with
``reactor.run_once(timeout)``; the reactor returns early whenever something happens. On that
one reactor, beside the HTTP server:

* a periodic timer (``call_at``, re-armed from its own deadline so it does not drift), and
* a second, non-HTTP socket: a line-echo TCP server built on ``add_reader``/``add_writer``.

Run it (with evserve installed, or ``PYTHONPATH=.`` from a checkout)::

    python examples/embed.py --port 8080 --echo-port 8081
    curl http://127.0.0.1:8080/          # {"ticks": ..., "frames": ..., "echoed": ...}
    nc 127.0.0.1 8081                    # every line you type comes back

It stops on Ctrl-C / SIGTERM, or after ``--duration SECONDS``, shutting the HTTP server down
gracefully. Importing this module has no side effects; ``app`` is the HTTP application.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from evserve.reactor import Reactor, TimerHandle

# What the program is doing, reported over HTTP. Only the reactor thread touches it.
status = {"ticks": 0, "frames": 0, "echoed": 0, "requests": 0}


def app(req: Any, res: Any) -> None:
    """The HTTP side: reports what the rest of the program is doing."""
    status["requests"] += 1
    res.json({"path": req.path, **status})


class Ticker:
    """Calls ``fn()`` every ``interval`` seconds on the reactor until ``stop()``."""

    def __init__(self, reactor: Reactor, interval: float, fn: Callable[[], object]) -> None:
        self.reactor = reactor
        self.interval = interval
        self.fn = fn
        self._next = reactor.time() + interval
        self._handle: TimerHandle | None = reactor.call_at(self._next, self._tick)

    def _tick(self) -> None:
        self.fn()
        # Re-arm from the planned deadline, not from now: a late turn does not shift the rest.
        self._next = max(self._next + self.interval, self.reactor.time())
        self._handle = self.reactor.call_at(self._next, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class LineEchoServer:
    """A tiny TCP server on the reactor: every complete line a client sends is sent back.

    Non-blocking throughout: input is buffered until a newline, output waits for writability
    (``add_writer``) when the peer reads slowly, and a client that sends an endless line or
    never reads is dropped once its buffers pass ``limit`` bytes.
    """

    limit = 65536

    def __init__(self, reactor: Reactor, host: str, port: int) -> None:
        self.reactor = reactor
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.clients: dict[socket.socket, tuple[bytearray, bytearray]] = {}
        reactor.add_reader(self.sock, self._accept)

    def _accept(self) -> None:
        for _ in range(16):  # bounded per wake-up, like the HTTP server
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. out of file descriptors: try again on the next wake-up
            conn.setblocking(False)
            self.clients[conn] = (bytearray(), bytearray())
            self.reactor.add_reader(conn, self._read, conn)

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        inbox, outbox = self.clients[conn]
        inbox += data
        end = inbox.rfind(b"\n")
        if end >= 0:
            lines = bytes(inbox[: end + 1])
            del inbox[: end + 1]
            status["echoed"] += lines.count(b"\n")
            outbox += lines
            self._write(conn)
        if len(inbox) > self.limit or len(outbox) > self.limit:
            self._drop(conn)

    def _write(self, conn: socket.socket) -> None:
        entry = self.clients.get(conn)
        if entry is None:
            return
        outbox = entry[1]
        try:
            sent = conn.send(outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(conn)
            return
        del outbox[:sent]
        if outbox:
            self.reactor.add_writer(conn, self._write, conn)
        else:
            self.reactor.remove_writer(conn)

    def _drop(self, conn: socket.socket) -> None:
        self.reactor.remove_reader(conn)
        self.reactor.remove_writer(conn)
        self.clients.pop(conn, None)
        conn.close()

    def close(self) -> None:
        for conn in list(self.clients):
            self._drop(conn)
        self.reactor.remove_reader(self.sock)
        self.sock.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    parser.add_argument("--echo-port", type=int, default=8081, help="line-echo port (0: any)")
    parser.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    parser.add_argument("--tick", type=float, default=0.25, help="timer period in seconds")
    parser.add_argument("--fps", type=float, default=20.0, help="frames per second of the host loop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the host program; returns the exit status."""
    args = parse_args(argv)
    reactor = Reactor()
    server = reactor.listen(app, args.host, args.port)
    echo = LineEchoServer(reactor, args.host, args.echo_port)
    ticker = Ticker(reactor, args.tick, lambda: status.__setitem__("ticks", status["ticks"] + 1))
    print(f"listening http={server.port} echo={echo.port}", flush=True)

    stopping: list[int] = []
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda signum, frame: stopping.append(signum))

    frame = 1.0 / args.fps
    now = reactor.time()
    end = now + args.duration if args.duration is not None else float("inf")
    next_frame = now + frame
    try:
        while not stopping and now < end:
            # The reactor gets the time until the next frame; it returns early on any event.
            reactor.run_once(max(0.0, min(next_frame, end) - now))
            now = reactor.time()
            if now >= next_frame:
                status["frames"] += 1  # the host program's own work would go here
                next_frame += frame * (1 + int((now - next_frame) / frame))  # skip missed frames
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        ticker.stop()
        echo.close()
        server.shutdown()  # graceful; drives the reactor itself since nothing else does now
        reactor.close()
    print("stopped " + " ".join(f"{k}={v}" for k, v in status.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
