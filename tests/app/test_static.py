"""static(root) through the real connection code in memory (``TestClient``): path safety,
redirects, dotfiles, fallthrough, ranges, 304, HEAD.

Exact targets go byte for byte (a client would normalise ``..`` and escapes). Sendfile of a big
file, pipelining, resets and descriptor leaks are checked on sockets in tests/e2e/test_static.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from evserve.testing import TestClient
from tests.static_tree import BIG_SIZE, DIGITS, HELLO, NON_ASCII, build_tree, make_app

from .conftest import RawResponse, exchange, parse_responses, request_bytes


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tree (see tests/static_tree.py) in a temporary directory."""
    return build_tree(tmp_path_factory.mktemp("static"))


def raw_get(client: TestClient, target: str, method: str = "GET",
            headers: dict[str, str] | None = None, version: str = "1.1") -> RawResponse:
    """One request, byte for byte, on a fresh connection; the response as it came."""
    return exchange(client, method, target, headers, version=version)


@pytest.fixture
def client(tree: Path, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(make_app(tree))


# -- serving ---------------------------------------------------------------------------------


def test_file_with_headers(client: TestClient, tree: Path) -> None:
    res = client.get("/static/hello.txt", timeout=10)
    assert res.status_code == 200
    assert res.content == HELLO
    assert res.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert res.headers["Content-Length"] == str(len(HELLO))
    assert res.headers["Cache-Control"] == "public, max-age=0"
    assert res.headers["Accept-Ranges"] == "bytes"
    st = os.stat(tree / "hello.txt")
    assert res.headers["ETag"] == f'W/"{st.st_size:x}-{st.st_mtime_ns:x}"'
    assert res.headers["Last-Modified"] == formatdate(st.st_mtime, usegmt=True)
    assert "Transfer-Encoding" not in res.headers


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/style.css", "text/css; charset=utf-8"),
        ("/static/index.html", "text/html; charset=utf-8"),
        ("/static/README", "application/octet-stream"),
        ("/static/big.bin", "application/octet-stream"),
    ],
)
def test_content_type(client: TestClient, path: str, content_type: str) -> None:
    res = raw_get(client, path, "HEAD")
    assert res.status == 200
    assert res.header("content-type") == content_type


def test_empty_file(client: TestClient) -> None:
    res = raw_get(client, "/static/empty.txt")
    assert res.status == 200
    assert res.header("content-length") == "0"
    assert res.body == b""


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("/static/with%20space.txt", b"spaced out"),
        ("/static/na%C3%AFve-%E6%97%A5%E6%9C%AC.txt", b"non-ascii name"),
        ("/static/./hello.txt", HELLO),
        ("/static//hello.txt", HELLO),
        ("/static/sub/./page.css", b"p{}"),
        ("/static/%68ello.txt", HELLO),
        ("/static/hello.txt?v=3", HELLO),
    ],
)
def test_names_and_normalisation(client: TestClient, target: str, body: bytes) -> None:
    res = raw_get(client, target)
    assert (res.status, res.body) == (200, body)


def test_names_through_the_client(client: TestClient) -> None:
    # the client percent-encodes the space and the UTF-8 of the name, as requests does
    assert client.get("/static/with space.txt", timeout=10).content == b"spaced out"
    assert client.get("/static/" + NON_ASCII, timeout=10).content == b"non-ascii name"


# -- directories -----------------------------------------------------------------------------


def test_index(client: TestClient) -> None:
    assert raw_get(client, "/static/").body == b"<h1>root index</h1>"
    res = raw_get(client, "/static/sub/")
    assert (res.status, res.body) == (200, b"<h1>sub index</h1>")
    assert res.header("content-type") == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/static/sub", "/static/sub/"),
        ("/static/sub?a=1&b=%20", "/static/sub/?a=1&b=%20"),
        ("/static", "/static/"),
        ("/static?x=y", "/static/?x=y"),
        ("/static/%73ub", "/static/%73ub/"),
    ],
)
def test_directory_redirect(client: TestClient, target: str, location: str) -> None:
    res = raw_get(client, target)
    assert res.status == 301
    assert res.header("location") == location
    assert b"TOP SECRET" not in res.body


