"""Routing and middleware (SPEC sections 2 and 8), after Express 4's own tests (``app.use``,
``app.route``, ``app.router``, ``Router``, ``app.head``, ``app.options``, ``req.params``), through
the real connection code in memory (``TestClient``).
"""

from __future__ import annotations

import functools
import re

import pytest

from evserve import App, HTTPError, Router
from evserve.pathpattern import PatternError
from evserve.testing import TestClient

from .conftest import exchange, parse_responses, request_bytes


def echo(text: str):
    """A route handler that sends ``text``."""

    def handler(req, res):
        res.send(text)

    return handler


def where(req, res):
    """A route handler that reports the URL fields as seen where it runs."""
    res.json({
        "url": req.url,
        "path": req.path,
        "base_url": req.base_url,
        "original_url": req.original_url,
        "params": req.params,
    })


def raw_get(client: TestClient, target: str) -> tuple[int, str]:
    """GET ``target`` byte for byte (the client would quote a malformed escape's "%")."""
    res = exchange(client, "GET", target)
    return res.status, res.text


# -- verbs, route(), all() ---------------------------------------------------------------------


def test_each_verb_routes_its_own_method():
    app = App()
    for verb in ("get", "post", "put", "patch", "delete"):
        getattr(app, verb)("/thing", echo(verb))
    with TestClient(app) as client:
        for verb in ("get", "post", "put", "patch", "delete"):
            r = client.request(verb.upper(), "/thing")
            assert (r.status_code, r.text) == (200, verb)
        r = client.request("PROPFIND", "/thing")
        assert r.status_code == 404
        assert r.text == "Cannot PROPFIND /thing"


def test_all_answers_every_method():
    app = App()
    app.all("/any", lambda req, res: res.send(req.method))
    with TestClient(app) as client:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "PROPFIND"):
            r = client.request(method, "/any")
            assert (r.status_code, r.text) == (200, method)


def test_route_is_chainable_and_dispatches_by_method():
    app = App()
    route = app.route("/book")
    assert route.get(echo("get")) is route
    route.post(echo("post")).put(echo("put")).all(echo("other"))
    with TestClient(app) as client:
        assert client.get("/book").text == "get"
        assert client.post("/book").text == "post"
        assert client.put("/book").text == "put"
        assert client.delete("/book").text == "other"


def test_route_runs_its_handlers_in_order_and_all_before_a_later_verb():
    app = App()
    seen = []

    def first(req, res, next):
        seen.append("all")
        req.trail = ["all"]
        next()

    def second(req, res):
        res.send(",".join([*req.trail, "get"]))

    app.route("/r").all(first).get(second)
    with TestClient(app) as client:
        assert client.get("/r").text == "all,get"
        assert client.post("/r").status_code == 404
    assert seen == ["all", "all"]


def test_several_handlers_in_one_registration_and_nested_lists():
    app = App()

    def a(req, res, next):
        req.trail = ["a"]
        next()

    def b(req, res, next):
        req.trail.append("b")
        next()

    def c(req, res, next):
        req.trail.append("c")
        next()

    app.get("/x", a, [b, [c]], lambda req, res: res.send("".join(req.trail)))
    with TestClient(app) as client:
        assert client.get("/x").text == "abc"


# -- registration: decorators, chaining, arity -------------------------------------------------


def test_decorator_forms_return_the_function_and_call_forms_return_the_router():
    app = App()
    router = Router()

    def handler(req, res):
        res.send("ok")

    for target in (app, router):
        for verb in ("get", "post", "put", "patch", "delete", "head", "options", "all"):
            decorated = getattr(target, verb)("/d-" + verb)(handler)
            assert decorated is handler
            assert getattr(target, verb)("/c-" + verb, handler) is target
        assert target.use(lambda req, res, next: next()) is target
        assert target.use("/m", lambda req, res, next: next()) is target
    app.use("/router", router)
    with TestClient(app) as client:
        assert client.get("/d-get").text == "ok"
        assert client.post("/router/c-post").text == "ok"
        assert client.delete("/router/d-all").text == "ok"


