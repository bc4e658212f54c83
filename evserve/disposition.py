"""Content-Disposition values with RFC 6266 / RFC 8187 filename encoding."""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["content_disposition"]

_TOKEN_SAFE = re.compile(r"[\x20-\x7e]*")
_QUOTE_ESCAPE = re.compile(r'([\\"])')


def content_disposition(filename: str | None = None, disposition: str = "attachment") -> str:
    """Return e.g. ``attachment; filename="a.txt"``, adding ``filename*=UTF-8''...`` when the
    name is not plain ASCII. Only the base name of ``filename`` is used."""
    if filename is None:
        return disposition
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if _TOKEN_SAFE.fullmatch(base) and "%" not in base:
        escaped = _QUOTE_ESCAPE.sub(r"\\\1", base)
        return f'{disposition}; filename="{escaped}"'
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "?" for c in base)
    encoded = quote(base, safe="!#$&+.^_`|~-")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
