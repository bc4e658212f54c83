"""The socket transport: non-blocking reads and writes of one connection on the reactor.

It implements ``connection.Transport`` for an owner it knows only as a ``TransportOwner`` (the
HTTP connection, or a test's stub): a queue of ``memoryview`` slices and file segments sent
without copying (files through ``os.sendfile`` where the OS allows it), registration for
writability only while output is pending, and reading paused while the connection asks for it or
while unsent output (file segments included) is above the high-water mark.

Two bounds hold whatever the peer does. Open files: a file segment that would wait behind other
output is read at once when it is no larger than the high-water mark (and its file closed), and a
larger one puts output above the mark, so the connection starts no further request until it has
drained; a client that pipelines requests for files without reading holds at most two files open.
Input while paused: the socket is still read, so that a reset (or an EOF) is noticed while the
application holds a request, up to ``PAUSED_READ_SIZE`` bytes, which the connection keeps
unprocessed; only then does the socket stop being watched for input.

Every byte crosses the socket through four methods, ``recv``, ``send``, ``sendfile`` and
``shutdown_writing``, and nothing else touches the socket's data: a transport over another byte
layer (TLS) overrides those and inherits the queueing, flow control, deadlines and lingering
close unchanged.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import selectors
import socket
import struct
import sys
import termios
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from evserve.reactor import Reactor, TimerHandle

__all__ = ["SocketTransport", "TransportOwner"]

log = logging.getLogger("evserve.transport")

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
RECV_SIZE = 65536
FILE_CHUNK = 65536  # bytes read per step when sendfile is not available
SENDFILE_SIZE = 1 << 20  # most bytes of a file asked of one sendfile call
_CONNECTION_ERRORS = (ConnectionError, TimeoutError)
_HAS_SENDFILE = hasattr(os, "sendfile")
# os.sendfile errors that mean "not for this socket or file system": read and send instead.
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK})
# Linux's SIOCOUTQ (the same number as TIOCOUTQ): unacknowledged bytes in a socket's send queue.
_SIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if sys.platform.startswith("linux") else None
_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST: an abort, not a goodbye
_INF = float("inf")
# Bytes the kernel's send queue must shrink by to count as the peer reading: above the couple of
# KiB a peer's kernel can still take while its application reads nothing.
READ_PROGRESS = 8192
LINGER_TIME = 2.0  # seconds a closing socket keeps draining input so the peer sees our response
LINGER_SIZE = 1 << 20  # most bytes discarded while lingering
PAUSED_READ_SIZE = 65536  # most bytes read while paused (buffered, unprocessed, by the connection)
_HAS_PREAD = hasattr(os, "pread")


class TransportOwner(Protocol):
    """What a transport tells the one it carries bytes for: the HTTP connection, or a stub."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived from the peer (never empty)."""

    def eof_received(self) -> None:
        """The peer closed its sending side; nothing more will be received."""

    def drained(self) -> None:
        """Unsent output is down to the low-water mark after a send: a writer told to wait
        (``buffer_size()`` above the high-water mark) may go on."""

    def connection_lost(self) -> None:
        """The connection is over (reset, aborted, or closed by us); called once."""

    @property
    def linger_on_close(self) -> bool:
        """Whether closing should drain the peer's input for a while first (see
        ``SocketTransport``): False when the owner knows nothing more can come."""


class _FileSegment:
    __slots__ = ("count", "file", "offset")

    def __init__(self, file: Any, offset: int, count: int) -> None:
        self.file = file
        self.offset = offset
        self.count = count


