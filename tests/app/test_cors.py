"""The CORS middleware (SPEC sections 5 and 8), after the npm ``cors`` package's tests, through
the real connection code in memory (``TestClient``): simple and preflight requests, credentials,
string/list/regex/callable origins, disallowed origins, and OPTIONS requests that are not
preflights. The preflight's bytes on a socket are checked in tests/e2e/test_cors.py."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pytest

from evserve import App
from evserve.middleware.cors import cors
from evserve.testing import ClientResponse, TestClient

from .conftest import parse_responses

SITE = "https://site.example"
OTHER = "https://evil.example"


@contextlib.contextmanager
def serving(middleware, *, options_route: bool = False) -> Iterator[TestClient]:
    """An app with ``middleware`` then ``GET/POST /thing``; yields a client of it."""
    app = App()
    app.use(middleware)
    app.get("/thing", lambda req, res: res.set("X-Secret", "42").send("thing"))
    app.post("/thing", lambda req, res: res.status(201).send("made"))
    if options_route:
        app.options("/thing", lambda req, res: res.status(200).send("options route"))
    with TestClient(app) as client:
        yield client


def preflight(client: TestClient, origin: str | None = SITE, method: str = "PUT",
              headers: str | None = None) -> ClientResponse:
    sent = {"Access-Control-Request-Method": method}
    if origin is not None:
        sent["Origin"] = origin
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return client.options("/thing", headers=sent)


def cors_headers(res: ClientResponse) -> dict[str, str]:
    """The Access-Control-* headers, names as sent, repeated lines joined by ", "."""
    [wire] = parse_responses(res.raw, [res.request.method])
    return {k: wire.header(k) for k, _ in wire.headers if k.lower().startswith("access-control-")}


# -- simple requests -------------------------------------------------------------------------------


def test_default_allows_every_origin_with_a_star_and_no_vary():
    with serving(cors()) as client:
        res = client.get("/thing", headers={"Origin": SITE})
        assert res.status_code == 200 and res.text == "thing"
        assert cors_headers(res) == {"Access-Control-Allow-Origin": "*"}
        assert "Vary" not in res.headers
        # Without an Origin header too (the answer is the same for everyone, so cacheable).
        assert cors_headers(client.get("/thing")) == {"Access-Control-Allow-Origin": "*"}


def test_exposed_headers_and_credentials_on_simple_requests():
    with serving(cors(origin=[SITE], exposed_headers=["X-Secret", "ETag"], credentials=True)) as client:
        res = client.post("/thing", headers={"Origin": SITE})
        assert res.status_code == 201 and res.text == "made"
        assert cors_headers(res) == {
            "Access-Control-Allow-Origin": SITE,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Expose-Headers": "X-Secret,ETag",
        }
        assert res.headers["Vary"] == "Origin"


def test_credentials_never_answer_a_star_they_reflect_the_origin():
    with serving(cors(credentials=True)) as client:
        res = client.get("/thing", headers={"Origin": SITE})
        assert cors_headers(res) == {
            "Access-Control-Allow-Origin": SITE,
            "Access-Control-Allow-Credentials": "true",
        }
        assert res.headers["Vary"] == "Origin"
        # Nothing to reflect: no Allow-Origin at all (and still Vary, for caches).
        res = client.get("/thing")
        assert cors_headers(res) == {} and res.headers["Vary"] == "Origin"
        res = preflight(client)
        assert res.headers["Access-Control-Allow-Origin"] == SITE


def test_origin_true_reflects_any_origin():
    with serving(cors(origin=True)) as client:
        for origin in (SITE, OTHER, "null"):
            res = client.get("/thing", headers={"Origin": origin})
            assert res.headers["Access-Control-Allow-Origin"] == origin
            assert res.headers["Vary"] == "Origin"


def test_origin_false_turns_cors_off():
    with serving(cors(origin=False)) as client:
        res = client.get("/thing", headers={"Origin": SITE})
        assert res.status_code == 200 and cors_headers(res) == {} and "Vary" not in res.headers
        res = preflight(client)
        assert cors_headers(res) == {}


def test_a_fixed_string_origin_is_sent_to_everyone_like_npm_cors():
    with serving(cors(origin=SITE)) as client:
        for origin in (SITE, OTHER, None):
            res = client.get("/thing", headers={"Origin": origin} if origin else {})
            assert res.headers["Access-Control-Allow-Origin"] == SITE
            assert res.headers["Vary"] == "Origin"


@pytest.mark.parametrize(
    "origin",
    [
        [SITE, "https://other.example"],
        re.compile(r"^https://(\w+\.)?site\.example$"),
        [re.compile(r"\.site\.example$"), SITE],
        lambda origin: origin == SITE or origin.endswith(".site.example"),
        lambda origin: SITE if origin in (SITE, "https://api.site.example") else False,
    ],
    ids=["list", "regex", "list-with-regex", "callable-bool", "callable-str"],
)
def test_list_regex_and_callable_origins(origin):
    with serving(cors(origin=origin)) as client:
        res = client.get("/thing", headers={"Origin": SITE})
        assert res.status_code == 200
        assert res.headers["Access-Control-Allow-Origin"] == SITE
        assert res.headers["Vary"] == "Origin"
        # A disallowed origin: no CORS headers, but the request still runs (and Vary stays).
        res = client.get("/thing", headers={"Origin": OTHER})
        assert res.status_code == 200 and res.text == "thing"
        assert cors_headers(res) == {}
        assert res.headers["Vary"] == "Origin"
        res = client.get("/thing", headers={"Origin": "https://site.example.evil.example"})
        assert cors_headers(res) == {}


def test_a_callable_origin_returning_a_string_sends_it():
    seen = []

    def decide(origin):
        seen.append(origin)
        return "https://canonical.example"

    with serving(cors(origin=decide)) as client:
        res = client.get("/thing", headers={"Origin": SITE})
        assert res.headers["Access-Control-Allow-Origin"] == "https://canonical.example"
        client.get("/thing")  # no Origin: the callable is not asked
    assert seen == [SITE]


def test_a_callable_origin_that_raises_is_a_500():
    def decide(origin):
        raise RuntimeError("database down")

    with serving(cors(origin=decide)) as client:
        res = client.get("/thing", headers={"Origin": SITE})
        assert res.status_code == 500 and "database" not in res.text


def test_vary_is_merged_with_what_the_handler_adds():
    app = App()
    app.use(cors(origin=[SITE]))
    app.get("/", lambda req, res: res.vary("Accept-Encoding").vary("origin").send("ok"))
    with TestClient(app) as client:
        res = client.get("/", headers={"Origin": SITE})
        assert res.headers["Vary"] == "Origin, Accept-Encoding"


# -- preflight -------------------------------------------------------------------------------------


def test_preflight_is_answered_204_with_the_defaults():
    with serving(cors()) as client:
        res = preflight(client, headers="Content-Type, X-Custom")
        assert res.status_code == 204 and res.content == b""
        assert cors_headers(res) == {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "GET,HEAD,PUT,PATCH,POST,DELETE",
            "Access-Control-Allow-Headers": "Content-Type, X-Custom",
        }
        assert res.headers["Vary"] == "Access-Control-Request-Headers"
        # Without requested headers nothing is reflected, but the answer still varies on them.
        res = preflight(client)
        assert "Access-Control-Allow-Headers" not in res.headers
        assert res.headers["Vary"] == "Access-Control-Request-Headers"


def test_preflight_with_every_option():
    middleware = cors(
        origin=[SITE],
        methods=["GET", "POST"],
        allowed_headers=["Content-Type", "Authorization"],
        exposed_headers="X-Total",
        credentials=True,
        max_age=0,
    )
    with serving(middleware) as client:
        res = preflight(client, method="POST", headers="X-Whatever")
        assert res.status_code == 204
        assert cors_headers(res) == {
            "Access-Control-Allow-Origin": SITE,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": "GET,POST",
            "Access-Control-Allow-Headers": "Content-Type,Authorization",
            "Access-Control-Expose-Headers": "X-Total",
            "Access-Control-Max-Age": "0",
        }
        assert res.headers["Vary"] == "Origin"  # the allowed headers are fixed: no reflection


def test_an_empty_allowed_headers_list_allows_none():
    with serving(cors(allowed_headers=[])) as client:
        res = preflight(client, headers="X-Custom")
        assert res.status_code == 204 and "Access-Control-Allow-Headers" not in res.headers


def test_preflight_from_a_disallowed_origin_is_ended_without_allow_origin():
    # As npm cors: the preflight is still answered by the middleware (204), only without
    # Access-Control-Allow-Origin, so the browser refuses; the routes never see it.
    with serving(cors(origin=[SITE]), options_route=True) as client:
        res = preflight(client, origin=OTHER, headers="X-Custom")
        assert res.status_code == 204 and res.content == b""
        assert "Access-Control-Allow-Origin" not in res.headers
        assert "Origin" in [v.strip() for v in res.headers["Vary"].split(",")]


def test_preflight_continue_passes_the_preflight_on_with_its_headers():
    with serving(cors(preflight_continue=True), options_route=True) as client:
        res = preflight(client, headers="X-A")
        assert res.status_code == 200 and res.text == "options route"
        assert res.headers["Access-Control-Allow-Origin"] == "*"
        assert res.headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"
        assert res.headers["Access-Control-Allow-Headers"] == "X-A"


def test_options_success_status_200_for_old_browsers():
    with serving(cors(options_success_status=200)) as client:
        res = preflight(client)
        assert res.status_code == 200 and res.content == b""
        assert res.headers["Content-Length"] == "0"


def test_a_preflight_never_reaches_the_route_handlers():
    with serving(cors(), options_route=True) as client:
        res = preflight(client)
        assert res.status_code == 204 and res.content == b""


# -- OPTIONS that is not a preflight -----------------------------------------------------------------


def test_options_without_request_method_is_a_simple_request():
    with serving(cors(origin=[SITE], max_age=60)) as client:
        res = client.options("/thing", headers={"Origin": SITE, "Access-Control-Request-Headers": "X-A"})
        # Went on to the router: its automatic OPTIONS answer, with the simple-request headers.
        assert res.status_code == 204
        assert res.headers["Allow"] == "GET, HEAD, POST"
        assert cors_headers(res) == {"Access-Control-Allow-Origin": SITE}
    with serving(cors(), options_route=True) as client:
        res = client.options("/thing", headers={"Origin": SITE})
        assert res.status_code == 200 and res.text == "options route"
        assert cors_headers(res) == {"Access-Control-Allow-Origin": "*"}


def test_only_options_can_be_a_preflight():
    with serving(cors()) as client:
        res = client.get("/thing", headers={"Origin": SITE, "Access-Control-Request-Method": "PUT"})
        assert res.status_code == 200 and res.text == "thing"
        assert cors_headers(res) == {"Access-Control-Allow-Origin": "*"}


# -- options ---------------------------------------------------------------------------------------


def test_bad_options_raise_at_construction():
    with pytest.raises(TypeError):
        cors(origin=42)
    with pytest.raises(TypeError):
        cors(origin=[SITE, 42])
    with pytest.raises(TypeError):
        cors(methods=["GET", 1])
    with pytest.raises(TypeError):
        cors(options_success_status="204")
    with pytest.raises(ValueError):
        cors(options_success_status=404)
