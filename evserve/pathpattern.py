"""Compile Express-style route paths (``/user/:id``, ``*rest``, regexes, lists) into matchers.

The router registers every path through :func:`compile_path` once and calls
:meth:`PathPattern.match` per request. The syntax is Express 4's (path-to-regexp 0.1.x, including
its 0.1.12 fix for parameters sharing a segment), with the rest-of-path ``*name`` of Express 5:

========================  =====================================================================
``/user/:id``             ``id`` is one segment, ``[^/]+?`` (name: ``[A-Za-z0-9_]+``)
``/user/:id?``            optional; the ``/`` (or ``.``) just before it is optional too
``/item/:id(\\d+)``       constrained by a regular expression (checked, see below)
``/files/*path``          ``path`` is the rest: one or more characters, slashes included
``*`` / ``/a/*``          unnamed rest ``"0"`` (Express 4's greedy ``(.*)``: may be empty)
``/:from-:to``            text between params; a param after another in the same segment may not
                          contain the text before it (``a-b-c`` gives ``from=a-b``, ``to=c``)
``/file.:ext``            a param right after ``.`` excludes ``.`` (``/:n.:e`` on ``a.b.c``:
                          ``n=a.b``, ``e=c``)
``re.compile(...)``       used as is (searched); named groups by name, others ``"0"``, ``"1"``...
``[p1, p2, ...]``         the first alternative that matches; ``keys`` is the union
========================  =====================================================================

``\\`` makes the next character literal. Refused with :class:`PatternError`: ``( ) [ ] { } ? +``
outside the forms above (raw regex in Express 4), an empty name, ``:name*``, params with no text
between them (unless both are constrained), a repeated name, two ``*`` in one path, and a path
not starting with ``/`` or ``*`` (it could never match; ``""`` means ``/``).

Matching ignores ASCII case unless ``case_sensitive`` (targets are ASCII on the wire, so folding
ASCII only keeps dict and regex routes in exact agreement) and one trailing slash unless
``strict``. ``end=False`` is a prefix match ending at a ``/`` or the end, for ``use()`` mounts.

Constraints and user ``re.Pattern``\\s are walked with the standard library's regex parser
(private ``re._parser``; ``sre_parse`` before 3.11) and refused when they could backtrack
catastrophically: a repeated group (maximum above one) holding a variable quantifier or an
alternation, a backreference, or a construct the walker does not know. Conservative
(``(?:\\d+,)*\\d+`` is refused: write ``[\\d,]+``); polynomial blow-ups between sibling
quantifiers (``\\d+\\d+``) are not looked for.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import string
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from evserve.errors import HTTPError, PatternError

__all__ = [
    "PathMatch",
    "PathPattern",
    "PatternError",
    "compile_path",
    "decode_param",
    "normalize_plain",
]

PathArg = str | re.Pattern[str] | Sequence[Any]

_NAME_CHARS: Final = frozenset(string.ascii_letters + string.digits + "_")
_RESERVED: Final = frozenset("()[]{}?+")
_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE_RUN: Final = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_BOUNDARY: Final = r"(?=/|\Z)"


class PathMatch(NamedTuple):
    """The result of a successful :meth:`PathPattern.match` (immutable; a ``NamedTuple`` because
    one is built per matched layer per request, at well under half a frozen dataclass's cost).

    Attributes:
        path: the matched part of the request path, still percent-encoded. For an ``end=True``
            pattern the whole path; for a prefix (``end=False``) the matched mount text without
            its trailing slash, ``""`` for ``/``, so ``path[len(match.path):]`` is the rest.
        params: the percent-decoded parameters; optional ones that did not match are absent.
            A fresh dict on every match.
    """

    path: str
    params: dict[str, str]


def _lower(text: str) -> str:
    """Lowercase the ASCII letters of ``text`` only (see the module docstring)."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def normalize_plain(path: str, *, case_sensitive: bool, strict: bool) -> str:
    """Normalise a request path the way :meth:`PathPattern.plain_key` normalises a plain pattern.

    A plain ``end=True`` pattern matches ``path`` exactly when
    ``normalize_plain(path, ...) == pattern.plain_key()``, so the router can keep plain routes in
    a dict. ASCII letters are lowercased unless ``case_sensitive``; one trailing slash is dropped
    unless ``strict``.
    """
    if not case_sensitive:
        path = _lower(path)
    if not strict and path.endswith("/"):
        path = path[:-1]
    return path


def decode_param(value: str) -> str:
    """Percent-decode a parameter value as UTF-8, like JavaScript's ``decodeURIComponent``.

    ``+`` stays ``+``. Raises only :class:`~evserve.errors.HTTPError` with status 400, for a
    ``%`` not followed by two hex digits or escapes that are not valid UTF-8.
    """
    if "%" not in value:
        return value
    if _BAD_ESCAPE.search(value) is not None:
        raise _decode_error(value)
    try:
        return _ESCAPE_RUN.sub(_decode_run, value)
    except UnicodeDecodeError:
        raise _decode_error(value) from None


def _decode_run(match: re.Match[str]) -> str:
    return bytes.fromhex(match.group().replace("%", "")).decode("utf-8")


def _decode_error(value: str) -> HTTPError:
    shown = value if len(value) <= 64 else value[:61] + "..."
    return HTTPError(400, f"Failed to decode param {shown!r}")


class PathPattern:
    """A compiled route path; build one with :func:`compile_path`.

    Instances are immutable and shared (compilation is cached). ``match`` is safe to call from
    any thread.

    Attributes:
        source: the path exactly as given to :func:`compile_path`.
        keys: the parameter names, in order (a list's is the union of its alternatives').
        is_plain: the path is a literal string (no params, wildcards or regex), so
            :meth:`plain_key` can stand in for :meth:`match` (for ``end=True``).
        literal_prefix: the longest literal text every matching path starts with, cut before the
            first non-ASCII character and ASCII-lowercased unless case sensitive, so
            ``path.lower().startswith(literal_prefix)`` holds for every match when not case
            sensitive (``path.startswith`` when it is). ``""`` for a ``re.Pattern``.
    """

    __slots__ = ("is_plain", "keys", "literal_prefix", "source")

    source: object
    keys: tuple[str, ...]
    is_plain: bool
    literal_prefix: str

    def __init__(self, source: object, keys: tuple[str, ...], literal_prefix: str) -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "is_plain", False)
        object.__setattr__(self, "literal_prefix", literal_prefix)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"

    def match(self, path: str) -> PathMatch | None:
        """Match a request path (percent-encoded, without the query).

        Returns:
            A :class:`PathMatch` with a fresh params dict, or ``None``.

        Raises:
            HTTPError: 400 when a matched parameter has a malformed percent-escape; nothing
                else.
        """
        raise NotImplementedError

    def plain_key(self) -> str:
        """The normalised literal to look a plain pattern up by (see :func:`normalize_plain`).

        Raises:
            ValueError: the pattern is not plain.
        """
        raise ValueError(f"{self.source!r} is not a plain path")


