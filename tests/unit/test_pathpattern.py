"""Tests for evserve.pathpattern: Express path syntax, options, decoding and the ReDoS guard."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evserve.errors import HTTPError
from evserve.pathpattern import (
    PathMatch,
    PathPattern,
    PatternError,
    compile_path,
    decode_param,
    normalize_plain,
)

NO = None  # "does not match"

# (pattern, options, request path, expected PathMatch.path, expected params) - or NO.
MATCH_CASES: list[tuple[Any, dict[str, bool], str, tuple[str, dict[str, str]] | None]] = [
    # plain literals
    ("/", {}, "/", ("/", {})),
    ("/", {}, "", ("", {})),
    ("/", {}, "//", NO),
    ("/a//", {}, "/a/", ("/a/", {})),
    ("/a//", {}, "/a//", ("/a//", {})),
    ("/a//", {}, "/a", NO),
    ("/a//", {"strict": True}, "/a/", NO),
    ("/a//", {"end": False}, "/a/", ("/a", {})),
    ("/a//", {"end": False}, "/a/x", NO),
    ("", {}, "/", ("/", {})),
    ("/about", {}, "/about", ("/about", {})),
    ("/about", {}, "/About/", ("/About/", {})),
    ("/about", {}, "/about//", NO),
    ("/about", {}, "/about/x", NO),
    ("/about/", {}, "/about", ("/about", {})),
    ("/about", {"strict": True}, "/about/", NO),
    ("/about/", {"strict": True}, "/about", NO),
    ("/about/", {"strict": True}, "/about/", ("/about/", {})),
    ("/About", {"case_sensitive": True}, "/about", NO),
    ("/About", {"case_sensitive": True}, "/About", ("/About", {})),
    ("/a.b-c~d", {}, "/a.b-c~d", ("/a.b-c~d", {})),
    ("/a.b", {}, "/aXb", NO),
    ("/c\\+\\+\\?", {}, "/C++?", ("/C++?", {})),
    ("/a\\:b", {}, "/a:b", ("/a:b", {})),
    ("/caf%C3%A9", {}, "/caf%c3%a9", ("/caf%c3%a9", {})),
    ("/caf%C3%A9", {"case_sensitive": True}, "/caf%c3%a9", NO),
    # named params
    ("/user/:id", {}, "/user/42", ("/user/42", {"id": "42"})),
    ("/user/:id", {}, "/USER/Ab/", ("/USER/Ab/", {"id": "Ab"})),
    ("/user/:id", {}, "/user/", NO),
    ("/user/:id", {}, "/user/1/2", NO),
    ("/user/:id", {"strict": True}, "/user/1/", NO),
    ("/user/:id/", {"strict": True}, "/user/1/", ("/user/1/", {"id": "1"})),
    ("/:a/:b_2", {}, "/x/y", ("/x/y", {"a": "x", "b_2": "y"})),
    ("/user/:id", {}, "/user/a%20b", ("/user/a%20b", {"id": "a b"})),
    ("/user/:id", {}, "/user/a+b", ("/user/a+b", {"id": "a+b"})),
    ("/user/:id", {}, "/user/%2F", ("/user/%2F", {"id": "/"})),
    ("/user/:id", {}, "/user/%E2%82%AC", ("/user/%E2%82%AC", {"id": "\u20ac"})),
    # optional params: the slash (or dot) before them is optional too
    ("/user/:id?", {}, "/user", ("/user", {})),
    ("/user/:id?", {}, "/user/", ("/user/", {})),
    ("/user/:id?", {}, "/user/7", ("/user/7", {"id": "7"})),
    ("/user/:id?", {"strict": True}, "/user/", NO),
    ("/:id?", {}, "/", ("/", {})),
    ("/:id?", {}, "/x", ("/x", {"id": "x"})),
    ("/:a/:b?/c", {}, "/x/c", ("/x/c", {"a": "x"})),
    ("/:a/:b?/c", {}, "/x/y/c", ("/x/y/c", {"a": "x", "b": "y"})),
    ("/file.:ext?", {}, "/file", ("/file", {})),
    ("/file.:ext?", {}, "/file.txt", ("/file.txt", {"ext": "txt"})),
    # regex constraints
    ("/item/:id(\\d+)", {}, "/item/12", ("/item/12", {"id": "12"})),
    ("/item/:id(\\d+)", {}, "/item/1a", NO),
    ("/item/:id(\\d+)?", {}, "/item", ("/item", {})),
    ("/img/:name.:ext(png|jpe?g)", {}, "/img/a.JPG", ("/img/a.JPG", {"name": "a", "ext": "JPG"})),
    ("/img/:ext(png|jpe?g)", {"case_sensitive": True}, "/img/JPG", NO),
    ("/d/:day(\\d{4}-\\d{2})", {}, "/d/2024-05", ("/d/2024-05", {"day": "2024-05"})),
    ("/t/:tag([a-z]{2,8})", {}, "/t/abc", ("/t/abc", {"tag": "abc"})),
    ("/t/:tag([a-z]{2,8})", {}, "/t/a", NO),
    ("/p/:p([)(]+)", {}, "/p/()", ("/p/()", {"p": "()"})),
    ("/:a(\\d+):b([a-z]+)", {}, "/12ab", ("/12ab", {"a": "12", "b": "ab"})),
    ("/any/:rest(.*)", {}, "/any/x/y", ("/any/x/y", {"rest": "x/y"})),
    # rest of the path
    ("/files/*path", {}, "/files/a/b/c.txt", ("/files/a/b/c.txt", {"path": "a/b/c.txt"})),
    ("/files/*path", {}, "/files/a/b/", ("/files/a/b/", {"path": "a/b"})),
    ("/files/*path", {"strict": True}, "/files/a/b/", ("/files/a/b/", {"path": "a/b/"})),
    ("/files/*path", {}, "/files/", NO),
    ("/files/*path", {}, "/files", NO),
    ("/files/*path?", {}, "/files", ("/files", {})),
    ("/files/*path/edit", {}, "/files/a/b/edit", ("/files/a/b/edit", {"path": "a/b"})),
    ("/files/*path", {}, "/files/a%2Fb/%41", ("/files/a%2Fb/%41", {"path": "a/b/A"})),
    ("/*path.:ext", {}, "/a/b.tar.gz", ("/a/b.tar.gz", {"path": "a/b.tar", "ext": "gz"})),
    # bare * is Express 4's unnamed (.*): "0", may be empty, greedy
    ("*", {}, "/", ("/", {"0": "/"})),
    ("*", {}, "/a/b", ("/a/b", {"0": "/a/b"})),
    ("/a/*", {}, "/a/", ("/a/", {"0": ""})),
    ("/a/*", {}, "/a/x/y/", ("/a/x/y/", {"0": "x/y/"})),
    ("/a/*", {}, "/a", NO),
    ("/*.js", {}, "/lib/x.js", ("/lib/x.js", {"0": "lib/x"})),
    # text between params (path-to-regexp 0.1.12 segment rule and the "." format rule)
    ("/:from-:to", {}, "/a-b", ("/a-b", {"from": "a", "to": "b"})),
    ("/:from-:to", {}, "/a-b-c", ("/a-b-c", {"from": "a-b", "to": "c"})),
    ("/:from-:to", {}, "/ab", NO),
    ("/:a-:b-:c", {}, "/1-2-3-4", ("/1-2-3-4", {"a": "1-2", "b": "3", "c": "4"})),
    ("/:name.:ext", {}, "/a.b.c", ("/a.b.c", {"name": "a.b", "ext": "c"})),
    ("/file.:ext", {}, "/file.tar.gz", NO),
    ("/file-:id", {}, "/file-x-y", ("/file-x-y", {"id": "x-y"})),
    ("/v:major.:minor", {}, "/v1.2", ("/v1.2", {"major": "1", "minor": "2"})),
    # prefix matching (use() mounts): PathMatch.path is the mount text, no trailing slash
    ("/api", {"end": False}, "/api", ("/api", {})),
    ("/api", {"end": False}, "/api/", ("/api", {})),
    ("/api", {"end": False}, "/api/x/y", ("/api", {})),
    ("/api", {"end": False}, "/API/x", ("/API", {})),
    ("/api", {"end": False}, "/apix", NO),
    ("/api", {"end": False}, "/ap", NO),
    ("/api", {"end": False, "case_sensitive": True}, "/API/x", NO),
    ("/api/", {"end": False}, "/api/x", ("/api", {})),
    ("/api/", {"end": False}, "/api", ("/api", {})),
    ("/api/", {"end": False, "strict": True}, "/api/x", ("/api", {})),
    ("/api/", {"end": False, "strict": True}, "/api", NO),
    ("/api", {"end": False, "strict": True}, "/api/x", ("/api", {})),
    ("/", {"end": False}, "/", ("", {})),
    ("/", {"end": False}, "/anything/at/all", ("", {})),
    ("", {"end": False}, "/x", ("", {})),
    ("/", {"end": False, "strict": True}, "/x", ("", {})),
    ("/u/:id", {"end": False}, "/u/5/posts", ("/u/5", {"id": "5"})),
    ("/u/:id", {"end": False}, "/u/5", ("/u/5", {"id": "5"})),
    ("/u/:id", {"end": False}, "/u/", NO),
    ("/u/:id?", {"end": False}, "/u/x", ("/u/x", {"id": "x"})),
    ("/u/:id?", {"end": False}, "/u/", ("/u", {})),
    ("/u/:id(\\d+)", {"end": False}, "/u/12x", NO),
    ("/files/*path", {"end": False}, "/files/a/b/", ("/files/a/b", {"path": "a/b"})),
    ("/files/*path/edit", {"end": False}, "/files/a/edit/x", ("/files/a/edit", {"path": "a"})),
    ("*", {"end": False}, "/a/b", ("/a/b", {"0": "/a/b"})),
    # compiled regexes: used as is (searched), named groups by name, others numbered
    (
        re.compile(r"^/commits/(\w+)(?:\.\.(\w+))?$"),
        {},
        "/commits/a..b",
        ("/commits/a..b", {"0": "a", "1": "b"}),
    ),
    (re.compile(r"^/commits/(\w+)(?:\.\.(\w+))?$"), {}, "/commits/a", ("/commits/a", {"0": "a"})),
    (re.compile(r"^/u/(?P<id>\d+)/(\w+)$"), {}, "/u/1/x", ("/u/1/x", {"id": "1", "0": "x"})),
    (re.compile(r"a"), {}, "/xyz/bar", ("a", {})),
    (re.compile(r"^/A$"), {}, "/a", NO),
    (re.compile(r"^/A$", re.I), {}, "/a", ("/a", {})),
    (re.compile(r"^/(?P<v>[^/]+)"), {}, "/%41/x", ("/%41", {"v": "A"})),
    (re.compile(r"/api"), {"end": False}, "/api/x", ("/api", {})),
    (re.compile(r"/api/"), {"end": False}, "/api/x", ("/api", {})),
    (re.compile(r"/api"), {"end": False}, "/apix", NO),
    (re.compile(r"/api"), {"end": False}, "/x/api", NO),
    # lists: the first alternative that matches
    (["/a/:x", "/b/:y"], {}, "/b/1", ("/b/1", {"y": "1"})),
    (["/a/:x", "/b/:y"], {}, "/a/1", ("/a/1", {"x": "1"})),
    (["/a/:x", "/b/:y"], {}, "/c/1", NO),
    (["/a", re.compile(r"^/r(\d)$"), ["/n/:deep"]], {}, "/r5", ("/r5", {"0": "5"})),
    (["/a", re.compile(r"^/r(\d)$"), ["/n/:deep"]], {}, "/n/q", ("/n/q", {"deep": "q"})),
    (("/a", "/b"), {"end": False}, "/b/c", ("/b", {})),
]


@pytest.mark.parametrize(("pattern", "options", "path", "expected"), MATCH_CASES)
def test_match(pattern: Any, options: dict[str, bool], path: str, expected: Any) -> None:
    found = compile_path(pattern, **options).match(path)
    if expected is None:
        assert found is None
    else:
        assert found == PathMatch(*expected)


# (pattern, options, keys, literal_prefix, is_plain)
SHAPE_CASES: list[tuple[Any, dict[str, bool], tuple[str, ...], str, bool]] = [
    ("/about", {}, (), "/about", True),
    ("/About/", {}, (), "/about", True),
    ("/About/", {"strict": True, "case_sensitive": True}, (), "/About/", True),
    ("/", {}, (), "", True),
    ("", {}, (), "", True),
    ("/api", {"end": False}, (), "/api", True),
    ("/a//", {}, (), "/a/", False),
    ("/a//", {"strict": True}, (), "/a//", True),
    ("/api/users/:id", {}, ("id",), "/api/users/", False),
    ("/API/:id", {"case_sensitive": True}, ("id",), "/API/", False),
    ("/:id", {}, ("id",), "/", False),
    ("/:id?", {}, ("id",), "", False),
    ("/a/:b?", {}, ("b",), "/a", False),
    ("/file.:ext?", {}, ("ext",), "/file", False),
    ("/:from-:to", {}, ("from", "to"), "/", False),
    ("/files/*path", {}, ("path",), "/files/", False),
    ("*", {}, ("0",), "", False),
    ("/caf\u00e9/:x", {}, ("x",), "/caf", False),
    (re.compile(r"^/(?P<a>x)(y)(?:z)(w)"), {}, ("a", "0", "1"), "", False),
    (["/api/a/:x", "/api/b/:y", "/api/a/:x/:z"], {}, ("x", "y", "z"), "/api/", False),
    (["/x", re.compile("y")], {}, (), "", False),
]


@pytest.mark.parametrize(("pattern", "options", "keys", "prefix", "plain"), SHAPE_CASES)
def test_shape(
    pattern: Any, options: dict[str, bool], keys: tuple[str, ...], prefix: str, plain: bool
) -> None:
    compiled = compile_path(pattern, **options)
    assert isinstance(compiled, PathPattern)
    assert compiled.source is pattern or compiled.source == pattern
    assert compiled.keys == keys
    assert compiled.literal_prefix == prefix
    assert compiled.is_plain is plain


@pytest.mark.parametrize(
    ("pattern", "options", "key"),
    [
        ("/About", {}, "/about"),
        ("/About/", {}, "/about"),
        ("/About/", {"strict": True}, "/about/"),
        ("/About/", {"case_sensitive": True}, "/About"),
        ("/", {}, ""),
        ("/", {"strict": True}, "/"),
        ("", {}, ""),
        ("/c\\+\\+", {}, "/c++"),
    ],
)
def test_plain_key(pattern: str, options: dict[str, bool], key: str) -> None:
    compiled = compile_path(pattern, **options)
    assert compiled.plain_key() == key
    cs, strict = options.get("case_sensitive", False), options.get("strict", False)
    assert normalize_plain(pattern.replace("\\", ""), case_sensitive=cs, strict=strict) == key


def test_plain_key_of_a_pattern_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a plain path"):
        compile_path("/:id").plain_key()


@pytest.mark.parametrize(
    ("path", "options", "normal"),
    [
        ("/A/b/", {"case_sensitive": False, "strict": False}, "/a/b"),
        ("/A/b/", {"case_sensitive": True, "strict": False}, "/A/b"),
        ("/A/b/", {"case_sensitive": False, "strict": True}, "/a/b/"),
        ("/A//", {"case_sensitive": False, "strict": False}, "/a/"),
        ("/", {"case_sensitive": False, "strict": False}, ""),
        ("/\u00c9", {"case_sensitive": False, "strict": False}, "/\u00c9"),  # ASCII folding only
    ],
)
def test_normalize_plain(path: str, options: dict[str, bool], normal: str) -> None:
    assert normalize_plain(path, **options) == normal


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("plain", "plain"),
        ("a%20b", "a b"),
        ("a+b", "a+b"),
        ("%2f%2F", "//"),
        ("%25", "%"),
        ("%2541", "%41"),
        ("%C3%A9t%C3%A9", "\u00e9t\u00e9"),
        ("%F0%9F%98%80", "\U0001f600"),
        ("", ""),
    ],
)
def test_decode_param(raw: str, decoded: str) -> None:
    assert decode_param(raw) == decoded


@pytest.mark.parametrize(
    "raw",
    ["%", "%z", "%zz", "a%2", "%%41", "%C3", "%C3x%A9", "%FF", "%ED%A0%80", "%C0%AF", "%E2%82"],
)
def test_decode_param_malformed_is_400(raw: str) -> None:
    with pytest.raises(HTTPError) as info:
        decode_param(raw)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("/user/:id", "/user/%zz"),
        ("/files/*path", "/files/a/%E2%82"),
        (re.compile(r"^/(\w+%?\w*)$"), "/a%g1"),
        (["/x", "/u/:id"], "/u/%"),
    ],
)
def test_match_malformed_param_is_400(pattern: Any, path: str) -> None:
    with pytest.raises(HTTPError) as info:
        compile_path(pattern).match(path)
    assert info.value.status == 400


def test_literal_escapes_are_not_decoded_and_non_matches_do_not_raise() -> None:
    assert compile_path("/u/:id").match("/v/%zz") is None
    assert compile_path(re.compile(r"/api"), end=False).match("/apix%zz") is None


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("/a:", "empty parameter name"),
        ("/:", "empty parameter name"),
        ("/:-x", "empty parameter name"),
        ("/ab?cd", "reserved"),
        ("/ab+cd", "reserved"),
        ("/(\\d+)", "reserved"),
        ("/a)", "reserved"),
        ("/a[b]", "reserved"),
        ("/a{2}", "reserved"),
        ("/:id(\\d+", "unbalanced"),
        ("/:id([)", "unbalanced"),
        ("/:id()", "empty constraint"),
        ("/:id(\\d+))", "reserved"),
        ("/:id([z-a])", "not a valid regular expression"),
        ("/:id(*)", "not a valid regular expression"),
        ("/:id(?P<x)", "not a valid regular expression"),
        ("/:id((?i)x)", "does not compile"),
        ("/:id*", "not supported"),
        ("/:id+", "not supported"),
        ("/:a:b", "literal text between"),
        ("/:a(\\d+):b", "literal text between"),
        ("/:a*b", "not supported"),
        ("/*:a", "literal text between"),
        ("/*a/*b", "more than one"),
        ("/*/*", "more than one"),
        ("/:id/:id", "appears twice"),
        ("/*0/:0", "appears twice"),
        ("user/:id", "must start with"),
        (":id", "must start with"),
        ("/a\\", "lone backslash"),
        ([], "empty list"),
    ],
)
def test_bad_patterns(pattern: Any, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        compile_path(pattern)


@pytest.mark.parametrize("pattern", [42, None, b"/a", [b"/a"], re.compile(b"/a"), {"/a": 1}])
def test_bad_types(pattern: Any) -> None:
    with pytest.raises(TypeError):
        compile_path(pattern)


CATASTROPHIC = [
    r"(a+)+",
    r"(a*)*",
    r"(a|aa)+",
    r"(.*)*",
    r"(\w+\s?)+",
    r"(?:a+)+b",
    r"(a+?)+",
    r"(?:\d+,)*\d+",
    r"(?:a?){20}",
    r"(a+){2}",
    r"(?:ab|cd)+",
    r"(?:(?=a+)a)+",
    r"(a)\1",
    r"(?P<x>a)(?P=x)",
    r"(a)?(?(1)b|c)",
    r"x(?:y(?:z+)+)?",
]


@pytest.mark.parametrize("constraint", CATASTROPHIC)
def test_catastrophic_constraints_are_refused(constraint: str) -> None:
    with pytest.raises(PatternError, match="backtrack catastrophically"):
        compile_path(f"/:p({constraint})")
    with pytest.raises(PatternError, match="backtrack catastrophically"):
        compile_path(re.compile(constraint))
    with pytest.raises(PatternError, match="backtrack catastrophically"):
        compile_path(["/ok", f"/x/:p({constraint})"])


ORDINARY = [
    r"\d+",
    r"[a-z]{2,8}",
    r"(?:png|jpe?g)",
    r"png|jpe?g",
    r"\d{4}-\d{2}",
    r"[\d,]+",
    r"(?:ab)+",
    r"(?:\d{2})+",
    r"(?:a|b)+",
    r"(?:\.\.(\w+))?",
    r"[0-9a-f]{8}-[0-9a-f]{4}",
    r"(?=\d)\w+",
    r"v\d+(?:\.\d+)?",
    r".*",
]


@pytest.mark.parametrize("constraint", ORDINARY)
def test_ordinary_constraints_are_accepted(constraint: str) -> None:
    assert compile_path(f"/:p({constraint})").keys == ("p",)
    assert isinstance(compile_path(re.compile(constraint)), PathPattern)


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("/:a-:b-:c", "/" + "-" * 8000 + "/"),
        ("/:a-:b-:c", "/" + "x-" * 4000 + "/"),
        ("/:a.:b.:c", "/" + "." * 8000 + "!/"),
        ("/:a-:b", "/" + "a-" * 4000 + "/x"),
        ("/*path/:file", "/" + "a/" * 4000 + "/"),
        ("/*path.:ext", "/" + "a." * 4000 + "/"),
        ("/x/*path/y/:z", "/x/" + "y/" * 4000),
    ],
)
def test_adversarial_paths_are_linear(pattern: str, path: str) -> None:
    compiled = compile_path(pattern)
    # This thread's CPU time, not the wall clock: other processes on a busy machine do not count.
    # Linear matching takes milliseconds here; a backtracking one takes seconds to hours.
    start = time.thread_time()
    for _ in range(5):
        compiled.match(path)
        compiled.match(path.upper())
    assert time.thread_time() - start < 1.0


def test_compile_is_cached_and_patterns_are_immutable() -> None:
    first = compile_path("/cached/:id")
    assert compile_path("/cached/:id") is first
    assert compile_path("/cached/:id", case_sensitive=True) is not first
    with pytest.raises(AttributeError):
        setattr(first, "keys", ("x",))  # noqa: B010 - the point is the runtime refusal


def test_every_match_gets_a_fresh_dict() -> None:
    cases: list[tuple[Any, str]] = [
        ("/a/:x", "/a/1"),
        ("/plain", "/plain"),
        (re.compile("(?P<x>a)"), "a"),
    ]
    for pattern, path in cases:
        compiled = compile_path(pattern)
        one, two = compiled.match(path), compiled.match(path)
        assert one is not None and two is not None
        assert one.params == two.params
        assert one.params is not two.params


# -- properties ------------------------------------------------------------------------------

FIXED_PATTERNS: list[tuple[Any, dict[str, bool]]] = [
    ("/", {}),
    ("/api", {"end": False}),
    ("/user/:id", {}),
    ("/user/:id?", {"strict": True}),
    ("/:from-:to", {}),
    ("/:name.:ext", {"case_sensitive": True}),
    ("/files/*path", {}),
    ("/files/*path", {"end": False}),
    ("*", {}),
    ("/item/:id(\\d+)/:slug([a-z-]+)?", {}),
    (re.compile(r"^/r/(?P<x>[^/]+)/(.*)$"), {}),
    (["/a/:x", "/b/*rest"], {"end": False}),
]
COMPILED = [compile_path(p, **o) for p, o in FIXED_PATTERNS]

PATHISH = st.one_of(
    st.text(),
    st.lists(
        st.sampled_from(
            [
                "/",
                "%",
                "%2",
                "%41",
                "%zz",
                "%C3%A9",
                "%FF",
                "a",
                "B",
                "-",
                ".",
                "user",
                "files",
                "api",
                "12",
                "r",
                "\u00e9",
                "\n",
            ]
        ),
        max_size=12,
    ).map("".join),
)


@given(path=PATHISH)
def test_match_raises_only_http_400(path: str) -> None:
    for compiled in COMPILED:
        try:
            found = compiled.match(path)
        except HTTPError as exc:
            assert exc.status == 400
        else:
            if found is not None:
                assert isinstance(found.params, dict)
                assert set(found.params) <= set(compiled.keys)
                assert all(isinstance(v, str) for v in found.params.values())


PLAIN_ALPHABET = st.sampled_from(["/", "a", "A", "b", "%41", "%", ".", "\u00e9", "\u00c9", "K"])
plain_paths = st.lists(PLAIN_ALPHABET, max_size=6).map("".join)
plain_patterns = st.lists(PLAIN_ALPHABET.filter(lambda s: s != "%"), max_size=5).map(
    lambda parts: "/" + "".join(parts)
)


@given(pattern=plain_patterns, path=plain_paths, cs=st.booleans(), strict=st.booleans())
def test_plain_key_agrees_with_match(pattern: str, path: str, cs: bool, strict: bool) -> None:
    compiled = compile_path(pattern, case_sensitive=cs, strict=strict)
    matched = compiled.match(path) is not None
    if compiled.is_plain:
        key = normalize_plain(path, case_sensitive=cs, strict=strict)
        assert matched == (key == compiled.plain_key())
    else:  # "/a//" matches "/a/" and "/a//" without strict: no one key, so a regex
        assert not strict and pattern.endswith("//")
    # The regex Express would build: ^<escaped literal>\/?$ with the i flag (ASCII here).
    literal = pattern[:-1] if not strict and pattern.endswith("/") else pattern
    express = re.escape(literal) + ("" if strict else "/?")
    assert matched == bool(re.fullmatch(express, path, 0 if cs else re.I | re.A))


@pytest.mark.parametrize(("pattern", "path", "matched"), [
    ("//", "//", "/"),      # path-to-regexp's greedy "/?" takes both slashes
    ("//", "///", "/"),
    ("//", "/", ""),
    ("//", "//x", ""),      # backtracks to "/" then sees the boundary
    ("/a//", "/a//", "/a/"),
    ("/a//", "/a/", "/a"),
    ("/a//", "/a//b", "/a"),
])
def test_a_mount_ending_in_a_double_slash_takes_what_express_takes(pattern: str, path: str,
                                                                   matched: str) -> None:
    found = compile_path(pattern, end=False).match(path)
    assert found is not None and found.path == matched


@given(pattern=plain_patterns, path=plain_paths, cs=st.booleans(), strict=st.booleans())
def test_plain_prefix_agrees_with_express(pattern: str, path: str, cs: bool, strict: bool) -> None:
    found = compile_path(pattern, case_sensitive=cs, strict=strict, end=False).match(path)
    # path-to-regexp 0.1.12 with end: false, in Python syntax.
    express = re.escape(pattern)
    if not strict:
        express += "?" if pattern.endswith("/") else "/?"
    if not express.endswith("/"):
        express += r"(?=/|\Z)"
    reference = re.match(express, path, 0 if cs else re.I | re.A)
    assert (found is None) == (reference is None)
    if found is not None and reference is not None:
        assert found.path == reference.group().removesuffix("/")
        prefix = compile_path(pattern, case_sensitive=cs, strict=strict).literal_prefix
        assert (path if cs else path.lower()).startswith(prefix)


@given(text=st.text())
def test_compile_raises_only_pattern_error(text: str) -> None:
    for candidate in (text, "/" + text, f"/:p({text})"):
        try:
            compile_path(candidate)
        except PatternError:
            pass


@given(value=st.text())
def test_decode_param_round_trips_quote(value: str) -> None:
    assert decode_param(quote(value, safe="")) == value
    try:
        decode_param(value)
    except HTTPError as exc:
        assert exc.status == 400
