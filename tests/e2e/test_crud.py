"""End to end: examples/crud.py, the CRUD example, over real sockets.

The module is imported (with ``CRUD_DB`` at a temporary file) and each test serves its own
``crud.create_app(db)`` with ``run_in_thread``: every route and status of the resource, the demo
routes and the access log; then what makes the example safe to run for real (issue 12): a write
is checked before it is made and is either committed with a 2xx or not made at all with an
error, whatever the body or the database does; a list is bounded in bytes as well as in
records; a wrong method is a 405 with ``Allow``; no other site's page can write (no CORS, JSON
only, Origin and Sec-Fetch-Site checked). Then the example as a newcomer runs it, as a process
(``python examples/crud.py --port 0 --db FILE``): records survive a restart, a SIGTERM in the
middle of a burst of writes loses no record that was acknowledged with a 201, and the files it
leaves in its working directory are ignored by git.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import json
import logging
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evserve import HTTPError

from .conftest import DEADLINE, ROOT, RawClient, stop_process, subprocess_env, wait_until

CRUD_PY = ROOT / "examples" / "crud.py"
STATIC = ROOT / "examples" / "static"
KB = 1 << 10
MB = 1 << 20
JSON = {"Content-Type": "application/json"}


def load_crud(name: str) -> ModuleType:
    """A fresh import of examples/crud.py under ``name`` (it reads ``CRUD_DB`` at import)."""
    spec = importlib.util.spec_from_file_location(name, CRUD_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def crud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """examples/crud.py imported with ``CRUD_DB`` pointing at a temporary file."""
    db = tmp_path_factory.mktemp("crud-module") / "module.sqlite3"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRUD_DB", str(db))
        module = load_crud("crud_example_under_test")
    try:
        yield module
    finally:
        module.app.locals["store"].close()


class Api:
    """``requests`` against one running server: ``api.get("/data")`` and so on."""

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url
        self.session = session

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", DEADLINE)
        return self.session.request(method, self.url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def create(self, data: Any) -> int:
        res = self.post("/data", json=data)
        assert res.status_code == 201, res.text
        return int(res.json()["id"])


@contextlib.contextmanager
def serving(app: Any, **config: Any) -> Iterator[Api]:
    with app.run_in_thread(**config) as server, requests.Session() as session:
        yield Api(server.url, session)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "records.sqlite3"


@pytest.fixture
def app(crud: ModuleType, db_path: Path) -> Iterator[Any]:
    """A fresh example app on its own database file."""
    application = crud.create_app(str(db_path))
    try:
        yield application
    finally:
        application.locals["store"].close()


@pytest.fixture
def api(crud: ModuleType, app: Any) -> Iterator[Api]:
    """The app served as ``main()`` serves it (the server's body limit above the parser's)."""
    with serving(app, max_body_size=crud.SERVER_MAX_BODY) as client:
        yield client


def assert_json_error(res: requests.Response, status: int, pattern: str | None = None) -> str:
    """``res`` is ``status`` with a JSON ``{"error": "..."}`` body; returns the message."""
    assert res.status_code == status, (res.status_code, res.text)
    assert res.headers["Content-Type"].startswith("application/json"), res.headers
    body = res.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    if pattern is not None:
        assert re.search(pattern, body["error"]), body["error"]
    return str(body["error"])


def rows(db: Path) -> list[tuple[int, str]]:
    """What the database file holds, read beside the server (WAL lets a reader in)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            return conn.execute("SELECT id, data FROM records ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # no table yet: nothing was ever written
            return []


def all_records(api: Api, path: str = "/data") -> dict[int, Any]:
    """Every record, page by page, following the Link header."""
    found: dict[int, Any] = {}
    url: str | None = path
    while url is not None:
        res = api.get(url)
        assert res.status_code == 200, res.text
        found.update((record["id"], record["data"]) for record in res.json())
        url = res.links.get("next", {}).get("url")
    return found


# -- POST /data ------------------------------------------------------------------------------


def test_post_creates_a_record_with_201_location_and_id(api):
    res = api.post("/data", json={"name": "Ada", "tags": ["math", "engines"], "n": 1.5})
    assert res.status_code == 201
    assert res.json() == {"id": 1}
    assert res.headers["Location"] == "/data/1"
    assert res.headers["Content-Type"] == "application/json; charset=utf-8"

    second = api.post("/data", json={"name": "Grace", "nested": {"deep": [None, True, "ü"]}})
    assert (second.status_code, second.json(), second.headers["Location"]) == (201, {"id": 2}, "/data/2")

    shown = api.get(second.headers["Location"])
    assert shown.status_code == 200
    assert shown.json() == {"id": 2, "data": {"name": "Grace", "nested": {"deep": [None, True, "ü"]}}}


def test_a_json_charset_is_accepted(api):
    res = api.post("/data", data='{"a": "é"}'.encode(),
                   headers={"Content-Type": "application/json; charset=utf-8"})
    assert (res.status_code, res.json()) == (201, {"id": 1})
    assert api.get("/data/1").json() == {"id": 1, "data": {"a": "é"}}


@pytest.mark.parametrize("body", [b"{}", b" { } ", b""])
def test_an_empty_record_is_refused(api, db_path, body):
    rid = api.create({"before": True})
    before = rows(db_path)
    assert_json_error(api.post("/data", data=body, headers=JSON), 400, "at least one field")
    assert_json_error(api.put(f"/data/{rid}", data=body, headers=JSON), 400, "at least one field")
    # A merge patch that would leave nothing is refused too; an empty patch changes nothing.
    assert_json_error(api.patch(f"/data/{rid}", json={"before": None}), 400, "at least one field")
    assert rows(db_path) == before
    assert api.patch(f"/data/{rid}", data=body, headers=JSON).json() == {"id": rid, "data": {"before": True}}


# -- GET /data -------------------------------------------------------------------------------


def test_list_is_in_id_order_with_limit_after_and_offset(api):
    assert api.get("/data").json() == []
    for n in range(5):
        api.create({"n": n})
    assert api.delete("/data/3").status_code == 204  # a gap in the ids keeps the order

    everything = api.get("/data")
    assert everything.status_code == 200
    assert everything.json() == [{"id": i, "data": {"n": i - 1}} for i in (1, 2, 4, 5)]
    assert "Link" not in everything.headers  # nothing more to fetch

    def ids(query: str) -> list[int]:
        res = api.get("/data" + query)
        assert res.status_code == 200, res.text
        return [record["id"] for record in res.json()]

    assert ids("?limit=2") == [1, 2]
    assert ids("?offset=2") == [4, 5]
    assert ids("?limit=2&offset=1") == [2, 4]
    assert ids("?after=2") == [4, 5]
    assert ids("?after=3") == [4, 5]  # a deleted record is still a place to continue from
    assert ids("?after=4&limit=1") == [5]
    assert ids("?after=5") == []
    assert api.get("/data?limit=0").status_code == 400  # an empty page would look like the end
    assert ids("?offset=4") == []
    assert ids("?offset=1000000") == []
    assert ids("?limit=&offset=&after=") == [1, 2, 4, 5]  # empty means the default
    assert ids("?limit=007") == [1, 2, 4, 5]


def test_a_page_links_to_the_next_until_the_last(api):
    ids = [api.create({"n": n}) for n in range(7)]
    res = api.get("/data?limit=3")
    assert res.headers["Link"] == '</data?after=3&limit=3>; rel="next"'
    seen, pages, url = [], 0, "/data?limit=3"
    while url:
        res = api.get(url)
        seen += [record["id"] for record in res.json()]
        pages += 1
        url = res.links.get("next", {}).get("url")
    assert (seen, pages) == (ids, 3)
    # A last page that is full has no next link either: the server looked one record further.
    last = api.get("/data?after=6&limit=1")
    assert (last.json(), "Link" in last.headers) == ([{"id": 7, "data": {"n": 6}}], False)
    assert api.get("/data?after=5&limit=1").headers["Link"] == '</data?after=6&limit=1>; rel="next"'
    # HEAD says the same in its headers.
    head = api.request("HEAD", "/data?limit=3")
    assert (head.status_code, head.content, head.headers["Link"]) == (200, b"", '</data?after=3&limit=3>; rel="next"')


def test_list_limit_defaults_to_100_and_is_capped_at_1000(api, app):
    store = app.locals["store"]
    for n in range(1005):  # straight into the store: 1005 HTTP round trips would only be slow
        store.create({"n": n})

    def ids(query: str) -> list[int]:
        res = api.get("/data" + query)
        assert res.status_code == 200, res.text
        return [record["id"] for record in res.json()]

    assert ids("") == list(range(1, 101))
    assert ids("?limit=1000") == list(range(1, 1001))
    assert ids("?limit=1001") == list(range(1, 1001))
    assert ids("?limit=" + "9" * 40) == list(range(1, 1001))  # far past 64 bits: still the cap
    assert api.get("/data?limit=5000").headers["Link"] == '</data?after=1000&limit=1000>; rel="next"'
    assert ids("?offset=1000") == list(range(1001, 1006))
    assert ids("?limit=3&offset=998") == [999, 1000, 1001]
    assert len(all_records(api)) == 1005


def test_a_page_is_bounded_in_bytes_and_always_holds_one_record(api, app, crud):
    store = app.locals["store"]
    pad = "x" * (crud.MAX_RECORD_SIZE - len('{"pad":""}'))  # records of the largest size
    count = crud.MAX_PAGE_SIZE // crud.MAX_RECORD_SIZE * 2 + 1  # two pages and a bit, in bytes
    for _ in range(count):
        store.create({"pad": pad})
    assert store.page(0, 0, 1000)[0][0] == {"id": 1, "data": {"pad": pad}}

    sizes, seen, url = [], [], "/data?limit=1000"
    while url:
        res = api.get(url)
        assert res.status_code == 200
        assert len(res.content) <= crud.MAX_PAGE_SIZE
        sizes.append(len(res.json()))
        seen += [record["id"] for record in res.json()]
        url = res.links.get("next", {}).get("url")
    assert seen == list(range(1, count + 1))
    assert len(sizes) == 3 and sizes[0] == sizes[1] > 1, sizes


# -- GET, PUT, PATCH, DELETE /data/:id -------------------------------------------------------


def test_get_one_record_or_404(api):
    rid = api.create({"name": "Ada"})
    assert api.get(f"/data/{rid}").json() == {"id": rid, "data": {"name": "Ada"}}
    assert_json_error(api.get("/data/999"), 404, "999")
    assert_json_error(api.get("/data/0"), 404)


def test_put_replaces_the_whole_record(api):
    rid = api.create({"name": "Ada", "born": 1815})
    res = api.put(f"/data/{rid}", json={"name": "Ada Lovelace"})
    assert res.status_code == 200
    assert res.json() == {"id": rid, "data": {"name": "Ada Lovelace"}}
    assert api.get(f"/data/{rid}").json() == {"id": rid, "data": {"name": "Ada Lovelace"}}
    assert_json_error(api.put("/data/999", json={"x": 1}), 404, "999")
    assert api.get("/data").json() == [{"id": rid, "data": {"name": "Ada Lovelace"}}]  # no upsert


def test_patch_merges_nested_objects_and_null_deletes(api):
    rid = api.create({"name": "Ada", "born": 1815, "tags": ["a", "b"],
                      "address": {"city": "London", "street": "St James's Square", "no": 12}})
    patch = {"born": None, "tags": ["c"], "address": {"no": None, "city": "Marylebone"},
             "title": {"of": "Lovelace"}, "absent": None}
    res = api.patch(f"/data/{rid}", json=patch)
    expected = {"name": "Ada", "tags": ["c"], "address": {"city": "Marylebone", "street": "St James's Square"},
                "title": {"of": "Lovelace"}}
    assert res.status_code == 200
    assert res.json() == {"id": rid, "data": expected}
    assert api.get(f"/data/{rid}").json() == {"id": rid, "data": expected}

    # RFC 7396's own media type works as well as application/json.
    res = api.patch(f"/data/{rid}", data=b'{"title": null}',
                    headers={"Content-Type": "application/merge-patch+json"})
    assert res.status_code == 200, res.text
    assert "title" not in res.json()["data"]
    assert_json_error(api.patch("/data/999", json={"x": 1}), 404, "999")


# RFC 7396 Appendix A, the cases whose target and patch are objects (a record is an object).
RFC7396_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({"z": 0}, {"a": {"bb": {"ccc": None}}}, {"z": 0, "a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7396_CASES)
def test_patch_follows_the_rfc_7396_examples(api, target, patch, expected):
    rid = api.create(target)
    res = api.patch(f"/data/{rid}", json=patch)
    assert (res.status_code, res.json()) == (200, {"id": rid, "data": expected})


def test_delete_answers_204_then_404(api):
    rid = api.create({"doomed": True})
    keep = api.create({"kept": True})
    res = api.delete(f"/data/{rid}")
    assert res.status_code == 204
    assert res.content == b""
    assert_json_error(api.get(f"/data/{rid}"), 404)
    assert_json_error(api.delete(f"/data/{rid}"), 404)
    assert_json_error(api.put(f"/data/{rid}", json={"back": True}), 404)
    assert_json_error(api.patch(f"/data/{rid}", json={"back": True}), 404)
    assert api.get("/data").json() == [{"id": keep, "data": {"kept": True}}]


def test_the_id_of_a_deleted_record_is_never_reused(api):
    first = api.create({"n": 1})
    last = api.create({"n": 2})
    assert api.delete(f"/data/{last}").status_code == 204
    newer = api.create({"n": 3})
    assert newer > last > first
    assert_json_error(api.get(f"/data/{last}"), 404)  # still gone: not someone else's record


# -- bodies that are not records: refused before anything is written ------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("body", [b'{"name": ', b"{'single': 1}", b"not json", b'{"a": 1} trailing', b"\xff\xfe"])
def test_malformed_json_is_a_400(api, db_path, method, body):
    rid = api.create({"before": True})
    path = "/data" if method == "POST" else f"/data/{rid}"
    assert_json_error(api.request(method, path, data=body, headers=JSON), 400)
    assert rows(db_path) == [(rid, '{"before": true}')]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("body", [[1, 2], "text", 42, 1.5, True, None])
def test_a_body_that_is_not_an_object_is_a_400(api, db_path, method, body):
    rid = api.create({"before": True})
    path = "/data" if method == "POST" else f"/data/{rid}"
    assert_json_error(api.request(method, path, data=json.dumps(body), headers=JSON), 400, "object")
    assert rows(db_path) == [(rid, '{"before": true}')]


# What JSON text can say but a JSON response cannot carry back: numbers that parse as
# infinities, and lone surrogates (UTF-8 has no form for them). Each, stored, would make the
# write's own answer (and every later list) a 500.
UNWRITABLE = [
    b'{"big": 1e400}', b'{"small": -1e999}', b'{"deep": {"list": [1, 2E+309]}}',
    b'{"s": "\\ud800"}', b'{"s": "tail \\udfff"}', b'{"\\udc00": 1}', b'{"a": ["ok", {"b": "\\ud83d"}]}',
]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("body", UNWRITABLE)
def test_a_record_json_cannot_carry_back_is_a_400_and_writes_nothing(api, db_path, method, body):
    rid = api.create({"before": True})
    path = "/data" if method == "POST" else f"/data/{rid}"
    # The example's message, or the body parser's if it refuses such JSON itself.
    assert_json_error(api.request(method, path, data=body, headers=JSON), 400)
    assert rows(db_path) == [(rid, '{"before": true}')]
    assert api.get("/data").json() == [{"id": rid, "data": {"before": True}}]
    # A pair of surrogates is one character: that is fine.
    res = api.request(method, path, data=b'{"emoji": "\\ud83d\\ude00"}', headers=JSON)
    assert res.status_code in (200, 201), res.text
    assert all_records(api)[int(res.headers.get("Location", path).rsplit("/", 1)[1])]["emoji"] == "\U0001f600"


@pytest.mark.parametrize("data", [
    {"big": float("inf")}, {"n": [1, float("-inf")]}, {"nan": float("nan")},
    {"s": "\ud800"}, {"\udfff": 1}, {"deep": {"s": ["x\udc00"]}},
])
def test_the_store_refuses_such_a_record_whoever_parsed_it(app, db_path, data):
    # The example's own guard, whatever the body parser lets through.
    store = app.locals["store"]
    rid = store.create({"before": True})
    for write in (lambda: store.create(data), lambda: store.replace(rid, data), lambda: store.update(rid, data)):
        with pytest.raises(HTTPError) as refused:
            write()
        assert refused.value.status == 400
    assert rows(db_path) == [(rid, '{"before": true}')]


def test_a_record_over_the_size_limit_is_a_413_and_writes_nothing(api, crud, db_path):
    assert crud.BODY_LIMIT <= crud.MAX_RECORD_SIZE < crud.SERVER_MAX_BODY
    prefix, suffix = b'{"pad":"', b'"}'

    def body(size: int) -> bytes:
        return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix

    rid = api.create({"before": True})
    before = rows(db_path)
    for size in (crud.MAX_RECORD_SIZE + 1, crud.SERVER_MAX_BODY + 1):  # the parser's, the server's
        for method, path in (("POST", "/data"), ("PUT", f"/data/{rid}"), ("PATCH", f"/data/{rid}")):
            assert_json_error(api.request(method, path, data=body(size), headers=JSON), 413)
    # A small body can make a large record: 1e5 is written back as 100000.0.
    numbers = b'{"n":[' + b",".join([b"1e5"] * (crud.MAX_RECORD_SIZE // 8)) + b"]}"
    assert len(numbers) < crud.MAX_RECORD_SIZE
    assert_json_error(api.post("/data", data=numbers, headers=JSON), 413, "at most")
    # And so can a merge: the record fits, the patch fits, the two together do not.
    most = "y" * (crud.MAX_RECORD_SIZE * 3 // 5)
    assert api.put(f"/data/{rid}", json={"a": most}).status_code == 200
    before = rows(db_path)
    assert_json_error(api.patch(f"/data/{rid}", json={"b": most}), 413, "at most")
    assert rows(db_path) == before
    # Exactly at the limit is still a record.
    res = api.post("/data", data=body(crud.MAX_RECORD_SIZE), headers=JSON)
    assert res.status_code == 201, res.text
    assert len(api.get(res.headers["Location"]).json()["data"]["pad"]) == crud.MAX_RECORD_SIZE - 10


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("raw_id", ["abc", "1.5", "-1", "1e3", "0x1", "%D9%A1", "%20", "9" * 19])
def test_an_id_that_is_not_an_integer_is_a_400(api, method, raw_id):
    rid = api.create({"before": True})
    kwargs = {"json": {"x": 1}} if method in ("PUT", "PATCH") else {}
    assert_json_error(api.request(method, f"/data/{raw_id}", **kwargs), 400, "id")
    assert api.get(f"/data/{rid}").json() == {"id": rid, "data": {"before": True}}


@pytest.mark.parametrize("query", [
    "limit=-1", "limit=abc", "limit=1.5", "limit=%D9%A1", "limit=1&limit=2", "limit[a]=1",
    "offset=-1", "offset=x", "offset=1e3", "offset=" + "9" * 19, "offset=" + "1" * 5000,
    "after=-1", "after=x", "after=" + "9" * 19, "after[]=1",
])
def test_bad_paging_is_a_400(api, query):
    api.create({"n": 1})
    message = assert_json_error(api.get("/data?" + query), 400)
    assert query.split("=")[0].split("[")[0] in message


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/octet-stream", "text/json", "text/plain; x=application/json", None,
])
def test_a_body_that_is_not_json_is_a_415(api, db_path, method, content_type):
    # Also what keeps out other sites' forms: they can send only the first three types.
    rid = api.create({"before": True})
    path = "/data" if method == "POST" else f"/data/{rid}"
    headers = {"Content-Type": content_type} if content_type else {}
    assert_json_error(api.request(method, path, data=b'{"a": 1}', headers=headers), 415)
    assert rows(db_path) == [(rid, '{"before": true}')]


# -- a write is committed with a 2xx, or not made with an error ------------------------------


class Raw(str):
    """JSON text written as it is into a generated body."""


def to_json(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{to_json(key)}:{to_json(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(item) for item in value) + "]"
    return json.dumps(value)


ODD = st.sampled_from([Raw(t) for t in (
    "1e400", "-1e999", "1E5", '"\\ud800"', '"x\\udfff"', '"\\ud83d\\ude00"', '"\\u202e"', "1" * 30, "-0.0",
)])
KEYS = st.one_of(st.text(max_size=4), st.sampled_from([Raw('"\\udc00"'), Raw('"\\u0000"')]))
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                   st.text(max_size=8), ODD)
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(KEYS, inner, max_size=3)), max_leaves=8)
BODIES = st.one_of(
    st.dictionaries(KEYS, VALUES, max_size=4).map(to_json),
    VALUES.map(to_json),
    st.sampled_from(['{"pad":"' + "z" * (70 * KB) + '"}', '{"n":[' + ",".join(["1e5"] * 9000) + "]}", "{", ""]),
)
WRITES = st.tuples(
    st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]),
    st.integers(0, 3),  # which stored record (3: one that does not exist)
    BODIES,
    st.sampled_from(["application/json", "application/merge-patch+json", "text/plain"]),
)


def test_every_write_is_committed_with_a_2xx_or_not_made_with_an_error(crud, db_path):
    """Whatever the body: never a 5xx, nothing written unless the answer is a 2xx, and the
    record a 2xx reports is the one stored; the list keeps working after every write."""
    app = crud.create_app(str(db_path))
    try:
        with serving(app, max_body_size=crud.SERVER_MAX_BODY) as api:

            @settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
            @given(WRITES)
            def check(write: tuple[str, int, str, str]) -> None:
                method, which, body, content_type = write
                while len(rows(db_path)) < 3:
                    api.create({"seed": True})
                before = rows(db_path)
                rid = before[which][0] if which < 3 else before[-1][0] + 1000
                path = "/data" if method == "POST" else f"/data/{rid}"
                res = api.request(method, path, data=body.encode("utf-8", "surrogatepass"),
                                  headers={"Content-Type": content_type})
                after = rows(db_path)
                assert res.status_code < 500, (res.status_code, res.text)
                if res.status_code >= 300:
                    assert after == before, (method, body, res.status_code)
                elif method == "POST":
                    new_id = res.json()["id"]
                    assert [row[0] for row in after] == [row[0] for row in before] + [new_id]
                    assert api.get(f"/data/{new_id}").status_code == 200
                elif method == "DELETE":
                    assert [row[0] for row in after] == [row[0] for row in before if row[0] != rid]
                else:
                    assert api.get(path).json() == res.json()
                assert api.get("/data?limit=1000").status_code == 200

            check()
    finally:
        app.locals["store"].close()


def test_a_database_error_rolls_the_whole_write_back(api, db_path, caplog):
    rid = api.create({"before": True})
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        # FAIL keeps what the statement did so far: outside a transaction, that is committed.
        conn.execute("CREATE TRIGGER broken_update AFTER UPDATE ON records "
                     "BEGIN SELECT RAISE(FAIL, 'disk on fire'); END")
        conn.execute("CREATE TRIGGER broken_insert AFTER INSERT ON records "
                     "BEGIN SELECT RAISE(FAIL, 'disk on fire'); END")
    with caplog.at_level(logging.ERROR, logger="crud"):
        for method, path in (("PUT", f"/data/{rid}"), ("PATCH", f"/data/{rid}"), ("POST", "/data")):
            res = api.request(method, path, json={"after": True})
            assert (res.status_code, res.json()) == (500, {"error": "Internal Server Error"})
            assert "disk on fire" not in res.text
        wait_until(lambda: sum("disk on fire" in str(r.exc_info[1]) for r in caplog.records if r.exc_info) >= 3,
                   message="the 500s were not logged with their traces")
    assert rows(db_path) == [(rid, '{"before": true}')]
    assert api.get("/data").json() == [{"id": rid, "data": {"before": True}}]


def test_a_database_locked_by_another_program_is_a_503_and_writes_nothing(api, app, db_path):
    rid = api.create({"before": True})
    app.locals["store"].close()
    app.locals["store"].busy_timeout = 0.05  # reopened with it on the next request
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        for method, path in (("POST", "/data"), ("PUT", f"/data/{rid}"), ("PATCH", f"/data/{rid}"),
                             ("DELETE", f"/data/{rid}")):
            res = api.request(method, path, json={"after": True})
            assert_json_error(res, 503)
            assert res.headers["Retry-After"] == "1"
        assert api.get("/data").json() == [{"id": rid, "data": {"before": True}}]  # reads go on
        other.execute("ROLLBACK")
    assert api.put(f"/data/{rid}", json={"after": True}).status_code == 200


def test_an_unexpected_error_is_a_500_json_without_details(api, app, caplog):
    store = app.locals["store"]

    def broken(after: int, offset: int, limit: int) -> Any:
        raise RuntimeError("secret detail: database on fire")

    store.page = broken
    with caplog.at_level(logging.ERROR):
        res = api.get("/data")
        assert_json_error(res, 500)
        assert res.json() == {"error": "Internal Server Error"}
        assert "secret" not in res.text
        wait_until(lambda: any(r.exc_info and "on fire" in str(r.exc_info[1]) for r in caplog.records),
                   message="the 500 was not logged with its trace")


# -- methods and paths -----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/data", "GET, HEAD, POST"), ("DELETE", "/data", "GET, HEAD, POST"),
    ("PATCH", "/data/", "GET, HEAD, POST"), ("PROPFIND", "/data", "GET, HEAD, POST"),
    ("POST", "/data/1", "GET, HEAD, PUT, PATCH, DELETE"), ("POST", "/data/999", "GET, HEAD, PUT, PATCH, DELETE"),
    ("POST", "/", "GET, HEAD"), ("DELETE", "/echo", "GET, HEAD"), ("PUT", "/user/7", "GET, HEAD"),
    ("POST", "/static/app.js", "GET, HEAD"), ("DELETE", "/static/style.css", "GET, HEAD"),
])
def test_a_method_a_path_does_not_answer_is_a_405_with_allow(api, db_path, method, path, allow):
    api.create({"before": True})
    res = api.request(method, path, json={"x": 1})
    assert_json_error(res, 405)
    assert set(res.headers["Allow"].split(", ")) == set(allow.split(", "))
    assert rows(db_path) == [(1, '{"before": true}')]


