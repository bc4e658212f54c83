"""The body parsers (SPEC sections 5 and 8), after Express's body-parser tests, through the real
connection code in memory (``TestClient``): Content-Type matching, charsets, limits,
Content-Encoding (zip bombs included), malformed input, empty and chunked bodies, strict JSON,
deep JSON, urlencoded nesting and bounds.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import time
import zlib
from collections.abc import Iterator

import pytest

from evserve import App, HTTPError
from evserve.middleware import body_parser
from evserve.testing import ClientResponse, TestClient

from .conftest import parse_responses

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def echo(req, res):
    """Answer what the parsers left in ``req.body``: its kind and value (bytes as hex)."""
    body = req.body
    if isinstance(body, bytes):
        res.json({"kind": "bytes", "value": body.hex()})
    else:
        res.json({"kind": type(body).__name__, "value": body})


@contextlib.contextmanager
def serving(*middleware, **config) -> Iterator[TestClient]:
    """A client of an app running ``middleware`` then ``echo`` on every path."""
    app = App()
    for fn in middleware:
        app.use(fn)
    app.all("/", echo)
    with TestClient(app, **config) as client:
        yield client


def post(client: TestClient, data: bytes | str, content_type: str | None, **headers: str) -> ClientResponse:
    if content_type is not None:
        headers["Content-Type"] = content_type
    if isinstance(data, str):
        data = data.encode("utf-8")
    return client.post("/", data=data, headers=headers)


def parsed(res: ClientResponse) -> tuple[str, object]:
    assert res.status_code == 200, (res.status_code, res.text)
    answer = res.json()
    return answer["kind"], answer["value"]


def error(res: ClientResponse, status: int) -> str:
    """The error page's message, after checking the status."""
    assert res.status_code == status, (res.status_code, res.text)
    assert res.headers["Content-Type"] == "text/plain; charset=utf-8"
    return res.text


# -- json: matching ------------------------------------------------------------------------------


def test_json_parses_an_object_and_an_array():
    with serving(body_parser.json()) as client:
        assert parsed(post(client, '{"user":"tobi","n":[1,2.5,true,null]}', JSON)) == (
            "dict", {"user": "tobi", "n": [1, 2.5, True, None]}
        )
        assert parsed(post(client, " [1, 2] ", JSON)) == ("list", [1, 2])
        assert parsed(post(client, '{"\u00e9":"\u2603"}', "application/json; charset=utf-8")) == (
            "dict", {"\u00e9": "\u2603"}
        )
        assert parsed(post(client, "{}", 'Application/JSON ; Charset="UTF-8"')) == ("dict", {})


def test_json_leaves_other_types_and_bodiless_requests_alone():
    with serving(body_parser.json()) as client:
        assert parsed(post(client, '{"a":1}', "text/plain")) == ("NoneType", None)
        assert parsed(post(client, '{"a":1}', "application/vnd.api+json")) == ("NoneType", None)
        assert parsed(post(client, '{"a":1}', None)) == ("NoneType", None)
        assert parsed(post(client, '{"a":1}', "not a type")) == ("NoneType", None)
        # No Content-Length and no Transfer-Encoding: no body at all, whatever the type says.
        assert parsed(client.get("/", headers={"Content-Type": JSON})) == ("NoneType", None)


def test_json_empty_body_with_matching_type_is_an_empty_dict():
    with serving(body_parser.json()) as client:
        assert parsed(post(client, b"", JSON)) == ("dict", {})
    with serving(body_parser.json(strict=False)) as client:
        assert parsed(post(client, b"", JSON)) == ("dict", {})


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [
        ("+json", "application/vnd.api+json"),
        ("json", "application/json"),
        ("application/*", "application/merge-patch+json"),
        (["text/plain", "+json"], "application/ld+json; charset=utf-8"),
        ("*/*", "text/whatever"),
    ],
)
def test_json_type_option_accepts_extensions_wildcards_suffixes_and_lists(kind, content_type):
    with serving(body_parser.json(type=kind)) as client:
        assert parsed(post(client, '{"ok":true}', content_type)) == ("dict", {"ok": True})


