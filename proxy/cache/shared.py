"""The shared tier: a ``Storage`` in Redis or memcached, through aiocache, shared by every worker and edge
of a region.

LOOKUP asks it after the memory tier misses, STORE writes through to it, purges delete from it. It holds
``encode_entry`` bytes (our versioned format: never pickle, so whoever can write to the server cannot make an
edge run code; a value that does not decode is a miss and is deleted).

The URL in ``cache.shared`` picks the backend (``make_shared_store``):

- ``redis://`` or ``rediss://``: ``SharedStore``, over aiocache's Redis backend. The same Redis also carries
  the cluster coordination (``proxy.cache.coordination``: bans, their pub/sub and acks, the worker registry,
  the origin-shield lock).
- ``memcached://host[:port]``: ``MemcachedStore``, over aiocache's Memcached backend (aiomcache). **With
  memcached the shared tier is storage only**: memcached has no pub/sub, no sorted sets and no locks, so the
  coordination stays Redis-only (``supports_coordination`` is False): bans do not travel through memcached
  and there is no shield lock.

The edge must keep serving when the server is slow or gone, so nothing here raises to the caller and nothing
waits long:

- every ``get``/``set``/``delete`` is bounded by ``timeout`` with our own ``asyncio.timeout_at`` (aiocache is
  built with ``timeout=None``: its per-call ``asyncio.wait_for`` makes gets several times slower);
- a timeout or connection error is a miss (or a skipped write) and a failure for a ``CircuitBreaker``; while
  the breaker is open no network call is made at all, and one WARNING says so (one INFO when it closes).

Redis keys are ``<namespace>:v<ENTRY_FORMAT_VERSION>:<cache key>`` (``edgeproxy:v1:example.com/a.css``): a
release with a new entry format reads and writes its own keyspace, and the old one expires by TTL. Cache keys
longer than ``MAX_PLAIN_KEY_BYTES`` keep a readable prefix and end in their SHA-256. Nothing here uses
aiocache's ``clear()`` (FLUSHDB, or the blocking KEYS with a namespace).

With memcached:

- keys are at most 250 bytes, without spaces or control characters, so every key is
  ``<namespace>:v<ENTRY_FORMAT_VERSION>:<SHA-256 hex of the cache key>`` (``memcached_key``);
- TTLs are whole seconds, rounded up, at least 1 and at most 30 days (``MEMCACHED_MAX_TTL``: memcached reads a
  longer one as an absolute Unix time, long past);
- memcached refuses items above its item size limit (``-I``, 1 MiB by default) with ``SERVER_ERROR``: such a
  write is "not stored" (``stats()["not_stored"]``), never an error, and the server drops any older value
  under that key. ``max_object_bytes`` is checked before sending, as with Redis;
- aiocache talks to memcached through an aiomcache 0.8 client whose connection handling is ours
  (``_MemcachedClient``): a connection whose exchange was interrupted (our timeout, a cancelled request) or
  failed is closed, never reused, so a late answer is never read as the answer to a later command; the server
  closing a connection is an error (aiomcache 0.8.2 then loops forever without yielding, where no timeout can
  fire: aio-libs/aiomcache#502); the pool opens connections on demand, up to ``max_connections``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar
from urllib.parse import unquote, urlsplit

import aiomcache
import redis.asyncio as redis_asyncio
from aiocache import RedisCache
from aiocache.backends.memcached import MemcachedCache
from aiomcache.pool import Connection, MemcachePool
from redis.exceptions import ResponseError

from proxy.cache.breaker import BreakerState, CircuitBreaker
from proxy.cache.entry import ENTRY_FORMAT_VERSION, CacheEntry, EntryFormatError, decode_entry, encode_entry
from proxy.settings.model import SharedConfig

if TYPE_CHECKING:
    from proxy.cache.storage import Storage

__all__ = [
    "MAX_PLAIN_KEY_BYTES",
    "MEMCACHED_MAX_TTL",
    "EntryBytesSerializer",
    "MemcachedStore",
    "SharedStore",
    "SharedTier",
    "make_shared_store",
    "memcached_key",
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

MEMCACHED_MAX_TTL: Final = 30 * 86400
"""The longest memcached TTL in seconds: memcached reads a larger expiry as an absolute Unix time."""
_MEMCACHED_MAX_KEY_BYTES: Final = 250
_MEMCACHED_NAMESPACE: Final = re.compile(r"[!-~]+")  # printable ASCII without space: valid in a memcached key


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


def memcached_key(key: str, namespace: str = "edgeproxy") -> bytes:
    """The memcached key for cache key ``key``: ``<namespace>:v<format version>:<SHA-256 hex>``, as bytes.

    Called for every memcached operation (and by tests and tools that look into memcached). Whatever its
    length and characters, every cache key maps to a valid memcached key (at most 250 bytes, no spaces or
    control characters) as long as ``namespace`` is printable ASCII without spaces (as ``MemcachedStore``
    checks). The digest is over the key's UTF-8 with ``surrogatepass``: distinct strs give distinct bytes.
    """
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{namespace}:v{ENTRY_FORMAT_VERSION}:{digest}".encode("ascii")


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
    but ``encode_entry`` output ever reaches the server through this cache; decoding (and rejecting) the bytes
    is the store's job, which knows the key and can log and delete.
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


class SharedTier:
    """What both backends share: the ``Storage`` methods, the timeout, the breaker, counters and logs.

    Not built directly: ``SharedStore`` (Redis) and ``MemcachedStore`` set ``_cache`` (an aiocache cache with
    ``EntryBytesSerializer`` and ``timeout=None``) and say how keys, TTLs and closing work. Safe to use from
    one event loop.
    """

    backend: ClassVar[str] = ""
    """``"redis"`` or ``"memcached"``."""
    supports_coordination: ClassVar[bool] = False
    """True when the server behind ``url`` can also carry the cluster coordination (bans, shield lock)."""
    _server: ClassVar[str] = ""  # the server's name in log lines
    _error_answers: ClassVar[tuple[type[Exception], ...]] = ()  # the server answered, with an error

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
        max_object_bytes: int,
        timeout: float,
        breaker: CircuitBreaker | None,
        namespace: str,
        max_connections: int,
        max_ttl: float,
    ) -> None:
        """Check the arguments both backends take and set up the state; called by the subclasses first.

        Raises ``ValueError`` for an unusable argument (the subclass then checks the URL).
        """
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError("timeout must be a finite number of seconds > 0")
        if max_object_bytes < 0 or max_connections < 1 or not max_ttl >= 1:
            raise ValueError("max_object_bytes must be >= 0, max_connections >= 1 and max_ttl >= 1")
        if not namespace:
            raise ValueError("namespace must not be empty")
        self._cache: Any = None
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
                "not_stored",
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
        skey = self._server_key(key)
        deadline = self._deadline()
        data = await self._call(lambda: self._cache.get(skey), deadline)
        if not isinstance(data, bytes):  # None (no such key) or _FAILED
            counts["misses"] += 1
            return None
        try:
            entry = decode_entry(data)
        except EntryFormatError as exc:
            counts["misses"] += 1
            counts["undecodable"] += 1
            self._log_undecodable(skey, exc)
            if await self._call(lambda: self._cache.delete(skey), deadline) is not _FAILED:
                counts["deletes"] += 1
            return None
        counts["hits"] += 1
        return entry

    async def set(self, key: str, entry: CacheEntry, ttl_seconds: float) -> None:
        """Write ``entry`` under ``key`` for ``ttl_seconds``; called by STORE (write-through).

        The server's TTL is ``ttl_seconds`` (the time the entry stays useful: freshness plus stale windows)
        clamped to at least 1 s and at most ``max_ttl`` (and, for memcached, rounded up to whole seconds and
        capped at ``MEMCACHED_MAX_TTL``). Entries whose encoded size exceeds ``max_object_bytes`` and entries
        ``encode_entry`` refuses are not written, and neither are those the server refuses (memcached's item
        size limit). Failures are counted and logged, never raised: a write that did not happen shows up later
        as a miss.
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
        ttl = self._ttl(ttl_seconds)
        skey = self._server_key(key)
        done = await self._call(lambda: self._cache.set(skey, data, ttl=ttl), self._deadline())
        if done is False:  # the server answered "not stored"
            counts["not_stored"] += 1
        elif done is not _FAILED:
            counts["sets"] += 1

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present; called by purges. Missing keys, failures and an open breaker are
        silent (counted in ``stats``): an entry that could not be deleted expires with its TTL."""
        skey = self._server_key(key)
        if await self._call(lambda: self._cache.delete(skey), self._deadline()) is not _FAILED:
            self._counts["deletes"] += 1

    # ------------------------------------------------------------------------------------------ the rest

    @property
    def url(self) -> str:
        """The server's URL, password redacted."""
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
        written. ``not_stored``: writes the server refused (memcached's item size limit or memory; always 0
        with Redis). ``undecodable``: values that were not valid entries (read as misses, deleted).
        """
        return dict(self._counts)

    async def close(self) -> None:
        """Close the connection pool; called once at shutdown. Later calls are misses and skipped writes.

        Errors are logged, not raised.
        """
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(max(self._timeout, 1.0)):
                await self._close_client()
        except Exception as exc:
            log.debug("shared tier %s: error on close: %r", self._url, exc)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r}, breaker={self._breaker.state.value})"

    # ------------------------------------------------------------------------------------------ per backend

    def _server_key(self, key: str) -> bytes:
        """The server's key for cache key ``key``."""
        raise NotImplementedError

    def _ttl(self, ttl_seconds: float) -> float:
        """The TTL to send for an entry useful for ``ttl_seconds`` (any float, NaN and infinity included)."""
        raise NotImplementedError

    def _close_client(self) -> Awaitable[object]:
        """Close the connections (awaited by ``close``, bounded)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ internals

    def _deadline(self) -> float:
        """When the Storage call starting now must be over, on the loop's clock (for ``timeout_at``)."""
        return asyncio.get_running_loop().time() + self._timeout

    async def _call(self, operation: Callable[[], Awaitable[T]], deadline: float) -> T | _Failed:
        """Run one server call through the breaker, bounded by ``deadline``; ``_FAILED`` when it did not run
        or did not complete. Feeds the breaker: timeouts and connection-level errors are failures; an error
        answer from the server (``_error_answers``: Redis's ``ResponseError``, aiomcache's
        ``ClientException``) proves the server is up and counts as a success for it."""
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
        except self._error_answers as exc:
            counts["errors"] += 1
            self._log_error(exc)
            self._success()
            return _FAILED
        except Exception as exc:  # connection refused/reset, client errors, anything unexpected
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
            level, "shared tier %s: %s answered with an error: %s: %s", self._url, self._server, kind, exc
        )

    def _log_undecodable(self, skey: bytes, exc: EntryFormatError) -> None:
        """Log an undecodable value at WARNING once per key (remembering a bounded number of keys)."""
        logged = self._logged_keys
        if skey in logged:
            log.debug("shared tier %s: undecodable value under %r again: %s", self._url, skey, exc)
            return
        logged[skey] = None
        if len(logged) > _LOGGED_KEYS_MAX:
            logged.popitem(last=False)
        log.warning(
            "shared tier %s: value under %r is not a valid cache entry (%s); treated as a miss and deleted",
            self._url,
            skey,
            exc,
        )


