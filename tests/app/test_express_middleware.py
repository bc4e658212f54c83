"""Express-compatibility details of the shipped middleware, through the real connection code in
memory (``TestClient``).

* cors: a preflight from a disallowed origin is answered by the middleware, as npm ``cors``
  does (its success status, the preflight headers, no Access-Control-Allow-Origin), never
  falling through to a 404; a callable's false verdict turns CORS off, as npm's
  ``callback(null, false)``.
* logger: morgan's predefined ``"tiny"`` and ``"short"`` formats.
* static: serve-static's ``extensions`` option, behind every existing path check.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evserve import App
from evserve.middleware.cors import cors
from evserve.middleware.logger import logger
from evserve.middleware.static import static
from evserve.testing import ClientResponse, TestClient

from .conftest import RawResponse, exchange, parse_responses

SITE = "https://site.example"
OTHER = "https://evil.example"
MS = r"\d+\.\d{3}"
SECRET = b"TOP SECRET OUTSIDE THE ROOT"

Clients = Callable[..., TestClient]


def raw_get(client: TestClient, target: str, method: str = "GET") -> RawResponse:
    """One request with the exact target (a client would normalise ``..`` and escapes)."""
    return exchange(client, method, target)


def cors_headers(res: ClientResponse) -> dict[str, str]:
    """The Access-Control-* headers, names as sent, repeated lines joined by ", "."""
    [wire] = parse_responses(res.raw, [res.request.method])
    return {k: wire.header(k) for k, _ in wire.headers if k.lower().startswith("access-control-")}


def preflight(client: TestClient, path: str, origin: str | None,
              headers: str | None = None) -> ClientResponse:
    sent = {"Access-Control-Request-Method": "PUT"}
    if origin is not None:
        sent["Origin"] = origin
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=sent, timeout=10)


# -- cors: preflights from disallowed origins ---------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [[SITE], re.compile(r"^https://site\.example$")],
    ids=["list", "regex"],
)
def test_a_disallowed_preflight_on_a_path_without_routes_is_answered_204(client_for: Clients, origin: Any) -> None:
    app = App()
    app.use(cors(origin=origin))
    client = client_for(app)
    res = preflight(client, "/no/route/here", OTHER, headers="X-Custom")
    assert res.status_code == 204 and res.content == b""
    assert "Access-Control-Allow-Origin" not in res.headers
    # npm cors sends the rest of the preflight headers all the same.
    assert res.headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"
    assert res.headers["Access-Control-Allow-Headers"] == "X-Custom"
    assert res.headers["Vary"] == "Origin, Access-Control-Request-Headers"
    assert "Allow" not in res.headers  # answered by cors, not by the router


def test_a_disallowed_preflight_gets_every_npm_cors_header_but_allow_origin(client_for: Clients) -> None:
    app = App()
    app.use(cors(origin=[SITE], credentials=True, max_age=600, methods=["GET", "POST"],
                 allowed_headers=["Content-Type"], exposed_headers=["X-A"]))
    client = client_for(app)
    res = preflight(client, "/x", OTHER)
    assert res.status_code == 204
    assert cors_headers(res) == {
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "X-A",
        "Access-Control-Allow-Methods": "GET,POST",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
    }
    assert res.headers["Vary"] == "Origin"


def test_a_disallowed_preflight_never_reaches_the_routes(client_for: Clients) -> None:
    app = App()
    app.use(cors(origin=[SITE], options_success_status=200))
    app.get("/thing", lambda req, res: res.send("thing"))
    app.options("/thing", lambda req, res: res.status(299).send("options route"))
    client = client_for(app)
    res = preflight(client, "/thing", OTHER)
    assert res.status_code == 200 and res.content == b""
    assert "Access-Control-Allow-Origin" not in res.headers
    # The allowed origin gets the same answer, with Allow-Origin.
    res = preflight(client, "/thing", SITE)
    assert res.status_code == 200 and res.headers["Access-Control-Allow-Origin"] == SITE


def test_a_preflight_without_origin_in_a_reflecting_mode_is_answered_too(client_for: Clients) -> None:
    app = App()
    app.use(cors(origin=True))
    client = client_for(app)
    res = preflight(client, "/x", None)
    assert res.status_code == 204
    assert "Access-Control-Allow-Origin" not in res.headers
    assert res.headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"


def test_a_disallowed_preflight_with_preflight_continue_goes_on_without_allow_origin(client_for: Clients) -> None:
    app = App()
    app.use(cors(origin=[SITE], preflight_continue=True))
    app.options("/thing", lambda req, res: res.status(200).send("options route"))
    client = client_for(app)
    res = preflight(client, "/thing", OTHER)
    assert res.status_code == 200 and res.text == "options route"
    assert "Access-Control-Allow-Origin" not in res.headers
    assert res.headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"


def test_a_disallowed_simple_request_still_gets_no_cors_headers_and_goes_on(client_for: Clients) -> None:
    app = App()
    app.use(cors(origin=[SITE]))
    app.get("/thing", lambda req, res: res.send("thing"))
    client = client_for(app)
    res = client.get("/thing", headers={"Origin": OTHER}, timeout=10)
    assert res.status_code == 200 and res.text == "thing"
    assert cors_headers(res) == {} and res.headers["Vary"] == "Origin"
    res = client.get("/none", headers={"Origin": OTHER}, timeout=10)
    assert res.status_code == 404


def test_a_callable_saying_no_turns_cors_off_like_npm_callback_false(client_for: Clients) -> None:
    asked: list[str] = []

    def decide(origin: str) -> bool:
        asked.append(origin)
        return origin == SITE

    app = App()
    app.use(cors(origin=decide))
    app.get("/thing", lambda req, res: res.send("thing"))
    client = client_for(app)
    res = preflight(client, "/thing", OTHER)
    # Went on to the router: its automatic OPTIONS answer, no CORS headers, Vary kept.
    assert res.status_code == 204 and res.headers["Allow"] == "GET, HEAD"
    assert cors_headers(res) == {} and res.headers["Vary"] == "Origin"
    assert preflight(client, "/no-route", OTHER).status_code == 404
    assert preflight(client, "/no-route", None).status_code == 404  # not asked
    res = preflight(client, "/no-route", SITE)
    assert res.status_code == 204 and res.headers["Access-Control-Allow-Origin"] == SITE
    assert asked == [OTHER, OTHER, SITE]


def test_credentials_with_the_default_origin_still_reflect_the_origin(client_for: Clients) -> None:
    app = App()
    app.use(cors(credentials=True))
    app.get("/", lambda req, res: res.send("ok"))
    client = client_for(app)
    res = client.get("/", headers={"Origin": SITE}, timeout=10)
    assert res.headers["Access-Control-Allow-Origin"] == SITE  # never "*" with credentials
    assert res.headers["Access-Control-Allow-Credentials"] == "true"
    assert res.headers["Vary"] == "Origin"


# -- logger: morgan's tiny and short ------------------------------------------------------------


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> Callable[[int], list[str]]:
    """``access(n)``: the access-log lines so far, at least ``n`` of them (a line is written as
    its response ends, before the client has the response)."""
    caplog.set_level(logging.INFO, logger="evserve.access")

    def lines(count: int = 1) -> list[str]:
        found = [r.getMessage() for r in caplog.records if r.name == "evserve.access"]
        assert len(found) >= count, f"fewer than {count} access-log lines: {found}"
        return found

    return lines


def logged_app(fmt: str) -> App:
    app = App()
    app.use(logger(fmt))
    app.get("/hello", lambda req, res: res.send("hello"))

    @app.get("/chunked")
    def chunked(req: Any, res: Any) -> None:
        res.write("part one, ")
        res.end("part two")

    return app


def test_tiny_format(client_for: Clients, access: Callable[[int], list[str]]) -> None:
    client = client_for(logged_app("tiny"))
    client.get("/hello?x=1", timeout=10)
    client.get("/chunked", timeout=10)
    client.get("/missing", timeout=10)
    tiny, chunked, missing = access(3)
    assert re.fullmatch(rf"GET /hello\?x=1 200 5 - {MS} ms", tiny), tiny
    assert re.fullmatch(rf"GET /chunked 200 - - {MS} ms", chunked), chunked
    assert re.fullmatch(rf"GET /missing 404 \d+ - {MS} ms", missing), missing


def test_short_format(client_for: Clients, access: Callable[[int], list[str]]) -> None:
    client = client_for(logged_app("short"))
    client.get("/hello?x=1", timeout=10)
    user = base64.b64encode(b"alice:secret").decode()
    client.get("/hello", headers={"Authorization": f"Basic {user}"}, timeout=10)
    anonymous, alice = access(2)
    assert re.fullmatch(rf"127\.0\.0\.1 - GET /hello\?x=1 HTTP/1\.1 200 5 - {MS} ms", anonymous), anonymous
    assert re.fullmatch(rf"127\.0\.0\.1 alice GET /hello HTTP/1\.1 200 5 - {MS} ms", alice), alice


def test_unknown_format_names_every_predefined_one() -> None:
    with pytest.raises(ValueError, match="dev, common, combined, short, tiny"):
        logger("default")


# -- static: extensions -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/outside.txt`` (the secret) and ``<tmp>/public`` (the root)."""
    top = tmp_path_factory.mktemp("extensions")
    (top / "outside.txt").write_bytes(SECRET)
    (top / "outside.html").write_bytes(SECRET)
    root = top / "public"
    root.mkdir()
    (root / "about.html").write_bytes(b"about html")
    (root / "about.htm").write_bytes(b"about htm")
    (root / "contact.htm").write_bytes(b"contact htm")
    (root / "exact").write_bytes(b"exact, no extension")
    (root / "exact.html").write_bytes(b"exact html")
    (root / "v1.2.html").write_bytes(b"versioned")
    (root / "a b.html").write_bytes(b"spaced")
    (root / "docs.html").mkdir()  # a directory candidate is skipped
    (root / "docs.htm").write_bytes(b"docs htm")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_bytes(b"sub index")
    (root / "sub" / "page.html").write_bytes(b"sub page")
    (root / "sub.html").write_bytes(b"not for the directory")
    (root / ".secret.html").write_bytes(b"dotfile")
    os.symlink(root / "about.html", root / "linked.html")
    os.symlink(top / "outside.html", root / "escape.html")
    return root


