"""The memory tier: LRU order, the byte budget, size accounting, counters, and its Storage adapter."""

from __future__ import annotations

import pytest

from proxy.cache.entry import CacheEntry
from proxy.cache.memory import MemoryStats, MemoryStore
from proxy.cache.storage import MemoryStorage, Storage

OVERHEAD = 256  # CacheEntry.size's fixed part


def entry(body_bytes: int, headers: tuple[tuple[str, str], ...] = ()) -> CacheEntry:
    """An entry whose size is exactly body_bytes + header text + OVERHEAD."""
    return CacheEntry(
        status=200,
        headers=headers,
        body=b"x" * body_bytes,
        request_time=0.0,
        response_time=0.0,
        initial_age=0.0,
        ttl=60.0,
    )


def sized(size: int) -> CacheEntry:
    """An entry whose CacheEntry.size is exactly ``size`` (≥ OVERHEAD)."""
    e = entry(size - OVERHEAD)
    assert e.size == size
    return e


def test_empty_store() -> None:
    store = MemoryStore(10_000, 1_000)
    assert len(store) == 0
    assert store.bytes_used == 0
    assert store.max_bytes == 10_000
    assert store.max_object_bytes == 1_000
    assert list(store.keys()) == []
    assert store.get("k") is None
    assert store.stats() == MemoryStats(entries=0, bytes=0, hits=0, misses=1, evictions=0)


def test_set_then_get_returns_the_same_object() -> None:
    store = MemoryStore(10_000, 1_000)
    e = sized(300)
    assert store.set("k", e) is True
    assert store.get("k") is e
    assert len(store) == 1
    assert store.bytes_used == 300


def test_size_counts_header_text() -> None:
    store = MemoryStore(10_000, 10_000)
    e = entry(10, headers=(("ab", "cde"),))
    store.set("k", e)
    assert store.bytes_used == 10 + 5 + OVERHEAD


def test_least_recently_used_is_evicted_first() -> None:
    store = MemoryStore(1_000, 1_000)
    for key in "abc":
        store.set(key, sized(300))
    assert list(store.keys()) == ["a", "b", "c"]
    store.get("a")  # a becomes most recent: b is now the oldest
    store.set("d", sized(300))
    assert list(store.keys()) == ["c", "a", "d"]
    assert store.peek("b") is None
    assert store.bytes_used == 900
    assert store.stats().evictions == 1


def test_eviction_removes_as_many_entries_as_needed() -> None:
    store = MemoryStore(1_000, 1_000)
    for key in "abc":
        store.set(key, sized(300))
    store.set("big", sized(1_000))
    assert list(store.keys()) == ["big"]
    assert store.bytes_used == 1_000
    assert store.stats().evictions == 3


def test_store_filled_exactly_to_the_budget_evicts_nothing() -> None:
    store = MemoryStore(900, 900)
    for key in "abc":
        store.set(key, sized(300))
    assert store.bytes_used == 900
    assert len(store) == 3
    assert store.stats().evictions == 0


def test_set_makes_the_key_most_recent() -> None:
    store = MemoryStore(10_000, 1_000)
    for key in "abc":
        store.set(key, sized(300))
    store.set("a", sized(300))
    assert list(store.keys()) == ["b", "c", "a"]


def test_replacing_a_key_adjusts_bytes() -> None:
    store = MemoryStore(10_000, 1_000)
    store.set("k", sized(300))
    store.set("k", sized(700))
    assert store.bytes_used == 700
    store.set("k", sized(400))
    assert store.bytes_used == 400
    assert len(store) == 1
    assert store.stats().evictions == 0


def test_replacing_with_a_larger_entry_evicts_others_not_itself() -> None:
    store = MemoryStore(1_000, 1_000)
    store.set("a", sized(300))
    store.set("b", sized(300))
    store.set("a", sized(800))
    assert list(store.keys()) == ["a"]
    assert store.bytes_used == 800
    assert store.stats().evictions == 1


def test_object_above_max_object_bytes_is_refused() -> None:
    store = MemoryStore(10_000, 500)
    assert store.set("ok", sized(500)) is True
    assert store.set("big", sized(501)) is False
    assert store.peek("big") is None
    assert store.bytes_used == 500
    assert len(store) == 1


