"""The per-process memory tier: an LRU of ``CacheEntry`` objects bounded by bytes.

LOOKUP calls ``MemoryStore.get`` synchronously on every request (no await on a hit); STORE calls ``set``
once a response is complete; the admin API calls ``delete``/``keys``/``clear``/``stats``. One store per
worker process, used from its event loop only, so there is no locking.

Entries are kept as objects (no encoding). Their cost is ``charged_size(key, entry)``: the entry's own
objects (``CacheEntry.size``: body, header names and values, Vary names, tags, the entry object) plus the key
string and the store's own bookkeeping for one slot. It is measured once, when the entry is stored: an entry
mutated in place afterwards (a 304 freshening its headers) keeps the cost it was stored with until it is
stored again. With every object counted, ``max_bytes`` bounds what the store holds (tracemalloc measures
within a few percent of ``bytes_used``); the process's RSS adds the allocator's own overhead on top.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from proxy.cache.compact import FieldTable
from proxy.cache.entry import CacheEntry

# The store's bookkeeping per entry, beyond the key string and the entry's own objects: the OrderedDict
# slot (hash table entry and the linked-list node of its order) and the (entry, size) tuple with its int.
# Measured on CPython 3.11 (64-bit) with tracemalloc: 20,000 prebuilt entries set into an empty store,
# snapshot diff divided by the count: 154 bytes, the same for 20-byte and 12,000-byte keys. Rounded up.
SLOT_OVERHEAD = 160


def charged_size(key: str, entry: CacheEntry) -> int:
    """What ``MemoryStore.set`` charges for ``entry`` under ``key``: the entry's objects, the key, the slot.

    Called once per ``set`` (the STORE path), and by tests and tools that predict the charge.
    """
    return entry.size + sys.getsizeof(key) + SLOT_OVERHEAD


@dataclass(frozen=True, slots=True)
class MemoryStats:
    """A snapshot of ``MemoryStore`` counters, for the admin stats endpoint and metrics.

    ``hits``/``misses`` count ``get`` calls since the store was created; ``evictions`` counts entries pushed
    out by the byte budget (not deletions, not replacements).
    """

    entries: int
    bytes: int
    hits: int
    misses: int
    evictions: int


class MemoryStore:
    """A least-recently-used map from key to entry; the sum of ``charged_size`` stays ≤ ``max_bytes``."""

    __slots__ = (
        "_bytes",
        "_data",
        "_evictions",
        "_fields",
        "_hits",
        "_max_bytes",
        "_max_object_bytes",
        "_misses",
    )

    def __init__(self, max_bytes: int, max_object_bytes: int) -> None:
        """Create an empty store; called once per worker from the ``cache.memory`` settings.

        ``max_bytes`` bounds the sum of the charged sizes (``charged_size``: entry, key and slot);
        ``max_object_bytes`` bounds a single one (an entry charged above either is refused by ``set``).
        Both must be ≥ 0; 0 makes a store that keeps nothing.
        """
        if max_bytes < 0 or max_object_bytes < 0:
            raise ValueError("max_bytes and max_object_bytes must be >= 0")
        # key -> (entry, size charged when it was stored); least recently used first.
        self._data: OrderedDict[str, tuple[CacheEntry, int]] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._max_object_bytes = max_object_bytes
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        # Header pairs shared by the stored entries (``proxy.cache.compact``). Not charged: bounded to about
        # 2-3 % of the budget (a pair with its slot takes ~200 bytes), at most 8,192 pairs.
        self._fields = FieldTable(min(8192, max_bytes // 8192))

    def get(self, key: str) -> CacheEntry | None:
        """Return the entry stored under ``key`` and mark it most recently used, or None when there is none.

        Called by LOOKUP on every request; counts a hit or a miss. Freshness is not checked here: a returned
        entry may be stale, and the caller decides (serve, revalidate, stale-if-error).
        """
        item = self._data.get(key)
        if item is None:
            self._misses += 1
            return None
        self._data.move_to_end(key)
        self._hits += 1
        return item[0]

    def peek(self, key: str) -> CacheEntry | None:
        """Return the entry under ``key`` (or None) without touching LRU order or counters (admin, tests)."""
        item = self._data.get(key)
        return None if item is None else item[0]

    def set(self, key: str, entry: CacheEntry) -> bool:
        """Store ``entry`` under ``key`` as most recently used; called by STORE when a response is complete.

        Returns True when stored. Returns False, storing nothing, when ``charged_size(key, entry)`` exceeds
        ``max_object_bytes`` or ``max_bytes``; an older entry under ``key`` is then removed too, since the
        response that replaced it could not be kept. Replacing a key charges the new size instead of the old
        one. Least recently used entries are evicted until the total fits in ``max_bytes``.
        """
        self._fields.share(entry)
        size = charged_size(key, entry)
        data = self._data
        old = data.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        if size > self._max_object_bytes or size > self._max_bytes:
            return False
        data[key] = (entry, size)
        self._bytes += size
        if self._bytes > self._max_bytes:
            self._evict()
        return True

    def _evict(self) -> None:
        data = self._data
        limit = self._max_bytes
        while self._bytes > limit:
            _, (_, size) = data.popitem(last=False)
            self._bytes -= size
            self._evictions += 1

    def delete(self, key: str) -> bool:
        """Remove ``key``; called by purges and for an unusable entry. True if it was present."""
        item = self._data.pop(key, None)
        if item is None:
            return False
        self._bytes -= item[1]
        return True

    def clear(self) -> None:
        """Remove every entry (full purge); the hit, miss and eviction counters keep counting."""
        self._data.clear()
        self._bytes = 0

    def keys(self) -> Iterator[str]:
        """Iterate over a snapshot of the keys, least recently used first (safe to delete meanwhile)."""
        return iter(list(self._data))

    def __len__(self) -> int:
        """Number of entries stored."""
        return len(self._data)

    @property
    def bytes_used(self) -> int:
        """Sum of the sizes charged for the stored entries; never above ``max_bytes`` once ``set`` returns."""
        return self._bytes

    @property
    def max_bytes(self) -> int:
        """The byte budget of the whole store."""
        return self._max_bytes

    @property
    def max_object_bytes(self) -> int:
        """The largest ``charged_size`` (entry, key and slot) that ``set`` accepts."""
        return self._max_object_bytes

    def stats(self) -> MemoryStats:
        """Return the current counters; called by the admin stats endpoint and the metrics collector."""
        return MemoryStats(
            entries=len(self._data),
            bytes=self._bytes,
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
        )
