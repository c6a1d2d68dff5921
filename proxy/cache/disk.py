"""The disk tier: a ``Storage`` of one file per entry in a local folder, between memory and the shared tier.

LOOKUP asks it after the memory tier missed (a hit is promoted into memory by ``TieredCache``); STORE writes
through to it in the background; purges delete from it. Entries survive restarts (a graceful stop or
``kill -9``): their times are stored with them, so their remaining freshness carries over, and bans are
applied to them lazily by ``TieredCache.admit_bans`` against ``request_time`` as for every tier.

Layout of ``cache.disk.path`` (format version 1)::

    v1/<h[-1]>/<h[-3:-1]>/<h>      one entry, h = SHA-256 hex of the cache key (like nginx levels=1:2)
    tmp/                           entries being written (renamed into place when complete)
    bans.jsonl                     the persisted ban log (``proxy.cache.banlog``), without a Redis tier

Each entry file is a small header and a payload::

    "EPD" u8 version · u32 CRC-32 of the payload · u64 payload length
    payload: f64 expires_at (epoch seconds) · u32 key length · key (UTF-8, surrogatepass) · encode_entry bytes

An entry is written to a temporary file in ``tmp/`` and renamed into place (``os.replace``, atomic on one
file system), so a reader (another worker, or this edge after a crash) sees the old file or the new one,
never a torn one. A file whose header, length, checksum, key or entry does not check out (truncated, a flipped
byte, an older format) is a miss and is removed; so is an expired one.

Several worker processes share one folder: renames are atomic, a file vanishing under a reader or the
evictor is a miss or a no-op, and no process keeps a byte count of its own that could drift: each one
re-measures the folder by scanning it (``_scan``: the sizes and modification times of the files) at start, in
the background, and whenever its own writes since the last scan could have pushed the folder over
``max_bytes``. Eviction is LRU-like: a hit touches the file's modification time (at most once a minute per
file), the scan removes the least recently touched files until the folder is below 90 % of ``max_bytes``.
Two workers evicting at once may remove a little more than needed, never corrupt anything.

Disk I/O never waits on the event loop: writes, deletes, scans and reads of files that are large or not in
the page cache run in this tier's small thread pool. A small file (up to ``_INLINE_READ_MAX``) wholly in the
page cache is read on the loop with ``preadv(..., RWF_NOWAIT)``, which the kernel answers from memory or
refuses with EAGAIN (then the pool reads it): a disk hit then costs no thread switch. (Its ``open`` may
still look up the inode, as any open does.) A file's CRC-32 is verified at its first read in a process and
again whenever the file changes (device, inode, size and modification time are remembered), not on every
hit. Bodies are read whole (up to ``max_object_bytes``) in that pool and handed over as ``bytes``, because
``CacheEntry.body`` is bytes everywhere in the pipeline; streaming a large body from the file in chunks is
left for when entries can carry a body reader (issue 15 item 1): RSS for a disk hit is bounded by about
three times ``max_object_bytes`` per hit being read (the file, the decoded body, the socket buffer).

A folder that cannot be created or written (disk full, read-only, permissions) makes the tier skip writes,
with one WARNING line; reads go on (a miss when there is nothing). Writes are tried again a minute later,
and one INFO line says when they work again. Nothing here raises to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import struct
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Final, TypeVar

from proxy.cache.entry import CacheEntry, EntryFormatError, decode_entry, encode_entry

if TYPE_CHECKING:
    from proxy.cache.storage import Storage

__all__ = ["DISK_FORMAT_VERSION", "DiskStore", "disk_folder_problem", "entry_path"]

log = logging.getLogger("edgeproxy.disk")

T = TypeVar("T")

DISK_FORMAT_VERSION: Final = 1
"""Version byte of the entry file header; files of another version are misses (and are removed)."""

_HEADER = struct.Struct("!3sBIQ")  # magic, version, crc32 of the payload, payload length
_MAGIC: Final = b"EPD"
_META = struct.Struct("!dI")  # expires_at, key length
_ENTRIES_DIR: Final = f"v{DISK_FORMAT_VERSION}"
_TMP_DIR: Final = "tmp"
_LOW_WATER: Final = 0.9  # eviction brings the folder down to this share of max_bytes
_RESCAN_SOON: Final = 0.5  # seconds before the next scan when the last one left the folder over its bound
_TOUCH_AFTER: Final = 60.0  # a hit refreshes the file's mtime (its LRU position) when older than this
_RETRY_WRITES_AFTER: Final = 60.0  # seconds writes stay off after a failed write
_RESCAN_EVERY: Final = 30.0  # a scan at least this often (other workers' writes count too)
_STALE_TMP: Final = 600.0  # temporary files older than this are left-overs of a crash
_THREADS: Final = 4
# Files up to this size are read on the event loop when the page cache holds all of their bytes (preadv with
# RWF_NOWAIT: the kernel answers EAGAIN rather than wait for the disk), which saves two thread switches per
# hit; larger ones, and any file not cached, are read in the thread pool.
_INLINE_READ_MAX: Final = 256 * 1024
_RWF_NOWAIT: Final[int | None] = getattr(os, "RWF_NOWAIT", None)
# Checksums verified, by file version (device, inode, size, mtime): a file is checked once per process and
# again whenever it changes (a rewrite, a truncation, a touch), not on every hit.
_VERIFIED_MAX: Final = 65536


def entry_path(root: str, key: str) -> str:
    """Where the entry for cache key ``key`` lives under ``root`` (tests and tools use it too)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return os.path.join(root, _ENTRIES_DIR, digest[-1], digest[-3:-1], digest)


