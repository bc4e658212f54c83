"""The server on real sockets: persistence, pipelining, framing, HTTP/1.0, errors, threads, IPv6.

Plain ``app(req, res)`` functions only; each test builds its own.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time

import pytest

from evserve import App

from .conftest import (
    DEADLINE,
    NeedMore,
    ipv6_available,
    parse_response,
    raise_nofile,
    wait_idle,
    wait_until,
)


def echo_path(req, res):
    res.send(req.path[1:])


# -- persistence and pipelining ----------------------------------------------------------------


def test_keep_alive_reuses_one_connection_for_100_requests(serve, clients):
    seen = []

    def app(req, res):
        seen.append(req.connection)
        res.send(req.path[1:])

    server = serve(app)
    client = clients(server)
    for i in range(100):
        client.request(target=f"/{i}")
        res = client.read_response()
        assert (res.status, res.text) == (200, str(i))
        assert res.header("connection") is None  # HTTP/1.1 persists by default
    assert len(seen) == 100
    assert len({id(conn) for conn in seen}) == 1  # the list keeps them alive: ids are unique
    assert seen[0].requests_served == 100
    assert server.connection_count == 1


def test_100_pipelined_requests_in_one_write_are_answered_in_order(serve, clients):
    server = serve(echo_path)
    client = clients(server)
    client.send(b"".join(b"GET /%d HTTP/1.1\r\nHost: test\r\n\r\n" % i for i in range(100)))
    bodies = [res.text for res in client.read_responses(100)]
    assert bodies == [str(i) for i in range(100)]


def test_pipelined_requests_with_bodies_and_a_deferred_answer_keep_their_order(serve, clients):
    def app(req, res):
        if req.path == "/later":
            req.reactor.call_later(0.05, res.send, b"later:" + req.raw_body)
        else:
            res.send(b"now:" + req.raw_body)

    server = serve(app)
    client = clients(server)
    client.send(
        b"POST /later HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /now HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nde\r\n1;ext=1\r\nf\r\n0\r\nTrailer: x\r\n\r\n"
        b"GET /now HTTP/1.1\r\nHost: test\r\n\r\n"
    )
    assert [r.body for r in client.read_responses(3)] == [b"later:abc", b"now:def", b"now:"]


def test_a_client_sending_one_byte_at_a_time_is_served(serve, clients):
    def app(req, res):
        res.send(f"{req.method} {req.url} {req.get('x-a')} {req.raw_body.decode()}")

    server = serve(app)
    client = clients(server)
    data = (
        b"POST /one?x=1 HTTP/1.1\r\nHost: test\r\nX-A: b\r\nContent-Length: 5\r\n\r\nhello"
        b"PUT /two HTTP/1.1\r\nHost: test\r\nX-A: c\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    for i in range(len(data)):
        client.send(data[i : i + 1])
    first, second = client.read_responses(2)
    assert first.text == "POST /one?x=1 b hello"
    assert second.text == "PUT /two c abcde"


def test_a_half_closed_client_still_gets_its_responses(serve, clients):
    def app(req, res):
        if req.path == "/later":
            req.reactor.call_later(0.05, res.send, "late")
        elif req.path == "/stream":
            res.stream(b"s" * 65536 for _ in range(16))
        else:
            res.send("now")

    server = serve(app, write_buffer_size=16384)
    for target, answer in (("/now", "now"), ("/later", "late")):
        client = clients(server)
        client.request(target=target)
        client.sock.shutdown(socket.SHUT_WR)
        res = client.read_response()
        assert (res.status, res.text) == (200, answer)
        assert client.read_until_close() == b""
    # A long streamed answer to a half-closed client (it reads slowly: output drains often).
    client = clients(server, rcvbuf=4096)
    client.request(target="/stream")
    client.sock.shutdown(socket.SHUT_WR)
    res = client.read_response()
    assert res.body == b"s" * (1 << 20)
    assert client.read_until_close() == b""
    # Two pipelined requests, then the half-close: both answered, then the server closes.
    client = clients(server)
    client.send(b"GET /later HTTP/1.1\r\nHost: test\r\n\r\nGET /now HTTP/1.1\r\nHost: test\r\n\r\n")
    client.sock.shutdown(socket.SHUT_WR)
    assert [r.text for r in client.read_responses(2)] == ["late", "now"]
    assert client.read_until_close() == b""
    wait_idle(server)


def test_connection_close_is_honoured(serve, clients):
    server = serve(echo_path)
    client = clients(server)
    client.request(target="/x", headers={"Connection": "close"})
    res = client.read_response()
    assert res.text == "x"
    assert res.header("connection") == "close"
    assert client.read_until_close() == b""


def lingering_after_close(server, client) -> int:
    """Wait for the server's FIN and the connection to be gone; return the sockets lingering
    (the client keeps its end open, so a lingering socket stays until LINGER_TIME)."""
    assert client.read_until_close() == b""
    wait_until(lambda: server.connection_count == 0, message="the connection was not closed")
    return len(server._lingering)


def test_a_close_the_client_asked_for_does_not_linger(serve, clients):
    # The client may send nothing more (RFC 9112 section 9.6): the socket closes at once
    # instead of draining input for LINGER_TIME, even while the client keeps its end open.
    server = serve(echo_path)
    client = clients(server)
    client.request(target="/x", headers={"Connection": "close"})
    assert client.read_response().text == "x"
    assert lingering_after_close(server, client) == 0


def test_a_close_the_server_decided_lingers_until_the_client_closes(serve, clients):
    # The client expected keep-alive and may have pipelined more: the server drains its input
    # after the FIN, so the response is not destroyed by a reset, until the client closes.
    def app(req, res):
        res.set("Connection", "close")
        res.send("bye")

    server = serve(app)
    client = clients(server)
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.read_response().text == "bye"
    assert lingering_after_close(server, client) == 1
    client.close()
    wait_until(lambda: not server._lingering, message="lingering did not end when the client closed")


def test_pipelined_bytes_after_a_close_request_still_linger(serve, clients):
    server = serve(echo_path)
    client = clients(server)
    client.send(b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.read_response().text == "a"
    assert lingering_after_close(server, client) == 1


# -- HTTP/1.0 ------------------------------------------------------------------------------


def test_http10_closes_unless_keep_alive_is_asked_for(serve, clients):
    server = serve(echo_path)
    client = clients(server)
    client.send(b"GET /a HTTP/1.0\r\n\r\n")
    res = client.read_response()
    assert (res.version, res.status, res.text) == ("HTTP/1.1", 200, "a")
    assert res.header("connection") == "close"
    assert client.read_until_close() == b""

    client = clients(server)
    for name in ("a", "b"):
        client.send(b"GET /%s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % name.encode())
        res = client.read_response()
        assert res.text == name
        assert res.header("connection") == "keep-alive"
    client.send(b"GET /c HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")
    assert client.read_response().header("connection") == "close"
    assert client.read_until_close() == b""


def test_http10_streamed_body_is_close_delimited(serve, clients):
    def app(req, res):
        res.write("one,")
        res.write(b"two,")
        res.end("three")

    server = serve(app)
    client = clients(server)
    client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    raw = client.read_until_close()
    res, _ = parse_response(raw, eof=True)
    assert res.header("transfer-encoding") is None
    assert res.header("content-length") is None
    assert res.header("connection") == "close"
    assert res.body == b"one,two,three"

    client = clients(server)  # the same app on HTTP/1.1 is chunked and persists
    client.request()
    res = client.read_response()
    assert res.header("transfer-encoding") == "chunked"
    assert res.body == b"one,two,three"
    client.request()
    assert client.read_response().body == b"one,two,three"


# -- responses without a body ---------------------------------------------------------------


def test_head_204_and_304_carry_no_body(serve, clients):
    def app(req, res):
        if req.path == "/204":
            res.status(204).send("ignored")
        elif req.path == "/stream":
            res.write("streamed body")
            res.end("!")
        elif req.path == "/stream204":
            res.status(204)
            res.write("nothing")
            res.end()
        else:
            res.send("hello")

    server = serve(app)
    client = clients(server)
    # Each answer is followed by a pipelined GET: a stray body byte would break its parse.
    client.send(
        b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /204 HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n"
        b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /stream204 HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    head = client.read_response("HEAD")
    assert (head.status, head.header("content-length"), head.body) == (200, "5", b"")
    etag = head.header("etag")
    assert etag
    assert client.read_response().text == "hello"
    no_content = client.read_response()
    assert no_content.status == 204
    assert no_content.header("content-length") is None
    assert no_content.header("transfer-encoding") is None
    assert client.read_response().text == "hello"
    streamed_head = client.read_response("HEAD")
    assert streamed_head.status == 200
    assert client.read_response().text == "hello"
    streamed_204 = client.read_response()
    assert streamed_204.status == 204
    assert streamed_204.header("transfer-encoding") is None
    assert client.read_response().text == "hello"

    client.request(headers={"If-None-Match": etag})
    client.request(target="/after")
    not_modified = client.read_response()
    assert not_modified.status == 304
    assert not_modified.header("content-length") is None
    assert not_modified.raw.endswith(b"\r\n\r\n")
    assert client.read_response().text == "hello"
    assert not client.has_data(0.05)  # nothing stray after the last response


# -- Expect: 100-continue ----------------------------------------------------------------------


def test_expect_100_continue_is_answered_before_the_body_is_sent(serve, clients):
    def app(req, res):
        res.send(b"got " + req.raw_body)

    server = serve(app, max_body_size=1000)
    client = clients(server)
    client.send(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    interim = client.read_response()
    assert interim.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"hello")
    res = client.read_response()
    assert (res.status, res.body) == (200, b"got hello")

    # Too large: 413 straight away, no 100 first, and the connection closes.
    client = clients(server)
    client.send(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
    res = client.read_response()
    assert res.status == 413
    assert res.raw.startswith(b"HTTP/1.1 413 ")
    assert client.read_until_close() == b""


# -- application errors and answers from elsewhere ----------------------------------------------


def test_an_exception_in_the_app_gives_500_and_the_server_stays_healthy(serve, clients, caplog):
    def app(req, res):
        if req.path == "/boom":
            raise RuntimeError("secret detail")
        if req.path == "/boom-after-head":
            res.write("partial")
            raise RuntimeError("late")
        res.send("fine")

    server = serve(app)
    for _ in range(3):
        client = clients(server)
        client.request(target="/boom")
        res = client.read_response()
        assert res.status == 500
        assert b"secret detail" not in res.body
        assert res.header("connection") == "close"
        assert client.read_until_close() == b""

    client = clients(server)
    client.request(target="/boom-after-head")
    raw = client.read_until_close()  # aborted: at most part of the body, never its end
    assert raw == b"" or raw.startswith(b"HTTP/1.1 200 ")
    assert not raw.endswith(b"0\r\n\r\n")

    client = clients(server)
    client.request()
    assert client.read_response().text == "fine"
    assert any(r.name == "evserve" and r.exc_info and "secret detail" in str(r.exc_info[1])
               for r in caplog.records)  # the traceback goes to the "evserve" logger
    client.close()
    wait_idle(server)


def test_app_answers_later_from_another_thread(serve, clients):
    threads = []

    def app(req, res):
        def work():
            result = {"thread": threading.current_thread().name, "path": req.path}
            req.reactor.call_soon_threadsafe(res.json, result)

        thread = threading.Thread(target=work, name="worker-thread")
        threads.append(thread)
        thread.start()

    server = serve(app)
    client = clients(server)
    for i in range(5):
        client.request(target=f"/{i}")
        res = client.read_response()
        assert res.status == 200
        assert res.text == f'{{"thread":"worker-thread","path":"/{i}"}}'
    for thread in threads:
        thread.join(DEADLINE)


def test_app_answers_later_from_a_reactor_timer(serve, clients):
    def app(req, res):
        req.reactor.call_later(0.01, res.send, "timer")

    server = serve(app)
    client = clients(server)
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
    assert [r.text for r in client.read_responses(3)] == ["timer"] * 3


# -- scale and address families ----------------------------------------------------------------


def test_1000_concurrent_connections_are_all_answered(serve):
    count = 1000
    raise_nofile(2 * count + 200)
    server = serve(echo_path, backlog=2048, keepalive_timeout=60)  # however slow the set-up
    socks: list[socket.socket] = []
    deadline = time.monotonic() + DEADLINE * 3
    try:
        for _ in range(count):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {len(socks)} of {count} connections made in time"
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=remaining))
        wait_until(lambda: server.connection_count == count,
                   message="the server did not accept every connection")
        with selectors.DefaultSelector() as selector:
            buffers: dict[int, bytearray] = {}
            for i, sock in enumerate(socks):
                sock.sendall(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, i)
                buffers[i] = bytearray()
            answers: dict[int, str] = {}
            deadline = time.monotonic() + DEADLINE * 3
            while len(answers) < count:
                assert time.monotonic() < deadline, f"only {len(answers)} of {count} answered"
                for key, _ in selector.select(1.0):
                    i = key.data
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    assert data, f"connection {i} closed without an answer"
                    buffers[i] += data
                    try:
                        res, _ = parse_response(buffers[i])
                    except NeedMore:
                        continue
                    answers[i] = res.text
                    selector.unregister(key.fileobj)
        assert answers == {i: str(i) for i in range(count)}
        assert server.connection_count == count  # all still open, kept alive
    finally:
        for sock in socks:
            sock.close()
    wait_idle(server)


def test_ipv6_loopback(serve, clients):
    if not ipv6_available():
        pytest.skip("IPv6 is not available on this machine")
    server = serve(lambda req, res: res.send(req.socket_address), host="::1")
    assert server.url == f"http://[::1]:{server.port}"
    client = clients(("::1", server.port))
    client.request()
    res = client.read_response()
    assert (res.status, res.text) == (200, "::1")


def test_requests_library_round_trip(serve):
    requests = pytest.importorskip("requests")

    def app(req, res):
        res.json({"method": req.method, "body": req.raw_body.decode(), "q": req.url})

    server = serve(app)
    with requests.Session() as session:
        for i in range(3):
            reply = session.post(f"{server.url}/p?i={i}", data=b"x" * i, timeout=DEADLINE)
            assert reply.status_code == 200
            assert reply.json() == {"method": "POST", "body": "x" * i, "q": f"/p?i={i}"}


@pytest.mark.parametrize(("head", "config"), [
    # Refused before its body: the parser's error head says keep_alive=False, but the client
    # is still uploading and must be able to finish sending and read the 413.
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n", {"max_body_size": 1000}),
    # Connection: close, but the body never completes: the 408 must not be destroyed either.
    (b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 200000\r\n\r\n",
     {"body_timeout": 0.2}),
])
@pytest.mark.parametrize("through_app", [False, True])
def test_a_refused_upload_lingers_so_the_client_reads_its_error(serve, clients, head, config,
                                                                 through_app):
    if through_app:  # the refusal is answered through the App's error handling, then _finish
        app = App()
        app.use(echo_path)
        server = serve(app, **config)
    else:
        server = serve(echo_path, **config)
    client = clients(server)
    client.send(head)
    status = client.read_response("POST").status
    assert status in (408, 413)
    wait_until(lambda: server.connection_count == 0, message="the connection was not closed")
    assert len(server._lingering) == 1  # draining the upload, not reset
    client.send(b"x" * 65536)  # the upload goes on: no reset while lingering