@pytest.mark.parametrize("bad", [
    lambda: None,
    lambda req: None,
    lambda a, b, c, d, e: None,
    lambda *args: None,
])
def test_a_handler_of_another_arity_is_refused_at_registration(bad):
    app = App()
    with pytest.raises(TypeError):
        app.get("/", bad)
    with pytest.raises(TypeError):
        app.get("/")(bad)
    with pytest.raises(TypeError):
        app.use(bad)
    with pytest.raises(TypeError):
        app.route("/r").post(bad)
    with pytest.raises(TypeError):
        Router().use("/x", bad)


@pytest.mark.parametrize("bad", [None, 42, "not callable", {"a": 1}])
def test_use_refuses_what_is_not_a_handler(bad):
    app = App()
    with pytest.raises(TypeError):
        app.use(bad)
    with pytest.raises(TypeError):
        app.use("/path", bad)


def test_use_and_routes_need_a_handler():
    app = App()
    with pytest.raises(TypeError):
        app.use()
    with pytest.raises(TypeError):
        app.use("/only-a-path")
    with pytest.raises(TypeError):
        app.route("/r").get()
    with pytest.raises(TypeError):
        app.get(42, echo("x"))


def test_any_callable_is_a_handler_by_its_signature():
    class Greeter:
        def __init__(self, word):
            self.word = word

        def __call__(self, req, res):
            res.send(self.word)

        def method(self, req, res, next):
            req.greeted = self.word
            next()

    def tagged(tag, req, res):
        res.send(tag + req.greeted)

    app = App()
    greeter = Greeter("hi")
    app.use(greeter.method)
    app.get("/callable", greeter)
    app.get("/partial", functools.partial(tagged, "tag:"))
    with TestClient(app) as client:
        assert client.get("/callable").text == "hi"
        assert client.get("/partial").text == "tag:hi"


def test_a_router_cannot_be_a_route_handler():
    with pytest.raises(TypeError):
        App().get("/", Router())


# -- path syntax and params --------------------------------------------------------------------


def test_named_params_are_captured_and_percent_decoded():
    app = App()
    app.get("/user/:id", where)
    app.get("/user/:id/file/:name", where)
    with TestClient(app) as client:
        assert client.get("/user/42").json()["params"] == {"id": "42"}
        assert client.get("/user/a%20b").json()["params"] == {"id": "a b"}
        assert client.get("/user/%E2%98%83").json()["params"] == {"id": "\u2603"}
        # "+" is not a space in a path, and an encoded slash stays inside one param
        assert client.get("/user/a+b").json()["params"] == {"id": "a+b"}
        assert client.get("/user/a%2Fb").json()["params"] == {"id": "a/b"}
        got = client.get("/user/7/file/x.txt").json()["params"]
        assert got == {"id": "7", "name": "x.txt"}
        # a param is one segment
        assert client.get("/user/1/2").status_code == 404
        assert client.get("/user/").status_code == 404


def test_optional_param():
    app = App()
    app.get("/page/:n?", where)
    with TestClient(app) as client:
        assert client.get("/page").json()["params"] == {}
        assert client.get("/page/3").json()["params"] == {"n": "3"}
        assert client.get("/page/3/4").status_code == 404


def test_constrained_param():
    app = App()
    app.get(r"/item/:id(\d+)", where)
    app.get("/item/:slug", lambda req, res: res.send("slug " + req.params["slug"]))
    with TestClient(app) as client:
        assert client.get("/item/123").json()["params"] == {"id": "123"}
        assert client.get("/item/abc").text == "slug abc"


def test_format_param_after_a_dot():
    app = App()
    app.get("/file/:name.:ext", where)
    with TestClient(app) as client:
        got = client.get("/file/archive.tar.gz").json()["params"]
        assert got == {"name": "archive.tar", "ext": "gz"}


def test_rest_of_path_param_takes_slashes():
    app = App()
    app.get("/files/*path", where)
    app.get("/star/*", where)
    with TestClient(app) as client:
        got = client.get("/files/a/b%20c/d.txt").json()["params"]
        assert got == {"path": "a/b c/d.txt"}
        assert client.get("/files").status_code == 404
        assert client.get("/star/x/y").json()["params"] == {"0": "x/y"}


