"""res.send_file end to end where the socket matters: a binary file sent with sendfile arrives
whole. The rest of send_file and download is checked through TestClient in
tests/app/test_send_file.py."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from evserve import App
from evserve.server import Server


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary file worth a sendfile (the other files of send_file's tests are in tests/app)."""
    root = tmp_path_factory.mktemp("sendfile")
    (root / "blob.bin").write_bytes(hashlib.sha256(b"x").digest() * 40000)  # 1.28 MB
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