class SocketTransport:
    """Moves one connection's bytes between its socket and its owner (``conn``).

    Socket I/O goes through ``recv``, ``send``, ``sendfile`` and ``shutdown_writing`` only; a
    subclass overrides them to put a layer between the queue and the socket (TLS), and nothing
    else. A subclass that overrides ``send`` but not ``sendfile`` gets files read in chunks and
    passed to its ``send``: no byte goes around it.

    Args:
        reactor: the reactor the socket is registered with.
        sock: a connected, non-blocking stream socket.
        high_water: unsent bytes above which reading pauses and writers are told to wait.
        write_timeout: seconds the peer may leave output unread before the connection drops.

    Attributes:
        conn: the owner told of input, EOF, drained output and the end (set after construction).
        sock: the socket (closed once ``is_closed``).
    """

    __slots__ = (
        "_closing",
        "_corked",
        "_corked_size",
        "_eof",
        "_events",
        "_fd",
        "_linger_timer",
        "_out",
        "_out_size",
        "_paused",
        "_queued_at_arm",
        "_reactor",
        "_read_budget",
        "_sock",
        "_use_sendfile",
        "conn",
        "high_water",
        "low_water",
        "on_closed",
        "sock",
        "write_deadline",
        "write_timeout",
    )

    def __init__(self, reactor: Reactor, sock: socket.socket, high_water: int, write_timeout: float) -> None:
        self._reactor = reactor
        self.sock = sock
        self._sock: socket.socket | None = sock  # None once closed
        self._fd = sock.fileno()
        self.conn: TransportOwner | None = None
        self.high_water = high_water
        self.low_water = high_water // 4
        self.write_timeout = write_timeout
        self.write_deadline = float("inf")
        self._queued_at_arm: int | None = None  # the kernel's send queue when it was armed
        self._out: deque[memoryview | _FileSegment] = deque()
        self._out_size = 0
        # Output held while input is handled (see _read): None when not corked.
        self._corked: list[bytes] | None = None
        self._corked_size = 0
        self._linger_timer: TimerHandle | None = None
        self._paused = False
        # Bytes that may still be read while paused; refilled by a read while not paused (the
        # connection then processes what it receives, so nothing piles up unprocessed).
        self._read_budget = PAUSED_READ_SIZE
        self._closing = False
        self._eof = False  # recv() returned b"": the peer sends nothing more
        # os.sendfile writes to the fd itself: only while send() is the plain socket's, so that
        # no byte goes around a layer a subclass or the socket adds (TLS).
        self._use_sendfile = _HAS_SENDFILE and type(self).send is SocketTransport.send \
            and type(sock).send is socket.socket.send
        self._events = EVENT_READ
        # Called with the transport once its socket is closed (set by whoever tracks lingerers).
        self.on_closed: Callable[[SocketTransport], object] | None = None
        reactor.register(sock, EVENT_READ, self._on_event)

    # -- socket I/O: what a transport over another byte layer (TLS) overrides ---------------

    def recv(self, size: int) -> bytes:
        """Read at most ``size`` bytes the peer sent.

        Called when the socket is readable, and again only when it is readable again: an
        override that buffers (a TLS record decrypted in part) must return what it holds, up
        to ``size``, rather than keep it where the selector cannot see it.

        Returns:
            At least one byte, or ``b""`` once the peer has closed its sending side (EOF).

        Raises:
            BlockingIOError: nothing can be read now (``InterruptedError`` is taken the same way).
            OSError: the connection failed (a reset): the transport aborts.
        """
        return self.sock.recv(size)

    def send(self, data: bytes | memoryview) -> int:
        """Send as much of ``data`` as the socket takes now, without blocking.

        Returns:
            How many bytes of ``data`` were taken, at least one; the rest is offered again,
            from where it stopped, once the socket is writable.

        Raises:
            BlockingIOError: the socket takes nothing now (``InterruptedError`` likewise).
            OSError: the connection failed: the transport aborts.
        """
        return self.sock.send(data)

    def sendfile(self, file: Any, offset: int, count: int) -> int:
        """Send up to ``count`` bytes of the open binary ``file`` from ``offset``.

        ``os.sendfile`` where the OS, the file and the socket allow it (the kernel copies);
        otherwise a chunk of at most ``FILE_CHUNK`` bytes is read and handed to ``send``. The
        transport calls again for the rest, so sending less than ``count`` is fine.

        Returns:
            How many bytes were sent, at least one; 0 only when ``file`` has no byte at
            ``offset`` (it is shorter than promised: the transport aborts).

        Raises:
            BlockingIOError: the socket takes nothing now (``InterruptedError`` likewise).
            OSError, ValueError: the connection failed, or reading the file did (a closed
                file raises ``ValueError``): the transport aborts.
        """
        if self._use_sendfile:
            in_fd = _fileno(file)
            if in_fd >= 0:
                try:
                    return os.sendfile(self._fd, in_fd, offset, count)
                except OSError as exc:
                    if exc.errno not in _NO_SENDFILE:
                        raise
                    self._use_sendfile = False  # this socket or file system refuses it
        chunk = _read_chunk(file, offset, min(count, FILE_CHUNK))
        if not chunk:
            return 0
        sent = self.send(chunk)
        if not sent:  # an override that took nothing without saying so: 0 would mean "file ended"
            raise BlockingIOError(errno.EAGAIN, "the socket takes nothing now")
        return sent

    def shutdown_writing(self) -> None:
        """Tell the peer we send nothing more (TCP FIN); its input may still arrive.

        Called once everything queued has been sent, when the connection closes with a
        lingering close (a TLS transport sends its close_notify here).

        Raises:
            OSError: the connection is already gone: the transport closes the socket at once.
        """
        self.sock.shutdown(socket.SHUT_WR)

    # -- reactor callback -----------------------------------------------------------------

    def _on_event(self, mask: int) -> None:
        if mask & EVENT_WRITE:
            self._flush()
            if self._sock is None:
                return
        if mask & EVENT_READ:
            self._read()

    def _read(self) -> None:
        sock = self._sock
        if sock is None:
            return
        paused = self._paused
        size = self._read_budget if paused else RECV_SIZE
        if size <= 0:  # (not reached: reading stops once the budget is spent)
            self._set_events(self._events & ~EVENT_READ)
            return
        try:
            data = self.recv(size if size < RECV_SIZE else RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # A reset: seen at once even while paused, so the application hears of it now
            # (connection_lost: the request's close callbacks, req.aborted).
            log.debug("recv failed: %s", exc)
            self.abort()
            return
        if not data:
            self._eof = True
            self._set_events(self._events & ~EVENT_READ)  # EOF stays readable: stop watching
            if self.conn is not None:
                self.conn.eof_received()
            return
        conn = self.conn
        if conn is None:
            return
        if paused:
            # The connection only buffers this (its application holds a request). Once the
            # budget is spent, stop watching: a level-triggered selector would report the
            # socket readable on every turn.
            self._read_budget -= len(data)
            if self._read_budget <= 0:
                self._set_events(self._events & ~EVENT_READ)
        else:
            self._read_budget = PAUSED_READ_SIZE
        # Cork: every response produced while handling these bytes leaves in one send(), made
        # once this turn's fd callbacks have run, so one turn's responses leave in one burst.
        if self._corked is None:
            self._corked = []
            self._reactor.after_io(self._uncork)
        conn.data_received(data)

    def _uncork(self) -> None:
        out = self._take_corked()
        self._corked = None
        if out and self._sock is not None:
            self._write_now(out)
            # Corked bytes count as unsent, so a writer may have been told to wait (or the
            # connection left in WRITING) above the high-water mark. If the kernel took
            # everything, no writability event will come to say so: say it now.
            if len(out) > self.high_water and not self._out and self._sock is not None \
                    and self.conn is not None:
                self.conn.drained()

    # -- writing --------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending; tries to send at once when nothing is queued.

        Raises:
            TypeError: ``data`` is not bytes (a ``bytearray`` or ``memoryview`` is copied), so
                that nothing else can sit in the queue and fail it later.
        """
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"a transport sends bytes, not {type(data).__name__}")
            data = bytes(data)
        if self._sock is None or self._closing or not data:
            return
        corked = self._corked
        if corked is not None:
            corked.append(data)
            self._corked_size += len(data)
            return
        self._write_now(data)

    def _write_now(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            return
        if self._out:
            self._out.append(memoryview(data))
            self._out_size += len(data)
            self._check_high_water()
            return
        try:
            sent = self.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            log.debug("send failed: %s", exc)
            self.abort()
            return
        if sent < len(data):
            self._out.append(memoryview(data)[sent:])
            self._out_size += len(data) - sent
            self._start_writing()
            self._check_high_water()

    def send_file(self, file: Any, offset: int, count: int) -> None:
        """Queue ``count`` bytes of ``file`` from ``offset``; the file is closed when done.

        The bytes count as unsent output until sent. A segment that would wait behind other
        output and is no larger than the high-water mark is read now and its file closed, so
        queued responses do not hold files open (see the module docstring).
        """
        if self._sock is None or self._closing:
            file.close()
            return
        if self._corked:
            # What is corked goes ahead of the file; the cork stays for what is written after.
            self._write_now(self._take_corked())
            if self.is_closed:  # the send failed and aborted
                file.close()
                return
        if self._out and count <= self.high_water:
            data = self._read_segment(file, offset, count)
            if data is not None:
                self._write_now(data)
            return
        self._out.append(_FileSegment(file, offset, count))
        self._out_size += count
        self._flush()
        if self._out:
            self._start_writing()
            self._check_high_water()

    def _read_segment(self, file: Any, offset: int, count: int) -> bytes | None:
        """Read ``count`` bytes of ``file`` from ``offset`` and close it; None (and the
        connection aborted) if that fails: the response promised bytes it cannot have."""
        data: bytes | None = None
        try:
            fd = _fileno(file) if _HAS_PREAD else -1
            if fd >= 0:
                data = os.pread(fd, count, offset)
                while 0 < len(data) < count:  # (a regular file reads short only at its end)
                    more = os.pread(fd, count - len(data), offset + len(data))
                    if not more:
                        break
                    data += more
            else:
                file.seek(offset)
                data = bytes(file.read(count))
        except (OSError, ValueError) as exc:
            log.warning("reading a file to send failed: %s", exc)
        finally:
            try:
                file.close()
            except OSError:
                pass
        if data is None or len(data) != count:
            if data is not None:
                log.warning("file ended %d bytes early while sending", count - len(data))
            self.abort()
            return None
        return data

    def buffer_size(self) -> int:
        """Bytes queued but not yet sent, those of file segments included."""
        return self._out_size + self._corked_size

    def _take_corked(self) -> bytes:
        """Empty the cork (which stays in place) and return what it held."""
        corked = self._corked
        if not corked:
            return b""
        data = corked[0] if len(corked) == 1 else b"".join(corked)
        corked.clear()
        self._corked_size = 0
        return data

    def _flush(self) -> None:
        out = self._out
        sock = self._sock
        if sock is None:
            return
        progressed = False
        while out:
            item = out[0]
            if type(item) is _FileSegment:
                done = self._send_file_step(item)
                if done is None:
                    return  # aborted
                if done:
                    progressed = True
                    self._out_size -= done
                if item.count > 0:
                    break
                item.file.close()
                out.popleft()
                continue
            try:
                sent = self.send(item)  # type: ignore[arg-type]
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("send failed: %s", exc)
                self.abort()
                return
            if sent:
                progressed = True
                self._out_size -= sent
            if sent < len(item):  # type: ignore[arg-type]
                out[0] = item[sent:]  # type: ignore[index]
                break
            out.popleft()
        if progressed:
            self._arm_write_deadline()
        if not out:
            self._stop_writing()
            if self._closing:
                self._finish_close()
                return
        if self._out_size <= self.low_water:
            if (not self._paused or self._read_budget > 0) and not self._events & EVENT_READ \
                    and not self._closing and self.conn is not None \
                    and not self._eof:  # EOF stays readable
                self._set_events(self._events | EVENT_READ)
            if progressed and self.conn is not None:
                self.conn.drained()

    def _send_file_step(self, seg: _FileSegment) -> int | None:
        """Send part of a file segment; returns bytes sent, or None if the transport aborted."""
        try:
            sent = self.sendfile(seg.file, seg.offset, min(seg.count, SENDFILE_SIZE))
        except (BlockingIOError, InterruptedError):
            return 0
        except (OSError, ValueError) as exc:
            if isinstance(exc, _CONNECTION_ERRORS):
                log.debug("sending a file failed: %s", exc)  # the peer went away
            else:
                log.warning("sending a file failed: %s", exc)  # the file could not be read
            self.abort()
            return None
        if not sent:  # the file is shorter than promised: the response cannot be completed
            log.warning("file ended %d bytes early while sending", seg.count)
            self.abort()
            return None
        seg.offset += sent
        seg.count -= sent
        return sent

    def _arm_write_deadline(self) -> None:
        self.write_deadline = self._reactor.time() + self.write_timeout
        self._queued_at_arm = None  # sampled by the next sweep (see sample_kernel_queue)

    def sample_kernel_queue(self) -> None:
        """Note the kernel's send queue once after the write deadline was armed.

        Called by the server's sweep, a tick after the arming rather than at it: by then the
        bytes in flight have reached the peer's receive buffer, so a shrinking queue later on
        means the peer's application read, not only its kernel.
        """
        if self._queued_at_arm is None and self.write_deadline != _INF:
            self._queued_at_arm = self._kernel_queued()

    def _kernel_queued(self) -> int | None:
        """Bytes in the socket's send queue the peer has not acknowledged (Linux's SIOCOUTQ),
        or None where the OS does not say."""
        if _SIOCOUTQ is None or self._sock is None:
            return None
        try:
            return int(struct.unpack("i", fcntl.ioctl(self._fd, _SIOCOUTQ, b"\0\0\0\0"))[0])
        except OSError:
            return None

    def write_stalled(self, now: float) -> bool:
        """At a passed ``write_deadline``: whether the peer really left our output unread.

        Our own queue moves only when the kernel's send buffer has room again, which with a
        large buffer and a slow reader can take longer than ``write_timeout`` even though the
        peer reads all along. So the kernel is asked: if its queue shrank since the deadline
        was armed, the peer read some, and the deadline restarts from now.
        """
        armed = self._queued_at_arm
        queued = self._kernel_queued() if armed is not None else None
        # A few KiB can still move without the peer's application (its kernel prunes and
        # reopens its window a little): progress is READ_PROGRESS, or half the queue. A peer
        # only tells of its reads through its window, which it reopens by at least a segment:
        # on loopback (64 KiB segments) a reader slower than that per write_timeout is dropped.
        if queued is not None and armed is not None and armed - queued >= min(READ_PROGRESS, armed // 2):
            self.write_deadline = now + self.write_timeout
            self._queued_at_arm = queued
            return False
        return True

    def _start_writing(self) -> None:
        if not self._events & EVENT_WRITE:
            self._arm_write_deadline()
            self._set_events(self._events | EVENT_WRITE)

    def _stop_writing(self) -> None:
        self.write_deadline = float("inf")
        if self._events & EVENT_WRITE:
            self._set_events(self._events & ~EVENT_WRITE)

    def _check_high_water(self) -> None:
        if self._out_size > self.high_water and self._events & EVENT_READ:
            self._set_events(self._events & ~EVENT_READ)

    def _set_events(self, events: int) -> None:
        sock = self._sock
        if events == self._events or sock is None:
            return
        old = self._events
        self._events = events
        if not events:
            self._reactor.unregister(sock)
        elif not old:
            self._reactor.register(sock, events, self._on_event)
        else:
            self._reactor.modify(sock, events, self._on_event)

    # -- flow control and closing ---------------------------------------------------------

    def pause_reading(self) -> None:
        """Hold input back from processing until ``resume_reading``.

        The socket is still read, so that a reset or an EOF is noticed while the application
        holds a request: what arrives is handed to the connection, which only buffers it, up to
        ``PAUSED_READ_SIZE`` bytes; then the socket is no longer watched for input.
        """
        self._paused = True
        if self._read_budget <= 0 and self._events & EVENT_READ:
            self._set_events(self._events & ~EVENT_READ)

    def resume_reading(self) -> None:
        """Read again (unless output is above the high-water mark or the peer sent EOF)."""
        if not self._paused:
            return
        self._paused = False
        if not self._closing and self._out_size <= self.high_water and self.conn is not None \
                and not self._eof:
            self._set_events(self._events | EVENT_READ)

    def close(self) -> None:
        """Close after everything queued has been sent."""
        if self._sock is None or self._closing:
            return
        self._closing = True
        if self._corked:
            self._write_now(self._take_corked())
            if self.is_closed:
                return
        if self._events & EVENT_READ:
            self._set_events(self._events & ~EVENT_READ)
        if not self._out:
            self._finish_close()
        else:
            self._start_writing()

    def _finish_close(self) -> None:
        """Send FIN, then linger: drain what the peer still sends until it closes too.

        Closing a socket with unread input makes the kernel send RST, which can destroy the
        response in flight before the peer has read it (a 413 for a body still being uploaded,
        a 400 for a pipelined request). So, like nginx's lingering close, we half-close, discard
        input for a bounded time and size, then close.
        """
        sock = self._sock
        if sock is None:
            return
        conn = self.conn
        if self._eof or (conn is not None and not conn.linger_on_close):
            self._teardown()  # nothing more will come: close() sends FIN after our bytes
            return
        try:
            self.shutdown_writing()
        except OSError:
            self._teardown()
            return
        self._out_size = LINGER_SIZE
        if self._events:  # one epoll_ctl: watch input only, with the draining callback
            self._reactor.modify(sock, EVENT_READ, self._linger_read)
        else:
            self._reactor.register(sock, EVENT_READ, self._linger_read)
        self._events = EVENT_READ
        self._linger_timer = self._reactor.call_later(LINGER_TIME, self._teardown)
        conn, self.conn = self.conn, None
        if conn is not None:
            # The HTTP connection is over; only the socket lingers. Told last, because its
            # owner may end the lingering at once (a server that has just finished stopping).
            conn.connection_lost()

    @property
    def is_lingering(self) -> bool:
        """Whether the connection is over and only the socket lingers (see ``_finish_close``)."""
        return self._sock is not None and self.conn is None and self._closing

    def end_linger(self) -> None:
        """Stop lingering now: discard the input already received, then close the socket."""
        sock = self._sock
        if sock is None:
            return
        try:
            while self._out_size > 0:  # the linger budget, as in _linger_read
                data = self.recv(RECV_SIZE)
                if not data:
                    break
                self._out_size -= len(data)
        except OSError:
            pass  # nothing more to read now (or the peer is gone): close either way
        self._teardown()

    def _linger_read(self, mask: int) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = self.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        self._out_size -= len(data)
        if not data or self._out_size <= 0:
            self._teardown()

    def abort(self) -> None:
        """Close now, dropping queued output."""
        sock = self._sock
        if sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
        self._teardown()

    def _teardown(self) -> None:
        sock = self._sock
        if sock is None:
            return
        if self._events:
            self._reactor.unregister(sock)
            self._events = 0
        self._sock = None
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        for item in self._out:
            if type(item) is _FileSegment:
                try:
                    item.file.close()
                except OSError:
                    pass
        self._out.clear()
        self._out_size = 0
        self._take_corked()  # dropped, as queued output is
        self.write_deadline = float("inf")
        try:
            sock.close()
        except OSError:
            pass
        conn = self.conn
        if conn is not None:
            conn.connection_lost()
        on_closed = self.on_closed
        if on_closed is not None:
            self.on_closed = None
            on_closed(self)

    @property
    def is_closed(self) -> bool:
        """Whether the socket is closed."""
        return self._sock is None

    @property
    def is_reading(self) -> bool:
        """Whether the socket is watched for input now."""
        return self._sock is not None and bool(self._events & EVENT_READ)


def _fileno(file: Any) -> int:
    """The OS file descriptor behind ``file``, or -1 when it has none."""
    try:
        return int(file.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: no OS file
        return -1


def _read_chunk(file: Any, offset: int, size: int) -> bytes:
    """At most ``size`` bytes of ``file`` from ``offset`` (``b""`` at its end); ``os.pread``
    when the file has a descriptor, so its position is left alone, else seek and read.

    Raises:
        OSError, ValueError: the file cannot be read (a closed file raises ``ValueError``).
    """
    fd = _fileno(file) if _HAS_PREAD else -1
    if fd >= 0:
        return os.pread(fd, size, offset)
    file.seek(offset)
    return bytes(file.read(size))