def fallback(req: Any, res: Any) -> None:
    res.status(299).send(f"fallback {req.path}")


def static_app(root: Path, **options: Any) -> App:
    app = App()
    app.use("/s", static(root, **options))
    app.all("/*rest", fallback)
    return app


HTML = {"extensions": ["html", "htm"]}


def test_extensions_are_off_by_default(client_for: Clients, tree: Path) -> None:
    for options in ({}, {"extensions": None}, {"extensions": False}):
        client = client_for(static_app(tree, **options))
        res = client.get("/s/about", timeout=10)
        assert res.status_code == 299, options


def test_extensions_are_tried_in_order(client_for: Clients, tree: Path) -> None:
    client = client_for(static_app(tree, **HTML))
    res = client.get("/s/about?q=1", timeout=10)
    assert res.status_code == 200 and res.text == "about html"
    assert res.headers["Content-Type"] == "text/html; charset=utf-8"
    assert client.get("/s/contact", timeout=10).text == "contact htm"
    assert client.get("/s/sub/page", timeout=10).text == "sub page"
    assert client.get("/s/a%20b", timeout=10).text == "spaced"
    client = client_for(static_app(tree, extensions=[".htm", "html"]))  # a leading dot is fine
    assert client.get("/s/about", timeout=10).text == "about htm"
    client = client_for(static_app(tree, extensions="html"))  # one extension as a str
    assert client.get("/s/about", timeout=10).text == "about html"


