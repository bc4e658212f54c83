"""Reading JSON text from a client: one decoder whose every result can be written back as JSON.

Python's ``json`` module reads more than a strict JSON writer (``res.json``: ``allow_nan=False``,
UTF-8 out) can write: a number too large for a float (``1e999``) becomes ``inf``, and a
``\\ud800`` escape leaves a lone surrogate in a ``str`` that no UTF encodes. Accepting those
would let a valid-looking request break every response that echoes or stores it, so
:class:`JSONTextDecoder` refuses, with :class:`JSONTextError` (a ``ValueError``):

- malformed JSON (the ``json`` module's reason, with its line and column);
- ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON (RFC 8259 section 6);
- a number outside the range of a float (RFC 8259 section 6 lets a parser limit the range),
  at any depth: ``1e999``, ``-1e400``, ``1E+400``;
- an integer with more digits than Python converts (``sys.get_int_max_str_digits()``);
- a string, object keys included, holding an unpaired surrogate, escaped (``"\\udead"``) or
  raw (RFC 8259 section 8.2 leaves their behaviour unpredictable);
- arrays and objects nested deeper than ``max_depth`` (100 by default), found by a linear scan
  before the recursive parser starts.

The JSON body parser and ``j:`` cookies both decode here, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from itertools import accumulate
from typing import Any

__all__ = ["MAX_DEPTH", "JSONTextDecoder", "JSONTextError", "loads", "nesting_exceeds"]

# The deepest nesting accepted by default: far below Python's recursion limit.
MAX_DEPTH = 100

_INFINITY = float("inf")
_SHOWN = 32  # characters of an offending literal quoted in a message

# An escape for a high surrogate not followed by one for a low surrogate, or one for a low
# surrogate not preceded by one for a high surrogate: how json pairs them (UTF-16, RFC 2781).
# Searched only after escaped backslashes are blanked out, so every "\u" left is an escape.
_UNPAIRED = re.compile(
    r"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|[c-fC-F][0-9a-fA-F]{2}(?<!\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}))"
)

# The depth scan keeps only brackets (curly ones made square) and quotes: one C-level pass.
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_BRACKET_DELTA = [0] * 256
_BRACKET_DELTA[ord("[")] = 1
_BRACKET_DELTA[ord("]")] = -1
_PEAK_PASSES = 4


class JSONTextError(ValueError):
    """JSON text refused by :class:`JSONTextDecoder`; ``str(exc)`` is a short reason."""


class _Refused(ValueError):
    """Raised by the decoding hooks, turned into JSONTextError by the decoder."""


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _reject_constant(name: str) -> Any:
    raise _Refused(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    # Called by the C scanner for every number with a fraction or an exponent, so it stays a
    # conversion and one comparison: an integer literal can never overflow (ints are exact).
    value = float(literal)
    if value == _INFINITY or value == -_INFINITY:
        raise _Refused(f"number out of range: {_shorten(literal)}")
    return value


def _position(text: str, index: int) -> str:
    """``line L column C`` (both from 1) of ``text[index]``, as json's messages say it."""
    line = text.count("\n", 0, index) + 1
    column = index - text.rfind("\n", 0, index)
    return f"line {line} column {column}"


def _max_depth(skeleton: bytes) -> int:
    return max(accumulate(map(_BRACKET_DELTA.__getitem__, skeleton), initial=0))


def nesting_exceeds(data: bytes, limit: int) -> bool:
    """Whether UTF-8 JSON ``data`` nests arrays and objects deeper than ``limit``.

    Brackets inside strings do not count; mismatched brackets count as if they matched (the
    parser rejects those later, but must not recurse first). Linear time in C-level passes:

    1. escaped backslashes, then escaped quotes, are removed, so the quotes left delimit strings
       (bracket and quote bytes never occur inside a multi-byte UTF-8 sequence);
    2. every byte but brackets and quotes is deleted, ``{}`` becoming ``[]``;
    3. strings are cut out: adjacent quote pairs hold no bracket and go first (removing two
       neighbouring quotes keeps the others' parity), then the rest is split on quotes;
    4. a few passes remove the innermost pairs ``[]``: each removed pair leaves the depth of the
       others unchanged and was at most one level above them, so after ``p`` passes the true
       depth lies within ``[d, d + p]`` of the remainder's depth ``d``. Only when that is not
       enough to decide is the whole skeleton accumulated.
    """
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = data.translate(_SQUARE, _NOT_STRUCTURE)
    if b'"' in skeleton:
        skeleton = skeleton.replace(b'""', b"")
        if b'"' in skeleton:
            skeleton = b"".join(skeleton.split(b'"')[::2])
    whole = skeleton
    passes = 0
    while passes < _PEAK_PASSES:
        reduced = skeleton.replace(b"[]", b"")
        if len(reduced) == len(skeleton):
            break
        skeleton = reduced
        passes += 1
    depth = _max_depth(skeleton)
    if depth > limit:
        return True
    if depth + passes <= limit:
        return False
    return _max_depth(whole) > limit


