"""Content-Disposition values with RFC 6266 / RFC 8187 filename encoding, as Express builds them
(the ``content-disposition`` package)."""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["content_disposition"]

_QUOTABLE = re.compile(r"[\x20-\x7e\x80-\xff]+")  # what a quoted-string may carry (with obs-text)
_NOT_LATIN1 = re.compile(r"[^\x20-\x7e\xa0-\xff]")  # replaced by "?" in the fallback name
_HEX_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_QUOTE_ESCAPE = re.compile(r'([\\"])')


def content_disposition(filename: str | None = None, disposition: str = "attachment") -> str:
    """Return e.g. ``attachment; filename="a.txt"``.

    Only the base name of ``filename`` (after its last ``/``) is used. A name of printable
    ISO-8859-1 characters is sent as a quoted ``filename``; any other name gets a ``filename``
    with ``?`` for the characters Latin-1 cannot hold plus ``filename*=UTF-8''...`` (RFC 8187)
    with the exact name, which is also added when the name holds a ``%XX`` sequence that a
    client might decode.
    """
    if filename is None:
        return disposition
    name = (filename.rstrip("/") or filename).rsplit("/", 1)[-1]  # like Node's basename
    quotable = _QUOTABLE.fullmatch(name) is not None
    fallback = _NOT_LATIN1.sub("?", name)
    has_fallback = fallback != name
    value = disposition
    if quotable or has_fallback:
        value += '; filename="' + _QUOTE_ESCAPE.sub(r"\\\1", fallback if has_fallback else name) + '"'
    if has_fallback or not quotable or _HEX_ESCAPE.search(name):
        value += "; filename*=UTF-8''" + quote(name, safe="!")
    return value
