"""The cache facade: one object over the ordered tiers (memory first, then each lower tier).

The pipeline talks to the cache only through ``TieredCache``: LOOKUP, STORE, purges and invalidations. The
tiers are the per-process ``MemoryStore`` (synchronous: a memory hit never awaits) and an ordered list of
lower tiers, each a ``Storage`` (the shared Redis or memcached tier today; a disk tier is one more). Adding
a tier is adding a ``Storage`` implementation to the list the edge builds, not editing the pipeline.

Applied here, in one place for every tier:

* **Vary** (RFC 9111 §4.1): a varying response is stored under its variant key, with a marker under the
  base key (``proxy.cache.vary``); lookups follow the marker.
* **Promotion**: a hit in a lower tier is copied into memory (and into the lower tiers above it), with the
  times it was stored with, so its remaining freshness carries over.
* **Write-through**: a stored entry goes to memory at once and to every lower tier in the background (the
  viewer never waits for a remote store), for as long as it is useful to anyone.
* **Bans** (invalidations and purges) are applied lazily on lookup: a hard ban drops the entry from every
  tier, a soft ban makes it stale from the ban's time on.

A lower tier that is slow or failing is a miss, never an error: each ``Storage`` bounds its own calls.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.cache.bans import BanList, target_of_key
from proxy.cache.entry import CacheEntry
from proxy.cache.keys import variant_key
from proxy.cache.memory import MemoryStore
from proxy.cache.storage import Storage
from proxy.cache.vary import VARY_MARKER_STATUS, is_marker, vary_marker
from proxy.http.reasons import FwdReason
from proxy.messages import Headers

# Runs a coroutine as owned background work (``proxy.pipeline.background.Background.spawn``); False when
# the supervisor is full and the work was dropped.
Spawn = Callable[[Coroutine[Any, Any, Any], str], bool]


@dataclass(frozen=True, slots=True)
class LowerTier:
    """A tier below memory. ``label`` is what ``Cache-Status`` says for a hit from it (``detail=shared``)."""

    label: str
    storage: Storage
    max_object_bytes: int


def _lifetime(entry: CacheEntry) -> float:
    """How long a lower tier should keep ``entry``: its freshness plus the stale windows it may still be
    served in (RFC 5861), counted from when it was received."""
    return entry.ttl + max(entry.stale_while_revalidate, entry.stale_if_error) - entry.initial_age


class TieredCache:
    """The memory tier plus the ordered lower tiers, with one worker's ban list. One per worker."""

    __slots__ = ("_spawn", "bans", "lower", "memory", "object_limit")

    def __init__(
        self, memory: MemoryStore, lower: Sequence[LowerTier] = (), *, bans: BanList, spawn: Spawn
    ) -> None:
        """Called once per worker by ``proxy.app.Edge`` (and by tests with any tiers they like)."""
        self.memory = memory
        self.lower = tuple(lower)
        self.bans = bans
        self._spawn = spawn
        # The largest object any tier keeps; larger responses stream through without being collected.
        self.object_limit = max([memory.max_object_bytes, *(t.max_object_bytes for t in self.lower)])

    # ---------------------------------------------------------------- LOOKUP
    def lookup_memory(self, key: str, request_headers: Headers) -> tuple[CacheEntry | None, FwdReason]:
        """The memory tier's entry for this request (following a Vary marker) and the miss reason if none.

        Called by LOOKUP on every cacheable request, synchronously: the hit path never awaits.
        """
        entry = self.memory.get(key)
        if entry is not None and entry.status == VARY_MARKER_STATUS:  # is_marker, inlined: every request
            return self.memory.get(variant_key(key, entry.vary, request_headers)), FwdReason.VARY_MISS
        return entry, FwdReason.URI_MISS

    async def lookup_lower(self, key: str, request_headers: Headers) -> tuple[CacheEntry | None, str | None]:
        """After a memory miss: the first lower tier's entry for this request, promoted into the tiers
        above it, and that tier's label (None, None on a miss in every tier)."""
        for index, tier in enumerate(self.lower):
            entry = await tier.storage.get(key)
            if entry is None:
                continue
            self._promote(index, key, entry)
            if is_marker(entry):
                vkey = variant_key(key, entry.vary, request_headers)
                found = self.memory.get(vkey)
                if found is None:
                    found = await tier.storage.get(vkey)
                    if found is None:
                        return None, None
                self._promote(index, vkey, found)
                entry = found
            return entry, tier.label
        return None, None

    def _promote(self, index: int, key: str, entry: CacheEntry) -> None:
        """Copy a hit from lower tier ``index`` into memory and into the lower tiers above it."""
        self.memory.set(key, entry)
        for tier in self.lower[:index]:
            self._spawn(tier.storage.set(key, entry, _lifetime(entry)), f"promote {key} to {tier.label}")

    def admit_bans(self, key: str, entry: CacheEntry) -> CacheEntry | None:
        """The entry as the bans leave it: dropped from every tier under a hard ban stored after it (None:
        a miss), made stale from the ban's time under a soft one (still usable under stale-if-error)."""
        ban = self.bans.matches(target_of_key(key), entry.tags, entry.request_time)
        if ban is None:
            return entry
        if ban.soft:
            entry.ttl = min(entry.ttl, entry.age(ban.created))
            return entry
        self.delete(key)
        return None

    # ---------------------------------------------------------------- STORE
    def store(
        self,
        key: str,
        request_headers: Headers,
        entry: CacheEntry,
        *,
        after_write: Callable[[], Coroutine[Any, Any, Any]] | None = None,
    ) -> bool:
        """Store a complete entry under ``key`` (its variant key when it varies, with a marker under
        ``key``): in memory now, in every lower tier in the background. ``after_write`` is awaited once the
        lower tiers have it (the cluster lock is released then, so that its waiters find the entry).

        Returns whether some tier took it (a lower tier's own size limit is checked by the tier itself).
        """
        stored_key = key
        if entry.vary:
            self.memory.set(key, vary_marker(entry.vary, entry.response_time))
            stored_key = variant_key(key, entry.vary, request_headers)
        stored = self.memory.set(stored_key, entry)
        if self.lower:
            self._spawn(self._write_through(key, stored_key, entry, after_write), f"write {stored_key}")
            return True
        if after_write is not None:
            self._spawn(after_write(), f"after write {stored_key}")
        return stored

    async def _write_through(
        self,
        base_key: str,
        key: str,
        entry: CacheEntry,
        after_write: Callable[[], Coroutine[Any, Any, Any]] | None,
    ) -> None:
        lifetime = _lifetime(entry)
        try:
            for tier in self.lower:
                if key != base_key:
                    await tier.storage.set(base_key, vary_marker(entry.vary, entry.response_time), lifetime)
                await tier.storage.set(key, entry, lifetime)
        finally:
            if after_write is not None:
                await after_write()

    # ---------------------------------------------------------------- purge
    def delete(self, key: str) -> None:
        """Remove ``key`` from every tier (lower tiers in the background). Called by bans, invalidations
        (RFC 9111 §4.4) and purges."""
        self.memory.delete(key)
        for tier in self.lower:
            self._spawn(tier.storage.delete(key), f"{tier.label} delete {key}")