def test_object_above_max_bytes_is_refused_without_evicting() -> None:
    store = MemoryStore(1_000, 5_000)
    store.set("a", sized(300))
    assert store.set("big", sized(1_001)) is False
    assert list(store.keys()) == ["a"]
    assert store.bytes_used == 300
    assert store.stats().evictions == 0


def test_refused_replacement_drops_the_superseded_entry() -> None:
    store = MemoryStore(10_000, 500)
    store.set("k", sized(300))
    assert store.set("k", sized(600)) is False
    assert store.peek("k") is None
    assert store.bytes_used == 0


def test_zero_budget_keeps_nothing() -> None:
    store = MemoryStore(0, 0)
    assert store.set("k", sized(300)) is False
    assert len(store) == 0


def test_negative_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        MemoryStore(-1, 10)
    with pytest.raises(ValueError):
        MemoryStore(10, -1)


def test_bytes_are_charged_as_stored_even_if_the_entry_changes_later() -> None:
    store = MemoryStore(10_000, 1_000)
    e = sized(300)
    store.set("k", e)
    e.headers = (("X-Freshened", "yes"),)  # e.g. a 304 updating headers in place
    assert store.delete("k") is True
    assert store.bytes_used == 0


def test_peek_neither_moves_nor_counts() -> None:
    store = MemoryStore(10_000, 1_000)
    a = sized(300)
    store.set("a", a)
    store.set("b", sized(300))
    assert store.peek("a") is a
    assert store.peek("missing") is None
    assert list(store.keys()) == ["a", "b"]
    stats = store.stats()
    assert (stats.hits, stats.misses) == (0, 0)


def test_delete() -> None:
    store = MemoryStore(10_000, 1_000)
    store.set("a", sized(300))
    store.set("b", sized(400))
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert store.delete("never") is False
    assert list(store.keys()) == ["b"]
    assert store.bytes_used == 400


def test_clear_keeps_counters() -> None:
    store = MemoryStore(10_000, 1_000)
    store.set("a", sized(300))
    store.get("a")
    store.get("b")
    store.clear()
    assert len(store) == 0
    assert store.bytes_used == 0
    assert store.get("a") is None
    assert store.stats() == MemoryStats(entries=0, bytes=0, hits=1, misses=2, evictions=0)


def test_keys_is_a_snapshot_safe_to_delete_from() -> None:
    store = MemoryStore(10_000, 1_000)
    for key in "abcd":
        store.set(key, sized(300))
    for key in store.keys():  # noqa: SIM118 (MemoryStore is not a dict)
        if key in "bd":
            store.delete(key)
    assert list(store.keys()) == ["a", "c"]


def test_stats() -> None:
    store = MemoryStore(1_000, 1_000)
    store.set("a", sized(400))
    store.set("b", sized(400))
    store.get("a")
    store.get("a")
    store.get("zzz")
    store.set("c", sized(400))  # evicts b (a was used more recently)
    assert store.stats() == MemoryStats(entries=2, bytes=800, hits=2, misses=1, evictions=1)
    assert store.peek("b") is None


def test_bytes_never_exceed_budget_under_churn() -> None:
    store = MemoryStore(5_000, 2_000)
    for i in range(500):
        size = OVERHEAD + (i * 37) % 1_900
        store.set(f"k{i % 40}", sized(size))
        if i % 3 == 0:
            store.get(f"k{(i * 7) % 40}")
        if i % 11 == 0:
            store.delete(f"k{(i * 5) % 40}")
        assert store.bytes_used <= store.max_bytes
        assert store.bytes_used == sum(e.size for e in map(store.peek, store.keys()) if e is not None)


# ---- MemoryStorage: the memory tier behind the async Storage protocol --------------------------------------


async def test_memory_storage_wraps_the_store() -> None:
    store = MemoryStore(10_000, 1_000)
    tier: Storage = MemoryStorage(store)
    assert tier.name == "memory"
    e = sized(300)
    await tier.set("k", e, ttl_seconds=60.0)
    assert await tier.get("k") is e
    assert store.peek("k") is e
    await tier.delete("k")
    await tier.delete("k")  # missing keys are fine
    assert await tier.get("k") is None
    assert store.stats().hits == 1


async def test_memory_storage_quietly_refuses_oversized_entries() -> None:
    tier = MemoryStorage(MemoryStore(10_000, 400), name="mem0")
    assert tier.name == "mem0"
    await tier.set("k", sized(500), ttl_seconds=60.0)
    assert await tier.get("k") is None
    assert len(tier.store) == 0
