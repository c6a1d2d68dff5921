"""Vary support in the memory tier (RFC 9111 §4.1).

A response with ``Vary`` is stored under a variant key (the base key plus the varied request values), and
the base key holds a small marker entry naming the varied fields. LOOKUP finds the marker first, then the
variant for this request. ``Vary: *`` responses are never stored (the STORE rules refuse them).
"""

from __future__ import annotations

from proxy.cache.entry import CacheEntry
from proxy.cache.keys import variant_key
from proxy.cache.memory import MemoryStore
from proxy.messages import Headers

VARY_MARKER_STATUS = 0  # an entry with this status is a marker, never a response


def vary_marker(vary: tuple[str, ...], response_time: float) -> CacheEntry:
    """The marker stored under the base key of a response that varies on ``vary``."""
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


def lookup_variant(
    memory: MemoryStore, base_key: str, marker: CacheEntry, headers: Headers
) -> CacheEntry | None:
    """The stored variant matching this request's values of the marker's fields, or None (vary-miss)."""
    return memory.get(variant_key(base_key, marker.vary, headers))