class SharedStore(SharedTier):
    """``Storage`` over Redis through aiocache's Redis backend; safe to use from one event loop."""

    backend = "redis"
    supports_coordination = True
    _server = "Redis"
    _error_answers = (ResponseError,)

    __slots__ = ()

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
        super().__init__(
            url,
            max_object_bytes=max_object_bytes,
            timeout=timeout,
            breaker=breaker,
            namespace=namespace,
            max_connections=max_connections,
            max_ttl=max_ttl,
        )
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
        self._cache = RedisCache(
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

    def _server_key(self, key: str) -> bytes:
        return redis_key(key, self._namespace)

    def _ttl(self, ttl_seconds: float) -> float:
        # A float TTL makes aiocache use PSETEX (milliseconds); an int would use SETEX, which redis-py 8
        # reports as deprecated.
        return 1.0 if math.isnan(ttl_seconds) else min(max(float(ttl_seconds), 1.0), self._max_ttl)

    def _close_client(self) -> Awaitable[object]:
        # redis-py's aclose directly: aiocache's close calls the close that redis-py 8 reports as deprecated.
        closing: Awaitable[object] = self._cache.client.aclose()
        return closing


class MemcachedStore(SharedTier):
    """``Storage`` over memcached through aiocache's Memcached backend: storage only (no coordination)."""

    backend = "memcached"
    supports_coordination = False
    _server = "memcached"
    _error_answers = (aiomcache.ClientException,)

    __slots__ = ()

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
        """Prepare a store for ``url`` (``memcached://host[:port]``, port 11211 by default); called once per
        worker at startup (``make_shared_store``). No connection is made until the first call.

        The arguments mean what they mean for ``SharedStore``; ``namespace`` must be printable ASCII without
        spaces (it starts every memcached key), and the TTL is also capped at ``MEMCACHED_MAX_TTL``. Entries
        up to ``max_object_bytes`` are sent; memcached refuses those above its own item size limit, which
        counts as "not stored". Raises ``ValueError`` for an unusable URL (one with a user, password, path or
        query: the text protocol has no authentication and no databases) or argument.
        """
        super().__init__(
            url,
            max_object_bytes=max_object_bytes,
            timeout=timeout,
            breaker=breaker,
            namespace=namespace,
            max_connections=max_connections,
            max_ttl=max_ttl,
        )
        if not _MEMCACHED_NAMESPACE.fullmatch(namespace) or (
            len(memcached_key("", namespace)) > _MEMCACHED_MAX_KEY_BYTES
        ):
            raise ValueError(f"namespace {namespace!r} is not usable in memcached keys (printable ASCII)")
        parts = urlsplit(url)
        shown = redact_url(url)
        if parts.scheme != "memcached":
            raise ValueError(f"not a memcached URL: {shown!r} (use memcached://host:port)")
        try:
            port = parts.port or 11211
        except ValueError as exc:
            raise ValueError(f"invalid memcached URL {shown!r}: {exc}") from None
        if not parts.hostname or parts.username is not None or parts.password is not None:
            raise ValueError(f"invalid memcached URL {shown!r} (use memcached://host:port, without a user)")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"invalid memcached URL {shown!r} (use memcached://host:port, nothing after)")
        cache = MemcachedCache(
            serializer=EntryBytesSerializer(),
            key_builder=_key_as_is,
            endpoint=parts.hostname,
            port=port,
            pool_size=max_connections,
            timeout=None,
        )
        cache.client = _MemcachedClient(parts.hostname, port, pool_size=max_connections)
        self._cache = cache

    def _server_key(self, key: str) -> bytes:
        return memcached_key(key, self._namespace)

    def _ttl(self, ttl_seconds: float) -> int:
        if math.isnan(ttl_seconds):
            return 1
        capped = min(max(ttl_seconds, 1.0), self._max_ttl, float(MEMCACHED_MAX_TTL))
        return min(math.ceil(capped), int(self._max_ttl), MEMCACHED_MAX_TTL)

    def _close_client(self) -> Awaitable[object]:
        closing: Awaitable[object] = self._cache.close()
        return closing