def test_json_type_option_may_be_a_callable_of_the_request():
    parser = body_parser.json(type=lambda req: req.get("x-parse") == "yes")
    with serving(parser) as client:
        assert parsed(post(client, "[1]", "text/plain", **{"X-Parse": "yes"})) == ("list", [1])
        assert parsed(post(client, "[1]", JSON)) == ("NoneType", None)


def test_a_body_parsed_by_one_parser_is_not_parsed_again():
    with serving(body_parser.json(), body_parser.text(type="*/*"), body_parser.raw(type="*/*")) as client:
        assert parsed(post(client, '{"a":1}', JSON)) == ("dict", {"a": 1})
        assert parsed(post(client, "plain", "text/plain")) == ("str", "plain")
        assert parsed(post(client, "plain", "text/plain")) == ("str", "plain")


# -- json: errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"a":', "invalid JSON: Expecting value at line 1 column 6"),
        ("{} x", "invalid JSON: Extra data at line 1 column 4"),
        ('{"a" 1}', "invalid JSON: Expecting ':' delimiter at line 1 column 6"),
        ("{\n  'a': 1}", "invalid JSON: Expecting property name enclosed in double quotes at line 2 column 3"),
        ("   ", "invalid JSON: Expecting value at line 1 column 4"),
        ("[NaN]", "invalid JSON: NaN is not valid JSON"),
        ('{"a": -Infinity}', "invalid JSON: -Infinity is not valid JSON"),
        ('"just a string"', "invalid JSON: the top-level value must be an object or array"),
        ("42", "invalid JSON: the top-level value must be an object or array"),
        ("null", "invalid JSON: the top-level value must be an object or array"),
    ],
)
def test_malformed_json_is_400_with_a_short_reason(body, message):
    with serving(body_parser.json()) as client:
        assert error(post(client, body, JSON), 400) == message


def test_invalid_utf8_in_json_is_400():
    with serving(body_parser.json()) as client:
        assert error(post(client, b'{"a":"\xff\xfe"}', JSON), 400) == "invalid JSON: the body is not valid utf-8"


def test_non_strict_json_accepts_any_top_level_value():
    with serving(body_parser.json(strict=False)) as client:
        assert parsed(post(client, '"hi"', JSON)) == ("str", "hi")
        assert parsed(post(client, " 42 ", JSON)) == ("int", 42)
        assert parsed(post(client, "null", JSON)) == ("NoneType", None)
        assert error(post(client, "[Infinity]", JSON), 400) == "invalid JSON: Infinity is not valid JSON"


def test_json_nested_deeper_than_100_levels_is_400():
    with serving(body_parser.json(limit="8mb"), max_body_size=8 << 20) as client:
        ok = "[" * 100 + "]" * 100
        assert parsed(post(client, ok, JSON))[0] == "list"
        too_deep = "[" * 101 + "]" * 101
        assert error(post(client, too_deep, JSON), 400) == "invalid JSON: nested deeper than 100 levels"
        mixed = '{"a":' * 60 + "[" * 41 + "]" * 41 + "}" * 60
        assert error(post(client, mixed, JSON), 400) == "invalid JSON: nested deeper than 100 levels"
        # Brackets inside strings do not count, escaped quotes included.
        strings = "[" * 50 + '"[[[[\\"[[[[' + "[" * 200 + '"' + "]" * 50
        assert parsed(post(client, strings, JSON))[0] == "list"
        # Far beyond Python's recursion limit, and unbalanced: still a quick 400, never a 500.
        # (The CPU time of this process, the server's work included: a busy machine does not count.)
        started = time.process_time()
        assert error(post(client, "[" * 3_000_000, JSON), 400) == "invalid JSON: nested deeper than 100 levels"
        assert error(post(client, '{"a":' * 500_000, JSON), 400) == "invalid JSON: nested deeper than 100 levels"
        assert time.process_time() - started < 5