def _unpaired_escape(text: str) -> re.Match[str] | None:
    """The first ``\\uXXXX`` escape of an unpaired surrogate in JSON ``text``, or None.

    Exact for valid JSON, where every backslash belongs to an escape inside a string: blanking
    out ``\\\\`` pairs from the left, as a lexer reads them, leaves only the backslashes that
    start another escape (and keeps every index where it was).
    """
    # Most texts hold no backslash at all: one memchr-fast test settles them.
    if "\\" not in text or ("\\ud" not in text and "\\uD" not in text):
        return None
    return _UNPAIRED.search(text.replace("\\\\", "  ") if "\\\\" in text else text)


class JSONTextDecoder:
    """Decode JSON text by the rules in this module's docstring.

    Build one per configuration and reuse it: :meth:`decode` keeps no state between calls and
    may be called from any thread.

    Args:
        object_hook: called with every decoded object (dict), its result used instead, as in
            ``json.loads``. It only ever sees values that passed the checks above.
        max_depth: the deepest nesting of arrays and objects accepted.
    """

    __slots__ = ("_decoder", "max_depth")

    def __init__(self, object_hook: Callable[[dict[str, Any]], Any] | None = None,
                 max_depth: int = MAX_DEPTH) -> None:
        self.max_depth = max_depth
        self._decoder = json.JSONDecoder(
            object_hook=object_hook, parse_float=_finite_float, parse_constant=_reject_constant
        )

    def decode(self, text: str, utf8: bytes | None = None) -> Any:
        """Return the value of the JSON ``text``.

        Args:
            text: one JSON value, surrounded by whitespace at most.
            utf8: ``text`` encoded as UTF-8, when the caller holds it already (a UTF-8 body):
                spares encoding it again for the depth scan.

        Raises:
            JSONTextError: the text is refused (see the module docstring).
            Exception: whatever ``object_hook`` raises, unchanged.
        """
        if utf8 is None and not text.isascii():
            try:
                utf8 = text.encode("utf-8")
            except UnicodeEncodeError as exc:
                code = ord(text[exc.start])
                raise JSONTextError(f"unpaired surrogate U+{code:04X} at {_position(text, exc.start)}") from None
        if text.count("[") + text.count("{") > self.max_depth and nesting_exceeds(
            text.encode("ascii") if utf8 is None else utf8, self.max_depth
        ):
            raise JSONTextError(f"nested deeper than {self.max_depth} levels")
        unpaired = _unpaired_escape(text)
        if unpaired is not None:
            # Checked before decoding so object_hook never sees such a string. On invalid JSON
            # the scan may name an escape outside a string: a refusal either way.
            raise JSONTextError(f"unpaired surrogate {unpaired.group()} at {_position(text, unpaired.start())}")
        try:
            return self._decoder.decode(text)
        except json.JSONDecodeError as exc:
            raise JSONTextError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except _Refused as exc:
            raise JSONTextError(str(exc)) from None
        except RecursionError:  # pragma: no cover - the depth scan refuses such input first
            raise JSONTextError(f"nested deeper than {self.max_depth} levels") from None
        except ValueError as exc:
            # int() refuses a literal with more digits than sys.get_int_max_str_digits(), with
            # a message about the interpreter setting: say what was wrong with the input.
            if "integer string conversion" not in str(exc):
                raise
            get_limit = getattr(sys, "get_int_max_str_digits", None)
            limit = f"more than {get_limit()}" if get_limit is not None else "too many"
            raise JSONTextError(f"integer with {limit} digits") from None


_DEFAULT = JSONTextDecoder()


def loads(text: str) -> Any:
    """Decode JSON ``text`` with a default :class:`JSONTextDecoder` (no hook, depth 100).

    Raises:
        JSONTextError: the text is refused.
    """
    return _DEFAULT.decode(text)