class _PlainPattern(PathPattern):
    """A literal path matched by string comparison, no regex."""

    __slots__ = ("_case_sensitive", "_end", "_key", "_strict", "_width")

    _case_sensitive: bool
    _end: bool
    _key: str
    _strict: bool
    _width: int

    def __init__(
        self, source: str, literal: str, *, case_sensitive: bool, strict: bool, end: bool
    ) -> None:
        key = normalize_plain(literal, case_sensitive=case_sensitive, strict=strict)
        super().__init__(source, (), _prefix_hint(key))
        object.__setattr__(self, "is_plain", True)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_width", len(key))
        object.__setattr__(self, "_case_sensitive", case_sensitive)
        object.__setattr__(self, "_strict", strict)
        object.__setattr__(self, "_end", end)

    def plain_key(self) -> str:
        return self._key

    def match(self, path: str) -> PathMatch | None:
        if self._end:  # normalize_plain, inlined: this is the per-request path
            text = path if self._case_sensitive else _lower(path)
            if not self._strict and text.endswith("/"):
                text = text[:-1]
            return PathMatch(path, {}) if text == self._key else None
        width = self._width
        head = path[:width]
        if (head if self._case_sensitive else _lower(head)) != self._key:
            return None
        # Like path-to-regexp's (?=/|$): the mount must end at a segment boundary, except that a
        # strict mount written with its trailing slash already ends on one.
        if len(path) > width and path[width] != "/" and not (self._strict and head[-1:] == "/"):
            return None
        return PathMatch(head[:-1] if head.endswith("/") else head, {})