def test_extension_files_get_the_usual_file_answer(client_for: Clients, tree: Path) -> None:
    client = client_for(static_app(tree, **HTML))
    first = client.get("/s/about", timeout=10)
    again = client.get("/s/about", headers={"If-None-Match": first.headers["ETag"]},
                         timeout=10)
    assert again.status_code == 304
    ranged = client.get("/s/about", headers={"Range": "bytes=0-4"}, timeout=10)
    assert ranged.status_code == 206 and ranged.text == "about"
    head = raw_get(client, "/s/about", "HEAD")
    assert head.status == 200 and head.body == b"" and head.header("Content-Length") == "10"


def test_an_existing_file_or_directory_wins(client_for: Clients, tree: Path) -> None:
    client = client_for(static_app(tree, **HTML))
    assert client.get("/s/exact", timeout=10).text == "exact, no extension"
    res = client.get("/s/sub", follow_redirects=False, timeout=10)
    assert res.status_code == 301 and res.headers["Location"] == "/s/sub/"


def test_no_extensions_for_a_trailing_slash_or_an_extension(client_for: Clients, tree: Path) -> None:
    client = client_for(static_app(tree, **HTML))
    assert client.get("/s/about/", timeout=10).status_code == 299
    assert client.get("/s/v1.2", timeout=10).status_code == 299  # ".2" is one
    assert client.get("/s/v1.2.html", timeout=10).text == "versioned"
    assert client.get("/s/about.", timeout=10).status_code == 299