def test_compiled_regex_path_uses_named_and_numbered_groups():
    app = App()
    app.get(re.compile(r"^/commits/(?P<start>\w+)\.\.(\w+)$"), where)
    with TestClient(app) as client:
        got = client.get("/commits/abc..def").json()["params"]
        assert got == {"start": "abc", "0": "def"}
        assert client.get("/commits/abc").status_code == 404


def test_list_of_paths():
    app = App()
    app.get(["/one/:a", "/two/:b", re.compile(r"^/three$")], where)
    with TestClient(app) as client:
        assert client.get("/one/1").json()["params"] == {"a": "1"}
        assert client.get("/two/2").json()["params"] == {"b": "2"}
        assert client.get("/three").json()["params"] == {}
        assert client.get("/four").status_code == 404


def test_params_are_per_request_and_per_layer():
    app = App()
    seen = []

    def mw(req, res, next):
        seen.append(dict(req.params))
        next()

    app.use("/users/:uid", mw)
    app.get("/users/:uid/posts/:pid", where)
    with TestClient(app) as client:
        assert client.get("/users/1/posts/2").json()["params"] == {"uid": "1", "pid": "2"}
        assert client.get("/users/3/posts/4").json()["params"] == {"uid": "3", "pid": "4"}
    assert seen == [{"uid": "1"}, {"uid": "3"}]


@pytest.mark.parametrize("target", [
    "/user/%zz",
    "/user/%",
    "/user/abc%2",
    "/user/%E0%A4%A",
    "/user/%C3%28",  # not UTF-8
    "/files/ok/%G1",
])
def test_a_malformed_escape_in_a_param_is_a_400(target):
    app = App()
    app.get("/user/:id", where)
    app.get("/files/*rest", where)
    with TestClient(app) as client:
        status, text = raw_get(client, target)
    assert status == 400
    assert "Failed to decode param" in text


def test_a_malformed_escape_is_an_error_error_middleware_sees():
    app = App()
    app.get("/user/:id", where)
    app.use(lambda err, req, res, next: res.status(err.status).send(f"caught {type(err).__name__}"))
    with TestClient(app) as client:
        assert raw_get(client, "/user/%zz") == (400, "caught HTTPError")


def test_a_malformed_escape_in_a_plain_path_is_just_no_match():
    app = App()
    app.get("/plain", echo("x"))
    with TestClient(app) as client:
        status, text = raw_get(client, "/pl%zzain")
    assert (status, text) == (404, "Cannot GET /pl%zzain")


@pytest.mark.parametrize("path", [
    r"/:x((a+)+)",
    r"/:x((a|aa)+)",
    r"/:x((\w*)*)",
    r"/:x((.)\2)",
    re.compile(r"^/(a+)+$"),
    re.compile(r"^/(?:x|xx)*$"),
])
def test_catastrophic_patterns_are_refused_at_registration(path):
    app = App()
    with pytest.raises(PatternError):
        app.get(path, echo("x"))
    with pytest.raises(ValueError):
        app.use(path, lambda req, res, next: next())
    with pytest.raises(ValueError):
        app.route(["/ok", path])


@pytest.mark.parametrize("path", ["/(foo)", "/a+", "/:", "/:a:b", "/:id/:id", "no-slash"])
def test_bad_syntax_is_refused_at_registration(path):
    with pytest.raises(ValueError):
        App().get(path, echo("x"))


def test_a_refused_pattern_takes_seconds_never():
    app = App()
    app.get(r"/safe/:x([a-z]+)", echo("safe"))
    # A long non-matching param: linear regexes answer at once (no timing assertion: a
    # backtracking one would hang the test past its deadline instead).
    with TestClient(app) as client:
        assert exchange(client, "GET", "/safe/" + "a" * 5000 + "!").status == 404


# -- case sensitivity and strict routing -------------------------------------------------------


def test_routing_ignores_case_and_trailing_slash_by_default():
    app = App()
    app.get("/user/:name", where)
    app.get("/About", echo("about"))
    with TestClient(app) as client:
        assert client.get("/USER/Tobi").json()["params"] == {"name": "Tobi"}
        assert client.get("/user/tobi/").json()["params"] == {"name": "tobi"}
        assert client.get("/about").text == "about"
        assert client.get("/ABOUT/").text == "about"


