"""res.send_file end to end where the socket matters: a binary file sent with sendfile arrives
whole. The rest of send_file and download is checked through TestClient in
tests/app/test_send_file.py."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from evserve import App
from evserve.server import Server

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


@pytest.fixture
def server(files: Path, serve: Callable[..., Server]) -> Server:
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
    return serve(app)


def test_binary_by_hash(server: Server, files: Path) -> None:
    res = requests.get(server.url + "/rooted/blob.bin", timeout=10)
    assert hashlib.sha256(res.content).digest() == hashlib.sha256((files / "blob.bin").read_bytes()).digest()