class _RegexPattern(PathPattern):
    """A string path with params or wildcards, or a user ``re.Pattern``, as one compiled regex.

    ``text`` gives :attr:`PathMatch.path`: ``"whole"`` the request path (string routes),
    ``"mount"`` the match without its trailing slash (string mounts), ``"checked"`` the same once
    the match is seen to end at a boundary (user regex mounts, as Express checks them),
    ``"found"`` the match (user regex routes).
    """

    __slots__ = ("_fn", "_groups", "_text")

    _fn: Callable[[str], re.Match[str] | None]
    _groups: tuple[tuple[str, int], ...]
    _text: str

    def __init__(
        self,
        source: object,
        keys: tuple[str, ...],
        literal_prefix: str,
        fn: Callable[[str], re.Match[str] | None],
        groups: tuple[tuple[str, int], ...],
        text: str,
    ) -> None:
        super().__init__(source, keys, literal_prefix)
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_groups", groups)
        object.__setattr__(self, "_text", text)

    def match(self, path: str) -> PathMatch | None:
        m = self._fn(path)
        if m is None:
            return None
        mode = self._text
        text = path if mode == "whole" else m.group()
        if mode == "checked":
            stop = m.end()
            if stop < len(path) and path[stop] != "/" and not text.endswith("/"):
                return None
        if mode != "found" and mode != "whole" and text.endswith("/"):
            text = text[:-1]
        params: dict[str, str] = {}
        if self._groups:
            values = m.groups()
            for key, index in self._groups:
                value = values[index]
                if value is not None:
                    params[key] = decode_param(value) if "%" in value else value
        return PathMatch(text, params)


class _ListPattern(PathPattern):
    """Alternatives tried in order; the first match wins."""

    __slots__ = ("_alternatives",)

    _alternatives: tuple[PathPattern, ...]

    def __init__(self, source: object, alternatives: tuple[PathPattern, ...]) -> None:
        keys = tuple(dict.fromkeys(k for alt in alternatives for k in alt.keys))
        prefixes = [alt.literal_prefix for alt in alternatives]
        prefix = os.path.commonprefix(prefixes)  # noqa: RUF071 - per character is the point
        super().__init__(source, keys, prefix)
        object.__setattr__(self, "_alternatives", alternatives)

    def match(self, path: str) -> PathMatch | None:
        for alternative in self._alternatives:
            found = alternative.match(path)
            if found is not None:
                return found
        return None


def compile_path(
    path: PathArg,
    *,
    case_sensitive: bool = False,
    strict: bool = False,
    end: bool = True,
) -> PathPattern:
    """Compile a route path once, for matching request paths many times.

    Args:
        path: a path string, a compiled ``re.Pattern[str]`` or a (possibly nested) list of them.
        case_sensitive: compare ASCII letters exactly (a ``re.Pattern`` keeps its own flags).
        strict: a trailing slash is significant.
        end: match the whole path (routes); ``False`` matches a prefix ending at ``/`` or at the
            end of the path (``use()`` mounts).

    Returns:
        A shared, immutable :class:`PathPattern` (string and regex inputs are cached).

    Raises:
        PatternError: invalid syntax, an invalid regex, or one that could backtrack
            catastrophically.
        TypeError: ``path`` is not a str, a ``re.Pattern[str]`` or a list of them.
    """
    if isinstance(path, (str, re.Pattern)):
        return _compile_one(path, bool(case_sensitive), bool(strict), bool(end))
    if isinstance(path, Sequence) and not isinstance(path, (bytes, bytearray)):
        alternatives = tuple(
            compile_path(item, case_sensitive=case_sensitive, strict=strict, end=end)
            for item in path
        )
        if not alternatives:
            raise PatternError("an empty list of paths matches nothing")
        return _ListPattern(path, alternatives)
    raise TypeError(f"a path must be a str, re.Pattern or list of them, not {type(path).__name__}")


