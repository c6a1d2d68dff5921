"""The pipeline's phases without sockets (tests/playbook.py): scripted origins, an in-memory clock, an
in-memory lower tier and a fake cluster lock drive collapse, shield, fill, revalidation, failover and the
stale paths. Each test names the phase and the rule it pins down."""

from __future__ import annotations

import asyncio

import pytest

from proxy.cache.bans import Ban, BanList
from proxy.cache.memory import MemoryStore
from proxy.cache.storage import MemoryStorage
from proxy.http.reasons import CacheResult, FwdReason, NotStoredReason, SynthReason
from proxy.origin.base import OriginConnectError, OriginRequest, OriginTimeoutError
from tests.playbook import Clock, FakeLockService, Playbook, Reply

ONE_ORIGIN = """
origins:
  app: {url: "http://app.test"}
behaviours:
  - path: "*"
    origin: app
"""

TWO_ORIGINS = """
origins:
  app: {url: "http://app.test"}
  spare: {url: "http://spare.test"}
origin_groups:
  both:
    members: [app, spare]
    failover_on: [500, 502, 503]
behaviours:
  - path: "*"
    origin: both
"""

# cache.shared is only read by the config checks here: the playbook gives the pipeline its own lower tier.
SHIELDED = (
    ONE_ORIGIN
    + """
cache:
  shared: {url: "redis://127.0.0.1:1"}
  shield: true
"""
)

CACHEABLE = Reply(200, {"Cache-Control": "max-age=60", "ETag": '"v1"'}, b"hello")


def shared_tier() -> MemoryStorage:
    """A lower tier two playbooks share, as two edges share Redis."""
    return MemoryStorage(MemoryStore(64 * 1024 * 1024, 16 * 1024 * 1024), name="shared")


# ---------------------------------------------------------------- LOOKUP / STORE


async def test_a_miss_is_stored_and_the_next_request_is_a_fresh_memory_hit() -> None:
    play = Playbook(ONE_ORIGIN, {"app": CACHEABLE})
    first = await play.get("/a")
    assert (first.status, first.body, first.ctx.result, first.ctx.stored) == (
        200,
        b"hello",
        CacheResult.MISS,
        True,
    )
    assert "stored" in first.cache_status
    play.clock.advance(10)
    second = await play.get("/a")
    assert (second.body, second.ctx.result) == (b"hello", CacheResult.HIT)
    assert second.headers["Age"] == "10"
    assert len(play.origins["app"].requests) == 1


async def test_an_uncacheable_response_says_why_and_is_not_stored() -> None:
    play = Playbook(ONE_ORIGIN, {"app": Reply(200, {"Cache-Control": "no-store"}, b"x")})
    first = await play.get("/a")
    assert first.ctx.not_stored is NotStoredReason.NO_STORE
    assert "detail=no-store" in first.cache_status
    await play.get("/a")
    assert len(play.origins["app"].requests) == 2


async def test_a_hard_ban_makes_the_stored_entry_a_miss() -> None:
    bans = BanList()
    play = Playbook(ONE_ORIGIN, {"app": CACHEABLE}, bans=bans)
    await play.get("/a")
    play.clock.advance(1)
    bans.add(Ban(id="b1", created=play.clock.now, paths=("/a",)))
    again = await play.get("/a")
    assert (again.ctx.result, again.ctx.fwd) == (CacheResult.MISS, FwdReason.MISS)
    assert len(play.origins["app"].requests) == 2


# ---------------------------------------------------------------- COLLAPSE


async def test_concurrent_misses_collapse_into_one_fetch() -> None:
    play = Playbook(ONE_ORIGIN, {"app": CACHEABLE})
    origin = play.origins["app"]
    origin.gate = asyncio.Event()
    leader = asyncio.create_task(play.get("/a"))
    await origin.asked.wait()
    waiters = [asyncio.create_task(play.get("/a")) for _ in range(4)]
    await asyncio.sleep(0)  # let the waiters join the leader's flight before it answers
    origin.gate.set()
    results = [await leader, *[await w for w in waiters]]
    assert len(origin.requests) == 1
    assert [r.body for r in results] == [b"hello"] * 5
    assert sum(r.ctx.collapsed for r in results) == 4
    assert play.pipeline.collapser.collapsed == 4
    assert len(play.pipeline.collapser) == 0  # the flight was settled


