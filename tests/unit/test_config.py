"""The configuration dataclass: defaults, validation, and the README table kept equal to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evserve.config import Config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_match_spec():
    c = Config()
    assert (c.keepalive_timeout, c.header_timeout, c.body_timeout, c.write_timeout) == (5, 10, 30, 30)
    assert c.graceful_timeout == 10
    assert (c.max_header_size, c.max_headers, c.max_body_size) == (16384, 100, 1048576)
    assert (c.max_connections, c.backlog, c.workers) == (10000, 1024, 1)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"keepalive_timeout": 0}, ValueError),
        ({"header_timeout": -1}, ValueError),
        ({"max_body_size": 0}, ValueError),
        ({"workers": 1.5}, TypeError),
        ({"backlog": "10"}, TypeError),
        ({"body_timeout": True}, TypeError),
        ({"no_such_setting": 1}, TypeError),
    ],
)
def test_invalid_settings_raise(kwargs, error):
    with pytest.raises(error):
        Config.from_kwargs(**kwargs)


def test_int_seconds_become_float():
    assert Config(keepalive_timeout=2).keepalive_timeout == 2.0


def test_readme_table_is_the_dataclass():
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- config-table:start -->")[1].split("<!-- config-table:end -->")[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| (\w+) \| (.+) \|$", block, re.M)
    table = [(name, default.strip(), unit, doc.strip()) for name, default, unit, doc in rows]
    expected = [(name, str(default), unit, doc) for name, unit, default, doc in Config.describe()]
    assert table == expected
