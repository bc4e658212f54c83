"""urlencoded bodies as body-parser 2 reads them: an empty key is skipped in both modes."""

from __future__ import annotations

import pytest
import requests

from evserve import App, body_parser

from .conftest import DEADLINE


@pytest.mark.parametrize("extended", [True, False])
@pytest.mark.parametrize(("body", "expected"), [
    ("=x", {}),
    ("=", {}),
    ("&=x&", {}),
    ("=x&a=1", {"a": "1"}),
    ("a=1&=x&b", {"a": "1", "b": ""}),
])
def test_an_empty_key_is_skipped(extended, body, expected):
    app = App()
    app.use(body_parser.urlencoded(extended=extended))
    app.post("/", lambda req, res: res.json(req.body))
    with app.run_in_thread() as server:
        res = requests.post(server.url + "/", data=body, timeout=DEADLINE,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert res.json() == expected


def test_the_flat_form_keeps_brackets_in_keys():
    app = App()
    app.use(body_parser.urlencoded(extended=False))
    app.post("/", lambda req, res: res.json(req.body))
    with app.run_in_thread() as server:
        res = requests.post(server.url + "/", data="a[b]=1&c[]=2&c[]=3", timeout=DEADLINE,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert res.json() == {"a[b]": "1", "c[]": ["2", "3"]}