async def test_an_uncacheable_answer_releases_the_waiters_and_the_key_skips_the_queue_after() -> None:
    play = Playbook(ONE_ORIGIN, {"app": Reply(200, {"Cache-Control": "private"}, b"mine")})
    origin = play.origins["app"]
    origin.gate = asyncio.Event()
    leader = asyncio.create_task(play.get("/a"))
    await origin.asked.wait()
    waiter = asyncio.create_task(play.get("/a"))
    await asyncio.sleep(0)
    origin.gate.set()
    await leader
    second = await waiter
    assert not second.ctx.collapsed  # released at once, fetched on its own
    assert len(origin.requests) == 2
    assert play.pipeline.collapser.is_uncacheable(second.ctx.key or "", play.clock.now)  # hit-for-miss


async def test_a_streaming_fill_settles_the_flight_once_its_body_is_stored() -> None:
    big = b"x" * (300 * 1024)  # above SMALL_BODY: streamed to the viewer while collected
    play = Playbook(
        ONE_ORIGIN, {"app": Reply(200, {"Cache-Control": "max-age=60"}, chunks=[big[:1000], big[1000:]])}
    )
    first = await play.get("/big")
    assert first.body == big
    assert first.ctx.stored and "detail=storing" in first.cache_status
    assert len(play.pipeline.collapser) == 0
    hit = await play.get("/big")
    assert (hit.ctx.result, len(hit.body)) == (CacheResult.HIT, len(big))


async def test_a_fill_whose_origin_fails_mid_body_is_not_stored() -> None:
    play = Playbook(
        ONE_ORIGIN,
        {
            "app": Reply(
                200, {"Cache-Control": "max-age=60"}, chunks=[b"a" * 200_000, b"b" * 200_000], fail_after=1
            )
        },
    )
    first = await play.get("/big")
    assert (first.completed, len(first.body)) == (False, 200_000)
    assert (first.ctx.stored, first.ctx.not_stored) == (False, NotStoredReason.INCOMPLETE)
    await play.settled()
    again = await play.get("/big")
    assert again.ctx.result is CacheResult.MISS
    assert len(play.origins["app"].requests) == 2
    assert len(play.pipeline.collapser) == 0


# ---------------------------------------------------------------- shield (cluster lock over a lower tier)


async def test_the_shield_makes_two_edges_fetch_once_through_the_shared_tier() -> None:
    shared, locks, clock = shared_tier(), FakeLockService(), Clock()
    config = SHIELDED
    edge_a = Playbook(config, {"app": CACHEABLE}, clock=clock, lower=shared, locks=locks, name="edge-a")
    edge_b = Playbook(config, {"app": CACHEABLE}, clock=clock, lower=shared, locks=locks, name="edge-b")
    edge_a.origins["app"].gate = asyncio.Event()
    first = asyncio.create_task(edge_a.get("/a"))
    await edge_a.origins["app"].asked.wait()
    second = asyncio.create_task(edge_b.get("/a"))  # waits on the cluster lock, polling the shared tier
    while not edge_b.pipeline.parts.locks.locks or locks.acquired < 1:
        await asyncio.sleep(0)
    edge_a.origins["app"].gate.set()
    a, b = await first, await second
    assert (a.body, b.body) == (b"hello", b"hello")
    assert b.ctx.collapsed and b.ctx.tier == "shared"
    assert len(edge_a.origins["app"].requests) + len(edge_b.origins["app"].requests) == 1
    assert locks.held == set()  # released once the shared tier had the entry


async def test_an_unavailable_cluster_lock_fetches_on_its_own() -> None:
    locks = FakeLockService()
    locks.available = False
    play = Playbook(SHIELDED, {"app": CACHEABLE}, lower=shared_tier(), locks=locks)
    assert (await play.get("/a")).body == b"hello"
    assert len(play.origins["app"].requests) == 1