def test_case_sensitive_routing():
    app = App(case_sensitive=True)
    app.get("/About", echo("about"))
    app.get("/user/:name", where)
    with TestClient(app) as client:
        assert client.get("/About").text == "about"
        assert client.get("/about").status_code == 404
        assert client.get("/USER/x").status_code == 404
        assert client.get("/user/x").status_code == 200


def test_strict_routing():
    app = App(strict=True)
    app.get("/user", echo("no slash"))
    app.get("/dir/", echo("slash"))
    app.get("/p/:id", where)
    with TestClient(app) as client:
        assert client.get("/user").text == "no slash"
        assert client.get("/user/").status_code == 404
        assert client.get("/dir/").text == "slash"
        assert client.get("/dir").status_code == 404
        assert client.get("/p/1").status_code == 200
        assert client.get("/p/1/").status_code == 404


def test_router_options_apply_to_its_own_routes():
    app = App()
    router = Router(case_sensitive=True, strict=True)
    router.get("/Exact", echo("exact"))
    app.use("/r", router)
    app.get("/loose", echo("loose"))
    with TestClient(app) as client:
        assert client.get("/r/Exact").text == "exact"
        assert client.get("/r/exact").status_code == 404
        assert client.get("/r/Exact/").status_code == 404
        assert client.get("/LOOSE/").text == "loose"


# -- next("route"), next("router"), long stacks ------------------------------------------------


def test_next_route_skips_the_rest_of_the_route():
    app = App()
    calls = []

    def maybe_skip(req, res, next):
        calls.append("first")
        if req.params["id"] == "0":
            next("route")
        else:
            next()

    def special(req, res):
        calls.append("special")
        res.send("special")

    app.get("/user/:id", maybe_skip, special)
    app.get("/user/:id", lambda req, res: res.send("regular"))
    with TestClient(app) as client:
        assert client.get("/user/0").text == "regular"
        assert client.get("/user/1").text == "special"
    assert calls == ["first", "first", "special"]


def test_next_route_from_middleware_just_continues():
    app = App()
    app.use(lambda req, res, next: next("route"))
    app.get("/", echo("reached"))
    with TestClient(app) as client:
        assert client.get("/").text == "reached"


def test_next_router_leaves_the_router():
    app = App()
    router = Router()
    calls = []

    def guard(req, res, next):
        calls.append("guard")
        next("router" if req.query.get("skip") else None)

    router.use(guard)
    router.get("/x", echo("inside"))
    app.use("/r", router)
    app.get("/r/x", echo("outside"))
    with TestClient(app) as client:
        assert client.get("/r/x").text == "inside"
        assert client.get("/r/x?skip=1").text == "outside"
    assert calls == ["guard", "guard"]


def test_next_router_from_a_route_handler_and_at_the_top():
    app = App()
    router = Router()
    router.get("/x", lambda req, res, next: next("router"), echo("never"))
    router.get("/x", echo("never either"))
    app.use(router)
    app.get("/x", echo("after router"))
    app.get("/top", lambda req, res, next: next("router"))
    with TestClient(app) as client:
        assert client.get("/x").text == "after router"
        r = client.get("/top")
        assert (r.status_code, r.text) == (404, "Cannot GET /top")


def test_a_long_synchronous_middleware_stack_does_not_recurse():
    app = App()
    count = 5000

    def step(req, res, next):
        req.hops += 1
        next()

    app.use(lambda req, res, next: (setattr(req, "hops", 0), next())[1])
    for _ in range(count):
        app.use(step)
    app.get("/", lambda req, res: res.send(str(req.hops)))
    with TestClient(app) as client:
        assert client.get("/").text == str(count)


def test_a_long_route_stack_and_many_pattern_routes_do_not_recurse():
    app = App()

    def step(req, res, next):
        next()

    app.get("/deep", *([step] * 3000), echo("deep"))
    for i in range(3000):
        app.get(f"/p{i}/:x", step)  # each matches nothing we ask for but /p2999/...
    app.get("/p2999/:x", echo("last"))
    with TestClient(app) as client:
        assert client.get("/deep").text == "deep"
        assert client.get("/p2999/y").text == "last"