def test_json_object_hook_sees_every_object():
    parser = body_parser.json(object_hook=lambda obj: {k.upper(): v for k, v in obj.items()})
    with serving(parser) as client:
        assert parsed(post(client, '{"a":{"b":1}}', JSON)) == ("dict", {"A": {"B": 1}})


# -- json: charsets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "encoded"),
    [
        ("utf-8", '\ufeff{"name":"\u00e9l\u00e8ve"}'.encode()),  # a BOM is dropped
        ("utf-16", '{"name":"\u00e9l\u00e8ve"}'.encode("utf-16")),  # with a BOM
        ("utf-16", '{"name":"\u00e9l\u00e8ve"}'.encode("utf-16-be")),  # no BOM: order from the NUL
        ("utf-16", '{"name":"\u00e9l\u00e8ve"}'.encode("utf-16-le")),
        ("UTF-16LE", '{"name":"\u00e9l\u00e8ve"}'.encode("utf-16-le")),
        ("utf-32", '{"name":"\u00e9l\u00e8ve"}'.encode("utf-32-be")),
    ],
)
def test_json_accepts_the_utf_charsets(charset, encoded):
    with serving(body_parser.json()) as client:
        res = post(client, encoded, f"application/json; charset={charset}")
        assert parsed(res) == ("dict", {"name": "\u00e9l\u00e8ve"})


@pytest.mark.parametrize("charset", ["latin-1", "koi8-r", "utf-99", "us-ascii"])
def test_json_refuses_other_charsets_with_415(charset):
    with serving(body_parser.json()) as client:
        res = post(client, "{}", f"application/json; charset={charset}")
        assert error(res, 415) == f'unsupported charset "{charset}"'


# -- limits ----------------------------------------------------------------------------------------


def test_limit_gives_413_past_the_given_size():
    with serving(body_parser.json(limit=10)) as client:
        assert parsed(post(client, '{"a":"12"}', JSON)) == ("dict", {"a": "12"})  # exactly 10 bytes
        assert error(post(client, '{"a":"123"}', JSON), 413) == "request entity too large"
    with serving(body_parser.text(limit="1kb")) as client:
        assert parsed(post(client, "x" * 1024, "text/plain")) == ("str", "x" * 1024)
        assert error(post(client, "x" * 1025, "text/plain"), 413) == "request entity too large"


def test_default_limits_are_1mb_for_json_and_forms_100kb_for_text_and_raw():
    big = 100 * 1024
    with serving(body_parser.text(), body_parser.raw(), max_body_size=4 << 20) as client:
        assert parsed(post(client, "t" * big, "text/plain"))[0] == "str"
        assert error(post(client, "t" * (big + 1), "text/plain"), 413) == "request entity too large"
        assert parsed(post(client, b"\0" * big, "application/octet-stream"))[0] == "bytes"
        assert error(post(client, b"\0" * (big + 1), "application/octet-stream"), 413) == "request entity too large"
    with serving(body_parser.json(), body_parser.urlencoded(), max_body_size=4 << 20) as client:
        body = '{"a":"' + "x" * ((1 << 20) - 8) + '"}'
        assert len(body) == 1 << 20
        assert parsed(post(client, body, JSON))[0] == "dict"
        assert error(post(client, body + " ", JSON), 413) == "request entity too large"
        form = "a=" + "x" * ((1 << 20) - 2)
        assert parsed(post(client, form, FORM))[0] == "dict"
        assert error(post(client, form + "x", FORM), 413) == "request entity too large"


def test_the_server_limit_still_applies_before_any_parser():
    with serving(body_parser.json(limit="10mb"), max_body_size=1024) as client:
        assert post(client, "[" + "1," * 600 + "1]", JSON).status_code == 413


# -- Content-Encoding --------------------------------------------------------------------------------