@pytest.mark.parametrize(("path", "allow"), [
    ("/data", "GET, HEAD, POST"), ("/data/1", "GET, HEAD, PUT, PATCH, DELETE"), ("/", "GET, HEAD"),
])
def test_options_lists_the_methods(api, path, allow):
    res = api.request("OPTIONS", path)
    assert (res.status_code, res.content) == (204, b"")
    assert set(res.headers["Allow"].split(", ")) == set(allow.split(", "))


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/nope"), ("POST", "/nope"), ("GET", "/data/1/more"), ("DELETE", "/data/1/more"),
    ("GET", "/static/nope.js"), ("GET", "/static/../crud.py"), ("GET", "/datax"),
])
def test_paths_that_do_not_exist_are_404_json(api, method, path):
    assert_json_error(api.request(method, path, json={"x": 1}), 404)


# -- other sites' pages: no CORS, no forged writes, no framing -------------------------------


EVIL = "https://evil.example"


@pytest.mark.parametrize("path", ["/data", "/data/1", "/echo?message=hi", "/nope", "/static/style.css", "/"])
def test_no_cors_headers_so_other_sites_cannot_read(api, path):
    api.create({"n": 1})
    res = api.get(path, headers={"Origin": EVIL})
    assert not [name for name in res.headers if name.lower().startswith("access-control-")], res.headers


