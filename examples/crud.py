"""The example CRUD server: JSON records in SQLite, a browser page, and the demo routes.

Run it with ``python examples/crud.py [--host H] [--port 8080] [--db PATH]`` and open
http://127.0.0.1:8080/. The database is ``--db``, else the ``CRUD_DB`` environment variable,
else ``crud.sqlite3`` in the current directory (``:memory:`` works too).

The resource::

    POST   /data        a JSON object -> 201 {"id": n}, Location: /data/n
    GET    /data        [{"id": n, "data": {...}}, ...] in id order; ?limit= (100, max 1000), ?offset=
    GET    /data/:id    {"id": n, "data": {...}}
    PUT    /data/:id    replace -> 200 with the record
    PATCH  /data/:id    merge (RFC 7396 JSON merge patch) -> 200 with the record
    DELETE /data/:id    204

Bodies are ``application/json`` (or any ``+json`` type, such as RFC 7396's
``application/merge-patch+json``). Every error is JSON: ``{"error": "..."}`` with 400 (malformed
JSON, not an object, bad id or paging), 404 (no such record or route), 413 (body over the limit),
415 (unsupported body type), or 500 (the trace is logged; the client sees only the reason phrase).
A write is committed before its response is sent, so an acknowledged record survives a
``kill -TERM`` of the server and a restart. SQLite calls on a local file take microseconds, so
the handlers make them directly on the reactor; put slow work in ``evserve.to_thread``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from evserve import App, HTTPError, body_parser, cors, logger, static
from evserve.status import reason_phrase

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
BODY_LIMIT = "1mb"  # the JSON body limit; the server's own limit (max_body_size) sits above it
SERVER_MAX_BODY = 8 * 1024 * 1024
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_DIGITS = 18  # integers SQLite can hold (64-bit), and well inside int()'s own digit limit
JSON_TYPES = ["application/json", "+json"]  # +json: RFC 7396's application/merge-patch+json too
log = logging.getLogger("crud")


def default_db() -> str:
    """The database path: ``CRUD_DB`` from the environment, else ``crud.sqlite3``."""
    return os.environ.get("CRUD_DB") or "crud.sqlite3"


class Store:
    """JSON records in one SQLite table; every write is committed before it returns.

    The database is opened on first use (or by ``open()``), so importing this module for its
    ``app`` creates no file until a request needs one.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()  # one connection, used from the reactor thread
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db

    def open(self) -> None:
        """Open (and if need be create) the database now; a second call does nothing."""
        if self._db is not None:
            return
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            if self.path != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
            # AUTOINCREMENT: the id of a deleted record is never given to another one.
            db.execute(
                "CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY AUTOINCREMENT, data TEXT NOT NULL)"
            )
        except BaseException:
            db.close()
            raise
        self._db = db

    def create(self, data: dict[str, Any]) -> int:
        with self._lock:
            cursor = self.db.execute("INSERT INTO records (data) VALUES (?)", (json.dumps(data),))
            return int(cursor.lastrowid or 0)

    def list(self, limit: int, offset: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute(
                "SELECT id, data FROM records ORDER BY id LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return [{"id": row[0], "data": json.loads(row[1])} for row in rows]

    def get(self, record_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute("SELECT data FROM records WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def replace(self, record_id: int, data: dict[str, Any]) -> bool:
        with self._lock:
            cursor = self.db.execute(
                "UPDATE records SET data = ? WHERE id = ?", (json.dumps(data), record_id)
            )
            return cursor.rowcount > 0

    def delete(self, record_id: int) -> bool:
        with self._lock:
            return self.db.execute("DELETE FROM records WHERE id = ?", (record_id,)).rowcount > 0

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7396 JSON merge patch: objects merge, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def record_id(req: Any) -> int:
    """The ``:id`` param as a positive integer, or a 400."""
    raw = req.params["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > MAX_DIGITS:
        raise HTTPError(400, f"id must be a positive integer, not {raw!r}")
    return int(raw)


def json_object(req: Any) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    if not req.is_type(JSON_TYPES):
        raise HTTPError(415, "send the record as application/json")
    if not isinstance(req.body, dict):
        raise HTTPError(400, "the body must be a JSON object")
    return req.body


def query_int(req: Any, name: str, default: int, maximum: int | None = None) -> int:
    """A non-negative integer query parameter (capped at ``maximum``), or a 400."""
    raw = req.query.get(name)
    if raw is None or raw == "":
        return default
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit():
        raise HTTPError(400, f"{name} must be a non-negative integer")
    if len(raw.lstrip("0")) > MAX_DIGITS:
        if maximum is None:
            raise HTTPError(400, f"{name} is too large")
        return maximum
    value = int(raw)
    return min(value, maximum) if maximum is not None else value


def create_app(db_path: str | None = None) -> App:
    """Build the example application on the database at ``db_path`` (default: ``default_db()``)."""
    store = Store(db_path or default_db())
    app = App()
    app.locals["store"] = store

    app.use(logger("dev"))
    app.use(cors())
    app.use("/static", static(str(STATIC_DIR)))

    @app.get("/")
    def index(req, res):
        res.send_file(str(STATIC_DIR / "index.html"))

    @app.get("/echo")
    def echo(req, res):
        res.type("text").send(f"Echo: {req.query.get('message', '')}")

    @app.get("/user/:id")
    def user(req, res):
        res.json({"user_id": req.params["id"]})

    def create(req, res):
        new_id = store.create(json_object(req))
        res.status(201).location(f"/data/{new_id}").json({"id": new_id})

    def list_records(req, res):
        limit = query_int(req, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        offset = query_int(req, "offset", 0)
        res.json(store.list(limit, offset))

    def show(req, res):
        rid = record_id(req)
        found = store.get(rid)
        if found is None:
            raise HTTPError(404, f"no record {rid}")
        res.json({"id": rid, "data": found})

    def replace(req, res):
        rid = record_id(req)
        body = json_object(req)
        if not store.replace(rid, body):
            raise HTTPError(404, f"no record {rid}")
        res.json({"id": rid, "data": body})

    def update(req, res):
        rid = record_id(req)
        patch = json_object(req)
        found = store.get(rid)
        if found is None:
            raise HTTPError(404, f"no record {rid}")
        merged = merge_patch(found, patch)
        store.replace(rid, merged)
        res.json({"id": rid, "data": merged})

    def remove(req, res):
        rid = record_id(req)
        if not store.delete(rid):
            raise HTTPError(404, f"no record {rid}")
        res.status(204).end()

    json_body = body_parser.json(limit=BODY_LIMIT, type=JSON_TYPES)
    app.route("/data").all(json_body).post(create).get(list_records)
    app.route("/data/:id").all(json_body).get(show).put(replace).patch(update).delete(remove)

    def not_found(req, res, next):
        raise HTTPError(404, f"Cannot {req.method} {req.path}")

    def json_errors(err, req, res, next):
        status = getattr(err, "status", 500)
        if not isinstance(status, int) or not 400 <= status <= 599:
            status = 500
        if res.headers_sent:
            next(err)  # too late for a JSON body: the default handler logs it and ends the response
            return
        if status >= 500:  # log the trace; show the client only the reason phrase
            trace = err if isinstance(err, BaseException) else None
            log.error("error on %s %s", req.method, req.original_url, exc_info=trace)
            message = reason_phrase(status)
        else:
            message = getattr(err, "message", None) or str(err)
        res.status(status).json({"error": message})

    app.use(not_found)
    app.use(json_errors)
    return app


app = create_app()


def main(argv: list[str] | None = None) -> None:
    """Run the example server until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description="The evserve example CRUD server.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--db", default=None, help="SQLite file (default $CRUD_DB or crud.sqlite3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    served = create_app(args.db) if args.db else app
    served.locals["store"].open()  # a database that cannot be opened stops us here, not later
    served.listen(args.port, args.host, max_body_size=SERVER_MAX_BODY)


if __name__ == "__main__":
    main()
