"""The disk tier (``proxy.cache.disk``) on real files in a temporary folder: round trips across instances (a
restart), checksums, expiry, eviction within ``max_bytes``, an unwritable folder, two processes writing one
key, and its place in the tier list (socketless pipeline, tests/playbook.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.cache.banlog import BanLog
from proxy.cache.bans import Ban
from proxy.cache.disk import DiskStore, disk_folder_problem, entry_path
from proxy.cache.entry import CacheEntry
from proxy.cache.memory import MemoryStore
from proxy.cache.storage import MemoryStorage
from proxy.cache.tiers import LowerTier
from proxy.http.reasons import CacheResult
from tests.playbook import Clock, Playbook, Reply

REPO = Path(__file__).resolve().parents[2]


def make_entry(body: bytes = b"hello", **changes: object) -> CacheEntry:
    fields: dict[str, object] = {
        "status": 200,
        "headers": (("Content-Type", "text/plain"), ("ETag", '"v1"')),
        "body": body,
        "request_time": 1_700_000_000.25,
        "response_time": 1_700_000_000.5,
        "initial_age": 3.0,
        "ttl": 60.0,
        "tags": ("t1",),
    }
    fields.update(changes)
    return CacheEntry(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def disk(tmp_path: Path) -> AsyncIterator[DiskStore]:
    store = DiskStore(str(tmp_path / "cache"), max_bytes=64 * 1024 * 1024, max_object_bytes=8 * 1024 * 1024)
    yield store
    await store.close()


def folder_bytes(root: Path) -> int:
    """The bytes of the entry files now (a file the background evictor removes meanwhile counts nothing)."""
    total = 0
    for path in (root / "v1").rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file():
                total += path.stat().st_size
    return total


async def test_an_entry_survives_a_new_store_on_the_same_folder(tmp_path: Path, disk: DiskStore) -> None:
    entry = make_entry(os.urandom(100_000), vary=(), extra={"origin": "app"})
    await disk.set("example.com/a", entry, 120.0)
    path = Path(entry_path(disk.path, "example.com/a"))
    # levels=1:2 like nginx: <last hex digit>/<the two before it>/<digest>
    assert path.parent.name == path.name[-3:-1] and path.parent.parent.name == path.name[-1]
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []  # written aside, then renamed into place
    again = DiskStore(disk.path, max_bytes=disk.max_bytes, max_object_bytes=disk.max_object_bytes)
    try:
        assert await again.get("example.com/a") == entry  # the times it was stored with are kept
        assert await again.get("example.com/absent") is None
        assert again.stats()["hits"] == 1 and again.stats()["misses"] == 1
    finally:
        await again.close()
    assert disk.name == "disk"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b[:-1], id="last-byte-missing"),
        pytest.param(lambda b: b + b"x", id="extended"),
        pytest.param(lambda b: b[:100] + bytes([b[100] ^ 0x01]) + b[101:], id="bit-flipped-in-body"),
        pytest.param(lambda b: b[:9] + bytes([b[9] ^ 0x80]) + b[10:], id="bit-flipped-in-header"),
        pytest.param(lambda b: b"", id="empty"),
    ],
)
async def test_a_damaged_file_is_a_miss_and_is_removed(
    disk: DiskStore, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    await disk.set("example.com/a", make_entry(os.urandom(1000)), 120.0)
    path = Path(entry_path(disk.path, "example.com/a"))
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with caplog.at_level(logging.WARNING, "edgeproxy.disk"):
        assert await disk.get("example.com/a") is None
    assert not path.exists()
    assert disk.stats()["corrupt"] == 1
    assert "removed unusable entry file" in caplog.text


async def test_a_file_changed_after_it_was_verified_is_checked_again(disk: DiskStore) -> None:
    await disk.set("example.com/a", make_entry(os.urandom(1000)), 120.0)
    assert await disk.get("example.com/a") is not None  # verified once; later hits skip the checksum
    assert await disk.get("example.com/a") is not None
    path = Path(entry_path(disk.path, "example.com/a"))
    data = path.read_bytes()
    path.write_bytes(data[:500] + bytes([data[500] ^ 0x10]) + data[501:])  # same size
    stamp = time.time() - 5
    os.utime(path, (stamp, stamp))  # another modification time, whatever the clock's granularity
    assert await disk.get("example.com/a") is None
    assert not path.exists() and disk.stats()["corrupt"] == 1


async def test_a_file_of_another_key_is_a_miss(disk: DiskStore) -> None:
    await disk.set("example.com/a", make_entry(), 120.0)
    target = Path(entry_path(disk.path, "example.com/b"))
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(entry_path(disk.path, "example.com/a"), target)
    assert await disk.get("example.com/b") is None
    assert disk.stats()["corrupt"] == 1


async def test_an_expired_file_is_a_miss_and_is_removed(disk: DiskStore) -> None:
    await disk.set("example.com/a", make_entry(), 0.05)
    path = Path(entry_path(disk.path, "example.com/a"))
    deadline = time.time() + 0.05
    while time.time() <= deadline:  # the entry's lifetime passing (not a sleep to green: a bound)
        await asyncio.sleep(0.01)
    assert await disk.get("example.com/a") is None
    assert not path.exists() and disk.stats()["expired"] == 1


async def test_too_large_and_unencodable_entries_are_not_written(disk: DiskStore) -> None:
    await disk.set("example.com/big", make_entry(b"x" * (disk.max_object_bytes + 1)), 60.0)
    await disk.set("example.com/bad", make_entry(status=42), 60.0)
    assert await disk.get("example.com/big") is None and await disk.get("example.com/bad") is None
    assert disk.stats()["too_large"] == 1 and disk.stats()["writes"] == 0


async def test_delete(disk: DiskStore) -> None:
    await disk.set("example.com/a", make_entry(), 60.0)
    await disk.delete("example.com/a")
    await disk.delete("example.com/never")
    assert await disk.get("example.com/a") is None
    assert disk.stats()["deletes"] == 1


async def test_eviction_keeps_the_folder_within_max_bytes_least_recently_used_first(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    store = DiskStore(str(root), max_bytes=1024 * 1024, max_object_bytes=200_000)
    try:
        for i in range(12):
            await store.set(f"example.com/{i}", make_entry(os.urandom(100_000)), 600.0)
        old = time.time() - 3600
        for i in range(12):  # written an hour ago, in order
            os.utime(entry_path(store.path, f"example.com/{i}"), (old + i, old + i))
        assert await store.get("example.com/0") is not None  # used now: the most recently used
        await store.scan()
        assert folder_bytes(root) <= 1024 * 1024
        assert await store.get("example.com/0") is not None  # kept: recently used
        assert await store.get("example.com/1") is None  # the least recently used went first
        assert await store.get("example.com/11") is not None
        for i in range(12, 40):
            await store.set(f"example.com/{i}", make_entry(os.urandom(100_000)), 600.0)
        await store.scan()
        assert folder_bytes(root) <= 1024 * 1024
        stats = store.stats()
        assert stats["bytes"] == folder_bytes(root) and stats["evictions"] >= 28
        assert stats["entries"] == sum(1 for p in (root / "v1").rglob("*") if p.is_file())
    finally:
        await store.close()


async def test_the_background_scan_evicts_without_being_asked(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    store = DiskStore(str(root), max_bytes=1024 * 1024, max_object_bytes=200_000)
    store.start()
    try:
        for i in range(30):
            await store.set(f"example.com/{i}", make_entry(os.urandom(100_000)), 600.0)
        async with asyncio.timeout(10):
            while folder_bytes(root) > 1024 * 1024:
                await asyncio.sleep(0.02)
        assert store.stats()["evictions"] > 0
    finally:
        await store.close()


async def test_an_unwritable_folder_means_no_writes_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with caplog.at_level(logging.INFO, "edgeproxy.disk"):
        store = DiskStore(str(tmp_path / "a-file" / "cache"), max_bytes=1 << 20, max_object_bytes=1 << 16)
        try:
            for i in range(5):
                await store.set(f"example.com/{i}", make_entry(), 60.0)
            assert await store.get("example.com/0") is None
            stats = store.stats()
            assert stats["writable"] == 0 and stats["writes"] == 0 and stats["skipped_unwritable"] == 5
        finally:
            await store.close()
    assert len([r for r in caplog.records if r.name == "edgeproxy.disk"]) == 1
    assert "serving from memory" in caplog.text


def test_folder_problems_for_edgeproxy_check(tmp_path: Path) -> None:
    assert disk_folder_problem(str(tmp_path)) is None
    assert disk_folder_problem(str(tmp_path / "new" / "deeper")) is None
    (tmp_path / "f").write_text("x")
    assert "not a folder" in (disk_folder_problem(str(tmp_path / "f")) or "")
    assert "cannot be created" in (disk_folder_problem(str(tmp_path / "f" / "sub")) or "")


WRITER = """
import asyncio, sys
from proxy.cache.disk import DiskStore
from proxy.cache.entry import CacheEntry

