"""End to end: examples/crud.py, the CRUD example (issue 6), over real sockets.

The module is imported (with ``CRUD_DB`` at a temporary file) and each test serves its own
``crud.create_app(db)`` with ``run_in_thread``: every route and status of the resource, the demo
routes, CORS and the access log. Then the example as a newcomer runs it, as a process
(``python examples/crud.py --port 0 --db FILE``): records survive a restart, and a SIGTERM in the
middle of a burst of writes loses no record that was acknowledged with a 201.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import re
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

from .conftest import DEADLINE, ROOT, RawClient, stop_process, subprocess_env, wait_until

CRUD_PY = ROOT / "examples" / "crud.py"
STATIC = ROOT / "examples" / "static"
MB = 1 << 20


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
def app(crud: ModuleType, tmp_path: Path) -> Iterator[Any]:
    """A fresh example app on its own database file."""
    application = crud.create_app(str(tmp_path / "records.sqlite3"))
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


def test_an_empty_object_and_a_json_charset_are_accepted(api):
    assert api.create({}) == 1
    res = api.post("/data", data='{"a": "é"}'.encode(),
                   headers={"Content-Type": "application/json; charset=utf-8"})
    assert (res.status_code, res.json()) == (201, {"id": 2})
    assert api.get("/data/2").json() == {"id": 2, "data": {"a": "é"}}


# -- GET /data -------------------------------------------------------------------------------


def test_list_is_in_id_order_with_limit_and_offset(api):
    assert api.get("/data").json() == []
    for n in range(5):
        api.create({"n": n})
    assert api.delete("/data/3").status_code == 204  # a gap in the ids keeps the order

    everything = api.get("/data")
    assert everything.status_code == 200
    assert everything.json() == [{"id": i, "data": {"n": i - 1}} for i in (1, 2, 4, 5)]

    def ids(query: str) -> list[int]:
        res = api.get("/data" + query)
        assert res.status_code == 200, res.text
        return [record["id"] for record in res.json()]

    assert ids("?limit=2") == [1, 2]
    assert ids("?offset=2") == [4, 5]
    assert ids("?limit=2&offset=1") == [2, 4]
    assert ids("?limit=0") == []
    assert ids("?offset=4") == []
    assert ids("?offset=1000000") == []
    assert ids("?limit=&offset=") == [1, 2, 4, 5]  # empty means the default
    assert ids("?limit=007") == [1, 2, 4, 5]


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
    assert ids("?offset=1000") == list(range(1001, 1006))
    assert ids("?limit=3&offset=998") == [999, 1000, 1001]


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
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
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


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("body", [b'{"name": ', b"{'single': 1}", b"not json", b'{"a": 1} trailing', b"\xff\xfe"])
def test_malformed_json_is_a_400(api, method, body):
    rid = api.create({"before": True})
    path = "/data" if method == "POST" else f"/data/{rid}"
    res = api.request(method, path, data=body, headers={"Content-Type": "application/json"})
    assert_json_error(res, 400)
    assert api.get("/data").json() == [{"id": rid, "data": {"before": True}}]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("body", [[1, 2], "text", 42, 1.5, True, None])
def test_a_body_that_is_not_an_object_is_a_400(api, method, body):
    rid = api.create({"before": True})
    path = "/data" if method == "POST" else f"/data/{rid}"
    res = api.request(method, path, data=json.dumps(body), headers={"Content-Type": "application/json"})
    assert_json_error(res, 400, "object")
    assert api.get("/data").json() == [{"id": rid, "data": {"before": True}}]


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
])
def test_bad_paging_is_a_400(api, query):
    api.create({"n": 1})
    message = assert_json_error(api.get("/data?" + query), 400)
    assert query.split("=")[0].split("[")[0] in message


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/nope"), ("GET", "/data/1/more"), ("POST", "/data/1"), ("PUT", "/data"),
    ("DELETE", "/data"), ("PATCH", "/data"), ("GET", "/static/nope.js"), ("GET", "/static/../crud.py"),
])
def test_unknown_routes_are_404_json(api, method, path):
    res = api.request(method, path, json={"x": 1})
    assert_json_error(res, 404)


def test_a_body_over_the_parser_limit_is_a_413_and_stores_nothing(api, crud):
    assert crud.BODY_LIMIT == "1mb" and crud.SERVER_MAX_BODY > MB  # the server lets it through
    prefix, suffix = b'{"pad": "', b'"}'

    def body(size: int) -> bytes:
        return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix

    for method, path in (("POST", "/data"), ("PUT", "/data/1"), ("PATCH", "/data/1")):
        res = api.request(method, path, data=body(MB + 1), headers={"Content-Type": "application/json"})
        assert_json_error(res, 413)
    assert api.get("/data").json() == []
    # Exactly at the limit is still accepted.
    res = api.post("/data", data=body(MB), headers={"Content-Type": "application/json"})
    assert res.status_code == 201, res.text
    assert api.get("/data?limit=1").json()[0]["data"]["pad"] == "x" * (MB - len(prefix) - len(suffix))


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/octet-stream", "text/json", None,
])
def test_a_body_that_is_not_json_is_a_415(api, method, content_type):
    rid = api.create({"before": True})
    path = "/data" if method == "POST" else f"/data/{rid}"
    headers = {"Content-Type": content_type} if content_type else {}
    res = api.request(method, path, data=b'{"a": 1}', headers=headers)
    assert_json_error(res, 415)
    assert api.get("/data").json() == [{"id": rid, "data": {"before": True}}]


def test_an_unexpected_error_is_a_500_json_without_details(api, app, caplog):
    store = app.locals["store"]

    def broken(limit: int, offset: int) -> list[Any]:
        raise RuntimeError("secret detail: database on fire")

    store.list = broken
    with caplog.at_level(logging.ERROR):
        res = api.get("/data")
        assert_json_error(res, 500)
        assert res.json() == {"error": "Internal Server Error"}
        assert "secret" not in res.text
        wait_until(lambda: any(r.exc_info and "on fire" in str(r.exc_info[1]) for r in caplog.records),
                   message="the 500 was not logged with its trace")


# -- the demo routes, static files, CORS, the access log -------------------------------------


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


@pytest.mark.parametrize("path", ["/data", "/data/1", "/echo?message=hi", "/nope", "/static/style.css"])
def test_cors_header_on_every_answer(api, path):
    api.create({"n": 1})
    res = api.get(path, headers={"Origin": "https://elsewhere.example"})
    assert res.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_preflight_for_a_json_write(api):
    res = api.request("OPTIONS", "/data/1", headers={
        "Origin": "https://elsewhere.example",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type",
    })
    assert res.status_code == 204
    assert res.headers["Access-Control-Allow-Origin"] == "*"
    assert "PUT" in res.headers["Access-Control-Allow-Methods"]
    assert "content-type" in res.headers["Access-Control-Allow-Headers"].lower()


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
    """``python examples/crud.py --port 0 --db FILE`` with its log in a file; ``url`` once up."""

    def __init__(self, db: Path, workdir: Path, name: str) -> None:
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(CRUD_PY), "--port", "0", "--db", str(db)],
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
def example(db: Path, workdir: Path, name: str) -> Iterator[Example]:
    running = Example(db, workdir, name)
    try:
        yield running
    finally:
        running.close()


def all_records(api: Api) -> dict[int, Any]:
    """Every record, page by page."""
    found: dict[int, Any] = {}
    while True:
        res = api.get(f"/data?limit=1000&offset={len(found)}")
        assert res.status_code == 200, res.text
        page = res.json()
        found.update((record["id"], record["data"]) for record in page)
        if len(page) < 1000:
            return found


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