# ---------------------------------------------------------------- the facade: lower tiers


async def test_a_lower_tier_hit_is_promoted_into_memory_with_its_remaining_freshness() -> None:
    shared, clock = shared_tier(), Clock()
    edge_a = Playbook(ONE_ORIGIN, {"app": CACHEABLE}, clock=clock, lower=shared, name="edge-a")
    await edge_a.get("/a")
    await edge_a.settled()  # the write-through to the shared tier
    clock.advance(20)
    edge_b = Playbook(ONE_ORIGIN, {"app": CACHEABLE}, clock=clock, lower=shared, name="edge-b")
    hit = await edge_b.get("/a")
    assert (hit.ctx.result, hit.ctx.tier, hit.headers["Age"]) == (CacheResult.HIT, "shared", "20")
    assert "detail=shared" in hit.cache_status
    assert edge_b.origins["app"].requests == []
    again = await edge_b.get("/a")
    assert (again.ctx.result, again.ctx.tier) == (CacheResult.HIT, None)  # now a memory hit


async def test_a_varying_response_is_found_through_its_marker_in_the_lower_tier() -> None:
    shared, clock = shared_tier(), Clock()
    reply = Reply(200, {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}, b"bonjour")
    edge_a = Playbook(ONE_ORIGIN, {"app": reply}, clock=clock, lower=shared)
    await edge_a.get("/a", {"Accept-Language": "fr"})
    await edge_a.settled()
    edge_b = Playbook(ONE_ORIGIN, {"app": reply}, clock=clock, lower=shared)
    assert (await edge_b.get("/a", {"Accept-Language": "fr"})).ctx.result is CacheResult.HIT
    other = await edge_b.get("/a", {"Accept-Language": "de"})
    assert other.ctx.result is CacheResult.MISS
    assert len(edge_b.origins["app"].requests) == 1


# ---------------------------------------------------------------- FETCH: revalidation, failover, stale


async def test_a_stale_entry_is_revalidated_with_its_validators_and_a_304_freshens_it() -> None:
    def script(request: OriginRequest) -> Reply:
        if request.headers.get("If-None-Match") == '"v1"':
            return Reply(304, {"Cache-Control": "max-age=60", "ETag": '"v1"'})
        return CACHEABLE

    play = Playbook(ONE_ORIGIN, {"app": script})
    await play.get("/a")
    play.clock.advance(61)
    refreshed = await play.get("/a")
    assert (refreshed.ctx.result, refreshed.body) == (CacheResult.REFRESH_HIT, b"hello")
    assert play.origins["app"].requests[-1].headers["If-None-Match"] == '"v1"'
    play.clock.advance(30)
    assert (await play.get("/a")).ctx.result is CacheResult.HIT  # fresh again from the 304's time


async def test_a_connect_error_fails_over_to_the_next_member() -> None:
    play = Playbook(TWO_ORIGINS, {"app": OriginConnectError("refused"), "spare": CACHEABLE})
    exchange = await play.get("/a")
    assert (exchange.status, exchange.body, exchange.ctx.tried) == (200, b"hello", ["app", "spare"])
    assert play.pipeline.stats.origin_errors == 1


async def test_a_failover_status_moves_on_and_the_last_answer_stands() -> None:
    play = Playbook(TWO_ORIGINS, {"app": Reply(503, {}, b"busy"), "spare": Reply(502, {}, b"broken")})
    exchange = await play.get("/a")
    assert (exchange.status, exchange.ctx.tried) == (502, ["app", "spare"])


async def test_an_origin_error_within_stale_if_error_serves_the_stale_entry() -> None:
    answers = iter(
        [Reply(200, {"Cache-Control": "max-age=10, stale-if-error=60"}, b"old"), Reply(500, {}, b"err")]
    )
    play = Playbook(ONE_ORIGIN, {"app": lambda _request: next(answers)})
    await play.get("/a")
    play.clock.advance(20)
    stale = await play.get("/a")
    assert (stale.status, stale.body, stale.ctx.result, stale.ctx.fwd_status) == (
        200,
        b"old",
        CacheResult.STALE,
        500,
    )


