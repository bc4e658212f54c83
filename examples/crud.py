"""The example CRUD server: JSON records in SQLite, a browser page, and the demo routes.

Run it with ``python examples/crud.py [--host H] [--port 8080] [--db PATH]`` and open
http://127.0.0.1:8080/. The database is ``--db``, else the ``CRUD_DB`` environment variable,
else ``crud.sqlite3`` in the current directory (``:memory:`` works too).

The resource::

    POST   /data        a record -> 201 {"id": n}, Location: /data/n
    GET    /data        one page of [{"id": n, "data": {...}}, ...] in id order:
                        ?limit= (1 to 1000, default 100), ?after=ID (records after that id), ?offset=;
                        at most 1 MiB; while more follow, Link: </data?after=ID&limit=N>; rel="next"
    GET    /data/:id    {"id": n, "data": {...}}
    PUT    /data/:id    replace -> 200 with the record
    PATCH  /data/:id    merge (RFC 7396 JSON merge patch) -> 200 with the record
    DELETE /data/:id    204

A record is a JSON object with at least one field, at most 64 KiB as JSON, holding only what
JSON can carry back (no infinite number such as ``1e400``, no lone surrogate such as
``"\\ud800"``). Bodies are ``application/json`` (or any ``+json`` type, such as RFC 7396's
``application/merge-patch+json``). Every error is JSON, ``{"error": "..."}``: 400 (malformed
JSON, not a record, bad id or paging), 403 (a write from another site's page), 404 (no such
record or path), 405 with ``Allow`` (a method the path does not answer), 413 (too large), 415
(not JSON), 503 (the database is locked by another program), 500 (the trace is logged; the
client sees only the reason phrase).

A write is checked completely before it touches the database and runs in one transaction, so
either it is committed and a 2xx follows, or nothing is written and an error follows; an
acknowledged record survives a ``kill -TERM`` of the server and a restart. There is no CORS:
the page is served from the same origin, and a browser sends another site's writes only as
forms (refused with 415) or with ``Origin``/``Sec-Fetch-Site`` headers saying where they come
from (refused with 403). SQLite calls on a local file take microseconds, so the handlers make
them directly on the reactor; put slow work in ``evserve.to_thread``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from evserve import App, HTTPError, body_parser, logger, static
from evserve.status import reason_phrase

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
MAX_RECORD_SIZE = 64 * 1024  # bytes of a record's JSON, as it is sent back
MAX_PAGE_SIZE = 1024 * 1024  # bytes of a GET /data body (a record always fits in one)
BODY_LIMIT = MAX_RECORD_SIZE  # the JSON body limit; the server's own limit sits above it...
SERVER_MAX_BODY = 1024 * 1024  # ...so that a body over it gets this example's JSON 413
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_DIGITS = 18  # integers SQLite can hold (64-bit), and well inside int()'s own digit limit
# The page reads records with JavaScript's JSON.parse: an integer beyond 2**53 would come back
# rounded from an edit that changed nothing, so the store refuses it (RFC 8259 section 6).
MAX_SAFE_INTEGER = 2**53 - 1
BUSY_TIMEOUT = 1.0  # seconds a write waits for another program's lock before a 503
JSON_TYPES = ["application/json", "+json"]  # +json: RFC 7396's application/merge-patch+json too
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
log = logging.getLogger("crud")


def default_db() -> str:
    """The database path: ``CRUD_DB`` from the environment, else ``crud.sqlite3``."""
    return os.environ.get("CRUD_DB") or "crud.sqlite3"


def as_sent(value: Any) -> bytes:
    """``value`` as ``res.json`` writes it: compact UTF-8 JSON.

    Raises:
        ValueError: ``value`` holds a NaN or an infinity (``UnicodeEncodeError``, a subclass,
            for a lone surrogate, which UTF-8 cannot carry).
    """
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def record_text(data: Any) -> str:
    """The JSON text to store for the record ``data``, once it is known to be a valid record.

    Everything that could fail when the record is sent back is checked here, before any write,
    so that no error can follow a committed write.

    Raises:
        HTTPError: 400 when ``data`` is not a non-empty object or holds what JSON cannot carry,
            413 when its JSON is over ``MAX_RECORD_SIZE`` bytes.
    """
    if not isinstance(data, dict):
        raise HTTPError(400, "a record must be a JSON object")
    if not data:
        raise HTTPError(400, "a record needs at least one field")
    try:
        size = len(as_sent(data))
    except UnicodeEncodeError:
        raise HTTPError(400, "a record's text must be Unicode (it holds a lone surrogate)") from None
    except ValueError:  # 1e400 parses as an infinity, which JSON cannot write
        raise HTTPError(400, "a record's numbers must be finite (one is too large for JSON)") from None
    if size > MAX_RECORD_SIZE:
        raise HTTPError(413, f"a record may take at most {MAX_RECORD_SIZE} bytes as JSON, not {size}")
    if _unsafe_integer(data):
        raise HTTPError(400, f"a record's integers must lie within ±{MAX_SAFE_INTEGER} (JavaScript "
                             "would round larger ones)")
    return json.dumps(data)


def _unsafe_integer(value: Any) -> bool:
    """Whether ``value`` (decoded JSON) holds an integer JavaScript cannot represent exactly."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif type(item) is int and abs(item) > MAX_SAFE_INTEGER:
            return True
    return False


