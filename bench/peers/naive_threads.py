"""Peer: the floor, a thread-per-connection raw-socket server that parses almost nothing.

Each connection gets a thread that splits its input at the blank line after each head, looks at the
request line, reads ``Content-Length`` only for POST, and sends canned responses (pipelined
responses coalesced into one ``sendall``). No header validation, no limits, no timeouts, nothing a
real server must do: it shows how many requests per second Python can answer on one core at all.

Run it with any Python: ``python bench/peers/naive_threads.py --port 8080``.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading

PLAIN = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
PLAIN_CLOSE = PLAIN.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _json(obj: object, close: bool) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    extra = b"Connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
        % (len(body), extra, body)
    )


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def handle(conn: socket.socket) -> None:
    """Answer the requests of one connection until the peer closes it (or asks to)."""
    buf = b""
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            out = []
            close = False
            while not close:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end]
                close = b"close" in head  # "parses almost nothing": Connection: close, roughly
                method, _, rest = head.partition(b" ")
                path = rest.partition(b" ")[0]
                if method == b"POST":
                    try:
                        length = _content_length(head)
                    except ValueError:
                        out.append(BAD_REQUEST)
                        close = True
                        break
                    if len(buf) < end + 4 + length:
                        break  # wait for the rest of the body
                    body = buf[end + 4 : end + 4 + length]
                    buf = buf[end + 4 + length :]
                    try:
                        out.append(_json(json.loads(body), close))
                    except ValueError:
                        out.append(BAD_REQUEST)
                        close = True
                    continue
                buf = buf[end + 4 :]
                if path == b"/plaintext":
                    out.append(PLAIN_CLOSE if close else PLAIN)
                elif path.startswith(b"/user/"):
                    out.append(_json({"user_id": path[6:].decode("latin-1")}, close))
                else:
                    out.append(NOT_FOUND)
            if out:
                try:
                    conn.sendall(b"".join(out))
                except OSError:
                    return
            if close:
                return


def main() -> None:
    """Accept forever, one daemon thread per connection; SIGTERM's default action stops it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    listener = socket.create_server((args.host, args.port), backlog=1024)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