def _key_as_is(key: bytes, namespace: str | None = None) -> bytes:
    """aiocache key builder for ``MemcachedStore``: the key is already ``memcached_key``'s bytes (aiocache's
    own builder would turn spaces into ``_`` and expects str)."""
    return key


# ---------------------------------------------------------------------------------- memcached connections


async def _flagged_value(value: bytes, flags: int) -> bytes:
    """aiomcache flag handler: we never set flags, so a value with flags was written by someone else; it is
    passed on as it is, and ``decode_entry`` rejects it like any value that is not an entry."""
    return value


def _usable(conn: Connection) -> bool:
    reader = conn.reader
    return not (reader.at_eof() or reader.exception() is not None or conn.writer.is_closing())


class _MemcachedPool(MemcachePool):
    """aiomcache's pool, reworked: up to ``maxsize`` connections opened on demand (aiomcache 0.8 opens
    ``minsize`` at once and never more), idle ones reused last-in first-out, and a way to drop one."""

    def __init__(self, host: str, port: int, *, maxsize: int) -> None:
        super().__init__(host, port, minsize=1, maxsize=maxsize)
        self._slots = asyncio.Semaphore(maxsize)  # one per connection handed out
        self._idle: list[Connection] = []
        self._is_closed = False

    async def acquire(self) -> Connection:
        """A connection for one exchange: an idle one, or a new one; waits while ``maxsize`` are in use.
        Give it back with ``release`` (exchange complete) or ``discard`` (anything else)."""
        await self._slots.acquire()
        try:
            if self._is_closed:
                raise ConnectionError("the memcached client is closed")
            idle = self._idle
            while idle:
                conn = idle.pop()
                if _usable(conn):
                    self._in_use.add(conn)
                    return conn
                _abort(conn)
            reader, writer = await asyncio.open_connection(self._host, self._port, **self.conn_args)
        except BaseException:
            self._slots.release()
            raise
        conn = Connection(reader, writer)
        self._in_use.add(conn)
        return conn

    def release(self, conn: Connection) -> None:
        """Give back a connection whose exchange is complete: kept for reuse if still usable."""
        if conn not in self._in_use:
            return
        self._in_use.remove(conn)
        if self._is_closed or not _usable(conn):
            _abort(conn)
        else:
            self._idle.append(conn)
        self._slots.release()

    def discard(self, conn: Connection) -> None:
        """Give back a connection whose exchange did not complete: it is closed at once."""
        if conn not in self._in_use:
            return
        self._in_use.remove(conn)
        _abort(conn)
        self._slots.release()

    async def clear(self) -> None:
        """Close the idle connections; those in use are closed when given back. Later acquires fail."""
        self._is_closed = True
        while self._idle:
            _abort(self._idle.pop())

    def size(self) -> int:
        return len(self._idle) + len(self._in_use)


