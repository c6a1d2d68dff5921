"""The memcached shared tier against a real memcached: round trips, keys and TTLs, sizes, hostile values,
outages.

Outages are real: the server is frozen (SIGSTOP) for timeouts, killed (SIGKILL) and restarted on the same
port for the circuit breaker. Expiry is the server's own: waits are on conditions, bounded by
``asyncio.timeout``; nothing asserts how fast anything is.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import pickle
import re
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from proxy.cache.breaker import BreakerState, CircuitBreaker
from proxy.cache.entry import ENTRY_FORMAT_VERSION, encode_entry
from proxy.cache.shared import (
    MEMCACHED_MAX_TTL,
    MemcachedStore,
    SharedStore,
    make_shared_store,
    memcached_key,
)
from proxy.settings.model import SharedConfig
from tests.integration.test_shared_tier import make_entry
from tests.memcached_server import ITEM_SIZE_LIMIT, MemcachedServer, RawMemcached

LOGGER = "edgeproxy.shared"
VALID_KEY = re.compile(rb"[!-~]{1,250}")  # what memcached's text protocol accepts, and more strictly


@pytest.fixture
def raw(memcached_server: MemcachedServer) -> Iterator[RawMemcached]:
    """A plain text-protocol client on the test server, to look at and tamper with what the store wrote."""
    with memcached_server.raw() as client:
        yield client


@pytest.fixture
async def store(memcached_server: MemcachedServer) -> AsyncIterator[MemcachedStore]:
    shared = MemcachedStore(memcached_server.url, timeout=2.0)
    yield shared
    await shared.close()


async def wait_until_gone(store: MemcachedStore, key: str) -> None:
    """Wait (bounded) until the server no longer has ``key``: its own expiry, not ours."""
    async with asyncio.timeout(10):
        while await store.get(key) is not None:
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------------------ round trips


async def test_round_trip_of_entries(store: MemcachedStore) -> None:
    big = os.urandom(512 * 1024)  # well below the server's 1 MiB item limit
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
    assert stats["misses"] == stats["errors"] == stats["timeouts"] == stats["not_stored"] == 0
    assert await store.get("example.com/absent") is None
    assert store.stats()["misses"] == 1
    assert store.name == "shared"
    assert (store.backend, store.supports_coordination) == ("memcached", False)


async def test_delete(store: MemcachedStore, raw: RawMemcached) -> None:
    await store.set("example.com/d", make_entry(), 60.0)
    assert raw.get(memcached_key("example.com/d")) is not None
    await store.delete("example.com/d")
    await store.delete("example.com/never-stored")
    assert raw.get(memcached_key("example.com/d")) is None
    assert await store.get("example.com/d") is None
    assert store.stats()["deletes"] == 2


async def test_many_concurrent_calls_share_a_bounded_pool(
    memcached_server: MemcachedServer, raw: RawMemcached
) -> None:
    before = int(raw.stats()["total_connections"])
    shared = MemcachedStore(memcached_server.url, timeout=5.0, max_connections=4)
    try:
        await asyncio.gather(
            *(shared.set(f"example.com/{i}", make_entry(str(i).encode()), 60.0) for i in range(100))
        )
        found = await asyncio.gather(*(shared.get(f"example.com/{i}") for i in range(100)))
        assert [e.body if e else None for e in found] == [str(i).encode() for i in range(100)]
        opened = int(raw.stats()["total_connections"]) - before
        assert 1 <= opened <= 4, "connections are reused, never more than max_connections"
    finally:
        await shared.close()


# ------------------------------------------------------------------------------------------ keys


ODD_KEYS = [
    "",
    "example.com/a.css",
    "example.com/" + "a" * 10_000,
    "example.com/with space",
    "example.com/tab\there",
    "example.com/line\nbreak\r\n",
    "example.com/nul\x00byte",
    "example.com/\x01\x1f\x7f\x85\x9f controls",
    "example.com/é/日本/🙂",
    "example.com/\udcff\udc80 lone surrogates",
    "get x\r\nset y 0 0 1\r\n",  # protocol injection attempt
]


def test_memcached_keys_are_valid_namespaced_and_distinct() -> None:
    prefix = f"edgeproxy:v{ENTRY_FORMAT_VERSION}:".encode()
    keys = [memcached_key(k) for k in ODD_KEYS]
    for key in keys:
        assert VALID_KEY.fullmatch(key), key
        assert key.startswith(prefix)
        assert re.fullmatch(rb"[0-9a-f]{64}", key[len(prefix) :])
    assert len(set(keys)) == len(keys)
    assert memcached_key("example.com/a.css") == memcached_key("example.com/a.css")
    assert memcached_key("example.com/a.css", "tenant2").startswith(b"tenant2:v")


async def test_long_and_odd_keys_round_trip(store: MemcachedStore, raw: RawMemcached) -> None:
    for i, key in enumerate(ODD_KEYS):
        await store.set(key, make_entry(str(i).encode()), 60.0)
    for i, key in enumerate(ODD_KEYS):
        found = await store.get(key)
        assert found is not None and found.body == str(i).encode(), key
        assert raw.get(memcached_key(key)) is not None
    assert store.stats()["errors"] == 0


async def test_namespaces_are_separate(memcached_server: MemcachedServer, raw: RawMemcached) -> None:
    other = MemcachedStore(memcached_server.url, namespace="tenant2")
    try:
        await other.set("example.com/a.css", make_entry(), 60.0)
        assert raw.get(memcached_key("example.com/a.css", "tenant2")) is not None
        assert raw.get(memcached_key("example.com/a.css")) is None
    finally:
        await other.close()


@pytest.mark.parametrize("namespace", ["", "two words", "tab\t", "é", "x" * 200])
def test_namespace_must_fit_in_memcached_keys(namespace: str) -> None:
    with pytest.raises(ValueError):
        MemcachedStore("memcached://127.0.0.1:11211", namespace=namespace)


# ------------------------------------------------------------------------------------------ TTLs


async def test_expiry_is_the_servers(store: MemcachedStore, raw: RawMemcached) -> None:
    await store.set("example.com/1s", make_entry(), 1.0)
    await store.set("example.com/short", make_entry(), 0.2)  # raised to the 1 s minimum
    await store.set("example.com/nan", make_entry(), math.nan)
    await store.set("example.com/2min", make_entry(), 120.0)
    for key in ("example.com/1s", "example.com/short", "example.com/nan"):
        left = raw.ttl(memcached_key(key))
        assert left is not None and 0 <= left <= 1, (key, left)
    for key in ("example.com/1s", "example.com/short", "example.com/nan"):
        await wait_until_gone(store, key)
    assert await store.get("example.com/2min") == make_entry()


async def test_ttls_are_whole_seconds_capped_at_30_days(
    memcached_server: MemcachedServer, store: MemcachedStore, raw: RawMemcached
) -> None:
    await store.set("example.com/2min", make_entry(), 120.0)
    await store.set("example.com/fraction", make_entry(), 2.2)  # rounded up to 3
    # Above 30 days memcached would read the TTL as a Unix time long past, and the key would be gone at once.
    await store.set("example.com/forever", make_entry(ttl=math.inf), math.inf)
    await store.set("example.com/31d", make_entry(), 31 * 86400.0)
    two_min = raw.ttl(memcached_key("example.com/2min"))
    fraction = raw.ttl(memcached_key("example.com/fraction"))
    forever = raw.ttl(memcached_key("example.com/forever"))
    days_31 = raw.ttl(memcached_key("example.com/31d"))
    assert two_min is not None and 1 < two_min <= 120
    assert fraction is not None and 1 <= fraction <= 3
    assert forever is not None and 120 < forever <= MEMCACHED_MAX_TTL
    assert days_31 is not None and 120 < days_31 <= MEMCACHED_MAX_TTL
    capped = MemcachedStore(memcached_server.url, max_ttl=60.0)
    try:
        await capped.set("example.com/capped", make_entry(ttl=math.inf), math.inf)
        left = raw.ttl(memcached_key("example.com/capped"))
        assert left is not None and 1 < left <= 60
    finally:
        await capped.close()


# ------------------------------------------------------------------------------------------ sizes


async def test_objects_above_max_object_bytes_are_not_sent(
    memcached_server: MemcachedServer, raw: RawMemcached
) -> None:
    small = MemcachedStore(memcached_server.url, max_object_bytes=10_000)
    try:
        await small.set("example.com/big-body", make_entry(b"x" * 10_001), 60.0)
        # The body fits, but the encoded entry (headers and all) does not.
        await small.set("example.com/big-encoded", make_entry(b"x" * 9_990), 60.0)
        await small.set("example.com/fits", make_entry(b"x" * 1_000), 60.0)
        assert raw.get(memcached_key("example.com/big-body")) is None
        assert raw.get(memcached_key("example.com/big-encoded")) is None
        assert raw.get(memcached_key("example.com/fits")) is not None
        stats = small.stats()
        assert (stats["too_large"], stats["sets"], stats["not_stored"]) == (2, 1, 0)
    finally:
        await small.close()


async def test_items_the_server_refuses_are_not_stored_and_not_errors(
    memcached_server: MemcachedServer, raw: RawMemcached, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    before = int(raw.stats()["total_connections"])
    # max_object_bytes (8 MiB by default) lets it through; memcached's item size limit (1 MiB) does not.
    shared = MemcachedStore(memcached_server.url, timeout=5.0, max_connections=1)
    try:
        key = "example.com/huge"
        await shared.set(key, make_entry(b"old"), 60.0)
        await shared.set(key, make_entry(os.urandom(2 * ITEM_SIZE_LIMIT)), 60.0)
        stats = shared.stats()
        assert (stats["not_stored"], stats["sets"], stats["errors"], stats["timeouts"]) == (1, 1, 0, 0)
        assert shared.breaker.state is BreakerState.CLOSED and shared.breaker.failures == 0
        # memcached dropped the older value rather than keep serving it.
        assert await shared.get(key) is None
        # The connection stayed in step and is used again.
        await shared.set(key, make_entry(b"new"), 60.0)
        found = await shared.get(key)
        assert found is not None and found.body == b"new"
        assert int(raw.stats()["total_connections"]) - before == 1
        assert not caplog.records
    finally:
        await shared.close()


# ------------------------------------------------------------------------------------------ hostile values


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): the proof that a value was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


async def test_garbage_is_a_miss_is_deleted_and_never_executed(
    store: MemcachedStore, raw: RawMemcached, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    marker = tmp_path / "pwned"
    key = "example.com/index.html"
    mkey = memcached_key(key)
    good = encode_entry(make_entry())
    payloads = [
        (pickle.dumps(_RunsCode(marker)), 0),
        (pickle.dumps(_RunsCode(marker)), 1),  # flagged as a pickle, as pymemcache and others write them
        (good, 2),  # a valid entry with flags we never set: passed on as it is
        (b"", 0),
        (b"EPC\x63" + good[4:], 0),  # a format version we do not know
        (good[:-1], 0),  # truncated
        (b"\x80\x04garbage\xff\r\nEND\r\n" * 100, 0),
    ]
    undecodable = 0
    for payload, flags in payloads:
        assert raw.set(mkey, payload, flags=flags) == b"STORED"
        found = await store.get(key)
        if payload is good:
            assert found == make_entry()
            continue
        undecodable += 1
        assert found is None
        assert raw.get(mkey) is None, "an undecodable value is deleted"
    assert not marker.exists(), "the pickle payload was executed"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "logged once per key"
    assert "not a valid cache entry" in warnings[0].getMessage()
    stats = store.stats()
    assert stats["undecodable"] == stats["misses"] == undecodable
    assert stats["hits"] == 1
    assert stats["errors"] == 0
    # A good entry under the same key is read as usual afterwards.
    await store.set(key, make_entry(b"fresh"), 60.0)
    assert await store.get(key) == make_entry(b"fresh")


# ------------------------------------------------------------------------------------------ outages


async def test_timeout_is_a_miss_and_a_late_answer_is_never_read(memcached_server: MemcachedServer) -> None:
    # One connection, so that a late answer would reach the next call if that connection were reused.
    slow = MemcachedStore(memcached_server.url, timeout=0.2, max_connections=1)
    try:
        await slow.set("example.com/a", make_entry(b"a"), 60.0)
        await slow.set("example.com/b", make_entry(b"b"), 60.0)
        memcached_server.pause()
        try:
            async with asyncio.timeout(10):  # guards against a hang; the store gives up by itself
                assert await slow.get("example.com/a") is None
                await slow.set("example.com/c", make_entry(b"c"), 60.0)
        finally:
            memcached_server.resume()
        stats = slow.stats()
        assert stats["timeouts"] == 2
        assert stats["misses"] == 1
        assert slow.breaker.state is BreakerState.CLOSED  # 2 < 3 consecutive failures
        found_b = await slow.get("example.com/b")
        found_a = await slow.get("example.com/a")
        assert found_b is not None and found_b.body == b"b"
        assert found_a is not None and found_a.body == b"a"
        assert slow.breaker.failures == 0
    finally:
        await slow.close()


async def test_memcached_killed_then_restarted(
    memcached_server: MemcachedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    breaker = CircuitBreaker(failure_threshold=2, reset_after=0.2)
    shared = MemcachedStore(memcached_server.url, timeout=1.0, breaker=breaker)
    try:
        await shared.set("example.com/k", make_entry(), 60.0)
        assert await shared.get("example.com/k") == make_entry()

        memcached_server.kill()
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
        assert f"shared tier {memcached_server.url} unavailable, serving from memory and origins" in (
            unavailable[0].getMessage()
        )

        memcached_server.restart()  # same port, empty
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


async def test_unreachable_from_the_start(memcached_server: MemcachedServer) -> None:
    memcached_server.kill()
    shared = MemcachedStore(memcached_server.url, timeout=1.0, breaker=CircuitBreaker(failure_threshold=1))
    try:
        assert await shared.get("example.com/x") is None
        await shared.set("example.com/x", make_entry(), 60.0)
        await shared.delete("example.com/x")
        stats = shared.stats()
        assert stats["errors"] == 1
        assert stats["skipped_open"] == 2
    finally:
        await shared.close()


def test_a_server_closing_the_connection_is_an_outage_not_a_hang() -> None:
    """A server that closes the connection instead of answering (aiomcache 0.8.2 alone then loops forever
    without yielding, so no timeout fires). Run in a thread of its own, so that a regression fails this test
    instead of hanging the suite."""

    async def scenario() -> dict[str, int]:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        shared = MemcachedStore(
            f"memcached://127.0.0.1:{port}", timeout=5.0, breaker=CircuitBreaker(failure_threshold=10)
        )
        try:
            await shared.set("example.com/x", make_entry(), 60.0)
            assert await shared.get("example.com/x") is None
            await shared.delete("example.com/x")
            return {**shared.stats(), "failures": shared.breaker.failures}
        finally:
            await shared.close()
            server.close()
            await server.wait_closed()

    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["stats"] = asyncio.run(scenario())
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="memcached hang-up", daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the memcached client spun on a closed connection"
    if "error" in outcome:
        raise AssertionError("the scenario failed") from outcome["error"]  # type: ignore[arg-type]
    stats = outcome["stats"]
    assert isinstance(stats, dict)
    assert (stats["errors"], stats["timeouts"], stats["failures"]) == (3, 0, 3)


async def test_closed_store_is_a_miss(memcached_server: MemcachedServer) -> None:
    shared = MemcachedStore(memcached_server.url)
    await shared.set("example.com/c", make_entry(), 60.0)
    await shared.close()
    await shared.close()  # twice is fine
    assert await shared.get("example.com/c") is None
    await shared.set("example.com/c", make_entry(), 60.0)
    assert shared.stats()["sets"] == 1


# ------------------------------------------------------------------------------------------ construction


async def test_make_shared_store_from_config(memcached_server: MemcachedServer) -> None:
    config = SharedConfig(url=memcached_server.url, max_object_bytes=4096, timeout=0.5)
    shared = make_shared_store(config)
    assert isinstance(shared, MemcachedStore)
    assert not shared.supports_coordination, "bans and the shield lock stay on Redis"
    try:
        await shared.set("example.com/cfg", make_entry(), 60.0)
        assert await shared.get("example.com/cfg") == make_entry()
        await shared.set("example.com/large", make_entry(b"x" * 5000), 60.0)
        assert shared.stats()["too_large"] == 1
    finally:
        await shared.close()
    assert repr(shared) == f"MemcachedStore({memcached_server.url!r}, breaker=closed)"


@pytest.mark.parametrize(
    "url", ["memcached://127.0.0.1", "memcached://cache.internal:11212/", "memcached://[::1]:11211"]
)
def test_usable_urls(url: str) -> None:
    assert MemcachedStore(url).url == url


@pytest.mark.parametrize(
    "url",
    [
        "memcached://",
        "memcached://:11211",
        "memcached://127.0.0.1:notaport",
        "memcached://edge:s3cret@127.0.0.1:11211",
        "memcached://127.0.0.1:11211/0",
        "memcached://127.0.0.1:11211?timeout=1",
        "redis://127.0.0.1:6379/0",
    ],
)
def test_unusable_urls(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        MemcachedStore(url)
    assert "s3cret" not in str(caught.value)


def test_redis_urls_still_go_to_redis() -> None:
    assert type(make_shared_store(SharedConfig(url="redis://127.0.0.1:6379/0"))) is SharedStore
    assert type(make_shared_store(SharedConfig(url="memcached://127.0.0.1:11211"))) is MemcachedStore