def test_redirect_never_protocol_relative(tree: Path, client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_app(tree, mount="/"))
    res = raw_get(client, "//sub")
    assert res.status == 301
    assert res.header("location") == "/sub/"


def test_redirect_disabled_and_no_index(tree: Path, client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_app(tree, redirect=False, index=False))
    assert raw_get(client, "/static/sub").status == 299  # 404, fell through
    assert raw_get(client, "/static/sub/").status == 299
    assert raw_get(client, "/static/hello.txt").status == 200
    strict = client_for(make_app(tree, redirect=False, fallthrough=False))
    assert raw_get(strict, "/static/sub").status == 404
    assert raw_get(strict, "/static/empty/").status == 404  # a directory without its index


def test_index_list(tree: Path, client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_app(tree, index=["index.html", "default.htm"]))
    assert raw_get(client, "/static/alt/").body == b"alt index"
    assert raw_get(client, "/static/sub/").body == b"<h1>sub index</h1>"


def test_file_with_trailing_slash(client: TestClient) -> None:
    assert raw_get(client, "/static/hello.txt/").status == 299


# -- path safety -----------------------------------------------------------------------------

TRAVERSALS = [
    ("/static/../outside.txt", 403),
    ("/static/sub/../../outside.txt", 403),
    ("/static/%2e%2e/outside.txt", 403),
    ("/static/%2E%2e/outside.txt", 403),
    ("/static/.%2e/outside.txt", 403),
    ("/static/..%2foutside.txt", 403),
    ("/static/..%2Foutside.txt", 403),
    ("/static/%2e%2e%2foutside.txt", 403),
    ("/static/%2e%2e%5coutside.txt", 403),
    ("/static/..%5coutside.txt", 403),
    ("/static/..\\outside.txt", 403),
    ("/static/sub\\..\\..\\outside.txt", 403),
    ("/static/%2fetc%2fpasswd", 403),
    ("/static/%5cetc%5cpasswd", 403),
    ("/static/%252e%252e/outside.txt", 200),  # decoded once: the literal "%2e%2e" directory
    ("/static/%252e%252e%252foutside.txt", 404),
    ("/static//etc/passwd", 404),
    ("/static///../outside.txt", 403),
    ("/static/%00", 400),
    ("/static/hello.txt%00.png", 400),
    ("/static/%00/../outside.txt", 400),
    ("/static/%c0%ae%c0%ae/outside.txt", 400),  # overlong UTF-8 for "."
    ("/static/%C0%AE%C0%AE%C0%AFoutside.txt", 400),
    ("/static/%e0%80%ae%e0%80%ae/outside.txt", 400),
    ("/static/%ff", 400),
    ("/static/%zz", 400),
    ("/static/%2", 400),
    ("/static/%", 400),
    ("http://test/static/../outside.txt", 403),  # absolute-form target
    ("/static/link_out", 404),
    ("/static/linkdir_out/x.txt", 404),
    ("/static/link_in", 404),  # follow_symlinks=False refuses every link, inside or not
    ("/static/linkdir_in/page.css", 404),
    ("/static/fifo", 404),
]


@pytest.mark.parametrize(("target", "status"), TRAVERSALS)
def test_traversal(tree: Path, client_for: Callable[..., TestClient], target: str, status: int) -> None:
    client = client_for(make_app(tree, fallthrough=False))
    res = raw_get(client, target)
    assert b"TOP SECRET" not in res.raw
    assert res.status == status, res.body
    if status == 200:
        assert res.body == b"decoy, served only once decoded once"


@pytest.mark.parametrize(("target", "status"), [t for t in TRAVERSALS if t[1] != 404])
def test_traversal_with_fallthrough(client: TestClient, target: str, status: int) -> None:
    # Only "missing" falls through; 400 and 403 are answered whatever fallthrough says.
    res = raw_get(client, target)
    assert b"TOP SECRET" not in res.raw
    assert res.status == status