async def main(root, tag):
    store = DiskStore(root, max_bytes=1 << 30, max_object_bytes=1 << 22)
    body = tag.encode() * 300_000
    bad = 0
    for i in range(60):
        entry = CacheEntry(status=200, headers=(), body=body, request_time=1.0, response_time=1.0,
                           initial_age=0.0, ttl=600.0)
        await store.set("example.com/same", entry, 600.0)
        got = await store.get("example.com/same")
        if got is not None and got.body not in (b"A" * 300_000, b"B" * 300_000):
            bad += 1
    await store.close()
    print(bad, store.stats()["corrupt"], store.stats()["writes"])

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_two_processes_writing_the_same_key_never_see_a_torn_entry(tmp_path: Path) -> None:
    root = str(tmp_path / "cache")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, root, tag], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        for tag in "AB"
    ]
    results = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert results == [["0", "0", "60"], ["0", "0", "60"]]
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    files = [p for p in (tmp_path / "cache" / "v1").rglob("*") if p.is_file()]
    assert len(files) == 1


def test_the_ban_log_round_trips_and_skips_a_torn_line(tmp_path: Path) -> None:
    log = BanLog(str(tmp_path))
    assert log.load() == []
    first = Ban(id="I1", created=1_700_000_000.0, paths=("/a",))
    second = Ban(id="P2", created=1_700_000_001.0, tags=("t1",), soft=True)
    assert log.append(first) and log.append(second)
    with open(log.path, "a") as file:
        file.write('{"id": "I3", "crea')  # a crash in the middle of an append
    assert log.load() == [first, second]
    log.rewrite([second])
    assert log.load() == [second]


