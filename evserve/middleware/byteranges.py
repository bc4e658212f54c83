"""Range requests (RFC 9110 section 14): Range parsing, If-Range, multipart/byteranges framing.

Pure: no file, socket or clock. The send core (``evserve.middleware.send``) decides with these
what part of a file goes out and frames several parts around the file segments it sends.
"""

from __future__ import annotations

from itertools import pairwise

from evserve.freshness import parse_http_date

__all__ = ["MAX_RANGES", "if_range_matches", "multipart_frames", "parse_range"]

MAX_RANGES = 50  # more ranges than this in one request get the whole body (SPEC section 8)
_HUGE = 1 << 62  # a position past any file


def parse_range(header: str, size: int) -> list[tuple[int, int]] | None:
    """Parse a Range header for a representation of ``size`` bytes (RFC 9110 section 14.2).

    Returns:
        ``None`` when the header is to be ignored and the whole body sent: another unit, a
        syntax error (including ``last < first``), more than ``MAX_RANGES`` ranges, or
        overlapping ranges; ``[]`` when no range is satisfiable (416); else the satisfiable
        ranges as inclusive ``(first, last)`` pairs clamped to the size, in request order.
    """
    unit, eq, spec = header.partition("=")
    if not eq or unit.strip().lower() != "bytes" or spec.count(",") >= MAX_RANGES:
        return None
    ranges: list[tuple[int, int]] = []
    seen = False
    for part in spec.split(","):
        part = part.strip(" \t")
        if not part:
            continue  # empty list elements are allowed (RFC 9110 section 5.6.1)
        seen = True
        first_text, dash, last_text = part.partition("-")
        if not dash:
            return None
        if first_text:
            first = _position(first_text)
            if first is None:
                return None
            if last_text:
                last = _position(last_text)
                if last is None or last < first:
                    return None  # an invalid range-spec: the header is ignored
            else:
                last = size - 1
            if first >= size:
                continue  # unsatisfiable; the others may still be
            ranges.append((first, min(last, size - 1)))
        else:
            suffix = _position(last_text)
            if suffix is None:
                return None
            if suffix == 0 or size == 0:
                continue
            ranges.append((max(0, size - suffix), size - 1))
    if not seen:
        return None
    if len(ranges) > 1:
        for (_, prev_last), (first, _) in pairwise(sorted(ranges)):
            if first <= prev_last:
                return None  # overlapping: the whole body instead (SPEC section 8)
    return ranges


def _position(text: str) -> int | None:
    if not text.isdigit() or not text.isascii():
        return None
    # Past 18 digits the value is beyond any file; this also keeps int() off huge input.
    return int(text) if len(text) <= 18 else _HUGE


def if_range_matches(if_range: str, etag: str | None, last_modified: str | None) -> bool:
    """Whether If-Range lets the range through (RFC 9110 section 13.1.5).

    An entity-tag must equal ours exactly, ``W/`` included: evserve's file tags are weak, and
    refusing them would make every resumed download start over (send does the same). A date
    must equal Last-Modified.
    """
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return etag is not None and value == etag
    date = parse_http_date(value)
    return date is not None and date == parse_http_date(last_modified)


def multipart_frames(
    boundary: str, content_type: str, ranges: list[tuple[int, int]], size: int
) -> tuple[list[bytes], bytes, int]:
    """The framing of a ``multipart/byteranges`` body (RFC 9110 section 14.6).

    Returns:
        The head of each part (delimiter, Content-Type, Content-Range, blank line), the closing
        delimiter, and the Content-Length of the whole body with the parts' data included.
    """
    heads: list[bytes] = []
    length = 0
    for i, (first, last) in enumerate(ranges):
        lead = "\r\n" if i else ""
        head = (
            f"{lead}--{boundary}\r\nContent-Type: {content_type}\r\n"
            f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n"
        ).encode("latin-1")
        heads.append(head)
        length += len(head) + last - first + 1
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return heads, tail, length + len(tail)
