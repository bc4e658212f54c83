"""Content-Types of served files and res.type(), through the real connection code in memory
(``TestClient``), come from evserve's own table (Express 5's values), whatever Python's
mimetypes says."""

from __future__ import annotations

import mimetypes
from pathlib import Path

import pytest

from evserve import App, static
from evserve.testing import TestClient

# What express.static / res.sendFile send for these (mime-types 3 over mime-db).
SERVED = {
    "app.mjs": "text/javascript; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "mod.wasm": "application/wasm",
    "photo.avif": "image/avif",
    "favicon.ico": "image/vnd.microsoft.icon",
    "font.woff2": "font/woff2",
    "notes.md": "text/markdown; charset=utf-8",
    "data.csv": "text/csv; charset=utf-8",
    "feed.xml": "application/xml",
    "doc.rtf": "application/rtf",
    "site.webmanifest": "application/manifest+json; charset=utf-8",
    "archive.7z": "application/x-7z-compressed",
    "blob.unknownext": "application/octet-stream",
}


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    def guess_type(url: object, strict: bool = True) -> tuple[str, None]:
        return "application/x-poisoned", None

    monkeypatch.setattr(mimetypes, "guess_type", guess_type)
    monkeypatch.setattr(mimetypes, "types_map", {"." + n.rpartition(".")[2]: "x/poison" for n in SERVED})


@pytest.mark.usefixtures("poisoned")
def test_static_send_file_and_type_use_the_built_in_table(tmp_path: Path) -> None:
    for name in SERVED:
        (tmp_path / name).write_bytes(b"x")
    app = App()
    app.use("/static", static(str(tmp_path)))
    app.get("/file/:name", lambda req, res: res.send_file(req.params["name"], root=str(tmp_path)))
    app.get("/type/:ext", lambda req, res: res.type(req.params["ext"]).send(b"x"))
    with TestClient(app) as client:
        for name, expected in SERVED.items():
            assert client.get(f"/static/{name}").headers["Content-Type"] == expected, name
            assert client.get(f"/file/{name}").headers["Content-Type"] == expected, name
            ext = name.rpartition(".")[2]
            assert client.get(f"/type/{ext}").headers["Content-Type"] == expected, ext
