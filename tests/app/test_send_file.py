"""res.send_file and res.download, through the real connection code in memory (``TestClient``):
the same core as static(), called from handlers. A binary file sent with sendfile over a socket
is checked in tests/e2e/test_send_file.py."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evserve import App, HTTPError
from evserve.testing import TestClient

from .conftest import RawResponse, exchange, parse_responses, request_bytes

SECRET = b"TOP SECRET OUTSIDE THE ROOT"
REPORT = b"%PDF-1.4 not really a pdf"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("sendfile")
    (top / "outside.txt").write_bytes(SECRET)
    root = top / "files"
    root.mkdir()
    (root / "report.pdf").write_bytes(REPORT)
    (root / "notes.txt").write_bytes(b"some notes\n")
    (root / "r\u00e9sum\u00e9.txt").write_bytes(b"cv")
    (root / "data.json").write_bytes(b'{"a": 1}')
    (root / ".env").write_bytes(b"SECRET=1")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_bytes(b"<p>docs</p>")
    (root / "blob.bin").write_bytes(hashlib.sha256(b"x").digest() * 40000)  # 1.28 MB
    os.symlink(root / "notes.txt", root / "link.txt")
    os.symlink(top / "outside.txt", root / "link_out.txt")
    return root


def raw_get(client: TestClient, target: str, method: str = "GET",
            headers: dict[str, str] | None = None) -> RawResponse:
    """One request, byte for byte, on a fresh connection; the response as it came."""
    return exchange(client, method, target, headers)


@pytest.fixture
def client(files: Path, client_for: Callable[..., TestClient]) -> TestClient:
    app = App()
    root = str(files)

    @app.get("/abs/:name")
    def absolute(req: Any, res: Any) -> None:
        res.send_file(os.path.join(root, req.params["name"]))

    @app.get("/rooted/*path")
    def rooted(req: Any, res: Any) -> None:
        res.send_file(req.params["path"], root=root)

    @app.get("/relative")
    def relative(req: Any, res: Any) -> None:
        res.send_file("notes.txt")  # no root: a TypeError, so a 500

    @app.get("/cached/:name")
    def cached(req: Any, res: Any) -> None:
        res.send_file(req.params["name"], root=root, max_age=600, immutable=True,
                      headers={"X-Extra": "yes"})

    @app.get("/typed")
    def typed(req: Any, res: Any) -> None:
        res.type("text/plain").send_file(os.path.join(root, "data.json"))

    @app.get("/callback/*path")
    def with_callback(req: Any, res: Any) -> None:
        def done(err: BaseException | None) -> None:
            res.locals["done"] = err
            if err is not None:
                res.status(299).json({"status": getattr(err, "status", None)})

        res.send_file(req.params["path"], root=root, callback=done)

    @app.get("/dotfiles/:mode/:name")
    def dotfiles(req: Any, res: Any) -> None:
        res.send_file(req.params["name"], root=root, dotfiles=req.params["mode"])

    @app.get("/links/:follow/:name")
    def links(req: Any, res: Any) -> None:
        follow = req.params["follow"] == "yes"
        res.send_file(req.params["name"], root=root, follow_symlinks=follow)

    @app.get("/abslink/:follow/:name")
    def abs_links(req: Any, res: Any) -> None:
        res.send_file(os.path.join(root, req.params["name"]),
                      follow_symlinks=req.params["follow"] == "yes")

    @app.get("/dir")
    def directory(req: Any, res: Any) -> None:
        res.send_file("docs", root=root, index=req.query.get("index") or None)

    @app.get("/download/*path")
    def download(req: Any, res: Any) -> None:
        res.download(os.path.join(root, req.params["path"]), req.query.get("as"))

    @app.get("/download-rooted/*path")
    def download_rooted(req: Any, res: Any) -> None:
        res.download(req.params["path"], root=root)

    @app.get("/async/:name")
    async def in_coroutine(req: Any, res: Any) -> None:
        res.send_file(req.params["name"], root=root)

    def on_error(err: Any, req: Any, res: Any, next_: Any) -> None:
        status = getattr(err, "status", 500)
        res.status(status).json({"error": status, "kind": type(err).__name__})

    app.use(on_error)
    return client_for(app)


def test_absolute_path(client: TestClient) -> None:
    res = client.get("/abs/notes.txt", timeout=10)
    assert res.status_code == 200
    assert res.content == b"some notes\n"
    assert res.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert res.headers["Cache-Control"] == "public, max-age=0"
    assert res.headers["ETag"].startswith('W/"')
    assert "Last-Modified" in res.headers
    assert res.headers["Accept-Ranges"] == "bytes"


def test_missing_is_404(client: TestClient) -> None:
    res = client.get("/abs/nope.txt", timeout=10)
    assert res.status_code == 404
    assert res.json() == {"error": 404, "kind": "HTTPError"}


def test_relative_without_root_is_500(client: TestClient) -> None:
    res = client.get("/relative", timeout=10)
    assert res.status_code == 500
    assert res.json()["kind"] == "TypeError"


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/rooted/notes.txt", 200),
        ("/rooted/docs/index.html", 200),
        ("/rooted/..%2foutside.txt", 403),  # the router decodes params: "../outside.txt"
        ("/rooted/docs/..%2f..%2foutside.txt", 403),
        ("/rooted/%2e%2e/outside.txt", 403),
        ("/rooted/..%5coutside.txt", 403),
        ("/rooted/%2fetc%2fpasswd", 404),  # "/etc/passwd" below root: root/etc/passwd
        ("/rooted/notes.txt%00", 400),
        ("/rooted/%252e%252e%252foutside.txt", 404),  # send_file decodes nothing itself
        ("/rooted/link_out.txt", 404),
        ("/abs/..%2foutside.txt", 403),  # join(root, "../outside.txt"): ".." refused
        ("/abs/%2e%2e", 403),
    ],
)
def test_rooted_safety(client: TestClient, target: str, status: int) -> None:
    res = raw_get(client, target)
    assert b"TOP SECRET" not in res.raw
    assert res.status == status, res.body


def test_options_and_user_headers_win(client: TestClient) -> None:
    res = raw_get(client, "/cached/notes.txt")
    assert res.header("cache-control") == "public, max-age=600, immutable"
    assert res.header("x-extra") == "yes"
    res = raw_get(client, "/typed")
    assert res.header("content-type") == "text/plain; charset=utf-8"
    assert res.body == b'{"a": 1}'


def test_callback(client: TestClient) -> None:
    res = raw_get(client, "/callback/notes.txt")
    assert (res.status, res.body) == (200, b"some notes\n")
    res = raw_get(client, "/callback/missing.txt")
    assert (res.status, res.body) == (299, b'{"status":404}')
    res = raw_get(client, "/callback/..%2fx")
    assert (res.status, res.body) == (299, b'{"status":403}')


@pytest.mark.parametrize(("mode", "status"), [("ignore", 404), ("deny", 403), ("allow", 200)])
def test_dotfiles(client: TestClient, mode: str, status: int) -> None:
    res = raw_get(client, f"/dotfiles/{mode}/.env")
    assert res.status == status
    assert (b"SECRET=1" in res.body) == (status == 200)


def test_bad_dotfiles_option_is_500(client: TestClient) -> None:
    assert raw_get(client, "/dotfiles/hide/.env").status == 500


def test_symlinks(client: TestClient) -> None:
    assert raw_get(client, "/links/no/link.txt").status == 404
    assert raw_get(client, "/links/yes/link.txt").body == b"some notes\n"
    res = raw_get(client, "/links/yes/link_out.txt")
    assert res.status == 403 and b"TOP SECRET" not in res.raw
    # Without root the application chose the directories; the file itself is still checked.
    assert raw_get(client, "/abslink/no/link.txt").status == 404
    assert raw_get(client, "/abslink/yes/link_out.txt").body == SECRET


def test_directory(client: TestClient) -> None:
    assert raw_get(client, "/dir").status == 404
    res = raw_get(client, "/dir?index=index.html")
    assert (res.status, res.body) == (200, b"<p>docs</p>")
    assert res.header("content-type") == "text/html; charset=utf-8"


def test_head(client: TestClient) -> None:
    # one connection: the GET after the HEAD parses (nothing stray, nothing left over)
    wire = client.raw(request_bytes("HEAD", "/abs/report.pdf") + request_bytes("GET", "/abs/notes.txt"))
    res, after = parse_responses(wire, ["HEAD", "GET"])
    assert (res.status, res.header("content-length"), res.body) == (200, str(len(REPORT)), b"")
    assert res.header("content-type") == "application/pdf"
    assert after.body == b"some notes\n"


def test_range_and_conditional(client: TestClient) -> None:
    res = raw_get(client, "/abs/report.pdf", headers={"Range": "bytes=0-3"})
    assert (res.status, res.body, res.header("content-range")) == (206, b"%PDF", f"bytes 0-3/{len(REPORT)}")
    etag = str(res.header("etag"))
    res = raw_get(client, "/abs/report.pdf", headers={"If-None-Match": etag})
    assert (res.status, res.body) == (304, b"")
    res = raw_get(client, "/abs/report.pdf", headers={"Range": "bytes=999-"})
    assert (res.status, res.header("content-range")) == (416, f"bytes */{len(REPORT)}")


def test_from_a_coroutine(client: TestClient) -> None:
    assert raw_get(client, "/async/notes.txt").body == b"some notes\n"


# -- download ----------------------------------------------------------------------------------


def test_download(client: TestClient) -> None:
    res = client.get("/download/report.pdf", timeout=10)
    assert res.status_code == 200
    assert res.content == REPORT
    assert res.headers["Content-Disposition"] == 'attachment; filename="report.pdf"'
    assert res.headers["Content-Type"] == "application/pdf"


def test_download_as(client: TestClient) -> None:
    res = client.get("/download/notes.txt", params={"as": "my notes.txt"}, timeout=10)
    assert res.headers["Content-Disposition"] == 'attachment; filename="my notes.txt"'
    assert res.content == b"some notes\n"


def test_download_non_ascii(client: TestClient) -> None:
    res = client.get("/download/r%C3%A9sum%C3%A9.txt", timeout=10)
    assert res.status_code == 200
    assert res.content == b"cv"
    # The client decodes header bytes as Latin-1 (as requests does): the name went out as
    # ISO-8859-1, as Express's content-disposition sends a Latin-1 name (no filename* needed).
    assert res.headers["Content-Disposition"] == 'attachment; filename="r\u00e9sum\u00e9.txt"'
    res = client.get("/download/notes.txt", params={"as": "\u65e5\u672c.txt"}, timeout=10)
    assert res.headers["Content-Disposition"].endswith("filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt")


def test_download_rooted_and_missing(client: TestClient) -> None:
    assert raw_get(client, "/download-rooted/notes.txt").header("content-disposition") == (
        'attachment; filename="notes.txt"')
    res = raw_get(client, "/download-rooted/..%2foutside.txt")
    assert res.status == 403
    assert res.header("content-disposition") is None
    assert raw_get(client, "/download/missing.pdf").status == 404


def test_304_drops_representation_headers(client: TestClient) -> None:
    etag = str(raw_get(client, "/download/report.pdf", "HEAD").header("etag"))
    res = raw_get(client, "/download/report.pdf", headers={"If-None-Match": etag})
    assert res.status == 304
    assert res.header("content-disposition") is None
    assert res.header("content-type") is None


def test_raises_http_error_without_callback(files: Path, client_for: Callable[..., TestClient]) -> None:
    seen: list[Any] = []
    app = App()

    @app.get("/x")
    def handler(req: Any, res: Any) -> None:
        try:
            res.send_file("missing", root=str(files))
        except HTTPError as err:
            seen.append((err.status, res.headers_sent))
            raise

    client = client_for(app)
    assert raw_get(client, "/x").status == 404
    assert seen == [(404, False)]
