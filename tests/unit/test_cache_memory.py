"""The memory tier: LRU order, the byte budget, size accounting, counters, and its Storage adapter."""

from __future__ import annotations

import sys
import tracemalloc

import pytest

from proxy.cache.entry import ENTRY_OVERHEAD, HEADER_PAIR_OVERHEAD, WIRE_OVERHEAD, CacheEntry
from proxy.cache.memory import SLOT_OVERHEAD, MemoryStats, MemoryStore, charged_size
from proxy.cache.storage import MemoryStorage, Storage
from proxy.cache.vary import vary_marker

# What the store charges for an empty entry under a one-character key (the tests' keys are one character).
EMPTY = ENTRY_OVERHEAD + sys.getsizeof(b"") + sys.getsizeof("k") + SLOT_OVERHEAD


def entry(body_bytes: int, headers: tuple[tuple[str, str], ...] = ()) -> CacheEntry:
    """An entry with a body of ``body_bytes`` and the given headers."""
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
    """An entry that the store charges exactly ``size`` (≥ EMPTY) under a one-character key."""
    e = entry(size - EMPTY)
    assert charged_size("k", e) == size
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
    store = MemoryStore(100_000, 10_000)
    e = sized(3_000)
    assert store.set("k", e) is True
    assert store.get("k") is e
    assert len(store) == 1
    assert store.bytes_used == 3_000


def test_size_counts_key_headers_vary_tags_and_overheads() -> None:
    store = MemoryStore(100_000, 100_000)
    e = entry(10, headers=(("ab", "cde"), ("Set", "\u20ac")))
    e.vary = ("accept-encoding",)
    e.tags = ("t1", "t2")
    key = "k" * 1000
    store.set(key, e)
    expected = (
        SLOT_OVERHEAD
        + sys.getsizeof(key)  # 49 + 1000 bytes: the key is charged in full
        + ENTRY_OVERHEAD
        + sys.getsizeof(e.body)
        + 2 * HEADER_PAIR_OVERHEAD
        + sum(sys.getsizeof(s) for s in ("ab", "cde", "Set", "\u20ac"))  # the euro sign is 2 bytes
        # room for the pre-encoded head: non-ASCII text at 4 UTF-8 bytes a character, ": " + CRLF a field
        + WIRE_OVERHEAD
        + 4 * len("abcdeSet\u20ac")
        + 4 * 2
        + sys.getsizeof(e.vary)
        + sys.getsizeof("accept-encoding")
        + sys.getsizeof(e.tags)
        + sys.getsizeof("t1")
        + sys.getsizeof("t2")
    )
    assert store.bytes_used == charged_size(key, e) == expected


def test_non_ascii_key_is_charged_its_real_size() -> None:
    e = entry(0)
    ascii_key, wide_key = "k" * 4000, "k" * 3999 + "\U0001f600"  # one emoji makes every character 4 bytes
    assert charged_size(wide_key, e) - charged_size(ascii_key, e) >= 3 * 4000


def test_vary_marker_is_charged_with_its_key() -> None:
    store = MemoryStore(1_000_000, 1_000_000)
    marker = vary_marker(("accept-encoding", "accept-language"), 0.0)
    key = "https://example.com/" + "p" * 12_000
    store.set(key, marker)
    assert store.bytes_used == charged_size(key, marker) > 12_000 + ENTRY_OVERHEAD + SLOT_OVERHEAD


def test_long_key_makes_a_small_entry_too_large() -> None:
    # A 1-byte body under a 16 KiB key is charged above a 16 KiB max_object_bytes: refused, as TOO_LARGE.
    store = MemoryStore(1024 * 1024, 16 * 1024)
    assert store.set("k" * 16 * 1024, entry(1)) is False
    assert len(store) == 0 and store.bytes_used == 0
    assert store.set("k" * 1024, entry(1)) is True


