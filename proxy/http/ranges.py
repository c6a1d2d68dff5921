"""Byte-range requests (RFC 9110 §14): Range parsing, If-Range, Content-Range and multipart/byteranges.

Called by DELIVER when a GET for a complete stored (or streamed) representation carries ``Range``: first
:func:`if_range_allows`, then :func:`parse_range` against the representation length, then either a single
206 with :func:`content_range`, a multipart 206 built by :func:`multipart_byteranges`, or a 416 with
:func:`content_range_unsatisfied`. Parsers never raise; building functions validate their arguments.
"""

from __future__ import annotations

from typing import Literal

from proxy.http.conditional import strong_match
from proxy.http.dates import parse_http_date

__all__ = [
    "MAX_RANGES",
    "content_range",
    "content_range_unsatisfied",
    "if_range_allows",
    "multipart_byteranges",
    "parse_range",
]

# RFC 9110 §14.2 lets a server ignore range sets that look like a denial-of-service attempt; more members
# than this is treated as one.
MAX_RANGES = 16

# Digits beyond this are "larger than any representation" (and keep int() away from huge strings).
_MAX_DIGITS = 18
_HUGE = 10**_MAX_DIGITS

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# RFC 2046 §5.1.1 bchars (a boundary is 1-70 of them and does not end with a space).
_BCHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=? ")


def _pos(s: str) -> int | None:
    """A ``1*DIGIT`` position (RFC 9110 §14.1.1), ``None`` when not digits; huge values saturate."""
    if not s or not s.isascii() or not s.isdigit():
        return None
    s = s.lstrip("0")
    if not s:
        return 0
    return _HUGE if len(s) > _MAX_DIGITS else int(s)


def parse_range(value: str | None, length: int) -> list[tuple[int, int]] | Literal["unsatisfiable"] | None:
    """Resolve a ``Range`` field value against a representation of ``length`` bytes (RFC 9110 §14.1.2).

    Returns inclusive ``(first, last)`` pairs in request order, all within ``[0, length)``; ``None`` to
    ignore the field and send the whole representation (absent, not ``bytes``, syntactically invalid —
    §14.2 lets a server ignore it — or abusive: more than :data:`MAX_RANGES` members, or ranges whose total
    exceeds ``length``, i.e. overlapping ones, §14.2); ``"unsatisfiable"`` when no member overlaps the
    representation (answer 416, §15.5.17). Never raises.
    """
    if not value or length < 0:
        return None
    unit, eq, spec = value.partition("=")
    # RFC 9110 §14.1: range units are compared case-insensitively; only bytes is understood.
    if not eq or unit.strip().lower() != "bytes":
        return None
    # Cheap guard before splitting anything: RFC 9110 §14.2 denial-of-service ranges.
    if spec.count(",") >= MAX_RANGES * 2:
        return None
    out: list[tuple[int, int]] = []
    members = 0
    total = 0
    for raw in spec.split(","):
        part = raw.strip(" \t")
        if not part:
            continue  # RFC 9110 §5.6.1: empty list elements are ignored
        members += 1
        if members > MAX_RANGES:
            return None
        first_s, dash, last_s = part.partition("-")
        if not dash:
            return None
        if first_s == "":
            # suffix-range (RFC 9110 §14.1.1): the last N bytes
            n = _pos(last_s)
            if n is None:
                return None
            if n == 0 or length == 0:
                continue  # a zero suffix-length is unsatisfiable
            first, last = max(0, length - n), length - 1
        else:
            first_p = _pos(first_s)
            if first_p is None:
                return None
            if last_s == "":
                last_p = length - 1
            else:
                lp = _pos(last_s)
                # RFC 9110 §14.1.1: last-pos < first-pos makes the range-spec invalid.
                if lp is None or lp < first_p:
                    return None
                last_p = min(lp, length - 1)
            if first_p >= length:
                continue  # RFC 9110 §14.1.1: unsatisfiable member
            first, last = first_p, last_p
        out.append((first, last))
        total += last - first + 1
    if members == 0:
        return None  # "bytes=" alone is not a valid range-set (1#range-spec)
    if not out:
        return "unsatisfiable"
    if total > length:
        return None  # overlapping ranges (RFC 9110 §14.2): serve the whole representation instead
    return out