@functools.lru_cache(maxsize=512)
def _compile_one(
    path: str | re.Pattern[str], case_sensitive: bool, strict: bool, end: bool
) -> PathPattern:
    if isinstance(path, re.Pattern):
        return _compile_user_regex(path, end)
    tokens = _tokenize(path)
    if all(isinstance(tok, str) for tok in tokens):
        literal = "".join(tok for tok in tokens if isinstance(tok, str))
        # Without strict, "/a//" matches "/a/" and "/a//": no one dict key stands for both.
        if strict or not literal.endswith("//"):
            return _PlainPattern(
                path, literal, case_sensitive=case_sensitive, strict=strict, end=end
            )
    return _compile_tokens(path, tokens, case_sensitive, strict, end)


@dataclass(frozen=True, slots=True)
class _Param:
    """One parameter token of a string path."""

    name: str
    kind: str  # "param" (:name), "rest" (*name) or "star" (bare *)
    capture: str  # the regex inside the capturing group
    optional: bool
    delimiter: str  # the "/" or "." made optional along with an optional param
    constrained: bool


_Token = str | _Param


def _tokenize(source: str) -> list[_Token]:
    """Split a string path into literal text and :class:`_Param` tokens, refusing bad syntax."""
    if source and source[0] not in "/*":
        raise PatternError(f"path {source!r} must start with '/' (or be '*')")
    tokens: list[_Token] = []
    text: list[str] = []  # literal text since the previous param
    names: set[str] = set()
    wildcards = 0
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "\\":
            if i + 1 == n:
                raise PatternError(f"path {source!r} ends with a lone backslash")
            text.append(source[i + 1])
            i += 2
            continue
        if char in _RESERVED:
            raise PatternError(
                f"path {source!r}: {char!r} at {i} is reserved; use :name(regex) for a regex "
                "parameter or escape it with a backslash"
            )
        if char not in ":*":
            text.append(char)
            i += 1
            continue
        j = i + 1
        while j < n and source[j] in _NAME_CHARS:
            j += 1
        name = source[i + 1 : j]
        pending = "".join(text)
        previous = tokens[-1] if tokens else None
        constrained = False
        if char == ":":
            if not name:
                raise PatternError(
                    f"path {source!r}: empty parameter name at {i} "
                    "(escape a literal ':' with a backslash)"
                )
            kind = "param"
            if j < n and source[j] == "(":
                body, j = _read_group(source, j)
                _check_regex(body, 0, f"path {source!r}: the constraint of :{name}")
                capture = body
                constrained = True
            elif pending.endswith("."):
                capture = r"[^/.]+?"  # path-to-regexp's "format" param: /file.:ext
            elif isinstance(previous, _Param) and pending and "/" not in pending:
                # path-to-regexp 0.1.12: a param after another in the same segment may not contain
                # the text between them, which keeps /:a-:b-:c linear instead of polynomial.
                capture = rf"(?:(?!{re.escape(pending)})[^/])+?"
            else:
                capture = r"[^/]+?"
            if j < n and source[j] in "*+":
                raise PatternError(
                    f"path {source!r}: ':{name}{source[j]}' is not supported; "
                    f"write '*{name}' for the rest of the path"
                )
        else:
            wildcards += 1
            if wildcards > 1:
                raise PatternError(
                    f"path {source!r}: more than one '*' in one path could backtrack "
                    "polynomially; use one rest parameter"
                )
            if name:
                kind, capture = "rest", r"(?s:.+?)"
            else:  # Express 4's unnamed (.*); the only one, so always "0"
                name, kind, capture = "0", "star", r"(?s:.*)"
        if name in names:
            raise PatternError(f"path {source!r}: parameter {name!r} appears twice")
        names.add(name)
        if isinstance(previous, _Param) and not pending:
            if not (constrained and previous.constrained):
                raise PatternError(
                    f"path {source!r}: parameters {previous.name!r} and {name!r} need literal "
                    "text between them"
                )
        optional = j < n and source[j] == "?"
        if optional:
            j += 1
        delimiter = ""
        if optional and pending[-1:] in ("/", "."):
            delimiter, pending = pending[-1], pending[:-1]
        if pending:
            tokens.append(pending)
        text.clear()
        tokens.append(_Param(name, kind, capture, optional, delimiter, constrained))
        i = j
    if text:
        tokens.append("".join(text))
    return tokens