@pytest.mark.parametrize("method", ["DELETE", "PUT", "POST"])
def test_a_preflight_from_another_site_is_not_granted(api, method):
    res = api.request("OPTIONS", "/data/1", headers={
        "Origin": EVIL, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type",
    })
    assert res.status_code == 204  # an OPTIONS like any other: the browser then sends nothing
    assert not [name for name in res.headers if name.lower().startswith("access-control-")], res.headers


@pytest.mark.parametrize("headers", [
    {"Origin": EVIL}, {"Origin": "null"}, {"Origin": "http://127.0.0.1:1"},
    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://test"},  # Sec-Fetch-Site decides
])
def test_a_write_from_another_sites_page_is_a_403(api, db_path, headers):
    rid = api.create({"before": True})
    for method, path in (("POST", "/data"), ("PUT", f"/data/{rid}"), ("PATCH", f"/data/{rid}"),
                         ("DELETE", f"/data/{rid}")):
        assert_json_error(api.request(method, path, json={"forged": True}, headers=headers), 403)
    assert rows(db_path) == [(rid, '{"before": true}')]
    assert api.get("/data", headers=headers).status_code == 200  # reading is not a write


def test_writes_from_the_servers_own_pages_and_from_programs_are_accepted(api):
    host = api.url.split("//", 1)[1]
    for headers in ({}, {"Origin": api.url}, {"Origin": "HTTP://" + host.upper()},
                    {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
                    {"Sec-Fetch-Site": "same-origin", "Origin": "https://behind.a.proxy.example"}):
        res = api.post("/data", json={"ok": True}, headers=headers)
        assert res.status_code == 201, (headers, res.text)
        assert api.delete(res.headers["Location"], headers=headers).status_code == 204


@pytest.mark.parametrize("path", ["/", "/static/index.html", "/echo?message=<b>hi</b>", "/data"])
def test_the_page_cannot_be_framed_nor_a_response_sniffed(api, path):
    res = api.get(path)
    assert res.status_code == 200
    assert "frame-ancestors 'none'" in res.headers["Content-Security-Policy"]
    assert res.headers["X-Content-Type-Options"] == "nosniff"


# -- the demo routes, static files, the access log -------------------------------------------


def test_the_page_is_served_at_the_root(api):
    res = api.get("/")
    assert res.status_code == 200
    assert res.headers["Content-Type"].startswith("text/html")
    assert res.content == (STATIC / "index.html").read_bytes()
    assert '<script src="/static/app.js">' in res.text


@pytest.mark.parametrize(("name", "mime"), [
    ("app.js", ("application/javascript", "text/javascript")), ("style.css", ("text/css",)),
    ("index.html", ("text/html",)),
])
def test_static_files(api, name, mime):
    res = api.get(f"/static/{name}")
    assert res.status_code == 200
    assert res.headers["Content-Type"].split(";")[0] in mime
    assert res.content == (STATIC / name).read_bytes()


def test_echo_and_user(api):
    res = api.get("/echo?message=hi")
    assert (res.status_code, res.text) == (200, "Echo: hi")
    assert res.headers["Content-Type"].startswith("text/plain")
    assert api.get("/echo", params={"message": "hello wörld & co"}).text == "Echo: hello wörld & co"
    assert api.get("/echo").text == "Echo: "
    res = api.get("/user/42")
    assert (res.status_code, res.json()) == (200, {"user_id": "42"})
    assert api.get("/user/ada%20l").json() == {"user_id": "ada l"}


def test_the_access_logger_is_on(api, caplog):
    caplog.set_level(logging.INFO, logger="evserve.access")
    api.get("/echo?message=logged")
    api.create({"n": 1})
    lines = wait_until(lambda: (found := [r.getMessage() for r in caplog.records if r.name == "evserve.access"])
                       and len(found) >= 2 and found)
    assert lines[0].startswith("GET /echo?message=logged 200 ")
    assert lines[1].startswith("POST /data 201 ")


def test_keep_alive_pipelined_requests_are_answered_in_order(crud, app):
    with app.run_in_thread(max_body_size=crud.SERVER_MAX_BODY) as server, RawClient(server) as client:
        body = b'{"k": 1}'
        client.send(b"POST /data HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                    + b"GET /data/1 HTTP/1.1\r\nHost: t\r\n\r\n"
                    + b"DELETE /data/1 HTTP/1.1\r\nHost: t\r\n\r\n"
                    + b"GET /data/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        statuses = [res.status for res in client.read_responses(4)]
        assert statuses == [201, 200, 204, 404]


# -- the database: CRUD_DB, :memory:, no stray files -----------------------------------------


def test_the_module_level_app_uses_crud_db(crud, tmp_path):
    db = Path(crud.app.locals["store"].path)
    assert db.name == "module.sqlite3"  # the fixture's CRUD_DB, read at import
    with serving(crud.app) as api:
        rid = api.create({"from": "the module-level app"})
        assert api.get(f"/data/{rid}").json()["data"] == {"from": "the module-level app"}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT id, data FROM records").fetchall()
    assert (rid, json.dumps({"from": "the module-level app"})) in rows


def test_importing_the_example_creates_no_database_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRUD_DB", raising=False)
    module = load_crud("crud_example_import_check")
    try:
        assert module.default_db() == "crud.sqlite3"
        assert callable(module.app) and callable(module.main)
        assert list(tmp_path.iterdir()) == []  # opened on first use, not at import
    finally:
        module.app.locals["store"].close()


def test_an_in_memory_database_works(crud):
    app = crud.create_app(":memory:")
    try:
        with serving(app) as api:
            rid = api.create({"volatile": True})
            assert api.get("/data").json() == [{"id": rid, "data": {"volatile": True}}]
    finally:
        app.locals["store"].close()


# -- the example as a process: restart and SIGTERM ---------------------------------------------


class Example:
    """``python examples/crud.py --port 0 [--db FILE]`` with its log in a file; ``url`` once up."""

    def __init__(self, db: Path | None, workdir: Path, name: str) -> None:
        self.log_path = workdir / f"{name}.log"
        db_args = ["--db", str(db)] if db is not None else []
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(CRUD_PY), "--port", "0", *db_args],
                cwd=str(workdir), env=subprocess_env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.url = wait_until(self._listening, message="the example did not start")
        except BaseException:
            stop_process(self.proc)
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _listening(self) -> str | None:
        found = re.search(r"listening on (http://\S+)", self.log())
        if found:
            return found.group(1)
        if self.proc.poll() is not None:
            raise AssertionError(f"the example exited with {self.proc.returncode}:\n{self.log()}")
        return None

    def terminate(self) -> int:
        """SIGTERM, then the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(DEADLINE)

    def close(self) -> None:
        stop_process(self.proc)


@contextlib.contextmanager
def example(db: Path | None, workdir: Path, name: str) -> Iterator[Example]:
    running = Example(db, workdir, name)
    try:
        yield running
    finally:
        running.close()


def test_records_survive_a_restart_of_the_server_process(tmp_path):
    db = tmp_path / "restart.sqlite3"
    with example(db, tmp_path, "first") as first:
        with requests.Session() as session:
            api = Api(first.url, session)
            ids = [api.create({"n": n}) for n in range(3)]
            assert api.put(f"/data/{ids[0]}", json={"replaced": True}).status_code == 200
            assert api.patch(f"/data/{ids[1]}", json={"n": None, "patched": 1}).status_code == 200
            assert api.delete(f"/data/{ids[2]}").status_code == 204
        assert first.terminate() == 0, first.log()
    assert "shutting down" in first.log()

    with example(db, tmp_path, "second") as second:
        with requests.Session() as session:
            api = Api(second.url, session)
            assert api.get("/data").json() == [
                {"id": ids[0], "data": {"replaced": True}},
                {"id": ids[1], "data": {"patched": 1}},
            ]
            assert api.create({"after": "restart"}) == ids[2] + 1  # ids are never reused...
            assert api.get("/").status_code == 200
        assert second.terminate() == 0, second.log()
    # ... and --db is the only database: nothing was created in the working directory.
    assert sorted(p.name for p in tmp_path.iterdir() if "sqlite" in p.name and not p.name.startswith("restart")) == []


WRITERS = 4
MAX_WRITES = 20_000  # per writer: a bound that the SIGTERM always comes well before


def test_sigterm_during_a_burst_of_writes_loses_no_acknowledged_record(tmp_path):
    db = tmp_path / "burst.sqlite3"
    acknowledged: dict[int, dict[str, int]] = {}
    other_answers: list[int] = []
    exhausted: list[int] = []
    lock = threading.Lock()
    give_up = threading.Event()  # only if the test fails before the signal

    with example(db, tmp_path, "burst") as server:
        url = server.url + "/data"

        def writer(number: int) -> None:
            with requests.Session() as session:
                for seq in range(MAX_WRITES):
                    if give_up.is_set():
                        return
                    payload = {"writer": number, "seq": seq}
                    try:
                        res = session.post(url, json=payload, timeout=DEADLINE)
                    except requests.RequestException:
                        return  # the server has gone: the burst ends here
                    with lock:
                        if res.status_code == 201:
                            acknowledged[res.json()["id"]] = payload
                        else:
                            other_answers.append(res.status_code)
                            return
                exhausted.append(number)

        threads = [threading.Thread(target=writer, args=(n,), name=f"writer-{n}") for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: len(acknowledged) >= 300, message="the writers made no progress")
            status = server.terminate()  # mid-burst: every writer is still sending
        finally:
            give_up.set()
            for thread in threads:
                thread.join(DEADLINE)
        assert not any(thread.is_alive() for thread in threads)
        assert status == 0, server.log()
        assert exhausted == [], "a writer finished before the SIGTERM: the burst was not interrupted"
        assert set(other_answers) <= {503}, other_answers

    with example(db, tmp_path, "after-burst") as restarted:
        with requests.Session() as session:
            stored = all_records(Api(restarted.url, session))
        assert restarted.terminate() == 0
    missing = {rid: data for rid, data in acknowledged.items() if stored.get(rid) != data}
    assert missing == {}, f"{len(missing)} acknowledged records lost, e.g. {list(missing.items())[:3]}"
    # Anything stored beyond the acknowledged ones was committed but its answer was cut off.
    assert len(stored) >= len(acknowledged) >= 300


def git_ignores(name: str) -> bool:
    """Whether the repository's .gitignore ignores a file ``name`` at its root: git's own answer
    where git and the repository are there, else the .gitignore's plain name patterns."""
    git = shutil.which("git")
    if git is not None:
        done = subprocess.run([git, "check-ignore", "--no-index", "-q", name], cwd=ROOT,
                              capture_output=True, timeout=DEADLINE, check=False)
        if done.returncode in (0, 1):
            return done.returncode == 0
    patterns = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()]
    return any(fnmatch.fnmatchcase(name, p) for p in patterns if p and not p.startswith(("#", "!")))