def test_follow_symlinks(tree: Path, client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_app(tree, follow_symlinks=True, fallthrough=False))
    assert raw_get(client, "/static/link_in").body == HELLO
    assert raw_get(client, "/static/linkdir_in/page.css").body == b"p{}"
    assert raw_get(client, "/static/linkdir_in/").body == b"<h1>sub index</h1>"
    for target in ("/static/link_out", "/static/linkdir_out/x.txt", "/static/linkdir_out/missing"):
        res = raw_get(client, target)
        assert res.status == 403
        assert b"TOP SECRET" not in res.raw
    assert raw_get(client, "/static/fifo").status == 404


def test_root_that_is_a_link(tree: Path, client_for: Callable[..., TestClient], tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    os.symlink(tree, alias)  # the root itself is configuration, not client input
    client = client_for(make_app(alias))
    assert raw_get(client, "/static/hello.txt").body == HELLO
    assert raw_get(client, "/static/link_in").status == 299


# -- dotfiles, fallthrough, methods ----------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "secret", "inside"),
    [("ignore", 404, 404), ("deny", 403, 403), ("allow", 200, 200)],
)
def test_dotfiles(tree: Path, client_for: Callable[..., TestClient], mode: str, secret: int, inside: int) -> None:
    client = client_for(make_app(tree, dotfiles=mode, fallthrough=False))
    res = raw_get(client, "/static/.secret")
    assert res.status == secret
    assert (res.body == b"dotfile") == (secret == 200)
    assert raw_get(client, "/static/.hidden/inside.txt").status == inside
    assert raw_get(client, "/static/%2esecret").status == secret


def test_dotfile_ignored_falls_through(client: TestClient) -> None:
    res = raw_get(client, "/static/.secret")
    assert (res.status, res.body) == (299, b"fallback GET /static/.secret")


def test_fallthrough(tree: Path, client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_app(tree))
    res = raw_get(client, "/static/missing.txt")
    assert (res.status, res.body) == (299, b"fallback GET /static/missing.txt")
    res = raw_get(client, "/static/hello.txt", "POST")
    assert (res.status, res.body) == (299, b"fallback POST /static/hello.txt")


def test_no_fallthrough(tree: Path, client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_app(tree, fallthrough=False))
    res = raw_get(client, "/static/missing.txt")
    assert res.status == 404
    for method in ("POST", "PUT", "DELETE"):
        res = raw_get(client, "/static/hello.txt", method)
        assert res.status == 405
        assert res.header("allow") == "GET, HEAD"
        assert b"hello" not in res.body
    assert raw_get(client, "/elsewhere").status == 299


# -- HEAD and conditional GET ----------------------------------------------------------------


def test_head(client: TestClient) -> None:
    # one connection: the framing held if the GET after the HEAD parses, and nothing is left
    wire = client.raw(request_bytes("HEAD", "/static/digits.txt") + request_bytes("GET", "/static/hello.txt"))
    res, after = parse_responses(wire, ["HEAD", "GET"])
    assert res.status == 200
    assert res.header("content-length") == "1000"
    assert res.header("content-type") == "text/plain; charset=utf-8"
    assert res.header("etag")
    assert after.body == HELLO


def test_head_big_sends_no_body(client: TestClient) -> None:
    wire = client.raw(request_bytes("HEAD", "/static/big.bin") + request_bytes("GET", "/static/empty.txt"))
    res, after = parse_responses(wire, ["HEAD", "GET"])
    assert res.header("content-length") == str(BIG_SIZE)
    assert after.status == 200