def test_middleware_may_rewrite_the_url_for_later_routes():
    app = App()

    def rewrite(req, res, next):
        if req.path == "/old":
            req.url = "/new?from=old"
        next()

    app.use(rewrite)
    app.get("/old", echo("old route"))
    # like Express 4, req.query stays the original request's (parsed before any rewrite)
    app.get("/new", lambda req, res: res.send(f"new {req.url} {req.original_url} {req.query}"))
    with TestClient(app) as client:
        assert client.get("/old?a=1").text == "new /new?from=old /old?a=1 {'a': '1'}"


# -- mounting: use() paths, url rewriting, restoring -------------------------------------------


def test_use_without_a_path_runs_for_every_request():
    app = App()
    app.use(lambda req, res: res.send(f"{req.method} {req.url} {req.base_url!r}"))
    with TestClient(app) as client:
        assert client.get("/").text == "GET / ''"
        assert client.post("/a/b?c=d").text == "POST /a/b?c=d ''"


def test_use_matches_a_prefix_at_a_segment_boundary_and_strips_it():
    app = App()
    app.use("/blog", where)
    app.use(lambda req, res: res.send("fell through " + req.url))
    with TestClient(app) as client:
        got = client.get("/blog").json()
        assert got == {"url": "/", "path": "/", "base_url": "/blog", "original_url": "/blog", "params": {}}
        got = client.get("/blog/post/1?x=y").json()
        assert got["url"] == "/post/1?x=y"
        assert got["path"] == "/post/1"
        assert got["base_url"] == "/blog"
        assert got["original_url"] == "/blog/post/1?x=y"
        assert client.get("/BLOG/").json()["base_url"] == "/BLOG"
        assert client.get("/blog?q=1").json()["url"] == "/?q=1"
        assert client.get("/blogger").text == "fell through /blogger"


def test_use_path_with_a_trailing_slash_is_the_same_mount():
    app = App()
    app.use("/blog/", where)
    with TestClient(app) as client:
        assert client.get("/blog").json()["base_url"] == "/blog"
        assert client.get("/blog/a").json()["url"] == "/a"


def test_use_empty_and_root_paths_mount_at_the_top():
    app = App()
    app.use("", lambda req, res, next: (setattr(req, "a", req.base_url), next())[1])
    app.use("/", lambda req, res: res.send(f"{req.a!r} {req.base_url!r} {req.url}"))
    with TestClient(app) as client:
        assert client.get("/x/y").text == "'' '' /x/y"


def test_url_is_restored_when_control_leaves_a_mount():
    app = App()
    seen = []

    def inside(req, res, next):
        seen.append((req.url, req.base_url))
        next()

    app.use("/a", inside)
    app.use("/a/b", inside)
    app.use(lambda req, res: res.send(f"{req.url} {req.base_url!r} {req.path}"))
    with TestClient(app) as client:
        assert client.get("/a/b/c?d=e").text == "/a/b/c?d=e '' /a/b/c"
    assert seen == [("/b/c?d=e", "/a"), ("/c?d=e", "/a/b")]


def test_use_with_a_list_of_paths_and_several_handlers():
    app = App()

    def tag(req, res, next):
        req.tag = req.base_url
        next()

    app.use(["/a", "/b"], [tag], lambda req, res: res.send(req.tag + " " + req.url))
    app.use(lambda req, res: res.send("none"))
    with TestClient(app) as client:
        assert client.get("/a/x").text == "/a /x"
        assert client.get("/b").text == "/b /"
        assert client.get("/c").text == "none"


def test_use_on_a_pattern_gives_params_and_the_matched_base_url():
    app = App()
    app.use("/users/:uid", where)
    with TestClient(app) as client:
        got = client.get("/users/42/photos?n=1").json()
        assert got["params"] == {"uid": "42"}
        assert got["base_url"] == "/users/42"
        assert got["url"] == "/photos?n=1"


def test_use_on_a_regex():
    app = App()
    app.use(re.compile(r"/ab+c"), where)
    app.use(lambda req, res: res.send("no"))
    with TestClient(app) as client:
        got = client.get("/abbbc/rest").json()
        assert (got["base_url"], got["url"]) == ("/abbbc", "/rest")
        assert client.get("/abbbcd").text == "no"
        assert client.get("/ac").text == "no"