def test_many_long_keys_stay_within_the_budget_as_measured() -> None:
    """20,000 distinct ~12 KB keys with small bodies and a 1 MiB budget: the accounted bytes stay within the
    budget, and what the store really holds (tracemalloc diff around filling it) stays within 1.25x of the
    budget (docs/operations.md documents the factor)."""
    budget = 1024 * 1024
    store = MemoryStore(budget, budget)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(20_000):
            key = f"https://example.com/{i}/" + "p" * 12_000
            headers = (("Content-Type", "text/plain"), ("ETag", f'"{i}"'), ("Cache-Control", "max-age=60"))
            e = CacheEntry(
                status=200,
                headers=headers,
                body=b"body %d" % i,
                request_time=float(i),
                response_time=float(i) + 0.5,
                initial_age=0.25,
                ttl=60.0 + i,
            )
            store.set(key, e)
            assert store.bytes_used <= budget
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert store.stats().evictions > 19_000  # about 80 such entries fit in 1 MiB
    assert held <= 1.25 * budget, f"the store holds {held} bytes for a {budget}-byte budget"
    assert held >= 0.5 * store.bytes_used  # the accounting is not wildly pessimistic either


def test_least_recently_used_is_evicted_first() -> None:
    store = MemoryStore(10_000, 10_000)
    for key in "abc":
        store.set(key, sized(3_000))
    assert list(store.keys()) == ["a", "b", "c"]
    store.get("a")  # a becomes most recent: b is now the oldest
    store.set("d", sized(3_000))
    assert list(store.keys()) == ["c", "a", "d"]
    assert store.peek("b") is None
    assert store.bytes_used == 9_000
    assert store.stats().evictions == 1


def test_eviction_removes_as_many_entries_as_needed() -> None:
    store = MemoryStore(10_000, 10_000)
    for key in "abc":
        store.set(key, sized(3_000))
    store.set("z", sized(10_000))
    assert list(store.keys()) == ["z"]
    assert store.bytes_used == 10_000
    assert store.stats().evictions == 3


def test_store_filled_exactly_to_the_budget_evicts_nothing() -> None:
    store = MemoryStore(9_000, 9_000)
    for key in "abc":
        store.set(key, sized(3_000))
    assert store.bytes_used == 9_000
    assert len(store) == 3
    assert store.stats().evictions == 0


def test_set_makes_the_key_most_recent() -> None:
    store = MemoryStore(100_000, 10_000)
    for key in "abc":
        store.set(key, sized(3_000))
    store.set("a", sized(3_000))
    assert list(store.keys()) == ["b", "c", "a"]


def test_replacing_a_key_adjusts_bytes() -> None:
    store = MemoryStore(100_000, 10_000)
    store.set("k", sized(3_000))
    store.set("k", sized(7_000))
    assert store.bytes_used == 7_000
    store.set("k", sized(4_000))
    assert store.bytes_used == 4_000
    assert len(store) == 1
    assert store.stats().evictions == 0


def test_replacing_with_a_larger_entry_evicts_others_not_itself() -> None:
    store = MemoryStore(10_000, 10_000)
    store.set("a", sized(3_000))
    store.set("b", sized(3_000))
    store.set("a", sized(8_000))
    assert list(store.keys()) == ["a"]
    assert store.bytes_used == 8_000
    assert store.stats().evictions == 1


def test_object_above_max_object_bytes_is_refused() -> None:
    store = MemoryStore(100_000, 5_000)
    assert store.set("o", sized(5_000)) is True
    assert store.set("z", sized(5_001)) is False
    assert store.peek("z") is None
    assert store.bytes_used == 5_000
    assert len(store) == 1


def test_object_above_max_bytes_is_refused_without_evicting() -> None:
    store = MemoryStore(10_000, 50_000)
    store.set("a", sized(3_000))
    assert store.set("z", sized(10_001)) is False
    assert list(store.keys()) == ["a"]
    assert store.bytes_used == 3_000
    assert store.stats().evictions == 0


def test_refused_replacement_drops_the_superseded_entry() -> None:
    store = MemoryStore(100_000, 5_000)
    store.set("k", sized(3_000))
    assert store.set("k", sized(6_000)) is False
    assert store.peek("k") is None
    assert store.bytes_used == 0