def test_gzip_and_deflate_bodies_are_inflated():
    doc = json.dumps({"items": list(range(100))})
    with serving(body_parser.json()) as client:
        for encoding, data in [
            ("gzip", gzip.compress(doc.encode())),
            ("GZip", gzip.compress(doc.encode())),
            ("x-gzip", gzip.compress(doc.encode())),
            ("deflate", zlib.compress(doc.encode())),  # zlib format, as RFC 9110 says
            ("deflate", zlib.compress(doc.encode())[2:-4]),  # raw deflate, as some clients send
            ("identity", doc.encode()),
        ]:
            res = post(client, data, JSON, **{"Content-Encoding": encoding})
            assert parsed(res) == ("dict", {"items": list(range(100))}), encoding
        # Concatenated gzip members inflate to their concatenation, as gunzip does.
        data = gzip.compress(b'{"a":') + gzip.compress(b"[1,2]}")
        assert parsed(post(client, data, JSON, **{"Content-Encoding": "gzip"})) == ("dict", {"a": [1, 2]})
    with serving(body_parser.text(), body_parser.raw(), body_parser.urlencoded()) as client:
        res = post(client, gzip.compress("h\u00e9".encode()), "text/plain", **{"Content-Encoding": "gzip"})
        assert parsed(res) == ("str", "h\u00e9")
        res = post(client, zlib.compress(b"\x00\x01"), "application/octet-stream", **{"Content-Encoding": "deflate"})
        assert parsed(res) == ("bytes", "0001")
        res = post(client, gzip.compress(b"a[b]=1"), FORM, **{"Content-Encoding": "gzip"})
        assert parsed(res) == ("dict", {"a": {"b": "1"}})


def test_the_limit_applies_to_the_inflated_size():
    with serving(body_parser.text(limit=1000)) as client:
        small = gzip.compress(b"z" * 1000)
        assert parsed(post(client, small, "text/plain", **{"Content-Encoding": "gzip"})) == ("str", "z" * 1000)
        bigger = gzip.compress(b"z" * 1001)
        assert len(bigger) < 100
        assert error(post(client, bigger, "text/plain", **{"Content-Encoding": "gzip"}), 413) == "request entity too large"


def test_a_zip_bomb_is_413_without_inflating_it():
    bomb = gzip.compress(b"\0" * (10 << 20), 9)
    deflate_bomb = zlib.compress(b"[" * (10 << 20), 9)
    assert len(bomb) < 20_000 and len(deflate_bomb) < 20_000
    with serving(body_parser.raw(limit="1mb"), body_parser.json()) as client:
        started = time.process_time()  # this process's CPU (the server's too), not the wall clock
        for _ in range(5):
            res = post(client, bomb, "application/octet-stream", **{"Content-Encoding": "gzip"})
            assert error(res, 413) == "request entity too large"
            res = post(client, deflate_bomb, JSON, **{"Content-Encoding": "deflate"})
            assert error(res, 413) == "request entity too large"
        assert time.process_time() - started < 2


@pytest.mark.parametrize("encoding", ["br", "compress", "gzip, deflate", "zstd"])
def test_other_content_encodings_are_415(encoding):
    with serving(body_parser.json()) as client:
        res = post(client, "{}", JSON, **{"Content-Encoding": encoding})
        assert error(res, 415) == f'unsupported content encoding "{encoding}"'


def test_inflate_false_refuses_encoded_bodies():
    with serving(body_parser.json(inflate=False)) as client:
        res = post(client, gzip.compress(b"{}"), JSON, **{"Content-Encoding": "gzip"})
        assert error(res, 415) == "content encoding unsupported"
        assert parsed(post(client, "{}", JSON, **{"Content-Encoding": "identity"})) == ("dict", {})


