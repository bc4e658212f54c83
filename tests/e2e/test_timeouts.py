"""Deadlines and back-pressure on real sockets: each timeout fires and frees its connection.

Timeouts are configured small (0.2-0.5 s) and every wait is a poll with a generous deadline, so
a slow machine makes the tests slower, never wrong. What is asserted never depends on how long
anything took, only on what happened.
"""

from __future__ import annotations

import time

from evserve.connection import State

from .conftest import DEADLINE, on_reactor, wait_idle, wait_until


def hello(req, res):
    res.send("hello")


def test_keepalive_timeout_closes_an_idle_connection(serve, clients):
    server = serve(hello, keepalive_timeout=0.2)
    client = clients(server)
    client.request()
    assert client.read_response().text == "hello"
    client.wait_closed()  # the server closed it; nothing else was sent
    assert client.buffer == b""
    wait_idle(server)


def test_a_new_connection_that_sends_nothing_gets_408_after_header_timeout(serve, clients):
    # keepalive_timeout is the wait between requests; the first request on a new connection is
    # due within header_timeout of the accept (as with Node's headersTimeout).
    server = serve(hello, header_timeout=0.2, keepalive_timeout=30)
    silent = clients(server)
    wait_until(lambda: server.connection_count == 1)
    res = silent.read_response()
    assert res.status == 408
    assert res.header("connection") == "close"
    silent.wait_closed()
    wait_idle(server)


def test_header_timeout_gives_408_and_closes(serve, clients):
    server = serve(hello, header_timeout=0.3, keepalive_timeout=5)
    client = clients(server)
    client.send(b"GET / HTTP/1.1\r\nHost: te")
    res = client.read_response()
    assert res.status == 408
    assert res.header("connection") == "close"
    client.wait_closed()
    wait_idle(server)


def test_body_timeout_gives_408_and_closes(serve, clients):
    calls = []

    def app(req, res):
        calls.append(req)
        res.send("never")

    server = serve(app, body_timeout=0.3)
    client = clients(server)
    client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    res = client.read_response()
    assert res.status == 408
    client.wait_closed()
    wait_idle(server)

    client = clients(server)  # chunked: the same deadline
    client.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert client.read_response().status == 408
    client.wait_closed()
    wait_idle(server)
    assert calls == []


def test_write_timeout_drops_a_client_that_never_reads(serve, clients):
    body = b"x" * (32 << 20)  # far more than the kernel buffers of both ends hold
    handled = []

    def app(req, res):
        handled.append(req)
        res.send(body)

    server = serve(app, write_timeout=0.3)
    client = clients(server, rcvbuf=4096)
    client.request()
    wait_until(lambda: handled)
    wait_idle(server)  # nothing but the write timeout closes a connection in this state
    received = len(client.read_until_close())
    assert client.reset or received < len(body)


def test_deadlines_count_from_the_start_of_the_state_not_the_last_byte(serve, clients):
    """A client trickling header bytes still hits header_timeout (a slowloris)."""
    server = serve(hello, header_timeout=0.4)
    client = clients(server)
    client.send(b"GET / HTTP/1.1\r\n")
    deadline = time.monotonic() + DEADLINE
    i = 0
    while not client.has_data(0.02):
        assert time.monotonic() < deadline, "the trickling client was never cut off"
        try:
            client.send(b"X-%d: v\r\n" % i)  # every line is fine; it just never ends
        except (BrokenPipeError, ConnectionResetError):
            break
        i += 1
    assert client.read_response().status == 408
    client.wait_closed()
    wait_idle(server)


def test_slowloris_is_cut_off_while_another_client_keeps_being_served(serve, clients):
    server = serve(hello, header_timeout=0.5, keepalive_timeout=5)
    slow = clients(server)
    good = clients(server)
    slow.send(b"GET / HTTP/1.1\r\n")
    served_while_slow = 0
    deadline = time.monotonic() + DEADLINE
    data = b"X-Slow: trickle-trickle-trickle\r\n"
    i = 0
    while not slow.has_data(0.01):
        assert time.monotonic() < deadline, "the slowloris client was never cut off"
        try:
            slow.send(data[i % len(data) : i % len(data) + 1])  # one byte per turn
        except (BrokenPipeError, ConnectionResetError):
            break
        i += 1
        good.request()
        assert good.read_response(timeout=DEADLINE).text == "hello"
        served_while_slow += 1
    assert served_while_slow > 0
    res = slow.read_response()
    assert res.status == 408
    slow.wait_closed()
    for _ in range(3):  # and the server carries on
        good.request()
        assert good.read_response().text == "hello"
    wait_until(lambda: server.connection_count == 1)


