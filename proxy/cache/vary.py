"""Vary support in every cache tier (RFC 9111 §4.1).

A response with ``Vary`` is stored under a variant key (the base key plus the varied request values), and
the base key holds a small marker entry naming the varied fields. LOOKUP (``proxy.cache.tiers``) finds the
marker first, then the variant for this request. ``Vary: *`` responses are never stored (the STORE rules
refuse them).
"""

from __future__ import annotations

from proxy.cache.entry import CacheEntry

VARY_MARKER_STATUS = 0  # an entry with this status is a marker, never a response


def is_marker(entry: CacheEntry) -> bool:
    """Whether ``entry`` is a Vary marker (found under a base key) rather than a response."""
    return entry.status == VARY_MARKER_STATUS


def vary_marker(vary: tuple[str, ...], response_time: float) -> CacheEntry:
    """The marker stored under the base key of a response that varies on ``vary``; called by STORE."""
    return CacheEntry(
        status=VARY_MARKER_STATUS,
        headers=(),
        body=b"",
        request_time=response_time,
        response_time=response_time,
        initial_age=0.0,
        ttl=float("inf"),
        vary=vary,
    )