# ---------------------------------------------------------------- in the tier list (socketless pipeline)

ONE_ORIGIN = """
origins:
  app: {url: "http://app.test"}
behaviours:
  - path: "*"
    origin: app
"""
CACHEABLE = Reply(200, {"Cache-Control": "max-age=60", "ETag": '"v1"'}, b"hello")


async def test_lookup_goes_memory_then_disk_then_shared_and_a_disk_hit_is_promoted(tmp_path: Path) -> None:
    clock = Clock()
    shared = MemoryStorage(MemoryStore(1 << 26, 1 << 24), name="shared")
    disk = DiskStore(str(tmp_path / "cache"), max_bytes=1 << 26, max_object_bytes=1 << 24)
    try:
        tiers = [LowerTier("disk", disk, 1 << 24), LowerTier("shared", shared, 1 << 24)]
        first = Playbook(ONE_ORIGIN, {"app": CACHEABLE}, clock=clock, lower=tiers)
        await first.get("/a")
        async with asyncio.timeout(10):  # the write-through runs in the disk tier's threads
            while await disk.get("www.example.test/a") is None:
                await asyncio.sleep(0.01)
        await first.close()

        clock.advance(20)  # a restart: a new pipeline (empty memory) over the same folder
        again = Playbook(ONE_ORIGIN, {"app": CACHEABLE}, clock=clock, lower=tiers)
        hit = await again.get("/a")
        assert (hit.ctx.result, hit.ctx.tier, hit.headers["Age"], hit.body) == (
            CacheResult.HIT,
            "disk",
            "20",
            b"hello",
        )
        assert "detail=disk" in hit.cache_status
        assert again.origins["app"].requests == []
        memory_hit = await again.get("/a")
        assert (memory_hit.ctx.result, memory_hit.ctx.tier) == (CacheResult.HIT, None)
        await again.close()

        # Not on disk but in the shared tier: found there, and promoted into the disk tier above it.
        await disk.delete("www.example.test/a")
        third = Playbook(ONE_ORIGIN, {"app": CACHEABLE}, clock=clock, lower=tiers)
        from_shared = await third.get("/a")
        assert (from_shared.ctx.result, from_shared.ctx.tier) == (CacheResult.HIT, "shared")
        async with asyncio.timeout(10):
            while await disk.get("www.example.test/a") is None:
                await asyncio.sleep(0.01)
        await third.close()
    finally:
        await disk.close()
