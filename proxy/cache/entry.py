"""A stored response: the unit every cache tier keeps.

Created by the STORE phase once a response body is complete; read by LOOKUP (freshness) and DELIVER (bytes).
Times are epoch seconds (``time.time()``) so that an entry written by one process or node means the same in
another. ``encode``/``decode`` give the versioned binary format shared by all tiers (never pickle).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class CacheEntry:
    """One cached response. ``headers`` are the stored header fields in origin order, hop-by-hop removed."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    request_time: float  # when the origin request was sent (RFC 9111 §4.2.3 request_time)
    response_time: float  # when the origin response head arrived (response_time)
    initial_age: float  # corrected_initial_age at response_time (RFC 9111 §4.2.3)
    ttl: float  # freshness lifetime in seconds after the behaviour's TTL policy
    stale_while_revalidate: float = 0.0  # RFC 5861 window past ttl in which stale may be served + refreshed
    stale_if_error: float = 0.0  # RFC 5861 window past ttl in which stale may replace an origin error
    must_revalidate: bool = False  # must-revalidate / proxy-revalidate: never served stale (RFC 9111 §5.2.2.2)
    no_cache: bool = False  # response no-cache: revalidate before every reuse (RFC 9111 §5.2.2.4)
    vary: tuple[str, ...] = ()  # lower-cased field names listed in Vary
    tags: tuple[str, ...] = ()  # surrogate keys (Surrogate-Key / Cache-Tag) for tag purges
    extra: dict[str, str] = field(default_factory=dict)  # forward-compatible metadata (survives encode/decode)

    def age(self, now: float) -> float:
        """current_age (RFC 9111 §4.2.3): the corrected initial age plus the time resident in the cache."""
        return self.initial_age + (now - self.response_time)

    def is_fresh(self, now: float) -> bool:
        """True while the response is fresh: freshness_lifetime > current_age (RFC 9111 §4.2)."""
        return self.ttl > self.age(now)

    @property
    def size(self) -> int:
        """Approximate bytes this entry costs in memory: body plus header text plus a fixed overhead."""
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers) + 256