class Store:
    """JSON records in one SQLite table.

    Every write checks its record with ``record_text`` first, then runs in one transaction:
    committed before it returns, or rolled back when anything raises. The database is opened on
    first use (or by ``open()``), so importing this module for its ``app`` creates no file until
    a request needs one.
    """

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()  # one connection: the reactor thread, and tests beside it
        self._db: sqlite3.Connection | None = None

    def open(self) -> sqlite3.Connection:
        """Open (and if need be create) the database now; later calls return the same one."""
        if self._db is not None:
            return self._db
        # isolation_level=None: no implicit transactions; _write() says where each one begins.
        db = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False,
                             isolation_level=None)
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
        return db

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self.open()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        with self._lock:
            db = self.open()
            try:
                # IMMEDIATE takes the write lock now, so a read-merge-write is not interleaved
                # with another process's write.
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                raise HTTPError(503, "the database is busy", headers={"Retry-After": "1"}) from exc
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def create(self, data: dict[str, Any]) -> int:
        """Store a new record and return its id."""
        text = record_text(data)
        with self._write() as db:
            cursor = db.execute("INSERT INTO records (data) VALUES (?)", (text,))
        return int(cursor.lastrowid or 0)

    def page(self, after: int, offset: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Records with ids above ``after`` in id order, skipping ``offset``: at most ``limit``
        of them and ``MAX_PAGE_SIZE`` bytes as a JSON list (but always one, if any is left).
        Also returns whether more records follow."""
        records: list[dict[str, Any]] = []
        size = len(b"[]")
        with self._read() as db, contextlib.closing(db.execute(
            "SELECT id, data FROM records WHERE id > ? ORDER BY id LIMIT ? OFFSET ?",
            (after, limit + 1, offset),
        )) as rows:
            for rid, text in rows:  # rows are read one at a time: a page stops reading early
                if len(records) == limit:
                    return records, True
                record = {"id": rid, "data": json.loads(text)}
                size += len(as_sent(record)) + (1 if records else 0)  # the comma
                if records and size > MAX_PAGE_SIZE:
                    return records, True
                records.append(record)
        return records, False

    def get(self, record_id: int) -> dict[str, Any] | None:
        """The record's data, or None."""
        with self._read() as db:
            row = db.execute("SELECT data FROM records WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def replace(self, record_id: int, data: dict[str, Any]) -> bool:
        """Replace a record; False when there is none with that id (nothing is created)."""
        text = record_text(data)
        with self._write() as db:
            return db.execute("UPDATE records SET data = ? WHERE id = ?", (text, record_id)).rowcount > 0

    def update(self, record_id: int, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge ``patch`` into a record (RFC 7396) and return the result; None when there is
        no record with that id."""
        with self._write() as db:
            row = db.execute("SELECT data FROM records WHERE id = ?", (record_id,)).fetchone()
            if row is None:
                return None
            merged: dict[str, Any] = merge_patch(json.loads(row[0]), patch)
            db.execute("UPDATE records SET data = ? WHERE id = ?", (record_text(merged), record_id))
        return merged

    def delete(self, record_id: int) -> bool:
        """Delete a record; False when there is none with that id."""
        with self._write() as db:
            return db.execute("DELETE FROM records WHERE id = ?", (record_id,)).rowcount > 0

    def close(self) -> None:
        """Close the database (it opens again on next use)."""
        with self._lock:
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
    """The request body as a JSON object: 415 unless it was sent as JSON, 400 unless an object.

    Requiring a JSON Content-Type also keeps out other sites' forms: an HTML form can only send
    urlencoded, multipart or plain text bodies.
    """
    if not req.is_type(JSON_TYPES):
        raise HTTPError(415, "send the record as application/json")
    if not isinstance(req.body, dict):
        raise HTTPError(400, "the body must be a JSON object")
    return req.body


def query_int(req: Any, name: str, default: int, maximum: int | None = None, minimum: int = 0) -> int:
    """An integer query parameter from ``minimum`` up (capped at ``maximum``), or a 400."""
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
    if value < minimum:
        raise HTTPError(400, f"{name} must be at least {minimum}")
    return min(value, maximum) if maximum is not None else value


def same_origin_writes(req: Any, res: Any, next: Callable[..., None]) -> None:
    """Refuse (403) a write that another site's page makes the browser send (CSRF).

    Browsers say where a request comes from: ``Sec-Fetch-Site`` (every current browser), else
    ``Origin``. A request with neither comes from a program such as curl, which a page cannot
    drive. (Go's ``http.CrossOriginProtection`` decides the same way.)
    """
    if req.method not in SAFE_METHODS:
        site = req.get("sec-fetch-site")
        if site is not None:
            allowed = site in ("same-origin", "none")  # "none": the user's own action
        else:
            origin = req.get("origin")
            allowed = origin is None or origin.partition("://")[2].lower() == (req.host or "").lower()
        if not allowed:
            raise HTTPError(403, "writes are accepted only from this server's own pages")
    next()


def allow(*methods: str) -> Callable[[Any, Any], None]:
    """The last handler of a route: a method it does not answer gets 405 with ``Allow``
    (RFC 9110 section 15.5.6), and OPTIONS gets 204 with ``Allow``."""
    allowed = ", ".join(methods)

    def other_method(req: Any, res: Any) -> None:
        if req.method == "OPTIONS":
            res.set("Allow", allowed).status(204).end()
            return
        raise HTTPError(405, f"{req.method} is not allowed here; use {allowed}", headers={"Allow": allowed})

    return other_method


def security_headers(req: Any, res: Any, next: Callable[..., None]) -> None:
    """No other site may frame the page (and trick a click on Delete), and no response is
    taken for another type than it says (such as /echo's text for HTML)."""
    res.set({
        "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
    })
    next()


def create_app(db_path: str | None = None) -> App:
    """Build the example application on the database at ``db_path`` (default: ``default_db()``)."""
    store = Store(db_path or default_db())
    app = App()
    app.locals["store"] = store

    app.use(logger("dev"))
    app.use(security_headers)
    # fallthrough=False: /static is all files, so a missing one is a 404 and a POST a 405 here.
    app.use("/static", static(str(STATIC_DIR), fallthrough=False))

    def index(req, res):
        res.send_file(str(STATIC_DIR / "index.html"))

    def echo(req, res):
        res.type("text").send(f"Echo: {req.query.get('message', '')}")

    def user(req, res):
        res.json({"user_id": req.params["id"]})

    app.route("/").get(index).all(allow("GET", "HEAD"))
    app.route("/echo").get(echo).all(allow("GET", "HEAD"))
    app.route("/user/:id").get(user).all(allow("GET", "HEAD"))

    def create(req, res):
        new_id = store.create(json_object(req))
        res.status(201).location(f"/data/{new_id}").json({"id": new_id})

    def list_records(req, res):
        limit = query_int(req, "limit", DEFAULT_LIMIT, MAX_LIMIT, minimum=1)
        after = query_int(req, "after", 0)
        offset = query_int(req, "offset", 0)
        records, more = store.page(after, offset, limit)
        if more and records:
            path = req.base_url + req.path  # the path as routed: never another host's URL
            res.links({"next": f"{path}?after={records[-1]['id']}&limit={limit}"})
        res.json(records)

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
        merged = store.update(rid, json_object(req))
        if merged is None:
            raise HTTPError(404, f"no record {rid}")
        res.json({"id": rid, "data": merged})

    def remove(req, res):
        rid = record_id(req)
        if not store.delete(rid):
            raise HTTPError(404, f"no record {rid}")
        res.status(204).end()

    json_body = body_parser.json(limit=BODY_LIMIT, type=JSON_TYPES)
    app.use("/data", same_origin_writes)
    app.route("/data").get(list_records).post(json_body, create).all(allow("GET", "HEAD", "POST"))
    (app.route("/data/:id").get(show).put(json_body, replace).patch(json_body, update).delete(remove)
        .all(allow("GET", "HEAD", "PUT", "PATCH", "DELETE")))

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
        headers = getattr(err, "headers", None)
        if headers:  # Allow on a 405, Retry-After on a 503
            res.set(headers)
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
