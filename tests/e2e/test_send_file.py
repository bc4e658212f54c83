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
    """A file sent over a real socket (sendfile); the rest of send_file's tests run in tests/app."""
    app = App()
    root = str(files)

    @app.get("/rooted/*path")
    def rooted(req: Any, res: Any) -> None:
        res.send_file(req.params["path"], root=root)

    return serve(app)


def test_binary_by_hash(server: Server, files: Path) -> None:
    res = requests.get(server.url + "/rooted/blob.bin", timeout=10)
    assert hashlib.sha256(res.content).digest() == hashlib.sha256((files / "blob.bin").read_bytes()).digest()




