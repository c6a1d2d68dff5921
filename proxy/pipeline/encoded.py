"""Pre-encoded heads for fresh cache hits (the hit fast path).

A stored entry's fields do not change between hits: DELIVER encodes them once, at the entry's first fresh
hit (``stored_fields``, kept on ``CacheEntry.wire``, never serialised), and every later hit writes those
bytes plus the few fields that change per request (``Age``, ``Via``, ``Cache-Status``, ``X-Cache``) without
building, copying or parsing a header multidict. The bytes are exactly what the general path
(``Deliverer.from_entry`` then ``encode_head`` in the front) writes for the same entry, in the same order;
an entry whose head the general path would change in ways that depend on the entry (a stored ``Via`` or
``Cache-Status`` to append to, a missing ``Date`` or ``Content-Type`` the front would add, a field with CR
or LF it would drop) is marked ``NOT_ENCODABLE`` and always takes the general path.
"""

from __future__ import annotations

from proxy.cache.entry import CacheEntry
from proxy.http.headers import FRAMING_FIELDS

__all__ = ["NOT_ENCODABLE", "SERVER_LINE", "entry_wire", "stored_fields"]

NOT_ENCODABLE: tuple[bytes, bytes] = (b"", b"")
SERVER_LINE = b"Server: edgeproxy\r\n"  # DELIVER's default Server field (after X-Cache)
# Fields DELIVER sets or appends to per request: an entry that holds one is served by the general path.
_DECORATED = frozenset({"age", "via", "cache-status", "x-cache"})
# Purge tags are for this cache, not for viewers (stripped when the entry has tags, as the general path).
_TAG_FIELDS = frozenset({"surrogate-key", "cache-tag"})


def stored_fields(entry: CacheEntry) -> tuple[bytes, bytes]:
    """``(fields, tail)`` for ``entry``: ``fields`` its stored header lines (``Name: value`` CRLF each)
    minus framing fields and purge tags, ``tail`` the ``Server`` line DELIVER adds after its own fields
    when the entry has none (else empty). ``NOT_ENCODABLE`` when the entry must take the general path.
    Pure; called once per entry by ``entry_wire``."""
    strip_tags = bool(entry.tags)
    lines: list[str] = []
    has_date = has_type = has_server = False
    for name, value in entry.headers:
        lowered = name.lower()
        if lowered in FRAMING_FIELDS or (strip_tags and lowered in _TAG_FIELDS):
            continue
        if lowered in _DECORATED:
            return NOT_ENCODABLE
        line = f"{name}: {value}\r\n"
        if line.count("\n") != 1 or line.count("\r") != 1:
            return NOT_ENCODABLE  # response splitting: the general path drops such a line
        has_date = has_date or lowered == "date"
        has_type = has_type or lowered == "content-type"
        has_server = has_server or lowered == "server"
        lines.append(line)
    if not (has_date and has_type):
        return NOT_ENCODABLE  # the front would add its own Date / Content-Type after the framing fields
    try:
        fields = "".join(lines).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return NOT_ENCODABLE  # a lone surrogate from a shared tier: let the general path deal with it
    return fields, (b"" if has_server else SERVER_LINE)


def entry_wire(entry: CacheEntry) -> tuple[bytes, bytes]:
    """``stored_fields(entry)``, built at the first call and kept on the entry."""
    wire = entry.wire
    if wire is None:
        wire = entry.wire = stored_fields(entry)
    return wire