@pytest.mark.parametrize(
    ("encoding", "data", "message"),
    [
        ("gzip", b"not gzip at all", "invalid gzip body: incorrect header check"),
        ("gzip", gzip.compress(b'{"a":1}')[:-6], "invalid gzip body: unexpected end of data"),
        ("deflate", zlib.compress(b'{"a":1}')[:-3], "invalid deflate body: unexpected end of data"),
        ("gzip", gzip.compress(b"{}") + b"trailing junk", "invalid gzip body: incorrect header check"),
    ],
)
def test_corrupt_compressed_bodies_are_400(encoding, data, message):
    with serving(body_parser.json()) as client:
        assert error(post(client, data, JSON, **{"Content-Encoding": encoding}), 400) == message


def test_an_empty_encoded_body_is_an_empty_body():
    with serving(body_parser.json()) as client:
        assert parsed(post(client, b"", JSON, **{"Content-Encoding": "gzip"})) == ("dict", {})


# -- chunked request bodies ---------------------------------------------------------------------------


def test_chunked_bodies_are_parsed():
    pieces = [b'{"parts":', b'["a",', b'"b"]}']
    with serving(body_parser.json()) as client:
        # one chunk a piece, as a client streaming a generator sends them
        wire = client.raw(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
        )
        [res] = parse_responses(wire, ["POST"])
        assert res.status == 200
        assert json.loads(res.body) == {"kind": "dict", "value": {"parts": ["a", "b"]}}
    with serving(body_parser.text()) as client:
        wire = client.raw(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            # and a chunked body with no data: present, so empty rather than absent
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n"
        )
        first, second = parse_responses(wire, ["POST", "POST"])
        assert json.loads(first.body) == {"kind": "str", "value": "abcde"}
        assert json.loads(second.body) == {"kind": "str", "value": ""}


# -- errors go to error middleware ---------------------------------------------------------------------


def test_parser_errors_are_http_errors_passed_to_next():
    seen = []

    def on_error(err, req, res, next):
        seen.append(err)
        res.status(err.status).json({"status": err.status, "message": err.message, "body": req.body})

    app = App()
    app.use(body_parser.json())
    app.post("/", echo)
    app.use(on_error)
    with TestClient(app) as client:
        res = post(client, "{oops", JSON)
        assert res.status_code == 400
        assert res.json() == {
            "status": 400,
            "message": "invalid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
            "body": None,
        }
    assert len(seen) == 1 and isinstance(seen[0], HTTPError)


# -- urlencoded ---------------------------------------------------------------------------------------


def test_urlencoded_extended_nests_and_builds_lists():
    with serving(body_parser.urlencoded()) as client:
        body = "user[name]=tobi&user[pet][kind]=ferret&tags[]=a&tags[]=b&x=1&x=2&sp=a+b&pct=%C3%A9&bare"
        assert parsed(post(client, body, FORM)) == (
            "dict",
            {
                "user": {"name": "tobi", "pet": {"kind": "ferret"}},
                "tags": ["a", "b"],
                "x": ["1", "2"],
                "sp": "a b",
                "pct": "\u00e9",
                "bare": "",
            },
        )
        assert parsed(post(client, "a=1", "application/x-www-form-urlencoded; charset=UTF-8")) == ("dict", {"a": "1"})
        assert parsed(post(client, b"", FORM)) == ("dict", {})
        assert parsed(post(client, "a=1", JSON)) == ("NoneType", None)


def test_urlencoded_bounds_are_ignored_not_errors():
    with serving(body_parser.urlencoded()) as client:
        assert parsed(post(client, "a[b][c][d][e][f][g]=1", FORM)) == (
            "dict", {"a": {"b": {"c": {"d": {"e": {"f": {"[g]": "1"}}}}}}}
        )
        many = "&".join(f"k{i}=v" for i in range(1500))
        _, value = parsed(post(client, many, FORM))
        assert len(value) == 1000 and "k999" in value and "k1000" not in value
        _, value = parsed(post(client, "&".join(["l[]=v"] * 150), FORM))
        assert value == {"l": ["v"] * 100}
    with serving(body_parser.urlencoded(parameter_limit=3, depth=1)) as client:
        assert parsed(post(client, "a=1&b=2&c=3&d=4", FORM)) == ("dict", {"a": "1", "b": "2", "c": "3"})
        assert parsed(post(client, "a[b][c]=1", FORM)) == ("dict", {"a": {"b": {"[c]": "1"}}})


