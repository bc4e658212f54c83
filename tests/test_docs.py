"""Every Python sample in README.md and docs/ runs, and the ones that build an app answer.

A sample is a fenced ``python`` block. It runs in a fresh namespace whose ``__name__`` is not
``"__main__"`` (so ``app.listen`` under the usual guard does not block), with a temporary
directory as the working directory. When it leaves an ``App`` named ``app`` behind, the app is
served on a background thread and every ``# GET /path -> STATUS [body]`` comment in the sample is
requested and checked.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import requests

from evserve import App

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
EXPECT = re.compile(r"#\s*(GET|HEAD|DELETE|OPTIONS)\s+(\S+)\s*->\s*(\d{3})(?:\s+(.+))?$", re.M)


def samples():
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for number, match in enumerate(FENCE.finditer(text), 1):
            line = text.count("\n", 0, match.start()) + 1
            yield pytest.param(match.group(1), id=f"{path.relative_to(ROOT)}:{line}#{number}")


@pytest.mark.parametrize("source", list(samples()))
def test_sample_runs(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "hello.txt").write_text("hello\n")
    (tmp_path / "views").mkdir()
    (tmp_path / "views" / "hello.html").write_text("<p>Hello, $name!</p>\n")
    namespace = {"__name__": "__doc_sample__", "__file__": str(tmp_path / "sample.py")}
    exec(compile(source, "<doc sample>", "exec"), namespace)
    app = namespace.get("app")
    checks = EXPECT.findall(source)
    if not isinstance(app, App) or not checks:
        return
    with app.run_in_thread() as server:
        for method, path, status, body in checks:
            response = requests.request(method, server.url + path, timeout=10)
            assert response.status_code == int(status), (method, path, response.text)
            if body:
                body = body.strip()
                if body.startswith(("{", "[")):
                    assert response.json() == json.loads(body)
                else:
                    assert response.text == json.loads(body)


def test_there_are_samples():
    assert len(list(samples())) >= 2
    assert os.path.exists(ROOT / "README.md")
