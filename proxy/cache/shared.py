"""The shared tier: a ``Storage`` in Redis, through aiocache, shared by every worker and edge of a region.

LOOKUP asks it after the memory tier misses, STORE writes through to it, purges delete from it. It holds
``encode_entry`` bytes (our versioned format: never pickle, so whoever can write to Redis cannot make an edge
run code; a value that does not decode is a miss and is deleted).

The edge must keep serving when Redis is slow or gone, so nothing here raises to the caller and nothing
waits long:

- every ``get``/``set``/``delete`` is bounded by ``timeout`` with our own ``asyncio.timeout_at`` (aiocache is
  built with ``timeout=None``: its per-call ``asyncio.wait_for`` makes gets several times slower);
- a timeout or connection error is a miss (or a skipped write) and a failure for a ``CircuitBreaker``; while
  the breaker is open no network call is made at all, and one WARNING says so (one INFO when it closes).

Redis keys are ``<namespace>:v<ENTRY_FORMAT_VERSION>:<cache key>`` (``edgeproxy:v1:example.com/a.css``): a
release with a new entry format reads and writes its own keyspace, and the old one expires by TTL. Cache keys
longer than ``MAX_PLAIN_KEY_BYTES`` keep a readable prefix and end in their SHA-256. Nothing here uses
aiocache's ``clear()`` (FLUSHDB, or the blocking KEYS with a namespace).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as redis_asyncio
from aiocache import RedisCache
from redis.exceptions import ResponseError

from proxy.cache.breaker import BreakerState, CircuitBreaker
from proxy.cache.entry import ENTRY_FORMAT_VERSION, CacheEntry, EntryFormatError, decode_entry, encode_entry
from proxy.settings.model import SharedConfig

if TYPE_CHECKING:
    from proxy.cache.storage import Storage

__all__ = [
    "MAX_PLAIN_KEY_BYTES",
    "EntryBytesSerializer",
    "SharedStore",
    "make_shared_store",
    "redact_url",
    "redis_key",
]

log = logging.getLogger("edgeproxy.shared")

T = TypeVar("T")

MAX_PLAIN_KEY_BYTES: Final = 200
"""Cache keys up to this many UTF-8 bytes are used as they are; longer ones are shortened and hashed."""
_HASHED_PREFIX_BYTES: Final = 160
_HASH_MARK: Final = b"\x00sha256:"
# A hashed key part is 160 + 8 + 64 = 232 bytes, longer than any plain one, so the two forms never collide
# (a request cannot choose a short key that equals the hashed form of a long one).
assert _HASHED_PREFIX_BYTES + len(_HASH_MARK) + 64 > MAX_PLAIN_KEY_BYTES

_DEFAULT_MAX_TTL: Final = 365 * 86400.0
_LOGGED_KEYS_MAX: Final = 1024


def redis_key(key: str, namespace: str = "edgeproxy") -> bytes:
    """The Redis key for cache key ``key``: ``<namespace>:v<format version>:<key>``, as bytes.

    Called for every shared-tier operation (and by tests and tools that look into Redis). The key is UTF-8
    with ``surrogatepass`` (any Python str maps to distinct bytes). Keys above ``MAX_PLAIN_KEY_BYTES`` become
    their first 160 bytes, a NUL, ``sha256:`` and the hex digest of the whole key.
    """
    raw = key.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_PLAIN_KEY_BYTES:
        raw = raw[:_HASHED_PREFIX_BYTES] + _HASH_MARK + hashlib.sha256(raw).hexdigest().encode("ascii")
    return f"{namespace}:v{ENTRY_FORMAT_VERSION}:".encode() + raw


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for log lines and stats."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hostinfo}").geturl()


class EntryBytesSerializer:
    """aiocache serializer that passes bytes through untouched (``encoding = None``: no text decoding).

    aiocache calls ``dumps`` on ``set`` and ``loads`` on ``get``. Only ``bytes`` can be written, so nothing
    but ``encode_entry`` output ever reaches Redis through this cache; decoding (and rejecting) the bytes is
    ``SharedStore``'s job, which knows the key and can log and delete.
    """

    DEFAULT_ENCODING: Final = None
    encoding: None = None

    def dumps(self, value: object) -> bytes:
        """Return ``value`` itself; raise ``TypeError`` for anything that is not ``bytes``."""
        if not isinstance(value, bytes):
            raise TypeError(f"the shared tier stores bytes, not {type(value).__name__}")
        return value

    def loads(self, value: object) -> bytes | None:
        """Return the stored bytes (None on a miss); any other type reads as a miss."""
        return value if isinstance(value, bytes) else None


class _Failed:
    """Marks a call that did not complete (skipped, timed out, failed)."""


_FAILED: Final = _Failed()


class SharedStore:
    """``Storage`` over Redis through aiocache's Redis backend; safe to use from one event loop."""

    __slots__ = (
        "_breaker",
        "_cache",
        "_closed",
        "_counts",
        "_down",
        "_logged_errors",
        "_logged_keys",
        "_max_object_bytes",
        "_max_ttl",
        "_namespace",
        "_timeout",
        "_url",
    )

    def __init__(
        self,
        url: str,
        *,
        max_object_bytes: int = 8 * 1024 * 1024,
        timeout: float = 0.1,
        breaker: CircuitBreaker | None = None,
        namespace: str = "edgeproxy",
        max_connections: int = 32,
        max_ttl: float = _DEFAULT_MAX_TTL,
    ) -> None:
        """Prepare a store for ``url`` (``redis://[:password@]host[:port][/db]`` or ``rediss://``); called
        once per worker at startup (``make_shared_store``). No connection is made until the first call.

        ``max_object_bytes``: encoded entries above it are not written. ``timeout`` (seconds, > 0) bounds each
        ``get``/``set``/``delete`` as a whole. ``breaker`` defaults to ``CircuitBreaker()`` (3 failures, 5 s).
        ``namespace`` starts every Redis key. ``max_connections`` bounds the connection pool (a call waiting
        for a free connection is still bounded by ``timeout``). ``max_ttl`` caps the Redis TTL (an entry may
        have an infinite lifetime). Raises ``ValueError`` for an unusable URL or argument.
        """
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError("timeout must be a finite number of seconds > 0")
        if max_object_bytes < 0 or max_connections < 1 or not max_ttl >= 1:
            raise ValueError("max_object_bytes must be >= 0, max_connections >= 1 and max_ttl >= 1")
        if not namespace:
            raise ValueError("namespace must not be empty")
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a Redis URL: {redact_url(url)!r} (use redis://host:port/db)")
        try:
            port = parts.port or 6379
            db = int(parts.path.strip("/") or "0")
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None
        pool_kwargs: dict[str, Any] = {}
        if parts.username:
            pool_kwargs["username"] = unquote(parts.username)
        self._cache: Any = RedisCache(
            serializer=EntryBytesSerializer(),
            endpoint=parts.hostname or "127.0.0.1",
            port=port,
            db=db,
            password=unquote(parts.password) if parts.password is not None else None,
            ssl=parts.scheme == "rediss",
            timeout=None,
            pool_max_size=max_connections,
            create_connection_timeout=timeout,
            # Blocking: a call beyond max_connections waits for a free connection (within our timeout)
            # instead of failing at once with "Too many connections" and tripping the breaker.
            connection_pool_class=redis_asyncio.BlockingConnectionPool,
            connection_pool_kwargs=pool_kwargs,
        )
        self._url = redact_url(url)
        self._namespace = namespace
        self._timeout = timeout
        self._max_object_bytes = max_object_bytes
        self._max_ttl = max_ttl
        self._breaker = breaker if breaker is not None else CircuitBreaker()
        self._down = False
        self._closed = False
        self._logged_keys: OrderedDict[bytes, None] = OrderedDict()
        self._logged_errors: set[str] = set()
        self._counts = dict.fromkeys(
            (
                "gets",
                "hits",
                "misses",
                "sets",
                "deletes",
                "errors",
                "timeouts",
                "skipped_open",
                "too_large",
                "undecodable",
            ),
            0,
        )

    # ------------------------------------------------------------------------------------------ Storage

    @property
    def name(self) -> str:
        """``"shared"``: the tier's name in logs, metrics and ``Cache-Status``."""
        return "shared"

    async def get(self, key: str) -> CacheEntry | None:
        """Return the entry stored under ``key``, or None; called by LOOKUP after the memory tier missed.

        None means a miss of any kind: no such key, a value that is not a valid entry (logged once per key at
        WARNING and deleted), a timeout, an error, the breaker open, the store closed. Never raises (except
        ``CancelledError`` when the caller is cancelled). The entry may be stale; freshness is the caller's.
        """
        counts = self._counts
        counts["gets"] += 1
        rkey = redis_key(key, self._namespace)
        deadline = self._deadline()
        data = await self._call(lambda: self._cache.get(rkey), deadline)
        if not isinstance(data, bytes):  # None (no such key) or _FAILED
            counts["misses"] += 1
            return None
        try:
            entry = decode_entry(data)
        except EntryFormatError as exc:
            counts["misses"] += 1
            counts["undecodable"] += 1
            self._log_undecodable(rkey, exc)
            if await self._call(lambda: self._cache.delete(rkey), deadline) is not _FAILED:
                counts["deletes"] += 1
            return None
        counts["hits"] += 1
        return entry

    async def set(self, key: str, entry: CacheEntry, ttl_seconds: float) -> None:
        """Write ``entry`` under ``key`` for ``ttl_seconds``; called by STORE (write-through).

        The Redis TTL is ``ttl_seconds`` (the time the entry stays useful: freshness plus stale windows)
        clamped to at least 1 s and at most ``max_ttl``. Entries whose encoded size exceeds
        ``max_object_bytes`` and entries ``encode_entry`` refuses are not written. Failures are counted and
        logged, never raised: a write that did not happen shows up later as a miss.
        """
        counts = self._counts
        if len(entry.body) > self._max_object_bytes:
            counts["too_large"] += 1
            return
        try:
            data = encode_entry(entry)
        except EntryFormatError as exc:
            counts["errors"] += 1
            log.debug("shared tier: entry for %r not stored: %s", key, exc)
            return
        if len(data) > self._max_object_bytes:
            counts["too_large"] += 1
            return
        # A float TTL makes aiocache use PSETEX (milliseconds); an int would use SETEX, which redis-py 8
        # reports as deprecated.
        ttl = 1.0 if math.isnan(ttl_seconds) else min(max(float(ttl_seconds), 1.0), self._max_ttl)
        rkey = redis_key(key, self._namespace)
        done = await self._call(lambda: self._cache.set(rkey, data, ttl=ttl), self._deadline())
        if done is not _FAILED:
            counts["sets"] += 1

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present; called by purges. Missing keys, failures and an open breaker are
        silent (counted in ``stats``): an entry that could not be deleted expires with its TTL."""
        rkey = redis_key(key, self._namespace)
        if await self._call(lambda: self._cache.delete(rkey), self._deadline()) is not _FAILED:
            self._counts["deletes"] += 1

    # ------------------------------------------------------------------------------------------ the rest

    @property
    def url(self) -> str:
        """The Redis URL, password redacted."""
        return self._url

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker guarding this store (for stats, health and tests)."""
        return self._breaker

    @property
    def available(self) -> bool:
        """False from the moment the breaker opened until a probe succeeded (what ``/healthz`` reports)."""
        return not self._down

    def stats(self) -> dict[str, int]:
        """Counters since the store was created, for the admin stats endpoint and metrics.

        ``gets`` = ``hits`` + ``misses`` (every kind of miss). ``sets``/``deletes``: completed writes and
        deletions. ``errors``/``timeouts``: failed or timed-out calls of any kind. ``skipped_open``: calls
        not made because the breaker was open. ``too_large``: entries above ``max_object_bytes``, not
        written. ``undecodable``: values that were not valid entries (read as misses, deleted).
        """
        return dict(self._counts)

    async def close(self) -> None:
        """Close the connection pool; called once at shutdown. Later calls are misses and skipped writes.

        Errors are logged, not raised. Uses redis-py's ``aclose`` directly (aiocache's ``close`` calls the
        ``close`` that redis-py 8 reports as deprecated).
        """
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(max(self._timeout, 1.0)):
                await self._cache.client.aclose()
        except Exception as exc:
            log.debug("shared tier %s: error on close: %r", self._url, exc)

    def __repr__(self) -> str:
        return f"SharedStore({self._url!r}, breaker={self._breaker.state.value})"

    # ------------------------------------------------------------------------------------------ internals

    def _deadline(self) -> float:
        """When the Storage call starting now must be over, on the loop's clock (for ``timeout_at``)."""
        return asyncio.get_running_loop().time() + self._timeout

    async def _call(self, operation: Callable[[], Awaitable[T]], deadline: float) -> T | _Failed:
        """Run one Redis call through the breaker, bounded by ``deadline``; ``_FAILED`` when it did not run
        or did not complete. Feeds the breaker: timeouts and connection-level errors are failures; an error
        answer from Redis (``ResponseError``) proves the server is up and counts as a success for it."""
        counts = self._counts
        if self._closed:
            return _FAILED
        breaker = self._breaker
        if not breaker.allow(time.monotonic()):
            counts["skipped_open"] += 1
            return _FAILED
        try:
            async with asyncio.timeout_at(deadline):
                result = await operation()
        except TimeoutError:
            counts["timeouts"] += 1
            self._failure(None)
            return _FAILED
        except ResponseError as exc:
            counts["errors"] += 1
            self._log_error(exc)
            self._success()
            return _FAILED
        except Exception as exc:  # connection refused/reset, redis-py errors, anything unexpected
            counts["errors"] += 1
            self._failure(exc)
            return _FAILED
        self._success()
        return result

    def _success(self) -> None:
        self._breaker.record_success(time.monotonic())
        if self._down and self._breaker.state is BreakerState.CLOSED:
            self._down = False
            log.info("shared tier %s available again", self._url)

    def _failure(self, exc: BaseException | None) -> None:
        # redis-py 8 exceptions have a terse repr ("network:ConnectionError"): name the class and the text.
        reason = f"timeout after {self._timeout:g}s" if exc is None else f"{type(exc).__name__}: {exc}"
        log.debug("shared tier %s: %s", self._url, reason)
        self._breaker.record_failure(time.monotonic())
        if not self._down and self._breaker.state is BreakerState.OPEN:
            self._down = True
            log.warning(
                "shared tier %s unavailable, serving from memory and origins (%s; retrying every %gs)",
                self._url,
                reason,
                self._breaker.reset_after,
            )

    def _log_error(self, exc: Exception) -> None:
        """Log an error answer at WARNING the first time its kind is seen, then at DEBUG."""
        kind = type(exc).__name__
        level = logging.DEBUG if kind in self._logged_errors else logging.WARNING
        self._logged_errors.add(kind)
        log.log(
            level, "shared tier %s: Redis answered with an error: %s: %s", self._url, type(exc).__name__, exc
        )

    def _log_undecodable(self, rkey: bytes, exc: EntryFormatError) -> None:
        """Log an undecodable value at WARNING once per key (remembering a bounded number of keys)."""
        logged = self._logged_keys
        if rkey in logged:
            log.debug("shared tier %s: undecodable value under %r again: %s", self._url, rkey, exc)
            return
        logged[rkey] = None
        if len(logged) > _LOGGED_KEYS_MAX:
            logged.popitem(last=False)
        log.warning(
            "shared tier %s: value under %r is not a valid cache entry (%s); treated as a miss and deleted",
            self._url,
            rkey,
            exc,
        )


def make_shared_store(config: SharedConfig, *, breaker: CircuitBreaker | None = None) -> SharedStore:
    """Build the shared tier from ``cache.shared``; called once per worker at startup when it is set.

    Raises ``ValueError`` for a ``memcached://`` URL (not supported yet) or an unusable Redis URL.
    """
    if config.url.startswith("memcached://"):
        raise ValueError("cache.shared: memcached is not supported yet; use redis://host:port/db")
    return SharedStore(
        config.url,
        max_object_bytes=config.max_object_bytes,
        timeout=config.timeout,
        breaker=breaker,
    )


if TYPE_CHECKING:
    _shared_store_is_a_storage: type[Storage] = SharedStore