def validators(client: TestClient, path: str) -> tuple[str, str]:
    res = raw_get(client, path, "HEAD")
    return str(res.header("etag")), str(res.header("last-modified"))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_conditional_get(client: TestClient, method: str) -> None:
    etag, last_modified = validators(client, "/static/hello.txt")
    for headers in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"nope", {etag}'},
        {"If-None-Match": etag.removeprefix("W/")},  # weak comparison
        {"If-None-Match": "*"},
        {"If-Modified-Since": last_modified},
        {"If-Modified-Since": formatdate(2**31 - 1, usegmt=True)},
    ):
        res = raw_get(client, "/static/hello.txt", method, headers)
        assert res.status == 304, headers
        assert res.body == b""
        assert res.header("content-type") is None
        assert res.header("content-length") is None
        assert res.header("etag") == etag
        assert res.header("cache-control") == "public, max-age=0"
    for headers in (
        {"If-None-Match": '"other"'},
        {"If-None-Match": '"other"', "If-Modified-Since": last_modified},  # INM wins
        {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
        {"If-Modified-Since": "not a date"},
        {"If-None-Match": etag, "Cache-Control": "no-cache"},
    ):
        res = raw_get(client, "/static/hello.txt", method, headers)
        assert res.status == 200, headers
        assert res.header("content-length") == str(len(HELLO))


def test_preconditions(client: TestClient) -> None:
    etag, last_modified = validators(client, "/static/hello.txt")
    assert raw_get(client, "/static/hello.txt", headers={"If-Match": etag}).status == 200
    assert raw_get(client, "/static/hello.txt", headers={"If-Match": "*"}).status == 200
    assert raw_get(client, "/static/hello.txt", headers={"If-Match": '"other"'}).status == 412
    assert raw_get(client, "/static/hello.txt", headers={"If-Unmodified-Since": last_modified}).status == 200
    old = "Thu, 01 Jan 1970 00:00:00 GMT"
    assert raw_get(client, "/static/hello.txt", headers={"If-Unmodified-Since": old}).status == 412


def test_options(tree: Path, client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_app(tree, max_age=86400, immutable=True, etag=False, last_modified=False,
                            headers={"X-Served-By": "static"}))
    res = raw_get(client, "/static/hello.txt")
    assert res.header("cache-control") == "public, max-age=86400, immutable"
    assert res.header("etag") is None
    assert res.header("last-modified") is None
    assert res.header("x-served-by") == "static"
    res = raw_get(client, "/static/hello.txt", headers={"If-None-Match": "*"})
    assert res.status == 200  # no validator: never fresh

    seen: list[str] = []

    def set_headers(res: Any, path: str, st: os.stat_result) -> None:
        seen.append(path)
        res.set("X-Size", st.st_size).set("Cache-Control", "no-store")

    client = client_for(make_app(tree, set_headers=set_headers, accept_ranges=False))
    res = raw_get(client, "/static/digits.txt", headers={"Range": "bytes=0-1"})
    assert (res.status, res.header("x-size"), res.header("cache-control")) == (200, "1000", "no-store")
    assert res.header("accept-ranges") is None
    assert raw_get(client, "/static/sub/").status == 200
    assert seen == [str(tree / "digits.txt"), str(tree / "sub" / "index.html")]


# -- ranges ----------------------------------------------------------------------------------


def parse_multipart(res: RawResponse) -> list[tuple[str, str, bytes]]:
    """The parts of a multipart/byteranges body as (Content-Type, Content-Range, data)."""
    content_type = str(res.header("content-type"))
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    body = res.body
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    inner = body[len(boundary) + 4 : -(len(boundary) + 8)]
    parts = []
    for chunk in inner.split(b"\r\n--" + boundary + b"\r\n"):
        head, _, data = chunk.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((fields["Content-Type"], fields["Content-Range"], data))
    return parts


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=-500", 500, 999),
        ("bytes=500-", 500, 999),
        ("bytes=990-5000", 990, 999),
        ("bytes=7-7", 7, 7),
        ("bytes=1000-,3-4", 3, 4),
    ],
)
def test_single_range(client: TestClient, range_header: str, first: int, last: int) -> None:
    res = raw_get(client, "/static/digits.txt", headers={"Range": range_header})
    assert res.status == 206
    assert res.header("content-range") == f"bytes {first}-{last}/1000"
    assert res.header("content-length") == str(last - first + 1)
    assert res.header("content-type") == "text/plain; charset=utf-8"
    assert res.body == DIGITS[first : last + 1]


def test_range_in_big_file(client: TestClient, tree: Path) -> None:
    start = BIG_SIZE // 2 - 10
    headers = {"Range": f"bytes={start}-{start + 99999}"}
    res = client.get("/static/big.bin", headers=headers, timeout=10)
    assert res.status_code == 206
    with open(tree / "big.bin", "rb") as f:
        f.seek(start)
        assert res.content == f.read(100000)


