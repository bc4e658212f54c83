"""The file tree and app the static() tests serve, on sockets (tests/e2e) and in memory (tests/app)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from evserve import App
from evserve.middleware.static import static

SECRET = b"TOP SECRET OUTSIDE THE ROOT"
HELLO = b"hello, world\n"
DIGITS = bytes(ord("0") + i % 10 for i in range(1000))
BIG_SIZE = 20 * 1024 * 1024
NON_ASCII = "na\u00efve-\u65e5\u672c.txt"



def build_tree(top: Path) -> Path:
    """``top/outside.txt`` (the secret) and ``top/public`` (the root, returned) with every kind
    of file: names with spaces and non-ASCII, dotfiles, indexes, a 20 MiB file, links in and
    out of the root, a FIFO."""
    (top / "outside.txt").write_bytes(SECRET)
    (top / "outside_dir").mkdir()
    (top / "outside_dir" / "x.txt").write_bytes(SECRET)
    root = top / "public"
    root.mkdir()
    (root / "hello.txt").write_bytes(HELLO)
    (root / "digits.txt").write_bytes(DIGITS)
    (root / "index.html").write_bytes(b"<h1>root index</h1>")
    (root / "style.css").write_bytes(b"body{}")
    (root / "README").write_bytes(b"no extension")
    (root / "empty.txt").write_bytes(b"")
    (root / "with space.txt").write_bytes(b"spaced out")
    (root / NON_ASCII).write_bytes(b"non-ascii name")
    (root / "%2e%2e").mkdir()  # a directory literally named "%2e%2e": double encoding lands here
    (root / "%2e%2e" / "outside.txt").write_bytes(b"decoy, served only once decoded once")
    (root / ".secret").write_bytes(b"dotfile")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "inside.txt").write_bytes(b"in a dot directory")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_bytes(b"<h1>sub index</h1>")
    (root / "sub" / "page.css").write_bytes(b"p{}")
    (root / "empty").mkdir()
    (root / "alt").mkdir()
    (root / "alt" / "default.htm").write_bytes(b"alt index")
    with open(root / "big.bin", "wb") as f:
        block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB, cheap and not all zeros
        for i in range(BIG_SIZE // len(block)):
            f.write(bytes([i]) + block[1:])
    os.symlink(top / "outside.txt", root / "link_out")
    os.symlink(top / "outside_dir", root / "linkdir_out")
    os.symlink(root / "hello.txt", root / "link_in")
    os.symlink("sub", root / "linkdir_in")
    os.mkfifo(root / "fifo")
    return root


def big_sha256(root: Path) -> str:
    """The SHA-256 of the tree's 20 MiB file, hex."""
    return hashlib.sha256((root / "big.bin").read_bytes()).hexdigest()


def fallback(req: Any, res: Any) -> None:
    """What a request static() passes on gets: 299 and its method and path."""
    res.status(299).send(f"fallback {req.method} {req.path}")


def make_app(root: Path, mount: str = "/static", **options: Any) -> App:
    """static(root, **options) mounted at ``mount``, then ``fallback`` for everything."""
    app = App()
    if mount == "/":
        app.use(static(root, **options))
    else:
        app.use(mount, static(root, **options))
    app.all("/*rest", fallback)
    return app
