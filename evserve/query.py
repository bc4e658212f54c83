"""Query-string parsing: Express's "extended" parser (npm qs semantics) and its "simple" one."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_query", "parse_simple"]

# qs turns "%5B"/"%5D" into brackets before anything else, so encoded brackets nest too.
_BRACKET_ESCAPE = re.compile(r"%5[bBdD]")
# A run of well-formed percent-escapes, decoded together so multi-byte UTF-8 holds together.
_ESCAPE_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
# A "%" not followed by two hex digits: decodeURIComponent's URIError.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# The brackets of a key, for finding where a bracket group closes.
_BRACKETS = re.compile(r"[\[\]]")
# A canonical non-negative decimal (qs: String(parseInt(x)) === x); bounded so int() stays cheap.
_INDEX = re.compile(r"0|[1-9][0-9]{0,17}")
# A JavaScript array index ("0" to "4294967294"): qs visits such keys first, in numeric order,
# because JavaScript enumerates an object's integer keys before its other keys.
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]{0,9}")
_MAX_ARRAY_INDEX = 2**32 - 2
# The deepest bracket nesting honoured whatever ``depth`` says: keeps the merge's recursion small.
_MAX_DEPTH = 100
# How deep an object may already nest for a value to be put beside it in a list (qs's
# strictMerge); deeper, the value is ignored. Bounds what conflicting keys can add to nesting.
_MAX_WRAPPED_NESTING = 100


def _bracket(match: re.Match[str]) -> str:
    return "[" if match.group()[2] in "bB" else "]"


def _unescape_run(match: re.Match[str]) -> str:
    return bytes.fromhex(match.group().replace("%", "")).decode("utf-8", "replace")


def _unescape_run_strict(match: re.Match[str]) -> str:
    return bytes.fromhex(match.group().replace("%", "")).decode("utf-8")


def decode_component(text: str) -> str:
    """JavaScript's ``decodeURIComponent``, or ``text`` unchanged where it would throw.

    A malformed escape ("%zz", a lone "%") or escapes that are not valid UTF-8 (``caf%E9``)
    leave the whole text as it is, as qs and npm cookie do on the exception. Never raises.
    """
    if "%" not in text or _BAD_ESCAPE.search(text):
        return text
    try:
        return _ESCAPE_RUN.sub(_unescape_run_strict, text)
    except UnicodeDecodeError:
        return text


def _decode(text: str) -> str:
    """Decode one key or value as qs does: "+" is a space, then :func:`decode_component`."""
    return decode_component(text.replace("+", " ") if "+" in text else text)


def _decode_lenient(text: str) -> str:
    """Decode as Node's ``querystring.unescape``: "+" is a space, escape by escape.

    Malformed escapes stay as they are and invalid UTF-8 becomes U+FFFD. Never raises.
    """
    if "+" in text:
        text = text.replace("+", " ")
    if "%" in text:
        text = _ESCAPE_RUN.sub(_unescape_run, text)
    return text


def _split_pair(part: str) -> tuple[str, str]:
    """Split ``key=value`` the qs way: a "]=" wins over the first "=", so ``a[=]=1`` works."""
    pos = part.find("]=")
    pos = part.find("=") if pos < 0 else pos + 1
    if pos < 0:
        return part, ""
    return part[:pos], part[pos + 1 :]


def _pairs(qs: str, parameter_limit: int) -> list[str]:
    """Return at most ``parameter_limit`` "&"-separated pieces (empty ones count, as in qs)."""
    parts = qs.split("&", parameter_limit)
    if len(parts) > parameter_limit:
        del parts[parameter_limit:]
    return parts


class _Arr:
    """A JavaScript-style sparse array while parsing: explicit indices, holes compacted at the end."""

    __slots__ = ("items", "length", "ordered")

    def __init__(self) -> None:
        self.items: dict[int, Any] = {}
        self.length = 0
        self.ordered = True

    def set(self, index: int, value: Any) -> None:
        if index >= self.length:
            self.length = index + 1
        elif index not in self.items:
            self.ordered = False
        self.items[index] = value

    def push(self, value: Any) -> None:
        self.items[self.length] = value
        self.length += 1

    def entries(self) -> list[tuple[int, Any]]:
        """Return ``(index, value)`` pairs in index order."""
        if self.ordered:
            return list(self.items.items())
        return sorted(self.items.items(), key=_first)

    def to_dict(self) -> dict[str, Any]:
        """qs ``arrayToObject``: the same values under their index as a string key."""
        return {str(i): v for i, v in self.entries()}


def _first(entry: tuple[int, Any]) -> int:
    return entry[0]


def _group(parts: list[str], cap: int) -> dict[str, str | list[str]]:
    """qs ``parseValues``: decode each pair and gather repeated raw keys into capped lists."""
    grouped: dict[str, str | list[str]] = {}
    for part in parts:
        if not part:
            continue
        raw_key, raw_value = _split_pair(part)
        key = _decode(raw_key)
        if not key:
            continue
        value = _decode(raw_value) if raw_value else ""
        old = grouped.get(key)
        if old is None:
            grouped[key] = value
        elif isinstance(old, list):
            if len(old) < cap:
                old.append(value)
        elif cap >= 2:
            grouped[key] = [old, value]
    return grouped


def _close(key: str, open_: int) -> int:
    """The index of the "]" that closes the "[" at ``open_`` (nested pairs balanced), or -1."""
    level = 0
    for match in _BRACKETS.finditer(key, open_):
        if match.group() == "[":
            level += 1
        else:
            level -= 1
            if not level:
                return match.start()
    return -1


def _chain(key: str, depth: int) -> list[str]:
    """qs ``splitKeyIntoSegments``: split ``a[b][c]`` into ``["a", "[b]", "[c]"]``.

    A group is balanced, so ``a[[b]]`` is ``["a", "[[b]]"]`` (the key ``"[b]"``). Text between
    or after groups is dropped (``a[b]c`` is ``["a", "[b]"]``). After ``depth`` groups, or at a
    group that never closes, the rest of the key (from that "[" on) becomes one last segment
    wrapped in brackets, so that its cleaned text keeps its own brackets: ``a[b`` is
    ``["a", "[[b]"]`` (the key ``"[b"``), ``[`` is ``["[[]"]`` (the key ``"["``).
    """
    first = key.find("[") if depth > 0 else -1
    if first < 0:
        return [key]
    chain = [key[:first]] if first else []
    open_ = first
    groups = 0
    while open_ >= 0 and groups < depth:
        # Most groups hold no "[": then the next "]" closes them, found without a scan.
        close = key.find("]", open_ + 1)
        if close < 0:
            break
        inner = key.find("[", open_ + 1)
        if 0 <= inner < close:
            close = _close(key, open_)
            if close < 0:
                break
        chain.append(key[open_ : close + 1])
        groups += 1
        open_ = key.find("[", close + 1)
    if open_ >= 0:
        chain.append("[" + key[open_:] + "]")
    return chain


def _build(chain: list[str], value: str | list[str], array_limit: int) -> Any:
    """qs ``parseObject``: the one-path structure ``chain`` describes, with ``value`` at its end."""
    leaf: Any
    if isinstance(value, list):
        leaf = _Arr()
        for item in value:
            leaf.push(item)
    else:
        leaf = value
    for root in reversed(chain):
        if root == "[]":
            if not isinstance(leaf, _Arr):
                arr = _Arr()
                arr.push(leaf)
                leaf = arr
            continue
        if len(root) >= 2 and root[0] == "[" and root[-1] == "]":
            clean = root[1:-1]
            if _INDEX.fullmatch(clean) and int(clean) < array_limit:
                arr = _Arr()
                arr.set(int(clean), leaf)
                leaf = arr
                continue
        else:
            clean = root
        leaf = {clean: leaf}
    return leaf


def _merge(target: Any, source: Any, cap: int) -> Any:
    """qs ``utils.merge`` (``strictMerge``, its default since 6.15) with every list kept to
    ``cap`` items; returns the merged target.

    Recursion follows ``source``, whose depth is bounded by the key chain (at most
    ``_MAX_DEPTH + 3`` levels).
    """
    if isinstance(source, str):
        if not source:
            # qs returns the target for a falsy source: an empty value adds nothing.
            return target
        if isinstance(target, _Arr):
            if len(target.items) < cap:
                target.push(source)
            return target
        # A value meeting a value or an object: both, in a list ("a[b]=1&a=2" gives
        # [{"b": "1"}, "2"]; qs without strictMerge made the value a key set to true).
        return _pair(target, source, cap)
    if not isinstance(target, dict | _Arr):
        # qs: [target].concat(source), holes kept (and compacted at the end).
        if isinstance(source, dict):
            return _pair(target, source, cap)
        if cap < 2:
            return target
        arr = _Arr()
        arr.push(target)
        for index, item in source.entries():
            if len(arr.items) >= cap:
                break
            arr.set(index + 1, item)
        return arr
    if isinstance(target, _Arr):
        if isinstance(source, _Arr):
            for index, item in source.entries():
                if index in target.items:
                    current = target.items[index]
                    if isinstance(current, dict | _Arr) and isinstance(item, dict | _Arr):
                        target.items[index] = _merge(current, item, cap)
                    elif len(target.items) < cap:
                        target.push(item)
                elif len(target.items) < cap:
                    target.set(index, item)
            return target
        target = target.to_dict()
    pairs = source.items() if isinstance(source, dict) else _string_keys(source)
    for key, value in pairs:
        if key in target:
            target[key] = _merge(target[key], value, cap)
        else:
            target[key] = value
    return target


def _pair(first: Any, second: Any, cap: int) -> Any:
    """The two-item list ``[first, second]``, or ``first`` alone when lists hold one item.

    Each such list nests ``first`` one level deeper, and keys that differ only in text qs drops
    (``a[b]x``, ``a[b]y``...) can repeat that at one place; past ``_MAX_WRAPPED_NESTING``
    levels the value is ignored instead, so the result stays shallow enough for recursive
    Python code (``copy.deepcopy``, ``json``) whatever the query.
    """
    if cap < 2 or _nests_deeper(first, _MAX_WRAPPED_NESTING):
        return first
    arr = _Arr()
    arr.push(first)
    arr.push(second)
    return arr


def _nests_deeper(node: Any, levels: int) -> bool:
    """Whether ``node`` holds containers more than ``levels`` levels down (breadth first, so
    the work stops at that level)."""
    layer = [node]
    for _ in range(levels + 1):
        below: list[Any] = []
        for item in layer:
            if isinstance(item, dict):
                below.extend(v for v in item.values() if isinstance(v, dict | _Arr))
            elif isinstance(item, _Arr):
                below.extend(v for v in item.items.values() if isinstance(v, dict | _Arr))
        if not below:
            return False
        layer = below
    return True


def _string_keys(arr: _Arr) -> list[tuple[str, Any]]:
    return [(str(i), v) for i, v in arr.entries()]


def _finalize(result: dict[str, Any]) -> dict[str, Any]:
    """Turn every sparse array into a compact ``list``, iteratively (no recursion)."""
    stack: list[dict[str, Any] | list[Any]] = [result]
    while stack:
        node = stack.pop()
        slots: Any = node.items() if isinstance(node, dict) else enumerate(node)
        for slot, value in list(slots):
            if isinstance(value, _Arr):
                value = [v for _, v in value.entries()]
                node[slot] = value
            if isinstance(value, dict | list):
                stack.append(value)
    return result


def _js_key_order(grouped: dict[str, Any]) -> dict[str, Any]:
    """The keys in JavaScript's enumeration order: array indices ascending, then the rest as
    inserted. qs merges keys in that order, which decides conflicts such as ``5[]=a&5=b``."""
    indices = [k for k in grouped if k[:1].isdigit() and _ARRAY_INDEX.fullmatch(k)]
    indices = [k for k in indices if int(k) <= _MAX_ARRAY_INDEX]
    if not indices:
        return grouped
    indices.sort(key=int)
    ordered = {k: grouped[k] for k in indices}
    ordered.update(grouped)
    return ordered


def parse_query(
    qs: str,
    *,
    depth: int = 5,
    parameter_limit: int = 1000,
    array_limit: int = 100,
) -> dict[str, Any]:
    """Parse a query string (or urlencoded body) like Express's "extended" parser, npm ``qs``.

    Pairs are separated by "&", "+" is a space and percent-escapes are UTF-8; a key or value
    with a malformed escape or escapes that are not valid UTF-8 is kept as it was, only "+"
    turned into a space (qs: ``caf%E9`` stays ``"caf%E9"``). A pair without "=" has the value
    ``""``; an empty key is skipped (``=x`` gives ``{}``). ``a[b]=1`` gives
    ``{"a": {"b": "1"}}``; ``a[]=1&a[]=2``, ``a=1&a=2`` and ``a[0]=1&a[1]=2`` give lists.

    Brackets follow qs 6.15: a group is balanced (``a[[b]]=1`` gives ``{"a": {"[b]": "1"}}``);
    text between or after groups is dropped (``a[b]c=1`` is ``a[b]=1``); a group that never
    closes keeps the rest of the key as the last key (``a[b=1`` gives ``{"a": {"[b": "1"}}``,
    ``a[=1`` gives ``{"a": {"[": "1"}}``); a "]" with no "[" is ordinary text.

    When one key is both a value and a container, qs's merge decides: a value then a list, or a
    list then a value, gives one list (``a=1&a[]=2`` and ``a[]=1&a=2`` give ``["1", "2"]``);
    a value and an object give both in a list, in the order they came (``a[b]=1&a=2`` gives
    ``[{"b": "1"}, "2"]``, ``a=2&a[b]=1`` gives ``["2", {"b": "1"}]``); an empty value adds
    nothing to an object or list (``a[b]=1&a=`` gives ``{"b": "1"}``); a list meeting an object
    becomes a dict keyed ``"0"``, ``"1"``... Keys are merged in JavaScript's order: those that
    are array indices (``"0"``, ``"12"``) first, ascending, then the others as they came.

    Bounds (past them the extra is ignored, never an error; qs instead throws with options
    Express does not set, and turns an over-long list into a dict keyed ``"0"``, ``"1"``...):

    * ``depth``: bracket groups after the top-level key; the rest of the key, brackets
      included, becomes the last key's text (``a[b][c]`` with depth 1 is
      ``{"a": {"b": {"[c]": ...}}}``). Values above 100 count as 100; 0 (or less) disables
      nesting, as body-parser's non-extended urlencoded parser does (qs with depth 0:
      ``a[b]=1`` stays ``{"a[b]": "1"}``).
    * ``parameter_limit``: "&"-separated pieces read (empty pieces count, as in qs).
    * ``array_limit``: an explicit index ``[n]`` makes a list only when ``n < array_limit``
      (else a dict with the key ``"n"``); no list ever holds more than ``array_limit`` items
      (at least 1), further items being dropped.

    Args:
        qs: the query string, without its leading "?".
        depth: the deepest bracket nesting honoured.
        parameter_limit: how many pairs are read at most.
        array_limit: the most items a list holds (list indices run below it).

    Returns:
        A new dict of ``str`` keys whose values are ``str``, ``list`` or ``dict``. Never raises
        for any ``str``; the work and the output are linear in the input.
    """
    if not qs or parameter_limit < 1:
        return {}
    if "%" in qs:
        qs = _BRACKET_ESCAPE.sub(_bracket, qs)
    cap = max(array_limit, 1)
    grouped = _js_key_order(_group(_pairs(qs, parameter_limit), cap))
    if "[" not in qs:
        # Fast path: no brackets, so every key is its own path and nothing needs merging.
        return dict(grouped)
    depth = min(depth, _MAX_DEPTH)
    result: dict[str, Any] = {}
    for key, value in grouped.items():
        source = _build(_chain(key, depth), value, array_limit)
        result = _merge(result, source, cap)
    return _finalize(result)


def parse_simple(qs: str, *, parameter_limit: int = 1000) -> dict[str, str | list[str]]:
    """Parse a query string like Express's "simple" parser, Node's ``querystring.parse``.

    No nesting: brackets are ordinary characters. "+" is a space, percent-escapes decode escape
    by escape as Node does (malformed ones are kept literally, invalid UTF-8 becomes U+FFFD); a
    repeated key gives a list in order of appearance; a pair without "=" has the value ``""``;
    an empty piece between two "&" is skipped, but ``=1`` keeps its empty key (as Node does).

    Args:
        qs: the query string, without its leading "?".
        parameter_limit: how many "&"-separated pieces are read at most (Node's ``maxKeys``).

    Returns:
        A new dict. Never raises for any ``str``.
    """
    result: dict[str, str | list[str]] = {}
    if not qs or parameter_limit < 1:
        return result
    for part in _pairs(qs, parameter_limit):
        if not part:
            continue
        raw_key, _, raw_value = part.partition("=")
        key = _decode_lenient(raw_key)
        value = _decode_lenient(raw_value)
        old = result.get(key)
        if old is None:
            result[key] = value
        elif isinstance(old, list):
            old.append(value)
        else:
            result[key] = [old, value]
    return result
