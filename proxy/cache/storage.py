"""The narrow storage protocol every cache tier implements, and the memory tier adapted to it.

The cache tiers are an ordered list of ``Storage`` objects: this process's memory first, then the shared
store (Redis through aiocache, written by another module, which keeps entries as ``encode_entry`` bytes).
LOOKUP asks them in order and promotes a lower-tier hit into the tiers above; STORE writes to all of them;
purges delete from all of them.

The memory tier is also reachable synchronously: the hit path calls ``MemoryStorage.store.get`` directly, so a
memory hit never awaits. The async wrappers here exist so that code walking the whole list treats every tier
alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from proxy.cache.entry import CacheEntry
from proxy.cache.memory import MemoryStore


class Storage(Protocol):
    """One cache tier. Implementations must not raise for a missing or unreadable entry: that is a miss."""

    @property
    def name(self) -> str:
        """Short tier name used in logs, metrics and ``Cache-Status`` (``"memory"``, ``"redis"`` …)."""
        ...

    async def get(self, key: str) -> CacheEntry | None:
        """Return the entry stored under ``key``, or None on a miss (also when stored bytes fail to decode).

        Called by LOOKUP for each tier in order until one answers. The entry may be stale; freshness is the
        caller's decision.
        """
        ...

    async def set(self, key: str, entry: CacheEntry, ttl_seconds: float) -> None:
        """Store ``entry`` under ``key``; called by STORE (and by LOOKUP when promoting to an upper tier).

        ``ttl_seconds`` (> 0) is how long the tier may keep the entry: its freshness lifetime plus the stale
        windows in which it may still be served. A tier may drop an entry earlier (eviction, size limits) and
        may decline to store it at all; either shows up later as a miss.
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present; called by purges and after an unusable entry. Missing keys are fine."""
        ...


class MemoryStorage:
    """``Storage`` over a ``MemoryStore``: thin async wrappers so the memory tier can sit in the tier list."""

    __slots__ = ("_name", "_store")

    def __init__(self, store: MemoryStore, name: str = "memory") -> None:
        """Wrap ``store`` (shared with the synchronous hit path); called once per worker at startup."""
        self._store = store
        self._name = name

    @property
    def name(self) -> str:
        """The tier name, ``"memory"`` unless given."""
        return self._name

    @property
    def store(self) -> MemoryStore:
        """The wrapped store, for the synchronous hit path and the admin API."""
        return self._store

    async def get(self, key: str) -> CacheEntry | None:
        """``MemoryStore.get``: the entry (marked most recently used) or None."""
        return self._store.get(key)

    async def set(self, key: str, entry: CacheEntry, ttl_seconds: float) -> None:
        """``MemoryStore.set``. ``ttl_seconds`` is ignored: memory entries leave by LRU eviction or purge, and
        LOOKUP judges their freshness from the entry itself. An entry too large for the store is not kept."""
        self._store.set(key, entry)

    async def delete(self, key: str) -> None:
        """``MemoryStore.delete``."""
        self._store.delete(key)


if TYPE_CHECKING:
    _memory_storage_is_a_storage: type[Storage] = MemoryStorage