@pytest.mark.parametrize(
    ("cache_control", "served_stale"),
    [("max-age=10", True), ("max-age=10, must-revalidate", False), ("max-age=10, no-cache", False)],
)
async def test_a_disconnected_origin_serves_stale_unless_the_entry_forbids_it(
    cache_control: str, served_stale: bool
) -> None:
    answers = iter(
        [Reply(200, {"Cache-Control": cache_control, "ETag": '"v"'}, b"old"), OriginTimeoutError("slow")]
    )
    play = Playbook(ONE_ORIGIN, {"app": lambda _request: next(answers)})
    await play.get("/a")
    play.clock.advance(20)
    exchange = await play.get("/a")
    if served_stale:
        assert (exchange.status, exchange.body, exchange.ctx.result) == (200, b"old", CacheResult.STALE)
    else:
        assert (exchange.status, exchange.ctx.synth) == (504, SynthReason.ORIGIN_TIMEOUT)


async def test_stale_while_revalidate_serves_stale_and_refreshes_once_in_the_background() -> None:
    answers = iter(
        [
            Reply(200, {"Cache-Control": "max-age=10, stale-while-revalidate=60"}, b"v1"),
            Reply(200, {"Cache-Control": "max-age=10, stale-while-revalidate=60"}, b"v2"),
        ]
    )
    play = Playbook(ONE_ORIGIN, {"app": lambda _request: next(answers)})
    await play.get("/a")
    play.clock.advance(20)
    stale = [await play.get("/a"), await play.get("/a")]
    assert [(s.body, s.ctx.result) for s in stale] == [(b"v1", CacheResult.STALE)] * 2
    await play.settled()
    assert len(play.origins["app"].requests) == 2  # one refresh for both stale answers
    assert (await play.get("/a")).body == b"v2"


async def test_request_no_store_goes_to_the_origin_and_is_not_stored() -> None:
    play = Playbook(ONE_ORIGIN, {"app": CACHEABLE})
    exchange = await play.get("/a", {"Cache-Control": "no-store"})
    assert exchange.ctx.not_stored is NotStoredReason.NO_STORE
    assert (await play.get("/a")).ctx.result is CacheResult.MISS


async def test_only_if_cached_without_an_entry_is_504_without_asking_the_origin() -> None:
    play = Playbook(ONE_ORIGIN, {"app": CACHEABLE})
    exchange = await play.get("/a", {"Cache-Control": "only-if-cached"})
    assert exchange.status == 504
    assert play.origins["app"].requests == []


# ---------------------------------------------------------------- hooks


async def test_compression_buckets_are_keys_and_each_variant_is_found_again() -> None:
    page = b"<p>" + b"hello compression " * 200 + b"</p>"
    config = ONE_ORIGIN.replace("origin: app", "origin: app\n    compress: true")
    play = Playbook(
        config, {"app": Reply(200, {"Cache-Control": "max-age=60", "Content-Type": "text/html"}, page)}
    )
    gz = await play.get("/p", {"Accept-Encoding": "gzip"})
    plain = await play.get("/p", {"Accept-Encoding": "identity"})
    assert gz.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    again = await play.get("/p", {"Accept-Encoding": "deflate, gzip;q=0.8"})  # the same gzip bucket
    assert (again.ctx.result, again.headers["Content-Encoding"]) == (CacheResult.HIT, "gzip")
    assert [r.headers["Accept-Encoding"] for r in play.origins["app"].requests] == ["gzip", "identity"]


async def test_a_header_policy_hook_shapes_the_origin_request_and_the_viewer_response() -> None:
    config = ONE_ORIGIN.replace(
        "origin: app",
        "origin: app\n    request_headers: {set: {X-From-Edge: '1'}}\n"
        "    response_headers: {set: {X-Frame-Options: DENY}}",
    )
    play = Playbook(config, {"app": CACHEABLE})
    await play.get("/a")
    hit = await play.get("/a")
    assert play.origins["app"].requests[0].headers["X-From-Edge"] == "1"
    assert (hit.ctx.result, hit.headers["X-Frame-Options"]) == (CacheResult.HIT, "DENY")