def test_nested_routers_see_relative_urls_and_restore_them():
    app = App()
    api = Router()
    v1 = Router()
    trail = []

    def note(label):
        def mw(req, res, next):
            trail.append((label, req.base_url, req.url))
            next()

        return mw

    v1.get("/items/:id", lambda req, res, next: (where(req, res) if req.params["id"] != "0" else next()))
    v1.use(note("v1 end"))
    api.use("/v1", v1)
    api.use(note("api end"))
    app.use("/api", api)
    app.use(lambda req, res: res.send(f"{req.base_url!r} {req.url}"))
    with TestClient(app) as client:
        got = client.get("/api/v1/items/3?x=1").json()
        assert got == {
            "url": "/items/3?x=1", "path": "/items/3", "base_url": "/api/v1",
            "original_url": "/api/v1/items/3?x=1", "params": {"id": "3"},
        }
        assert client.get("/api/v1/items/0?x=1").text == "'' /api/v1/items/0?x=1"
    assert trail == [("v1 end", "/api/v1", "/items/0?x=1"), ("api end", "/api", "/v1/items/0?x=1")]


def test_merge_params_router_sees_its_mounts_params():
    app = App()
    merged = Router(merge_params=True)
    merged.get("/posts/:pid", lambda req, res: res.json(req.params))
    merged.get("/shadow/:uid", lambda req, res: res.json(req.params))
    merged.use(lambda req, res: res.json(["mw", req.params]))
    plain = Router()
    plain.get("/posts/:pid", lambda req, res: res.json(req.params))
    app.use("/users/:uid", merged)
    app.use("/plain/:uid", plain)
    with TestClient(app) as client:
        assert client.get("/users/1/posts/2").json() == {"uid": "1", "pid": "2"}
        assert client.get("/users/1/shadow/9").json() == {"uid": "9"}
        assert client.get("/users/1/else").json() == ["mw", {"uid": "1"}]
        assert client.get("/plain/1/posts/2").json() == {"pid": "2"}


def test_a_router_mounted_twice_and_a_router_as_plain_middleware():
    app = App()
    shared = Router()
    shared.get("/hello", lambda req, res: res.send("hello from " + req.base_url))
    app.use("/one", shared)
    app.use("/two", shared)
    app.use(shared)
    with TestClient(app) as client:
        assert client.get("/one/hello").text == "hello from /one"
        assert client.get("/two/hello").text == "hello from /two"
        assert client.get("/hello").text == "hello from "


def test_a_router_passes_on_what_it_does_not_handle():
    app = App()
    router = Router()
    router.get("/in", echo("in"))
    app.use("/r", router)
    app.get("/r/out", echo("out"))
    with TestClient(app) as client:
        assert client.get("/r/in").text == "in"
        assert client.get("/r/out").text == "out"
        r = client.get("/r/missing")
        assert (r.status_code, r.text) == (404, "Cannot GET /r/missing")


def test_sub_apps():
    app = App(json_spaces=2).set("custom", "parent")
    blog = App()
    forum = App().set("custom", "own")
    blog.get("/", lambda req, res: res.json({"app": req.app is blog, "base": req.base_url, "url": req.url}))
    blog.get("/settings", lambda req, res: res.send(f"{req.app.settings['custom']}"))
    forum.get("/", lambda req, res: res.send(f"{req.app.settings['custom']} {req.url}"))
    forum.get("/admin", lambda req, res, next: next())
    app.use("/blog", blog)
    app.use("/forum", forum)
    app.use(lambda req, res: res.send(f"back in parent: {req.app is app} {req.url}"))
    assert blog.parent is app
    assert forum.parent is app
    assert blog.mountpath == "/blog"
    with TestClient(app) as client:
        r = client.get("/blog")
        assert r.json() == {"app": True, "base": "/blog", "url": "/"}
        assert r.text.startswith("{\n  ")  # json_spaces inherited from the parent
        assert client.get("/blog/settings").text == "parent"
        assert client.get("/forum/").text == "own /"
        assert client.get("/forum/admin").text == "back in parent: True /forum/admin"