def _read_group(source: str, start: int) -> tuple[str, int]:
    """Return the text inside the balanced ``(...)`` at ``start`` and the index after it."""
    depth = 0
    in_class = False
    i = start
    while i < len(source):
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            i += 1
            if source.startswith("^", i):
                i += 1
            if source.startswith("]", i):
                i += 1  # a leading ']' is literal inside a class
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                body = source[start + 1 : i]
                if not body:
                    raise PatternError(f"path {source!r}: empty constraint '()' at {start}")
                return body, i + 1
        i += 1
    raise PatternError(f"path {source!r}: unbalanced '(' at {start}")


def _compile_tokens(
    source: str, tokens: list[_Token], case_sensitive: bool, strict: bool, end: bool
) -> PathPattern:
    """Build and compile the regex of a string path that has parameters."""
    if not strict and isinstance(tokens[-1], str) and tokens[-1].endswith("/"):
        tokens = tokens[:-1] + ([tokens[-1][:-1]] if len(tokens[-1]) > 1 else [])
    parts: list[str] = []
    slots: list[tuple[str, str]] = []
    for index, token in enumerate(tokens):
        if isinstance(token, str):
            parts.append(re.escape(token))
            continue
        group = f"_evp{index}"
        capture = token.capture
        if token.constrained and not case_sensitive:
            capture = f"(?u:{capture})"  # the user's \d, \w keep their Unicode meaning
        capture = f"(?P<{group}>{capture})"
        if token.optional:
            capture = f"(?:{re.escape(token.delimiter)}{capture})?"
        parts.append(capture)
        slots.append((token.name, group))
    body = "".join(parts)
    last = tokens[-1]
    # A prefix whose last token is a wildcard takes the whole path anyway.
    whole = end or (isinstance(last, _Param) and last.kind != "param")
    if whole:
        pattern = body if strict else body + "/?"
    elif strict and isinstance(last, str) and last.endswith("/"):
        pattern = body
    elif strict:
        pattern = body + _BOUNDARY
    else:
        # path-to-regexp's greedy "/?" only changes the match when the body ends in "/" (a
        # pattern ending in "//"): "//" then takes all of "//", leaving "/" to the mounted app.
        pattern = body + "/?" + _BOUNDARY
    # re.ASCII folds ASCII letters only; constraints are wrapped in (?u:...) above.
    flags = 0 if case_sensitive else re.IGNORECASE | re.ASCII
    try:
        regex = re.compile(pattern, flags)
    except Exception as exc:  # re.error, RecursionError, OverflowError: all mean a bad pattern
        raise PatternError(f"path {source!r} does not compile: {exc}") from None
    groups = tuple((name, regex.groupindex[group] - 1) for name, group in slots)
    head = tokens[0] if isinstance(tokens[0], str) else ""
    prefix = _prefix_hint(head if case_sensitive else _lower(head))
    fn = regex.fullmatch if whole else regex.match
    keys = tuple(name for name, _ in slots)
    return _RegexPattern(source, keys, prefix, fn, groups, "whole" if end else "mount")


