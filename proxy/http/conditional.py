"""Conditional requests (RFC 9110 §13): entity-tag lists and comparison, precondition evaluation.

``evaluate_preconditions`` is called when the edge answers a request from a stored (or freshly fetched)
2xx representation, to decide whether to send 304 (Not Modified) or 412 (Precondition Failed) instead.
Parsers never raise: invalid members are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from multidict import MultiMapping

from proxy.http.dates import parse_http_date

__all__ = [
    "NOT_MODIFIED_HEADERS",
    "evaluate_preconditions",
    "parse_etag_list",
    "strong_match",
    "weak_match",
]

# RFC 9110 §15.4.5: a 304 carries whichever of these the 200 would have carried.
NOT_MODIFIED_HEADERS: tuple[str, ...] = (
    "Cache-Control",
    "Content-Location",
    "Date",
    "ETag",
    "Expires",
    "Vary",
)

# RFC 9110 §13.1: conditionals are ignored for methods that neither select nor modify a representation.
_IGNORING_METHODS = frozenset({"CONNECT", "OPTIONS", "TRACE"})


def _opaque(tag: str) -> tuple[str, bool] | None:
    """Split an entity-tag into (opaque-tag, weak); ``None`` when it is not an entity-tag (RFC 9110 §8.8.3).

    ``W/`` is case-sensitive in the grammar; ``w/`` is also accepted for robustness.
    """
    weak = tag[:2] in ("W/", "w/")
    opaque = tag[2:] if weak else tag
    if len(opaque) < 2 or opaque[0] != '"' or opaque[-1] != '"' or '"' in opaque[1:-1]:
        return None
    return opaque, weak


def strong_match(a: str | None, b: str | None) -> bool:
    """Strong comparison (RFC 9110 §8.8.3.2): both tags valid, neither weak, opaque-tags identical.

    Used for If-Match (§13.1.1) and If-Range (§13.1.5). ``None`` or an invalid tag never matches.
    """
    if a is None or b is None:
        return False
    pa = _opaque(a.strip())
    pb = _opaque(b.strip())
    return pa is not None and pb is not None and not pa[1] and not pb[1] and pa[0] == pb[0]


def weak_match(a: str | None, b: str | None) -> bool:
    """Weak comparison (RFC 9110 §8.8.3.2): opaque-tags identical, either or both may be weak.

    Used for If-None-Match (§13.1.2). ``None`` or an invalid tag never matches.
    """
    if a is None or b is None:
        return False
    pa = _opaque(a.strip())
    pb = _opaque(b.strip())
    return pa is not None and pb is not None and pa[0] == pb[0]


def parse_etag_list(values: str | Iterable[str] | None) -> list[str]:
    """Parse an If-Match / If-None-Match value (RFC 9110 §13.1.1, §13.1.2) into entity-tags; never raises.

    ``values`` is one field value or all its lines. Returns the entity-tags as written (``"x"`` or
    ``W/"x"``), or ``["*"]`` when a member is ``*``. Entity-tags may contain commas (``etagc`` includes
    ``,``), so members are scanned quote to quote rather than split on commas. Invalid members (e.g.
    unquoted) are skipped.
    """
    if values is None:
        return []
    lines = (values,) if isinstance(values, str) else values
    out: list[str] = []
    for s in lines:
        n = len(s)
        i = 0
        while i < n:
            c = s[i]
            if c in " \t,":
                i += 1
                continue
            start = i
            if c == "*":
                end = s.find(",", i)
                end = n if end == -1 else end
                if s[i + 1 : end].strip(" \t") == "":
                    return ["*"]
                i = end + 1
                continue
            if c in "Ww" and s.startswith("/", i + 1):
                i += 2
            if i < n and s[i] == '"':
                close = s.find('"', i + 1)
                if close != -1:
                    out.append(s[start : close + 1])
                    i = close + 1
                    # anything up to the next comma that is not OWS makes the next scan skip it
                    continue
            # not an entity-tag: skip to the next comma
            end = s.find(",", i)
            i = n if end == -1 else end + 1
    return out


def _field(headers: Mapping[str, str], name: str) -> str | None:
    """All lines of a field combined with ", " (RFC 9110 §5.3), or ``None`` when absent."""
    if isinstance(headers, MultiMapping):
        lines: list[str] = headers.getall(name, [])
        if not lines:
            return None
        return lines[0] if len(lines) == 1 else ", ".join(lines)
    return headers.get(name)


def _single_date(headers: Mapping[str, str], name: str) -> float | None:
    """A date-valued precondition; ``None`` (ignore the field) when absent, invalid, or sent more than once
    (RFC 9110 §13.1.3 / §13.1.4: ignore a value that is not a valid HTTP-date, including a list of dates)."""
    if isinstance(headers, MultiMapping):
        lines: list[str] = headers.getall(name, [])
        if len(lines) != 1:
            return None
        return parse_http_date(lines[0])
    return parse_http_date(headers.get(name))


def evaluate_preconditions(
    method: str,
    headers: Mapping[str, str],
    etag: str | None,
    last_modified: float | None,
    *,
    date: float | None = None,
) -> int | None:
    """Evaluate the request's preconditions against a selected representation (RFC 9110 §13.2.2).

    Called before answering with a 2xx from a representation whose ETag is ``etag`` and Last-Modified is
    ``last_modified``. ``date``: a cache answering from a stored response passes that response's Date (or,
    without a valid Date, the time it was received); it stands in for a missing Last-Modified when
    evaluating If-Modified-Since only (RFC 9111 §4.3.2), never If-Unmodified-Since, which RFC 9110 §13.1.4
    evaluates only against a known modification date. ``headers`` are the request headers (a
    case-insensitive multidict, all field lines are read). Returns 304, 412, or ``None`` to proceed
    normally. Only call it when the response without conditions would be 2xx (RFC 9110 §13.2.1). An
    If-Match / If-None-Match with no valid entity-tag matches nothing.

    Order (§13.2.2): If-Match (strong) → 412; else If-Unmodified-Since → 412; If-None-Match (weak) → 304 for
    GET/HEAD, else 412; else, for GET/HEAD, If-Modified-Since → 304.
    """
    if method in _IGNORING_METHODS:
        return None
    get_or_head = method == "GET" or method == "HEAD"
    # Step 1, §13.1.1: If-Match, strong comparison; "*" is true since a representation exists. A field with
    # no valid entity-tag matches nothing.
    if_match = _field(headers, "If-Match")
    if if_match is not None:
        tags = parse_etag_list(if_match)
        if tags != ["*"] and not any(strong_match(t, etag) for t in tags):
            return 412
    else:
        # Step 2, §13.1.4: If-Unmodified-Since only without If-Match, and only with a known Last-Modified.
        ius = _single_date(headers, "If-Unmodified-Since")
        if ius is not None and last_modified is not None and last_modified > ius:
            return 412
    # Step 3, §13.1.2: If-None-Match, weak comparison; "*" matches any current representation. When the
    # field is present, If-Modified-Since is not evaluated even if no member is a valid entity-tag.
    if_none_match = _field(headers, "If-None-Match")
    if if_none_match is not None:
        tags = parse_etag_list(if_none_match)
        if tags == ["*"] or any(weak_match(t, etag) for t in tags):
            return 304 if get_or_head else 412
        return None
    # Step 4, §13.1.3: If-Modified-Since only for GET/HEAD and only without If-None-Match. RFC 9111 §4.3.2:
    # a stored response without Last-Modified is evaluated with its Date (or the time it was received).
    if get_or_head:
        ims = _single_date(headers, "If-Modified-Since")
        modified = last_modified if last_modified is not None else date
        if ims is not None and modified is not None and modified <= ims:
            return 304
    return None
