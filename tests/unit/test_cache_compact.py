"""Shared header pairs in the memory tier (proxy.cache.compact) and the charge for pre-encoded heads."""

from __future__ import annotations

import dataclasses
import sys
import tracemalloc

import pytest
from multidict import CIMultiDict, istr

from proxy.cache.compact import FieldTable
from proxy.cache.entry import HEADER_PAIR_OVERHEAD, CacheEntry
from proxy.cache.memory import MemoryStore
from proxy.pipeline.encoded import entry_wire


def entry(headers: tuple[tuple[str, str], ...], body: bytes = b"x" * 1024, ttl: float = 3600.0) -> CacheEntry:
    return CacheEntry(
        status=200,
        headers=headers,
        body=body,
        request_time=1.0,
        response_time=2.0,
        initial_age=0.0,
        ttl=ttl,
        stale_while_revalidate=float(0),
        stale_if_error=float(0),
    )


def origin_fields(date: str) -> tuple[tuple[str, str], ...]:
    """Fields as the origin client hands them to STORE: istr names, fresh value strings."""
    headers = CIMultiDict[str]()
    for name, value in (
        ("Cache-Control", "max-age=3600"),
        ("Content-Type", "text/css"),
        ("Date", date),
        ("Server", "origin/1.0"),
    ):
        headers.add(istr(name), "".join(value))  # join: a new str object each time
    return tuple(headers.items())


def test_equal_pairs_become_one_object_and_entries_stay_equal() -> None:
    table = FieldTable()
    a = entry(origin_fields("Thu, 01 Jan 2026 00:00:00 GMT"))
    b = entry(origin_fields("Thu, 01 Jan 2026 00:00:01 GMT"))
    copies = dataclasses.replace(a), dataclasses.replace(b)
    table.share(a)
    table.share(b)
    assert (a, b) == copies
    for i in (0, 1, 3):  # Cache-Control, Content-Type, Server: shared
        assert a.headers[i] is b.headers[i]
    assert a.headers[2] is not b.headers[2]  # two different Dates
    assert a.ttl is b.ttl and a.stale_if_error is b.stale_if_error


def test_names_become_plain_interned_strings() -> None:
    table = FieldTable()
    e = entry(origin_fields("Thu, 01 Jan 2026 00:00:00 GMT"))
    assert all(type(name) is istr for name, _ in e.headers)
    table.share(e)
    assert all(type(name) is str and type(value) is str for name, value in e.headers)
    assert e.headers[0][0] is sys.intern("Cache-Control")


def test_table_is_bounded_and_zero_shares_nothing() -> None:
    table = FieldTable(max_pairs=10)
    for i in range(100):
        table.share(entry((("ETag", f'"{i}"'), ("Content-Type", "text/plain"))))
        assert len(table) <= 10
    off = FieldTable(max_pairs=0)
    e = entry(origin_fields("Thu, 01 Jan 2026 00:00:00 GMT"))
    before = e.headers
    off.share(e)
    assert e.headers is before


def test_store_shares_pairs_between_entries() -> None:
    store = MemoryStore(10 * 1024 * 1024, 1024 * 1024)
    store.set("a", entry(origin_fields("Thu, 01 Jan 2026 00:00:00 GMT")))
    store.set("b", entry(origin_fields("Thu, 01 Jan 2026 00:00:00 GMT")))
    a, b = store.peek("a"), store.peek("b")
    assert a is not None and b is not None
    assert all(x is y for x, y in zip(a.headers, b.headers, strict=True))


def test_shared_pairs_take_less_memory() -> None:
    """1,000 entries with the same four fields come to hold one copy of them, not 1,000."""
    table = FieldTable()
    tracemalloc.start()  # before the entries are made: only what is traced shows up when released
    try:
        made = [entry(origin_fields("Thu, 01 Jan 2026 00:00:00 GMT"), body=b"") for _ in range(1000)]
        before = tracemalloc.take_snapshot()
        for e in made:
            table.share(e)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # The entries' own names, values and pairs are released (each entry keeps a new headers tuple).
    assert held < -400 * 1000, held


@pytest.mark.parametrize(
    "headers",
    [
        (("Content-Type", "text/plain"), ("Date", "Thu, 01 Jan 2026 00:00:00 GMT")),
        (("Content-Type", "text/plain; charset=\u20ac"), ("Date", "x"), ("X-A", "\U0001f600" * 20)),
        (("Content-Type", "text/plain"), ("Date", "x"), ("X-Raw", "caf\udce9")),
        (*((f"X-F{i}", "v" * i) for i in range(40)), ("Content-Type", "a/b"), ("Date", "x")),
    ],
)
def test_size_reserves_room_for_the_pre_encoded_head(headers: tuple[tuple[str, str], ...]) -> None:
    """The pre-encoded head is built at the entry's first fast hit, after the store charged the entry: the
    charge must already hold it (the memory budget counts it)."""
    e = entry(headers)
    without_head = (
        dataclasses.replace(e, headers=()).size
        + HEADER_PAIR_OVERHEAD * len(headers)
        + sum(sys.getsizeof(s) for pair in headers for s in pair)
    )
    fields, _ = entry_wire(e)
    assert fields  # encodable
    wire_cost = sys.getsizeof(e.wire) + sys.getsizeof(fields)  # the tail is a shared constant
    assert e.size - without_head >= wire_cost