def _compile_user_regex(regex: re.Pattern[str], end: bool) -> PathPattern:
    """Wrap a user's compiled regex: searched anywhere for a route, anchored for a mount."""
    if not isinstance(regex.pattern, str):
        raise TypeError("a path regex must be a str pattern, not bytes")
    _check_regex(regex.pattern, regex.flags, "path regex")
    names = {index: name for name, index in regex.groupindex.items()}
    keys: list[str] = []
    unnamed = 0
    for index in range(1, regex.groups + 1):
        if index in names:
            keys.append(names[index])
        else:
            keys.append(str(unnamed))
            unnamed += 1
    groups = tuple((key, index) for index, key in enumerate(keys))
    # Express runs a route regex with exec() (unanchored) and keeps a mount only when the match
    # is a prefix ending at a boundary, so a mount uses match() and checks the boundary.
    fn = regex.search if end else regex.match
    return _RegexPattern(regex, tuple(keys), "", fn, groups, "found" if end else "checked")


def _prefix_hint(literal: str) -> str:
    """Cut a literal prefix before its first non-ASCII character (see ``literal_prefix``)."""
    for i, char in enumerate(literal):
        if not char.isascii():
            return literal[:i]
    return literal


# -- catastrophic-backtracking check -------------------------------------------------------------

_REPEATS: Final = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})
_LEAVES: Final = frozenset(
    {"LITERAL", "NOT_LITERAL", "ANY", "IN", "AT", "CATEGORY", "RANGE", "NEGATE", "FAILURE"}
)


@functools.cache
def _regex_parser() -> Any:
    """The standard library's regex parser module (private, hence ``Any``)."""
    try:
        return importlib.import_module("re._parser")  # Python 3.11+
    except ImportError:
        # Python 3.10's name; on later versions importing it warns (deprecated), which a
        # program running with warnings as errors would turn into a refusal of every pattern.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module("sre_parse")


def _check_regex(text: str, flags: int, what: str) -> None:
    """Raise :class:`PatternError` if ``text`` is not a valid, backtracking-safe regex."""
    flags &= ~re.DEBUG  # a user pattern's DEBUG flag would print the tree again
    try:
        re.compile(text, flags)
    except Exception as exc:  # re.error, RecursionError, OverflowError
        raise PatternError(f"{what} {text!r} is not a valid regular expression: {exc}") from None
    try:
        problem = _backtracking_problem(_regex_parser().parse(text, flags))
    except Exception as exc:  # the private parser's tree changed shape: refuse, never crash
        raise PatternError(f"{what} {text!r} could not be checked: {exc!r}") from None
    if problem is not None:
        raise PatternError(f"{what} {text!r} could backtrack catastrophically: {problem}")


def _backtracking_problem(tree: Any) -> str | None:
    """Walk a parsed regex (iteratively) and describe the first dangerous construct, if any."""
    stack: list[tuple[Any, bool]] = [(tree, False)]
    while stack:
        items, repeated = stack.pop()
        for op, arg in items:
            name = str(getattr(op, "name", op))
            if name in _REPEATS:
                low, high, sub = arg
                if repeated and low != high:
                    return "a variable quantifier inside a repeated group (like (a+)+)"
                stack.append((sub, repeated or high > 1))
            elif name == "BRANCH":
                if repeated:
                    return "an alternation inside a repeated group (like (a|aa)+)"
                stack.extend((alternative, repeated) for alternative in arg[1])
            elif name == "SUBPATTERN":
                stack.append((arg[-1], repeated))
            elif name == "ATOMIC_GROUP":
                stack.append((arg, repeated))
            elif name in ("ASSERT", "ASSERT_NOT"):
                stack.append((arg[1], repeated))
            elif name in ("GROUPREF", "GROUPREF_EXISTS", "GROUPREF_IGNORE"):
                return "a backreference"
            elif name not in _LEAVES:
                return f"an unsupported construct ({name})"
    return None