def if_range_allows(
    if_range: str | None, etag: str | None, last_modified: float | None, *, date: float | None = None
) -> bool:
    """Whether a Range request may be honoured given its ``If-Range`` (RFC 9110 §13.1.5).

    Called before :func:`parse_range`; ``False`` means: ignore Range and send the whole representation.
    Absent → True. An entity-tag is true only on a strong match with ``etag``. An HTTP-date is true only when
    it exactly equals ``last_modified`` and that is a strong validator: for a cache, the stored response's
    ``date`` is at least one second after Last-Modified (§8.8.2.2). Without ``date`` a date validator is
    never considered strong. Anything else is false.
    """
    if if_range is None:
        return True
    v = if_range.strip()
    if v.startswith('"') or v.startswith("W/") or v.startswith("w/"):
        return strong_match(v, etag)
    ts = parse_http_date(v)
    if ts is None or last_modified is None or date is None:
        return False
    return ts == last_modified and date - last_modified >= 1


def content_range(first: int, last: int, length: int) -> str:
    """``Content-Range`` value for a satisfied range (RFC 9110 §14.4): ``bytes first-last/length``."""
    return f"bytes {first}-{last}/{length}"


def content_range_unsatisfied(length: int) -> str:
    """``Content-Range`` value for a 416 answer (RFC 9110 §14.4, §15.5.17): ``bytes */length``."""
    return f"bytes */{length}"


def _field_bytes(value: str) -> bytes:
    """Encode a header value the way it was decoded (UTF-8 with surrogateescape, as aiohttp does); any
    other unencodable character becomes ``?``."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def multipart_byteranges(
    body: bytes | memoryview,
    ranges: list[tuple[int, int]],
    content_type: str | None,
    length: int,
    boundary: str,
) -> tuple[str, list[bytes | memoryview]]:
    """Build a ``multipart/byteranges`` 206 body (RFC 9110 §14.6) without copying the representation.

    Called by DELIVER when :func:`parse_range` returned more than one range. Returns the ``Content-Type``
    value and the parts to write in order (part headers as small ``bytes``, payloads as ``memoryview``
    slices of ``body``); Content-Length is the sum of their lengths. ``content_type`` is the
    representation's own type, repeated in each part (omitted when ``None``). ``boundary`` must be 1-70
    RFC 2046 bchars not ending in a space and must not occur in ``body`` (the caller picks a random one);
    raises ``ValueError`` otherwise, or when a range lies outside ``body``.
    """
    if not (0 < len(boundary) <= 70) or boundary.endswith(" ") or not set(boundary) <= _BCHARS:
        raise ValueError(f"invalid multipart boundary {boundary!r}")
    view = memoryview(body)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    size = len(view)
    delimiter = boundary.encode("ascii")
    type_line = b"Content-Type: " + _field_bytes(content_type) + b"\r\n" if content_type is not None else b""
    parts: list[bytes | memoryview] = []
    for index, (first, last) in enumerate(ranges):
        if not (0 <= first <= last < size):
            raise ValueError(f"range {first}-{last} outside a body of {size} bytes")
        # The first delimiter needs no leading CRLF (empty preamble, RFC 2046 §5.1.1).
        head = (b"--" if index == 0 else b"\r\n--") + delimiter + b"\r\n" + type_line
        head += f"Content-Range: bytes {first}-{last}/{length}\r\n\r\n".encode("ascii")
        parts.append(head)
        parts.append(view[first : last + 1])
    parts.append(b"\r\n--" + delimiter + b"--\r\n")
    quoted = boundary if set(boundary) <= _TCHAR else '"' + boundary + '"'
    return f"multipart/byteranges; boundary={quoted}", parts