def _buffered(req):
    return req.connection.transport.buffer_size()


def test_a_client_that_never_reads_a_50mib_stream_leaves_output_bounded(serve, clients):
    high_water = 65536
    chunk_size = 16384
    total = 50 << 20
    state = {"written": 0, "peak": 0, "waiting": False, "finished": None}

    def app(req, res):
        res.on_finish(lambda: state.__setitem__("finished", req.aborted))

        def pump():
            state["waiting"] = False
            while state["written"] < total:
                more = res.write(b"y" * chunk_size)
                state["written"] += chunk_size
                state["peak"] = max(state["peak"], _buffered(req))
                if not more:
                    state["waiting"] = True
                    res.on_drain(pump)
                    return
            res.end()

        pump()

    server = serve(app, write_buffer_size=high_water, write_timeout=60)
    client = clients(server, rcvbuf=4096)
    client.request()
    wait_until(lambda: state["waiting"], message="the writer never had to wait")
    # Still waiting: nothing reads, so nothing drains.
    assert on_reactor(server, lambda: state["waiting"])
    bound = high_water + chunk_size + 64  # + the chunk framing of one write
    assert state["peak"] <= bound
    assert state["written"] < total // 2  # the producer was held back, not run to the end
    conn_buffer = on_reactor(server, lambda: [c.transport.buffer_size() for c in server._connections])
    assert conn_buffer and max(conn_buffer) <= bound
    client.close_with_reset()
    wait_until(lambda: state["finished"] is not None)
    assert state["finished"] is True  # the client went away: req.aborted
    wait_idle(server)


def test_res_stream_of_a_50mib_generator_is_pulled_only_as_output_drains(serve, clients):
    high_water = 65536
    chunk_size = 32768
    state = {"pulled": 0, "peak": 0}
    requests = []

    def app(req, res):
        requests.append(req)

        def chunks():
            for _ in range((50 << 20) // chunk_size):
                state["peak"] = max(state["peak"], _buffered(req))
                state["pulled"] += 1
                yield b"z" * chunk_size

        res.stream(chunks())

    server = serve(app, write_buffer_size=high_water, write_timeout=60)
    client = clients(server, rcvbuf=4096)
    client.request()
    wait_until(lambda: requests and on_reactor(server, _buffered, requests[0]) > high_water,
               message="output never reached the high-water mark")
    pulled = state["pulled"]
    peak_now = on_reactor(server, _buffered, requests[0])
    assert peak_now <= high_water + chunk_size + 64
    assert state["peak"] <= high_water + chunk_size + 64
    assert pulled * chunk_size < 25 << 20

    # Reading some of it lets the generator go on, still within the bound.
    client.sock.settimeout(DEADLINE)
    received = 0
    while received < 4 << 20:
        data = client.sock.recv(1 << 20)
        assert data, "the server closed the stream"
        received += len(data)
    wait_until(lambda: state["pulled"] > pulled)
    assert state["peak"] <= high_water + chunk_size + 64
    client.close_with_reset()
    wait_idle(server)
    assert requests[0].aborted


def test_pipelined_requests_wait_while_output_is_above_the_high_water_mark(serve, clients):
    """A client that pipelines but does not read gets no more work done for it than fits."""
    body = b"r" * 200_000
    handled = []

    def app(req, res):
        handled.append(req.url)
        res.send(body)

    server = serve(app, write_buffer_size=65536, write_timeout=60)
    client = clients(server, rcvbuf=4096)
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 200)  # 5.6 KB asking for 40 MB

    def blocked():
        conns = list(server._connections)
        return bool(conns) and conns[0].state is State.WRITING and \
            conns[0].transport.buffer_size() > 65536

    wait_until(lambda: on_reactor(server, blocked), message="output never backed up")
    assert on_reactor(server, blocked)
    assert len(handled) < 200
    sizes = on_reactor(server, lambda: [c.transport.buffer_size() for c in server._connections])
    assert max(sizes) <= 65536 + len(body) + 1024  # one response over the mark, no more
    client.close_with_reset()
    wait_idle(server)