def disk_folder_problem(path: str) -> str | None:
    """Why ``path`` cannot hold the disk tier, or None when it can: it must be a folder or creatable as one,
    and writable. Called by ``edgeproxy check`` (creates nothing)."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            return f"{path!r} exists and is not a folder"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"folder {path!r} is not writable by this user"
        return None
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        return f"folder {path!r} does not exist and cannot be created ({parent!r} is not writable)"
    return None


class _Corrupt(Exception):
    """An entry file that does not check out."""


class _Punt:
    """Marks a read the event loop leaves to the thread pool."""


_PUNT: Final = _Punt()


def _touch(path: str) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def _pack(key: str, entry: CacheEntry, expires_at: float) -> list[bytes]:
    """The file's bytes as parts (header first); raises ``EntryFormatError`` for an unencodable entry."""
    raw_key = key.encode("utf-8", "surrogatepass")
    data = encode_entry(entry)
    meta = _META.pack(expires_at, len(raw_key))
    crc = zlib.crc32(data, zlib.crc32(raw_key, zlib.crc32(meta)))
    size = len(meta) + len(raw_key) + len(data)
    return [_HEADER.pack(_MAGIC, DISK_FORMAT_VERSION, crc, size), meta, raw_key, data]


def _unpack(key: str, blob: bytes | bytearray, *, verify: bool = True) -> tuple[CacheEntry, float]:
    """The entry and its expiry from a file's bytes; raises ``_Corrupt`` for anything that does not check.
    ``verify=False`` skips the checksum (this very file version was verified before); the lengths, the key
    and the entry format are checked every time."""
    if len(blob) < _HEADER.size + _META.size:
        raise _Corrupt("truncated header")
    magic, version, crc, size = _HEADER.unpack_from(blob)
    if magic != _MAGIC or version != DISK_FORMAT_VERSION:
        raise _Corrupt("not an entry file of this version")
    if len(blob) - _HEADER.size != size:
        raise _Corrupt("length does not match the header (truncated or extended)")
    view = memoryview(blob)[_HEADER.size :]
    if verify and zlib.crc32(view) != crc:
        raise _Corrupt("checksum mismatch")
    expires_at, key_len = _META.unpack_from(view)
    key_end = _META.size + key_len
    if bytes(view[_META.size : key_end]) != key.encode("utf-8", "surrogatepass"):
        raise _Corrupt("another key (hash collision or a misplaced file)")
    try:
        entry = decode_entry(view[key_end:])
    except EntryFormatError as exc:
        raise _Corrupt(str(exc)) from exc
    return entry, expires_at


