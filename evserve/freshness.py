"""Conditional-request checks: is the client's cached copy still fresh (RFC 9110 section 13)."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime

__all__ = ["etag_matches", "is_fresh", "parse_http_date"]


def parse_http_date(value: str | None) -> float | None:
    """Epoch seconds of an HTTP date, or ``None`` when absent or unparseable."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def etag_matches(header: str, etag: str, *, weak: bool = True) -> bool:
    """Whether an If-None-Match/If-Match list names ``etag`` (weak comparison by default)."""
    if header.strip() == "*":
        return True
    target = etag[2:] if weak and etag.startswith("W/") else etag
    for candidate in header.split(","):
        candidate = candidate.strip()
        if weak and candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == target:
            return True
    return False


def is_fresh(
    request_headers: Mapping[str, str],
    etag: str | list[str] | None,
    last_modified: str | list[str] | None,
) -> bool:
    """Whether a GET/HEAD response with these validators would be a 304 for these requests headers.

    If-None-Match takes precedence over If-Modified-Since (RFC 9110 section 13.2.2); a request
    with ``Cache-Control: no-cache`` is never fresh.
    """
    none_match = request_headers.get("if-none-match")
    modified_since = request_headers.get("if-modified-since")
    if not none_match and not modified_since:
        return False
    cache_control = request_headers.get("cache-control")
    if cache_control and "no-cache" in cache_control.lower():
        return False
    if none_match:
        if not isinstance(etag, str) or not etag:
            return none_match.strip() == "*" and etag is not None
        return etag_matches(none_match, etag)
    if not isinstance(last_modified, str):
        return False
    lm = parse_http_date(last_modified)
    since = parse_http_date(modified_since)
    return lm is not None and since is not None and lm <= since