def test_sub_apps_assembled_bottom_up_inherit_the_roots_settings():
    root = App(json_spaces=1).set("custom", "root")
    mid = App().set("custom", "mid")
    leaf = App()
    leaf.get("/", lambda req, res: res.json([req.app.settings["custom"], req.ip]))
    mid.use("/leaf", leaf)  # mounted before mid is mounted on root
    root.use("/mid", mid)
    assert leaf.settings["json_spaces"] == 1
    assert leaf.parent is mid and mid.parent is root
    with TestClient(root) as client:
        # json_spaces from the root, custom from the nearer parent
        assert client.get("/mid/leaf").text == '[\n "mid",\n "127.0.0.1"\n]'



def test_sub_app_mounted_on_a_list_and_on_a_param_path():
    app = App()
    sub = App()
    sub.get("/", lambda req, res: res.send(f"{req.base_url} {dict(req.params)}"))
    app.use(["/a", "/b"], sub)
    app.use("/u/:id", sub)
    with TestClient(app) as client:
        assert client.get("/a").text == "/a {}"
        assert client.get("/b/").text == "/b {}"
        # like Express without mergeParams: a sub-app does not see its mount's params
        assert client.get("/u/9").text == "/u/9 {}"


def test_sub_app_404_and_errors_go_to_the_parent():
    app = App()
    sub = App()
    sub.get("/boom", lambda req, res: (_ for _ in ()).throw(HTTPError(418, "teapot")))
    app.use("/sub", sub)
    app.use(lambda err, req, res, next: res.status(err.status).send(f"parent caught {err.message} {req.url}"))
    with TestClient(app) as client:
        r = client.get("/sub/boom")
        assert (r.status_code, r.text) == (418, "parent caught teapot /sub/boom")
        r = client.get("/sub/none")
        assert (r.status_code, r.text) == (404, "Cannot GET /sub/none")


# -- HEAD, OPTIONS, 404 ------------------------------------------------------------------------


def test_head_is_answered_by_get_without_a_body():
    app = App()
    methods = []

    def get(req, res):
        methods.append(req.method)
        res.set("X-Seen", "yes").send("tobi")

    app.get("/tobi", get)
    with TestClient(app) as client:
        g = client.get("/tobi")
        # nothing follows the head on the wire: the next response parses cleanly, and nothing
        # is left over after it
        wire = client.raw(request_bytes("HEAD", "/tobi") + request_bytes("GET", "/tobi"))
        h, again = parse_responses(wire, ["HEAD", "GET"])
    assert h.status == 200
    assert h.body == b""
    assert h.header("Content-Length") == g.headers["Content-Length"] == "4"
    assert h.header("Content-Type") == g.headers["Content-Type"]
    assert h.header("ETag") == g.headers["ETag"]
    assert h.header("X-Seen") == "yes"
    assert again.text == "tobi"
    assert methods == ["GET", "HEAD", "GET"]


def test_an_explicit_head_route_registered_first_wins():
    app = App()
    app.head("/tobi", lambda req, res: res.set("X-Method", "head").end())
    app.get("/tobi", lambda req, res: res.set("X-Method", "get").send("tobi"))
    with TestClient(app) as client:
        assert client.head("/tobi").headers["X-Method"] == "head"
        assert client.get("/tobi").headers["X-Method"] == "get"


def test_head_without_a_get_route_is_404():
    app = App()
    app.post("/only-post", echo("x"))
    with TestClient(app) as client:
        assert client.head("/only-post").status_code == 404


def test_options_without_a_handler_gets_204_with_allow():
    app = App()
    app.get("/users", echo("x"))
    app.put("/users", echo("x"))
    app.get("/users", echo("again"))
    app.delete("/users/:id", echo("x"))
    app.all("/every", echo("all"))
    with TestClient(app) as client:
        r = client.options("/users")
        assert r.status_code == 204
        assert r.content == b""
        allow = [m.strip() for m in r.headers["Allow"].split(",")]
        assert sorted(allow) == ["GET", "HEAD", "PUT"]  # each once
        r = client.options("/users/1")
        assert (r.status_code, set(r.headers["Allow"].replace(" ", "").split(","))) == (204, {"DELETE"})
        assert client.options("/nothing").status_code == 404
        r = client.options("/every")  # all() answers OPTIONS itself
        assert (r.status_code, r.text) == (200, "all")