def test_zero_budget_keeps_nothing() -> None:
    store = MemoryStore(0, 0)
    assert store.set("k", sized(3_000)) is False
    assert len(store) == 0


def test_negative_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        MemoryStore(-1, 100)
    with pytest.raises(ValueError):
        MemoryStore(100, -1)


def test_bytes_are_charged_as_stored_even_if_the_entry_changes_later() -> None:
    store = MemoryStore(100_000, 10_000)
    e = sized(3_000)
    store.set("k", e)
    e.headers = (("X-Freshened", "yes"),)  # e.g. a 304 updating headers in place
    assert store.delete("k") is True
    assert store.bytes_used == 0


def test_peek_neither_moves_nor_counts() -> None:
    store = MemoryStore(100_000, 10_000)
    a = sized(3_000)
    store.set("a", a)
    store.set("b", sized(3_000))
    assert store.peek("a") is a
    assert store.peek("missing") is None
    assert list(store.keys()) == ["a", "b"]
    stats = store.stats()
    assert (stats.hits, stats.misses) == (0, 0)


def test_delete() -> None:
    store = MemoryStore(100_000, 10_000)
    store.set("a", sized(3_000))
    store.set("b", sized(4_000))
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert store.delete("never") is False
    assert list(store.keys()) == ["b"]
    assert store.bytes_used == 4_000


def test_clear_keeps_counters() -> None:
    store = MemoryStore(100_000, 10_000)
    store.set("a", sized(3_000))
    store.get("a")
    store.get("b")
    store.clear()
    assert len(store) == 0
    assert store.bytes_used == 0
    assert store.get("a") is None
    assert store.stats() == MemoryStats(entries=0, bytes=0, hits=1, misses=2, evictions=0)


def test_keys_is_a_snapshot_safe_to_delete_from() -> None:
    store = MemoryStore(100_000, 10_000)
    for key in "abcd":
        store.set(key, sized(3_000))
    for key in store.keys():  # noqa: SIM118 (MemoryStore is not a dict)
        if key in "bd":
            store.delete(key)
    assert list(store.keys()) == ["a", "c"]


def test_stats() -> None:
    store = MemoryStore(10_000, 10_000)
    store.set("a", sized(4_000))
    store.set("b", sized(4_000))
    store.get("a")
    store.get("a")
    store.get("zzz")
    store.set("c", sized(4_000))  # evicts b (a was used more recently)
    assert store.stats() == MemoryStats(entries=2, bytes=8_000, hits=2, misses=1, evictions=1)
    assert store.peek("b") is None


def test_bytes_never_exceed_budget_under_churn() -> None:
    store = MemoryStore(50_000, 20_000)
    for i in range(500):
        size = (i * 37) % 19_000
        store.set(f"k{i % 40}", entry(size))
        if i % 3 == 0:
            store.get(f"k{(i * 7) % 40}")
        if i % 11 == 0:
            store.delete(f"k{(i * 5) % 40}")
        assert store.bytes_used <= store.max_bytes
        charged = [charged_size(k, e) for k in list(store.keys()) if (e := store.peek(k)) is not None]
        assert store.bytes_used == sum(charged)


# ---- MemoryStorage: the memory tier behind the async Storage protocol --------------------------------------


async def test_memory_storage_wraps_the_store() -> None:
    store = MemoryStore(100_000, 10_000)
    tier: Storage = MemoryStorage(store)
    assert tier.name == "memory"
    e = sized(3_000)
    await tier.set("k", e, ttl_seconds=60.0)
    assert await tier.get("k") is e
    assert store.peek("k") is e
    await tier.delete("k")
    await tier.delete("k")  # missing keys are fine
    assert await tier.get("k") is None
    assert store.stats().hits == 1


async def test_memory_storage_quietly_refuses_oversized_entries() -> None:
    tier = MemoryStorage(MemoryStore(100_000, 4_000), name="mem0")
    assert tier.name == "mem0"
    await tier.set("k", sized(5_000), ttl_seconds=60.0)
    assert await tier.get("k") is None
    assert len(tier.store) == 0