@pytest.mark.parametrize("range_header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0", "bytes=5000-,2000-"])
def test_unsatisfiable(client: TestClient, range_header: str) -> None:
    res = raw_get(client, "/static/digits.txt", headers={"Range": range_header})
    assert res.status == 416
    assert res.header("content-range") == "bytes */1000"
    assert b"0123" not in res.body


def test_unsatisfiable_on_empty_file(client: TestClient) -> None:
    res = raw_get(client, "/static/empty.txt", headers={"Range": "bytes=0-"})
    assert (res.status, res.header("content-range")) == (416, "bytes */0")


@pytest.mark.parametrize(
    "range_header",
    [
        "bytes=5-2",  # invalid spec: ignored
        "items=0-5",
        "bytes=abc",
        "bytes=0-10,5-20",  # overlapping
        "bytes=0-0,0-0",
        "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 102, 2)),  # 51 ranges
    ],
)
def test_range_ignored_gives_whole_body(client: TestClient, range_header: str) -> None:
    res = raw_get(client, "/static/digits.txt", headers={"Range": range_header})
    assert res.status == 200
    assert res.body == DIGITS
    assert res.header("content-range") is None


@pytest.mark.parametrize(
    "spans",
    [
        [(0, 9), (20, 29), (990, 999)],
        [(500, 509), (0, 0)],  # request order kept
        [(i * 10, i * 10 + 2) for i in range(50)],  # exactly 50: still multipart
    ],
)
def test_multiple_ranges(client: TestClient, spans: list[tuple[int, int]]) -> None:
    header = "bytes=" + ",".join(f"{a}-{b}" for a, b in spans)
    res = raw_get(client, "/static/digits.txt", headers={"Range": header})
    assert res.status == 206
    assert res.header("content-range") is None
    assert int(str(res.header("content-length"))) == len(res.body)
    parts = parse_multipart(res)
    assert len(parts) == len(spans)
    for (ctype, crange, data), (a, b) in zip(parts, spans, strict=True):
        assert ctype == "text/plain; charset=utf-8"
        assert crange == f"bytes {a}-{b}/1000"
        assert data == DIGITS[a : b + 1]


def test_multiple_ranges_suffix_and_open(client: TestClient) -> None:
    res = raw_get(client, "/static/digits.txt", headers={"Range": "bytes=-3, 10-12"})
    assert [p[1] for p in parse_multipart(res)] == ["bytes 997-999/1000", "bytes 10-12/1000"]
    res = raw_get(client, "/static/digits.txt", headers={"Range": "bytes=10-12, 900-"})
    assert [p[1] for p in parse_multipart(res)] == ["bytes 10-12/1000", "bytes 900-999/1000"]
    res = raw_get(client, "/static/digits.txt", headers={"Range": "bytes=-3, 995-"})  # overlap
    assert (res.status, res.body) == (200, DIGITS)


def test_multiple_ranges_head(client: TestClient) -> None:
    header = {"Range": "bytes=0-9,20-29"}
    head = raw_get(client, "/static/digits.txt", "HEAD", header)
    get = raw_get(client, "/static/digits.txt", "GET", header)
    assert head.status == get.status == 206
    assert head.body == b""
    assert head.header("content-length") == get.header("content-length")


def test_head_range(client: TestClient) -> None:
    res = raw_get(client, "/static/digits.txt", "HEAD", {"Range": "bytes=10-19"})
    assert (res.status, res.header("content-range"), res.header("content-length")) == (206, "bytes 10-19/1000", "10")


def test_if_range(client: TestClient) -> None:
    etag, last_modified = validators(client, "/static/digits.txt")
    cases = [
        (etag, 206),
        ('W/"stale"', 200),
        ('"strong-but-different"', 200),
        (last_modified, 206),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 200),
        ("garbage", 200),
    ]
    for if_range, status in cases:
        res = raw_get(client, "/static/digits.txt", headers={"Range": "bytes=0-9", "If-Range": if_range})
        assert res.status == status, if_range
        assert res.body == (DIGITS[:10] if status == 206 else DIGITS)


def test_range_with_if_none_match_fresh_is_304(client: TestClient) -> None:
    etag, _ = validators(client, "/static/digits.txt")
    res = raw_get(client, "/static/digits.txt", headers={"Range": "bytes=0-9", "If-None-Match": etag})
    assert res.status == 304