def test_options_with_a_handler_and_through_a_router():
    app = App()
    app.options("/custom", lambda req, res: res.set("Allow", "CUSTOM").send_status(200))
    router = Router()
    router.post("/thing", echo("x"))
    app.use("/r", router)
    app.use(lambda req, res, next: next())
    with TestClient(app) as client:
        r = client.options("/custom")
        assert (r.status_code, r.headers["Allow"]) == (200, "CUSTOM")
        r = client.options("/r/thing")
        assert (r.status_code, r.headers["Allow"]) == (204, "POST")


def test_options_answered_by_middleware_is_left_alone():
    app = App()
    app.get("/x", echo("x"))
    app.use(lambda req, res: res.status(200).send("mw " + req.method))
    with TestClient(app) as client:
        r = client.options("/x")
        assert (r.status_code, r.text) == (200, "mw OPTIONS")


def test_no_route_is_404_cannot_method_path():
    app = App()
    router = Router()
    app.use("/api", router)
    with TestClient(app) as client:
        r = client.get("/api/missing?secret=1")
        assert r.status_code == 404
        assert r.text == "Cannot GET /api/missing"
        assert r.headers["Content-Type"].startswith("text/plain")
        r = client.delete("/")
        assert (r.status_code, r.text) == (404, "Cannot DELETE /")


def test_a_handler_calling_next_after_sending_does_not_send_a_404():
    app = App()

    def sender(req, res, next):
        res.send("sent")
        next()

    app.get("/", sender)
    with TestClient(app) as client:
        # one connection, two requests: no stray 404 follows either response
        wire = client.raw(request_bytes("GET", "/") * 2)
        first, second = parse_responses(wire, ["GET", "GET"])
    assert (first.status, first.text, second.text) == (200, "sent", "sent")


# -- dispatch cost does not grow with the number of plain routes -------------------------------


def _build(n_plain: int) -> App:
    app = App()
    app.use(lambda req, res, next: next())
    app.get("/:name/detail", where)  # no literal prefix: tried for every path
    for i in range(n_plain):
        app.get(f"/r/{i}", echo(f"r{i}"))
    app.get("/items/:id", where)  # a literal prefix other paths do not share
    app.use("/static/*path", where)
    return app


def test_dispatch_pattern_attempts_do_not_grow_with_plain_routes():
    small, large = _build(8), _build(1998)
    assert len(small.stack) == 12 and len(large.stack) == 2002
    results = {}
    for label, app in (("small", small), ("large", large)):
        with TestClient(app) as client:
            attempts = []
            for path, expected in (("/r/5", "r5"), ("/R/7/", "r7"), ("/nope/x", None)):
                before = app.pattern_attempts
                r = client.get(path)
                attempts.append(app.pattern_attempts - before)
                if expected is None:
                    assert r.status_code == 404
                else:
                    assert r.text == expected
            if label == "large":
                assert client.get("/r/1997").text == "r1997"
        results[label] = attempts
    assert results["small"] == results["large"]
    assert max(results["large"]) <= 2


def test_middleware_marked_needs_body_runs_only_for_requests_that_announce_a_body():
    seen = []

    def body_only(req, res, next_):
        seen.append(req.method)
        next_()

    body_only.needs_body = True
    app = App()
    app.use(body_only)
    app.all("/", echo("ok"))
    with TestClient(app) as client:
        assert client.get("/", timeout=10).text == "ok"
        assert client.post("/", data=b"x", timeout=10).text == "ok"
        assert client.post("/", data=b"", timeout=10).text == "ok"  # Content-Length: 0
        assert client.head("/", timeout=10).status_code == 200
    assert seen == ["POST", "POST"]


def test_needs_body_does_not_change_error_middleware_or_routes():
    def handler(err, req, res, next_):
        res.status(err.status).send("handled")

    handler.needs_body = True  # only middleware is skipped; an error handler still runs
    app = App()
    app.get("/", lambda req, res: (_ for _ in ()).throw(HTTPError(418)))
    app.use(handler)
    with TestClient(app) as client:
        res = client.get("/", timeout=10)
    assert (res.status_code, res.text) == (418, "handled")