def test_a_directory_candidate_is_skipped(client_for: Clients, tree: Path) -> None:
    client = client_for(static_app(tree, **HTML))
    res = client.get("/s/docs", follow_redirects=False, timeout=10)
    assert res.status_code == 200 and res.text == "docs htm"


def test_missing_everywhere_is_still_404_or_fallthrough(client_for: Clients, tree: Path) -> None:
    client = client_for(static_app(tree, **HTML))
    assert client.get("/s/nothing", timeout=10).status_code == 299
    client = client_for(static_app(tree, fallthrough=False, **HTML))
    assert client.get("/s/nothing", timeout=10).status_code == 404
    assert client.get("/s/about", timeout=10).text == "about html"


def test_extensions_keep_the_dotfile_policy(client_for: Clients, tree: Path) -> None:
    client = client_for(static_app(tree, **HTML))
    assert client.get("/s/.secret", timeout=10).status_code == 299
    client = client_for(static_app(tree, dotfiles="deny", fallthrough=False, **HTML))
    assert client.get("/s/.secret", timeout=10).status_code == 403
    client = client_for(static_app(tree, dotfiles="allow", **HTML))
    assert client.get("/s/.secret", timeout=10).text == "dotfile"


def test_extensions_keep_the_symlink_policy(client_for: Clients, tree: Path) -> None:
    client = client_for(static_app(tree, fallthrough=False, **HTML))
    assert client.get("/s/linked", timeout=10).status_code == 404
    res = client.get("/s/escape", timeout=10)
    assert res.status_code == 404 and SECRET not in res.content
    client = client_for(static_app(tree, follow_symlinks=True, fallthrough=False, **HTML))
    assert client.get("/s/linked", timeout=10).text == "about html"
    res = client.get("/s/escape", timeout=10)
    assert res.status_code == 403 and SECRET not in res.content


@pytest.mark.parametrize(
    "target",
    ["/s/../outside", "/s/%2e%2e/outside", "/s/..%2foutside", "/s/..%5coutside",
     "/s/%2e%2e%2foutside", "/s/sub/..%2f..%2foutside"],
)
def test_extensions_never_leave_the_root(client_for: Clients, tree: Path, target: str) -> None:
    client = client_for(static_app(tree, fallthrough=False, extensions=["txt", "html"]))
    res = raw_get(client, target)
    assert SECRET not in res.body
    assert res.status in (400, 403, 404), (target, res.status)


def test_extensions_keep_nul_and_bad_escapes_refused(client_for: Clients, tree: Path) -> None:
    client = client_for(static_app(tree, **HTML))
    assert raw_get(client, "/s/about%00").status == 400
    assert raw_get(client, "/s/about%zz").status == 400


@pytest.mark.parametrize(
    ("extensions", "error"),
    [(True, TypeError), ([1], TypeError), ([""], ValueError), (["."], ValueError),
     (["..html"], ValueError), (["a/b"], ValueError), (["a\\b"], ValueError),
     (["h\x00"], ValueError)],
)
def test_bad_extensions_are_refused_at_construction(tmp_path: Path, extensions: Any,
                                                    error: type[Exception]) -> None:
    with pytest.raises(error):
        static(tmp_path, extensions=extensions)
