"""Two edges sharing one regional tier in a real redis-server: shared hits, Redis outages."""

from __future__ import annotations

import asyncio

from tests.conftest import EdgeFactory, Origin, wait_for
from tests.redis_server import RedisServer

# Every edge of a cluster serves the same site name: the Host is part of the cache key.
SITE = {"Host": "www.example.test"}

SHARED = """
server: {name: NAME, access_log: "off"}
cache:
  shared: {url: "{redis}", timeout: 500ms}
origins: {app: {url: "{origin}", read_timeout: 5s}}
behaviours:
  - path: "*"
    origin: app
"""


async def test_second_edge_is_a_shared_hit(
    make_edge: EdgeFactory, origin: Origin, redis_server: RedisServer
) -> None:
    origin.static("/shared", "regional", Cache_Control="max-age=120")
    edge_a = await make_edge(SHARED.replace("NAME", "edge-a"), origin, redis=redis_server.url)
    edge_b = await make_edge(SHARED.replace("NAME", "edge-b"), origin, redis=redis_server.url)
    miss, body = await edge_a.get("/shared", headers=SITE)
    assert body == b"regional" and miss.headers["X-Cache"] == "Miss from edgeproxy"
    shared = edge_a.edge.shared
    assert shared is not None
    await wait_for(lambda: shared.stats()["sets"] >= 1)  # the write-through runs in the background
    hit, body = await edge_b.get("/shared", headers=SITE)
    assert body == b"regional"
    assert (
        hit.headers["Cache-Status"].startswith("edge-b; hit")
        and "detail=shared" in hit.headers["Cache-Status"]
    )
    assert origin.count("/shared") == 1
    again, _ = await edge_b.get("/shared", headers=SITE)  # promoted into edge-b's memory tier
    assert (
        again.headers["Cache-Status"].startswith("edge-b; hit")
        and "shared" not in again.headers["Cache-Status"]
    )


async def test_shared_tier_keeps_vary_variants(
    make_edge: EdgeFactory, origin: Origin, redis_server: RedisServer
) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        lang = request.headers.get("Accept-Language", "-")
        return web.Response(text=lang, headers={"Vary": "Accept-Language", "Cache-Control": "max-age=120"})

    origin.route("/v", handler)
    edge_a = await make_edge(SHARED.replace("NAME", "edge-a"), origin, redis=redis_server.url)
    edge_b = await make_edge(SHARED.replace("NAME", "edge-b"), origin, redis=redis_server.url)
    await edge_a.get("/v", headers={**SITE, "Accept-Language": "en"})
    await edge_a.get("/v", headers={**SITE, "Accept-Language": "fr"})
    shared = edge_a.edge.shared
    assert shared is not None
    await wait_for(lambda: shared.stats()["sets"] >= 4)
    _, fr = await edge_b.get("/v", headers={**SITE, "Accept-Language": "fr"})
    _, en = await edge_b.get("/v", headers={**SITE, "Accept-Language": "en"})
    assert (fr, en) == (b"fr", b"en")
    assert origin.count("/v") == 2


async def test_redis_killed_mid_test_no_failed_viewer_requests(
    make_edge: EdgeFactory, origin: Origin, redis_server: RedisServer
) -> None:
    origin.static("/{name}", "ok", Cache_Control="max-age=120")
    edge = await make_edge(SHARED.replace("NAME", "edge-a"), origin, redis=redis_server.url)
    statuses: list[int] = []
    for i in range(20):
        response, _ = await edge.get(f"/before{i}")
        statuses.append(response.status)
    redis_server.kill()
    for i in range(50):
        response, _ = await edge.get(f"/during{i % 10}")
        statuses.append(response.status)
    assert set(statuses) == {200}
    shared = edge.edge.shared
    assert shared is not None and not shared.available  # the circuit is open: Redis is skipped
    redis_server.restart()
    # Requests keep driving the breaker: once reset_after has passed, a trial call finds Redis again.
    async with asyncio.timeout(20):
        n = 0
        while not shared.available:
            n += 1
            response, _ = await edge.get(f"/after{n}")
            assert response.status == 200
            await asyncio.sleep(0.05)
