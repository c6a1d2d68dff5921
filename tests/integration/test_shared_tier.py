"""The shared tier against a real redis-server: round trips, keys and TTLs, hostile values, outages.

Outages are real: the server is frozen (SIGSTOP) for timeouts, killed (SIGKILL) and restarted on the same
port for the circuit breaker. Waits are on conditions, bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio

from proxy.cache.breaker import BreakerState, CircuitBreaker
from proxy.cache.entry import ENTRY_FORMAT_VERSION, CacheEntry, encode_entry
from proxy.cache.shared import MAX_PLAIN_KEY_BYTES, SharedStore, make_shared_store, redact_url, redis_key
from proxy.settings.model import SharedConfig
from tests.redis_server import RedisServer

LOGGER = "edgeproxy.shared"


def make_entry(body: bytes = b"hello", **changes: object) -> CacheEntry:
    fields: dict[str, object] = {
        "status": 200,
        "headers": (
            ("Content-Type", "text/plain"),
            ("ETag", '"v1"'),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ),
        "body": body,
        "request_time": 1_700_000_000.25,
        "response_time": 1_700_000_000.5,
        "initial_age": 3.0,
        "ttl": 60.0,
    }
    fields.update(changes)
    return CacheEntry(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[redis_asyncio.Redis]:
    """A plain redis-py client on the test server, to look at and tamper with what the store wrote."""
    client = redis_asyncio.Redis(host="127.0.0.1", port=redis_server.port)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[SharedStore]:
    shared = SharedStore(redis_server.url, timeout=2.0)
    yield shared
    await shared.close()


# ------------------------------------------------------------------------------------------ round trips


async def test_round_trip_of_entries(store: SharedStore) -> None:
    big = os.urandom(3 * 1024 * 1024)
    entries = {
        "example.com/plain": make_entry(),
        # A Vary marker (status 0) on the base key and one variant under its variant key.
        "example.com/v": make_entry(b"", status=0, headers=(), vary=("accept-encoding",)),
        "example.com/v\nv:accept-encoding=gzip": make_entry(
            b"\x1f\x8b gz",
            vary=("accept-encoding",),
            headers=(("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")),
        ),
        "example.com/tagged": make_entry(tags=("product-42", "home"), extra={"origin": "app", "x": ""}),
        "example.com/big": make_entry(big, must_revalidate=True, no_cache=True),
        "example.com/forever": make_entry(ttl=math.inf, stale_while_revalidate=30.0, stale_if_error=math.inf),
        "example.com/\udcff-not-utf8\n h:x=é": make_entry(headers=(("X-Raw", "caf\udce9"),)),
    }
    for key, entry in entries.items():
        await store.set(key, entry, 120.0)
    for key, entry in entries.items():
        assert await store.get(key) == entry, key
    stats = store.stats()
    assert stats["sets"] == stats["hits"] == stats["gets"] == len(entries)
    assert stats["misses"] == stats["errors"] == stats["timeouts"] == 0
    assert await store.get("example.com/absent") is None
    assert store.stats()["misses"] == 1
    assert store.name == "shared"


async def test_delete(store: SharedStore, raw: redis_asyncio.Redis) -> None:
    await store.set("example.com/d", make_entry(), 60.0)
    assert await raw.exists(redis_key("example.com/d")) == 1
    await store.delete("example.com/d")
    await store.delete("example.com/never-stored")
    assert await store.get("example.com/d") is None
    assert store.stats()["deletes"] == 2


async def test_many_concurrent_calls_share_the_pool(store: SharedStore) -> None:
    await asyncio.gather(
        *(store.set(f"example.com/{i}", make_entry(str(i).encode()), 60.0) for i in range(100))
    )
    found = await asyncio.gather(*(store.get(f"example.com/{i}") for i in range(100)))
    assert [e.body if e else None for e in found] == [str(i).encode() for i in range(100)]


# ------------------------------------------------------------------------------------------ keys and TTLs


async def test_keys_are_namespaced_and_versioned(redis_server: RedisServer, raw: redis_asyncio.Redis) -> None:
    assert redis_key("example.com/a.css") == f"edgeproxy:v{ENTRY_FORMAT_VERSION}:example.com/a.css".encode()
    other = SharedStore(redis_server.url, namespace="tenant2")
    try:
        await other.set("example.com/a.css", make_entry(), 60.0)
        stored = [key async for key in raw.scan_iter(match=b"*", count=100)]
        assert stored == [f"tenant2:v{ENTRY_FORMAT_VERSION}:example.com/a.css".encode()]
    finally:
        await other.close()


async def test_long_keys_are_hashed_with_a_readable_prefix(
    store: SharedStore, raw: redis_asyncio.Redis
) -> None:
    base = "example.com/" + "a" * 400
    one, two = base + "?x=1", base + "?x=2"
    k1, k2 = redis_key(one), redis_key(two)
    prefix = b"edgeproxy:v1:"
    assert k1 != k2
    assert k1.startswith(prefix + one.encode()[:160])
    assert b"sha256:" in k1
    assert len(k1) == len(prefix) + 160 + 8 + 64
    # The hashed part is always longer than any key used as it is: the two forms cannot collide.
    assert len(k1) - len(prefix) > MAX_PLAIN_KEY_BYTES
    assert redis_key("x" * MAX_PLAIN_KEY_BYTES) == prefix + b"x" * MAX_PLAIN_KEY_BYTES
    await store.set(one, make_entry(b"one"), 60.0)
    await store.set(two, make_entry(b"two"), 60.0)
    assert await raw.exists(k1, k2) == 2
    got1, got2 = await store.get(one), await store.get(two)
    assert got1 is not None and got1.body == b"one"
    assert got2 is not None and got2.body == b"two"


async def test_ttl_is_set_on_the_key(store: SharedStore, raw: redis_asyncio.Redis) -> None:
    await store.set("example.com/2min", make_entry(), 120.0)
    await store.set("example.com/short", make_entry(), 0.2)  # raised to the 1 s minimum
    await store.set("example.com/forever", make_entry(ttl=math.inf), math.inf)  # capped by max_ttl
    await store.set("example.com/nan", make_entry(), math.nan)
    two_min = await raw.pttl(redis_key("example.com/2min"))
    short = await raw.pttl(redis_key("example.com/short"))
    forever = await raw.pttl(redis_key("example.com/forever"))
    nan = await raw.pttl(redis_key("example.com/nan"))
    assert 1000 < two_min <= 120_000
    assert 0 < short <= 1000
    assert 0 < nan <= 1000
    assert 120_000 < forever <= 365 * 86400 * 1000


async def test_objects_above_max_object_bytes_are_not_stored(
    redis_server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    small = SharedStore(redis_server.url, max_object_bytes=10_000)
    try:
        await small.set("example.com/big-body", make_entry(b"x" * 10_001), 60.0)
        # The body fits, but the encoded entry (headers and all) does not.
        await small.set("example.com/big-encoded", make_entry(b"x" * 9_990), 60.0)
        await small.set("example.com/fits", make_entry(b"x" * 1_000), 60.0)
        assert await raw.exists(redis_key("example.com/big-body"), redis_key("example.com/big-encoded")) == 0
        assert await raw.exists(redis_key("example.com/fits")) == 1
        assert small.stats()["too_large"] == 2
        assert small.stats()["sets"] == 1
    finally:
        await small.close()


# ------------------------------------------------------------------------------------------ hostile values


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): the proof that a value was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


async def test_garbage_is_a_miss_is_deleted_and_never_executed(
    store: SharedStore, raw: redis_asyncio.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    marker = tmp_path / "pwned"
    key = "example.com/index.html"
    rkey = redis_key(key)
    payloads = [
        pickle.dumps(_RunsCode(marker)),
        b"",
        b"EPC\x63" + encode_entry(make_entry())[4:],  # a format version we do not know
        encode_entry(make_entry())[:-1],  # truncated
        b"\x80\x04garbage\xff" * 100,
    ]
    for payload in payloads:
        await raw.set(rkey, payload)
        assert await store.get(key) is None
        assert await raw.exists(rkey) == 0, "an undecodable value is deleted"
    assert not marker.exists(), "the pickle payload was executed"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "logged once per key"
    assert "not a valid cache entry" in warnings[0].getMessage()
    stats = store.stats()
    assert stats["undecodable"] == stats["misses"] == len(payloads)
    assert stats["hits"] == 0
    # A good entry under the same key is read as usual afterwards.
    await store.set(key, make_entry(), 60.0)
    assert await store.get(key) == make_entry()


async def test_a_value_of_another_redis_type_is_a_miss(store: SharedStore, raw: redis_asyncio.Redis) -> None:
    await raw.rpush(redis_key("example.com/list"), b"a", b"b")
    assert await store.get("example.com/list") is None  # WRONGTYPE
    assert store.stats()["errors"] == 1
    assert store.breaker.state is BreakerState.CLOSED, "an error answer is not an outage"


# ------------------------------------------------------------------------------------------ outages


async def test_timeout_is_a_miss(redis_server: RedisServer) -> None:
    slow = SharedStore(redis_server.url, timeout=0.2)
    try:
        await slow.set("example.com/t", make_entry(), 60.0)
        redis_server.pause()
        try:
            async with asyncio.timeout(10):  # guards against a hang; the store gives up by itself
                assert await slow.get("example.com/t") is None
                await slow.set("example.com/t2", make_entry(), 60.0)
        finally:
            redis_server.resume()
        stats = slow.stats()
        assert stats["timeouts"] == 2
        assert stats["misses"] == 1
        assert slow.breaker.state is BreakerState.CLOSED  # 2 < 3 consecutive failures
        assert await slow.get("example.com/t") == make_entry()
        assert slow.breaker.failures == 0
    finally:
        await slow.close()


async def test_redis_killed_then_restarted(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    breaker = CircuitBreaker(failure_threshold=2, reset_after=0.2)
    shared = SharedStore(redis_server.url, timeout=1.0, breaker=breaker)
    try:
        await shared.set("example.com/k", make_entry(), 60.0)
        assert await shared.get("example.com/k") == make_entry()

        redis_server.kill()
        async with asyncio.timeout(10):  # a guard, not an assertion on speed
            # Two failures open the breaker (threshold 2).
            assert await shared.get("example.com/k") is None
            assert await shared.get("example.com/k") is None
            assert breaker.state is BreakerState.OPEN
            assert not shared.available
            before = shared.stats()
            # While open: misses and skipped writes without any network call (no new errors or timeouts).
            for _ in range(20):
                assert await shared.get("example.com/k") is None
                await shared.set("example.com/k", make_entry(), 60.0)
                await shared.delete("example.com/k")
        after = shared.stats()
        assert after["skipped_open"] - before["skipped_open"] == 60
        assert (after["errors"], after["timeouts"]) == (before["errors"], before["timeouts"])
        unavailable = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(unavailable) == 1
        assert f"shared tier {redis_server.url} unavailable, serving from memory and origins" in (
            unavailable[0].getMessage()
        )

        redis_server.restart()  # same port, empty
        async with asyncio.timeout(10):
            # Used again once reset_after has passed and a probe succeeded.
            while True:
                await shared.set("example.com/k", make_entry(b"again"), 60.0)
                found = await shared.get("example.com/k")
                if found is not None:
                    break
                await asyncio.sleep(0.02)
        assert found.body == b"again"
        assert breaker.state is BreakerState.CLOSED
        assert shared.available
        back = [
            r for r in caplog.records if r.levelno == logging.INFO and "available again" in r.getMessage()
        ]
        assert len(back) == 1
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    finally:
        await shared.close()


async def test_unreachable_from_the_start(redis_server: RedisServer) -> None:
    redis_server.kill()
    shared = SharedStore(redis_server.url, timeout=1.0, breaker=CircuitBreaker(failure_threshold=1))
    try:
        assert await shared.get("example.com/x") is None
        await shared.set("example.com/x", make_entry(), 60.0)
        await shared.delete("example.com/x")
        stats = shared.stats()
        assert stats["errors"] == 1
        assert stats["skipped_open"] == 2
    finally:
        await shared.close()


async def test_closed_store_is_a_miss(redis_server: RedisServer) -> None:
    shared = SharedStore(redis_server.url)
    await shared.set("example.com/c", make_entry(), 60.0)
    await shared.close()
    await shared.close()  # twice is fine
    assert await shared.get("example.com/c") is None
    await shared.set("example.com/c", make_entry(), 60.0)
    assert shared.stats()["sets"] == 1


# ------------------------------------------------------------------------------------------ construction


async def test_make_shared_store_from_config(redis_server: RedisServer) -> None:
    config = SharedConfig(url=redis_server.url, max_object_bytes=4096, timeout=0.5)
    shared = make_shared_store(config)
    assert type(shared) is SharedStore
    assert (shared.backend, shared.supports_coordination) == ("redis", True)
    try:
        await shared.set("example.com/cfg", make_entry(), 60.0)
        assert await shared.get("example.com/cfg") == make_entry()
        await shared.set("example.com/large", make_entry(b"x" * 5000), 60.0)
        assert shared.stats()["too_large"] == 1
    finally:
        await shared.close()


@pytest.mark.parametrize(
    "url",
    ["memcached://127.0.0.1", "http://127.0.0.1:6379", "redis://127.0.0.1:notaport/0", "redis://h:6379/zero"],
)
def test_unusable_urls(url: str) -> None:
    with pytest.raises(ValueError):
        SharedStore(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@cache:6379/1", "redis://:***@cache:6379/1"),
        ("rediss://edge:s3cret@cache.example:6380/0", "rediss://edge:***@cache.example:6380/0"),
    ],
)
def test_passwords_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in repr(SharedStore(url))


async def test_password_and_db_from_the_url(redis_server: RedisServer, raw: redis_asyncio.Redis) -> None:
    await raw.config_set("requirepass", "s3cret")  # this connection stays authenticated
    good = SharedStore(f"redis://:s3cret@127.0.0.1:{redis_server.port}/3")
    bad = SharedStore(f"redis://:wrong@127.0.0.1:{redis_server.port}/3")
    try:
        await good.set("example.com/p", make_entry(), 60.0)
        assert await good.get("example.com/p") == make_entry()
        assert await bad.get("example.com/p") is None
        assert bad.stats()["errors"] == 1
        assert await raw.exists(redis_key("example.com/p")) == 0, "not in db 0"
        db3 = redis_asyncio.Redis(host="127.0.0.1", port=redis_server.port, db=3, password="s3cret")
        assert await db3.exists(redis_key("example.com/p")) == 1
        await db3.aclose()
    finally:
        await good.close()
        await bad.close()