def _remove(path: str) -> bool:
    """Unlink ``path``; False when it was already gone (another worker got there first)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


class DiskStore:
    """``Storage`` over one folder, shared by every worker of an edge. One instance per worker process.

    Built by ``proxy.app.Edge`` when ``cache.disk`` is configured; ``start`` (from the event loop) begins the
    background scan, ``close`` stops it and the thread pool.
    """

    def __init__(self, path: str, *, max_bytes: int, max_object_bytes: int) -> None:
        """Create the tier over ``path`` (created when missing). Never raises for an unusable folder: the
        tier then skips writes (one WARNING line)."""
        if max_bytes < 1 or max_object_bytes < 1:
            raise ValueError("max_bytes and max_object_bytes must be >= 1")
        self.path = path
        self.max_bytes = max_bytes
        self.max_object_bytes = max_object_bytes
        self._executor = ThreadPoolExecutor(_THREADS, thread_name_prefix="edgeproxy-disk")
        self._entries_dir = os.path.join(path, _ENTRIES_DIR)
        self._tmp_dir = os.path.join(path, _TMP_DIR)
        self._lock = threading.Lock()  # guards the counters and _verified, used from the pool's threads
        self._verified: OrderedDict[tuple[int, int, int, int], None] = OrderedDict()
        self._counts = dict.fromkeys(
            (
                "gets",
                "hits",
                "misses",
                "writes",
                "deletes",
                "evictions",
                "errors",
                "corrupt",
                "expired",
                "too_large",
                "skipped_unwritable",
                "scans",
            ),
            0,
        )
        self._bytes = 0  # the folder's size at the last scan, plus what this worker wrote since
        self._entries = 0
        self._written_since_scan = 0
        self._scanned = False
        self._writes_off_until = -math.inf  # monotonic time until which writes are skipped
        self._warned = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        try:
            os.makedirs(self._tmp_dir, exist_ok=True)
            os.makedirs(self._entries_dir, exist_ok=True)
        except OSError as exc:
            self._write_failed(exc)

    # ------------------------------------------------------------------------------------------ Storage

    @property
    def name(self) -> str:
        """``"disk"``: the tier's name in logs, metrics and ``Cache-Status``."""
        return "disk"

    async def get(self, key: str) -> CacheEntry | None:
        """The entry stored under ``key``, or None (no file, expired, corrupt: the latter two are removed).

        Called by LOOKUP after the memory tier missed; the file is read and checked in the thread pool.
        """
        if self._closed:
            return None
        found = self._get_cached(entry_path(self.path, key), key)
        if not isinstance(found, _Punt):
            return found
        try:
            return await self._run(self._get, key)
        except RuntimeError:  # the pool was shut down under us (closing)
            return None

    async def set(self, key: str, entry: CacheEntry, ttl_seconds: float) -> None:
        """Write ``entry`` under ``key`` for ``ttl_seconds``; called by STORE (write-through) and promotion.

        Skipped (silently, counted) when the body exceeds ``max_object_bytes`` or writes are off after a
        failure; a failing write turns writes off (one WARNING). Never raises.
        """
        if self._closed or not ttl_seconds > 0:
            return
        if len(entry.body) > self.max_object_bytes:
            self._count("too_large")
            return
        if time.monotonic() < self._writes_off_until:
            self._count("skipped_unwritable")
            return
        expires_at = time.time() + min(ttl_seconds, 1e12)
        try:
            written = await self._run(self._set, key, entry, expires_at)
        except RuntimeError:
            return
        if written:
            self._bytes += written
            self._written_since_scan += written
            if self._bytes > self.max_bytes:
                self._wake.set()

    async def delete(self, key: str) -> None:
        """Remove ``key``'s file if there is one; called by purges and bans. Never raises."""
        if self._closed:
            return
        with contextlib.suppress(RuntimeError):
            await self._run(self._delete, key)

    # ------------------------------------------------------------------------------------------ the rest

    def start(self) -> None:
        """Begin the background maintenance (first scan at once); called from the event loop at start-up."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._maintain(), name="disk tier")

    async def close(self) -> None:
        """Stop the maintenance and the thread pool; called once when the edge stops."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    def stats(self) -> dict[str, int]:
        """Counters since start and the folder's size and entry count as last measured (``bytes`` includes
        this worker's writes since the scan), for ``/stats`` and ``/metrics``."""
        with self._lock:
            counts = dict(self._counts)
        counts["bytes"] = self._bytes
        counts["entries"] = self._entries
        counts["max_bytes"] = self.max_bytes
        counts["writable"] = int(time.monotonic() >= self._writes_off_until)
        return counts

    async def scan(self) -> None:
        """Measure the folder and evict down to 90 % of ``max_bytes`` if it is over; in the thread pool.
        Called by the maintenance task (and by tests that want the numbers now)."""
        self._written_since_scan = 0
        entries, size = await self._run(self._scan)
        self._entries = entries
        # What this worker wrote while the folder was being listed may be missing from ``size``: count it
        # (at worst twice, which only brings the next scan sooner).
        self._bytes = size + self._written_since_scan
        self._scanned = True

    async def _maintain(self) -> None:
        while True:
            # Cleared before the scan, not after: a write crossing max_bytes during the scan wakes the next.
            self._wake.clear()
            try:
                await self.scan()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the maintenance die
                self._count("errors")
                log.debug("disk tier scan failed: %s", exc)
            # Still over the bound (writes went on during the scan): look again soon, not in _RESCAN_EVERY.
            wait = _RESCAN_SOON if self._bytes > self.max_bytes else _RESCAN_EVERY
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _write_failed(self, exc: OSError) -> None:
        """Turn writes off for a while; the first failure (and the first after a recovery) logs once."""
        self._count("errors")
        self._writes_off_until = time.monotonic() + _RETRY_WRITES_AFTER
        if not self._warned:
            self._warned = True
            log.warning(
                "disk tier: cannot write to %s (%s): serving from memory (and the shared tier) only; "
                "writes are retried every %d s",
                self.path,
                exc.strerror or exc,
                int(_RETRY_WRITES_AFTER),
            )

    # ---------------------------------------------------------------- in the thread pool

    def _get(self, key: str) -> CacheEntry | None:
        path = entry_path(self.path, key)
        self._count("gets")
        try:
            with open(path, "rb") as file:
                info = os.fstat(file.fileno())
                if info.st_size > self.max_object_bytes + 65536 + 8 * len(key) + 1_048_576:
                    raise _Corrupt("larger than any entry this tier writes")
                blob = file.read()
        except FileNotFoundError:
            self._count("misses")
            return None
        except _Corrupt as exc:
            self._drop_corrupt(path, key, str(exc))
            return None
        except OSError as exc:
            self._count("misses")
            self._count("errors")
            log.debug("disk tier: cannot read %s: %s", path, exc)
            return None
        return self._finish(path, key, blob, info, touch=True)

    def _get_cached(self, path: str, key: str) -> CacheEntry | _Punt | None:
        """The entry when its file is small and wholly in the page cache, read on the event loop without
        waiting for the disk (``RWF_NOWAIT``); ``_PUNT`` when the thread pool must do it."""
        if _RWF_NOWAIT is None:
            return _PUNT
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._count("gets")
            self._count("misses")
            return None
        except OSError:
            return _PUNT
        try:
            info = os.fstat(fd)
            if info.st_size > _INLINE_READ_MAX:
                return _PUNT
            blob = bytearray(info.st_size)
            if os.preadv(fd, [blob], 0, _RWF_NOWAIT) != info.st_size:
                return _PUNT
        except OSError:  # EAGAIN: not (all) in the page cache; EOPNOTSUPP: not on this file system
            return _PUNT
        finally:
            os.close(fd)
        self._count("gets")
        return self._finish(path, key, blob, info, touch=False)

    def _finish(
        self, path: str, key: str, blob: bytes | bytearray, info: os.stat_result, *, touch: bool
    ) -> CacheEntry | None:
        """Check and decode a file's bytes: the entry, or None (a damaged or expired file is removed)."""
        version = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:
            verified = version in self._verified
        try:
            entry, expires_at = _unpack(key, blob, verify=not verified)
        except _Corrupt as exc:
            self._drop_corrupt(path, key, str(exc))
            return None
        if not verified:
            with self._lock:
                self._verified[version] = None
                if len(self._verified) > _VERIFIED_MAX:
                    self._verified.popitem(last=False)
        now = time.time()
        if expires_at <= now:
            self._count("misses")
            self._count("expired")
            with contextlib.suppress(OSError):
                _remove(path)
            return None
        if now - info.st_mtime > _TOUCH_AFTER:  # the LRU mark; a read-only folder just keeps its order
            if touch:
                with contextlib.suppress(OSError):
                    os.utime(path)
            else:  # a write to the inode: never on the event loop
                with contextlib.suppress(RuntimeError):
                    self._executor.submit(_touch, path)
        self._count("hits")
        return entry

    def _drop_corrupt(self, path: str, key: str, why: str) -> None:
        self._count("misses")
        self._count("corrupt")
        log.warning("disk tier: removed unusable entry file %s for %r: %s", path, key, why)
        with contextlib.suppress(OSError):
            _remove(path)

    def _set(self, key: str, entry: CacheEntry, expires_at: float) -> int:
        """Write the file; the bytes written (0 when not written)."""
        try:
            parts = _pack(key, entry, expires_at)
        except EntryFormatError as exc:
            log.debug("disk tier: entry for %r not stored: %s", key, exc)
            return 0
        path = entry_path(self.path, key)
        tmp = os.path.join(self._tmp_dir, f"{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
        try:
            try:
                file = open(tmp, "wb")  # noqa: SIM115 (closed below, before the rename)
            except FileNotFoundError:  # tmp/ removed under us: recreate it
                os.makedirs(self._tmp_dir, exist_ok=True)
                file = open(tmp, "wb")  # noqa: SIM115
            try:
                file.writelines(parts)
            finally:
                file.close()
            try:
                os.replace(tmp, path)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            self._write_failed(exc)
            return 0
        if self._warned:
            self._warned = False
            log.info("disk tier: writes to %s work again", self.path)
        self._count("writes")
        return sum(map(len, parts))

    def _delete(self, key: str) -> None:
        try:
            if _remove(entry_path(self.path, key)):
                self._count("deletes")
        except OSError as exc:
            self._count("errors")
            log.debug("disk tier: cannot delete %r: %s", key, exc)

    def _scan(self) -> tuple[int, int]:
        """Sizes and mtimes of every entry file; evict the least recently used while over ``max_bytes``.
        Returns (entries, bytes) after eviction. Files vanishing meanwhile (other workers) are skipped."""
        self._count("scans")
        files: list[tuple[float, int, str]] = []
        total = 0
        for first in _listdir(self._entries_dir):
            for second in _listdir(first):
                for name in _listdir(second):
                    try:
                        info = os.stat(name)
                    except OSError:
                        continue
                    files.append((info.st_mtime, info.st_size, name))
                    total += info.st_size
        now = time.time()
        for tmp in _listdir(self._tmp_dir):
            with contextlib.suppress(OSError):
                if now - os.stat(tmp).st_mtime > _STALE_TMP:
                    os.unlink(tmp)
        if total <= self.max_bytes:
            return len(files), total
        files.sort()
        target = self.max_bytes * _LOW_WATER
        evicted = 0
        for _mtime, size, name in files:
            if total <= target:
                break
            try:
                if _remove(name):
                    evicted += 1
            except OSError as exc:
                self._count("errors")
                log.debug("disk tier: cannot evict %s: %s", name, exc)
                continue
            total -= size  # gone, by us or by another worker
        self._count("evictions", evicted)
        return len(files) - evicted, total


def _listdir(path: str) -> list[str]:
    """Full paths of ``path``'s entries; empty when it is missing or unreadable."""
    try:
        with os.scandir(path) as found:
            return [entry.path for entry in found]
    except OSError:
        return []


if TYPE_CHECKING:
    _disk_store_is_a_storage: type[Storage] = DiskStore