def test_urlencoded_simple_does_not_nest():
    with serving(body_parser.urlencoded(extended=False)) as client:
        assert parsed(post(client, "a=1&a=2&b[c]=3", FORM)) == ("dict", {"a": ["1", "2"], "b[c]": "3"})


def test_urlencoded_refuses_charsets_other_than_utf8():
    with serving(body_parser.urlencoded()) as client:
        assert error(post(client, "a=1", FORM + "; charset=latin-9"), 415) == 'unsupported charset "latin-9"'


def test_urlencoded_invalid_utf8_becomes_replacement_characters():
    with serving(body_parser.urlencoded()) as client:
        # Raw bytes decode with U+FFFD; an escape that is not UTF-8 stays as it was (qs).
        assert parsed(post(client, b"a=\xff&b=%FF", FORM)) == ("dict", {"a": "\ufffd", "b": "%FF"})


# -- text -------------------------------------------------------------------------------------------


def test_text_decodes_with_the_given_charset():
    with serving(body_parser.text()) as client:
        assert parsed(post(client, "h\u00e9llo", "text/plain")) == ("str", "h\u00e9llo")
        assert parsed(post(client, "h\u00e9llo".encode("latin-1"), "text/plain; charset=ISO-8859-1")) == ("str", "h\u00e9llo")
        assert parsed(post(client, "\u20ac".encode("cp1252"), "text/plain; charset=windows-1252")) == ("str", "\u20ac")
        assert parsed(post(client, "\ufeffbom".encode(), "text/plain")) == ("str", "bom")
        assert parsed(post(client, b"bad \xff", "text/plain")) == ("str", "bad \ufffd")
        assert parsed(post(client, b"", "text/plain")) == ("str", "")
        assert parsed(post(client, "<p>", "text/html")) == ("NoneType", None)


@pytest.mark.parametrize("charset", ["latin-9", "base64", "rot13", "no-such-thing"])
def test_text_refuses_unknown_and_non_text_codecs_with_415(charset):
    with serving(body_parser.text()) as client:
        assert error(post(client, "x", f"text/plain; charset={charset}"), 415) == f'unsupported charset "{charset}"'


def test_text_default_charset_and_type_options():
    with serving(body_parser.text(type="text/*", default_charset="latin-1")) as client:
        assert parsed(post(client, "caf\u00e9".encode("latin-1"), "text/html")) == ("str", "caf\u00e9")
        assert parsed(post(client, "caf\u00e9".encode(), "text/csv; charset=utf-8")) == ("str", "caf\u00e9")


# -- raw -------------------------------------------------------------------------------------------


def test_raw_gives_bytes():
    with serving(body_parser.raw()) as client:
        assert parsed(post(client, b"\x00\xffdata", "application/octet-stream")) == ("bytes", "00ff64617461")
        assert parsed(post(client, b"", "application/octet-stream")) == ("bytes", "")
        assert parsed(post(client, b"x", "image/png")) == ("NoneType", None)
    with serving(body_parser.raw(type="image/*")) as client:
        assert parsed(post(client, b"\x89PNG", "image/png")) == ("bytes", "89504e47")


# -- options ---------------------------------------------------------------------------------------


def test_bad_options_raise_at_construction():
    with pytest.raises(ValueError):
        body_parser.json(limit="lots")
    with pytest.raises(ValueError):
        body_parser.json(limit=-1)
    with pytest.raises(TypeError):
        body_parser.json(limit=None)
    with pytest.raises(TypeError):
        body_parser.json(type=[])
    with pytest.raises(ValueError):
        body_parser.text(default_charset="no-such-codec")