def test_the_files_the_example_writes_are_ignored_by_git(tmp_path):
    # Run from a checkout, the example writes crud.sqlite3 and, in WAL mode, its -wal and -shm
    # files into the working directory: none of them may show up in git status.
    with example(None, tmp_path, "gitignore") as running:
        with requests.Session() as session:
            Api(running.url, session).create({"n": 1})
        written = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".log"))
        assert {"crud.sqlite3", "crud.sqlite3-wal", "crud.sqlite3-shm"} <= set(written), written
        assert running.terminate() == 0, running.log()
    for name in (*written, "crud.sqlite3-journal", "records.sqlite3-wal"):
        assert git_ignores(name), f"{name} is not in .gitignore"



def test_integers_javascript_would_round_are_refused(api):
    # The page reads records with JSON.parse: 2**53 and above would come back rounded.
    for value in (2**53, -(2**53), 12345678901234567890):
        res = api.post("/data", json={"big": value})
        assert res.status_code == 400, value
        assert "integers" in res.json()["error"]
    assert api.post("/data", json={"ok": 2**53 - 1, "neg": -(2**53 - 1), "f": 1e300}).status_code == 201


def test_a_zero_limit_is_a_400(api):
    api.create({"a": 1})
    assert api.get("/data?limit=0").status_code == 400


def test_the_next_link_of_an_absolute_form_request_stays_on_this_server(api):
    for i in range(3):
        api.create({"n": i})
    host, port = api.url.split("//")[1].split(":")
    with RawClient((host, int(port))) as client:
        client.send(b"GET http://evil.example/data?limit=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        link = client.read_response().header("Link")
    assert link is not None and "evil.example" not in link and link.startswith("</data?after=")
