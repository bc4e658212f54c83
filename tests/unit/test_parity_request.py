"""``evserve.request.origin_form``: the path and query of a request target as received."""

from __future__ import annotations

import pytest

from evserve.request import origin_form


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/p?q=1", "/p?q=1"),
        ("//p", "//p"),
        ("*", "*"),
        ("example.com:443", "example.com:443"),  # authority-form (CONNECT)
        ("http://h.test/p?q=1", "/p?q=1"),
        ("http://h.test:8080/a/b", "/a/b"),
        ("http://h.test", "/"),
        ("http://h.test?q=1", "/?q=1"),
        ("HTTPS://H.test/P", "/P"),
        ("http://h.test/x://y", "/x://y"),
    ],
)
def test_origin_form(target: str, expected: str) -> None:
    assert origin_form(target) == expected