def _abort(conn: Connection) -> None:
    conn.reader.feed_eof()
    conn.writer.transport.abort()  # closes now, dropping unsent data (a late write must not go out)


class _MemcachedClient(aiomcache.FlagClient[bytes]):
    """The aiomcache client under ``MemcachedStore``, with ``get``/``set``/``delete`` (all aiocache calls
    here) made safe to interrupt, and EOF from the server an error instead of an endless loop."""

    def __init__(self, host: str, port: int, *, pool_size: int) -> None:
        super().__init__(host, port, pool_size=pool_size, get_flag_handler=_flagged_value)
        self._conns = _MemcachedPool(host, port, maxsize=pool_size)
        self._pool = self._conns

    async def _exchange(self, exchange: Callable[[Connection], Awaitable[T]]) -> T:
        """Run one request/response ``exchange`` on a pooled connection. The connection is reused only when
        the exchange completed; on an exception (a cancellation included) it is closed, since an answer may
        still be on its way. A ``ClientException`` caused by the server closing the connection becomes
        ``ConnectionResetError``: an outage, not an answer."""
        pool = self._conns
        conn = await pool.acquire()
        try:
            result = await exchange(conn)
        except BaseException as exc:
            closed_by_server = conn.reader.at_eof()
            pool.discard(conn)
            if closed_by_server and isinstance(exc, aiomcache.ClientException):
                raise ConnectionResetError("memcached closed the connection") from exc
            raise
        pool.release(conn)
        return result

    async def _execute_simple_command(self, conn: Connection, raw_command: bytes) -> bytes:
        conn.writer.write(raw_command)
        await conn.writer.drain()
        return await _read_line(conn)

    async def get(self, key: bytes, default: None = None) -> bytes | None:  # type: ignore[override]
        """The value under ``key`` (bytes as stored, whatever its flags), or None."""
        values, _ = await self._exchange(lambda conn: self._multi_get(conn, key, with_cas=False))
        return values.get(key)

    async def set(self, key: bytes, value: bytes, exptime: int = 0) -> bool:
        """Store ``value`` under ``key`` for ``exptime`` seconds. False when the server did not store it:
        ``NOT_STORED`` or a ``SERVER_ERROR`` answer (too large, out of memory), after which memcached keeps
        the connection in step (it reads and drops the value), so it is reused."""
        self._validate_key(key)
        if not isinstance(exptime, int) or exptime < 0:
            raise aiomcache.ValidationException("exptime must be an int >= 0", exptime)
        header = b"set %b 0 %d %d\r\n" % (key, exptime, len(value))

        async def exchange(conn: Connection) -> bytes:
            writer = conn.writer
            writer.write(header)
            writer.write(value)
            writer.write(b"\r\n")
            await writer.drain()
            return await _read_line(conn)

        reply = await self._exchange(exchange)
        if reply == b"STORED":
            return True
        if reply == b"NOT_STORED" or reply.startswith(b"SERVER_ERROR"):
            log.debug("memcached did not store %r: %r", key, reply)
            return False
        raise aiomcache.ClientException("memcached set failed", reply)

    async def delete(self, key: bytes) -> bool:
        """Delete ``key``; True when it was there."""
        self._validate_key(key)
        command = b"delete " + key + b"\r\n"
        reply = await self._exchange(lambda conn: self._execute_simple_command(conn, command))
        if reply not in (b"DELETED", b"NOT_FOUND"):
            raise aiomcache.ClientException("memcached delete failed", reply)
        return reply == b"DELETED"

    async def close(self) -> None:
        """Close the idle connections now and the others when their exchange ends."""
        await self._conns.clear()


async def _read_line(conn: Connection) -> bytes:
    """One answer line, without its CRLF; ``ConnectionResetError`` when the server closed the connection."""
    try:
        line = await conn.reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError as exc:
        raise ConnectionResetError("memcached closed the connection") from exc
    return line[:-2]


def make_shared_store(config: SharedConfig, *, breaker: CircuitBreaker | None = None) -> SharedTier:
    """Build the shared tier from ``cache.shared``; called once per worker at startup when it is set.

    A ``memcached://`` URL gives a ``MemcachedStore`` (storage only: ``supports_coordination`` is False, so
    the caller must not run the Redis coordination on that URL); ``redis://``/``rediss://`` a ``SharedStore``.
    Raises ``ValueError`` for an unusable URL.
    """
    store_class = MemcachedStore if config.url.startswith("memcached://") else SharedStore
    return store_class(
        config.url,
        max_object_bytes=config.max_object_bytes,
        timeout=config.timeout,
        breaker=breaker,
    )


if TYPE_CHECKING:
    _shared_store_is_a_storage: type[Storage] = SharedStore
    _memcached_store_is_a_storage: type[Storage] = MemcachedStore
