"""Which charsets and Content-Encodings the body parsers take, through the real connection code
in memory (``TestClient``).

One allow-list of text charsets serves the text, JSON and urlencoded parsers: codecs that
could hand a handler a lone surrogate (UTF-7, ``unicode_escape``) or that are no text charset
at all (``base64``, ``zlib``, ``punycode``) are a 415, and unknown names leave nothing behind
in the process. One coding per body (gzip, deflate, identity, any case), anything else a 415;
thousands of gzip members are one body.
"""

from __future__ import annotations

import encodings
import gzip
import zlib

import pytest

from evserve import body_parser

from .conftest import exchange
from .test_values_echo import FORM, JSON, echo_server, post, refused


@pytest.mark.parametrize(
    ("charset", "data"),
    [
        ("utf-7", b"+2AA-"),  # UTF-7 decodes this to a lone U+D800
        ("UTF7", b"+2AA-"),
        ("unicode_escape", b"\\ud800"),
        ("unicode-escape", b"\\ud800"),
        ("raw_unicode_escape", b"\\ud800"),
        ("punycode", b"abc-"),
        ("idna", b"abc"),
        ("base64", b"YWJj"),
        ("hex", b"616263"),
        ("rot13", b"nop"),
        ("zlib", b"x\x9cKLJ\x06\x00\x02M\x01'"),
        ("undefined", b"x"),
    ],
)
def test_text_bodies_in_unsafe_codecs_are_415(charset, data):
    with echo_server() as client:
        res = post(client, "/send", data, f"text/plain; charset={charset}")
        assert refused(res, 415) == f'unsupported charset "{charset.lower()}"'


@pytest.mark.parametrize(
    ("path", "content_type", "data", "status"),
    [
        ("/json", JSON + "; charset=utf-7", b"[1]", 415),
        ("/json", JSON + "; charset=UTF8", b"[1]", 200),
        ("/json", JSON + "; charset=utf-16le", "[1]".encode("utf-16-le"), 200),
        ("/json", JSON + "; charset=latin1", b"[1]", 415),
        ("/json", JSON + "; charset=unicode_escape", b"[1]", 415),
        ("/json", FORM + "; charset=utf-7", b"a=1", 415),
        ("/json", FORM + "; charset=utf8", b"a=1", 200),
        ("/json", FORM + "; charset=UTF_8", b"a=1", 200),
        ("/json", FORM + "; charset=latin1", b"a=1", 415),
    ],
)
def test_json_and_urlencoded_use_the_same_allow_list(path, content_type, data, status):
    with echo_server() as client:
        assert post(client, path, data, content_type).status_code == status


def test_unknown_charsets_leave_nothing_behind_in_the_process():
    with echo_server() as client:  # one connection kept alive, as a session's
        before = len(encodings._cache)
        for i in range(50):
            res = client.post("/send", data=b"x", headers={"Content-Type": f"text/plain; charset=x-{i}-{'z' * 30}"})
            assert res.status_code == 415
        assert len(encodings._cache) == before


def test_default_charset_must_be_on_the_list():
    for charset in ("utf-7", "unicode_escape", "base64"):
        with pytest.raises(ValueError):
            body_parser.text(default_charset=charset)
    assert body_parser.text(default_charset="windows-1252") is not None


# -- Content-Encoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip, gzip", "identity, gzip", "gzip,deflate", "br", "x-compress"])
def test_several_or_unknown_codings_are_415(encoding):
    with echo_server() as client:
        res = post(client, "/json", gzip.compress(gzip.compress(b"[1]")), JSON, **{"Content-Encoding": encoding})
        assert refused(res, 415) == f'unsupported content encoding "{encoding}"'


def test_repeated_content_encoding_lines_are_several_codings():
    with echo_server() as client:
        body = gzip.compress(gzip.compress(b"[1]"))
        headers = {"Content-Type": JSON, "Content-Encoding": "gzip", "content-encoding": "gzip"}
        res = exchange(client, "POST", "/json", headers, body)
        assert res.status == 415 and res.body == b'unsupported content encoding "gzip, gzip"'


@pytest.mark.parametrize("encoding", ["GZIP", "gZip", "X-Gzip", "Identity", "", "DEFLATE"])
def test_one_coding_in_any_case_is_inflated(encoding):
    with echo_server() as client:
        if "identity" in encoding.lower() or not encoding:
            data = b"[1]"
        elif "deflate" in encoding.lower():
            data = zlib.compress(b"[1]")
        else:
            data = gzip.compress(b"[1]")
        res = post(client, "/json", data, JSON, **{"Content-Encoding": encoding})
        assert res.status_code == 200 and res.json() == {"body": [1]}


def test_thousands_of_gzip_members_are_one_body():
    data = b"".join(gzip.compress(b"%d," % i, mtime=0) for i in range(3000)) + gzip.compress(b"0", mtime=0)
    with echo_server() as client:
        res = post(client, "/send", data, "text/plain", **{"Content-Encoding": "gzip"})
        assert res.status_code == 200
        assert res.text == "".join(f"{i}," for i in range(3000)) + "0"
