"""Two edges sharing one regional tier in a real redis-server: shared hits, Redis outages."""

from __future__ import annotations

import asyncio
from pathlib import Path

from proxy.app import Edge
from tests.conftest import EdgeFactory, Origin, wait_for
from tests.redis_server import RedisServer
from tests.server_process import free_port

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


ADMIN = """
server: {name: NAME, access_log: "off"}
admin: {listen: "127.0.0.1:ADMINPORT", token: secret-token}
cache:
  shared: {url: "{redis}", timeout: 500ms}
  shield: SHIELD
origins: {app: {url: "{origin}", read_timeout: 5s}}
behaviours:
  - path: "*"
    origin: app
"""
AUTH = {"Authorization": "Bearer secret-token"}


def admin_config(name: str, shield: bool = False) -> str:
    text = ADMIN.replace("NAME", name).replace("ADMINPORT", str(free_port()))
    return text.replace("SHIELD", "true" if shield else "false")


def admin_url(edge: Edge) -> str:
    host, port = edge.admin_addresses[0]
    return f"http://{host}:{port}"


async def test_invalidation_on_node_a_is_honoured_by_node_b(
    make_edge: EdgeFactory, origin: Origin, redis_server: RedisServer
) -> None:
    version = {"n": 0}

    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        version["n"] += 1
        return web.Response(text=f"v{version['n']}", headers={"Cache-Control": "max-age=600"})

    origin.route("/{name:.*}", handler)
    edge_a = await make_edge(admin_config("edge-a"), origin, redis=redis_server.url)
    edge_b = await make_edge(admin_config("edge-b"), origin, redis=redis_server.url)
    await edge_b.get("/images/logo.png", headers=SITE)
    await edge_b.get("/index.html", headers=SITE)
    hit, body = await edge_b.get("/images/logo.png", headers=SITE)
    assert hit.headers["X-Cache"] == "Hit from edgeproxy"
    # Both workers are registered (heartbeats) before the call, so the API waits for both acks.
    coordinator = edge_a.edge.coordinator
    assert coordinator is not None
    await _until_workers(coordinator, 2)
    async with edge_a.session.post(
        admin_url(edge_a.edge) + "/invalidations", json={"paths": ["/images/*"]}, headers=AUTH
    ) as response:
        assert response.status == 201
        created = await response.json()
    assert created["status"] == "Completed"
    after, new_body = await edge_b.get("/images/logo.png", headers=SITE)
    assert after.headers["X-Cache"] == "Miss from edgeproxy" and new_body != body
    untouched, _ = await edge_b.get("/index.html", headers=SITE)
    assert untouched.headers["X-Cache"] == "Hit from edgeproxy"
    async with edge_a.session.get(
        admin_url(edge_a.edge) + f"/invalidations/{created['id']}", headers=AUTH
    ) as response:
        assert response.status == 200 and (await response.json())["status"] == "Completed"


async def _until_workers(coordinator: object, count: int) -> None:
    async with asyncio.timeout(15):
        while len(await coordinator.live_workers()) < count:  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)


async def test_tag_purge_hard_and_soft(
    make_edge: EdgeFactory, origin: Origin, redis_server: RedisServer
) -> None:
    origin.static(
        "/p1",
        "one",
        Cache_Control="max-age=600, stale-if-error=600",
        Surrogate_Key="product-42 all",
        ETag='"1"',
    )
    origin.static("/p2", "two", Cache_Control="max-age=600", Cache_Tag="product-7,all")
    edge = await make_edge(admin_config("edge-a"), origin, redis=redis_server.url)
    first, _ = await edge.get("/p1", headers=SITE)
    assert "Surrogate-Key" not in first.headers  # tags are for the cache, not for viewers
    await edge.get("/p2", headers=SITE)
    async with edge.session.post(
        admin_url(edge.edge) + "/purge", json={"tags": ["product-42"], "soft": True}, headers=AUTH
    ) as response:
        assert response.status == 200
    soft, _ = await edge.get("/p1", headers=SITE)  # soft: stale, so revalidated with the origin
    assert soft.headers["X-Cache"] != "Hit from edgeproxy"
    assert origin.seen[-1].headers.get("If-None-Match") == '"1"'
    p2, _ = await edge.get("/p2", headers=SITE)
    assert p2.headers["X-Cache"] == "Hit from edgeproxy"
    async with edge.session.post(
        admin_url(edge.edge) + "/purge", json={"tags": ["product-7"]}, headers=AUTH
    ) as response:
        assert response.status == 200
    gone, _ = await edge.get("/p2", headers=SITE)
    assert gone.headers["X-Cache"] == "Miss from edgeproxy"
    assert origin.count("/p2") == 2


async def test_shield_two_edges_fifty_cold_requests_each_one_origin_request(
    make_edge: EdgeFactory, origin: Origin, redis_server: RedisServer
) -> None:
    release = asyncio.Event()
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="shielded", headers={"Cache-Control": "max-age=600"})

    origin.route("/cold", handler)
    edge_a = await make_edge(admin_config("edge-a", shield=True), origin, redis=redis_server.url)
    edge_b = await make_edge(admin_config("edge-b", shield=True), origin, redis=redis_server.url)
    requests = [
        asyncio.ensure_future(e.get("/cold", headers=SITE)) for e in (edge_a, edge_b) for _ in range(50)
    ]
    await wait_for(lambda: origin.count("/cold") >= 1)
    release.set()
    results = await asyncio.gather(*requests)
    assert all(r.status == 200 and body == b"shielded" for r, body in results)
    assert origin.count("/cold") == 1


async def test_admin_stats_metrics_health(
    make_edge: EdgeFactory, origin: Origin, redis_server: RedisServer
) -> None:
    origin.static("/m", "m", Cache_Control="max-age=60")
    edge = await make_edge(admin_config("edge-a"), origin, redis=redis_server.url)
    await edge.get("/m")
    await edge.get("/m")
    coordinator = edge.edge.coordinator
    assert coordinator is not None
    await _until_workers(coordinator, 1)
    async with edge.session.get(admin_url(edge.edge) + "/stats", headers=AUTH) as response:
        stats = await response.json()
    assert stats["node"] == "edge-a" and stats["origins"]["app"]["state"] == "up"
    async with edge.session.get(admin_url(edge.edge) + "/metrics", headers=AUTH) as response:
        text = await response.text()
    assert "edgeproxy_requests_total" in text and "edgeproxy_origin_up" in text
    for shared in ("edgeproxy_shared_up 1.0", "edgeproxy_shared_errors_total", "edgeproxy_shared_operations"):
        assert shared in text
    async with edge.session.get(admin_url(edge.edge) + "/healthz") as response:
        assert await response.json() == {"status": "pass"}  # the probe only, without the token
    async with edge.session.get(admin_url(edge.edge) + "/readyz") as response:
        assert (response.status, await response.json()) == (200, {"status": "pass"})
    async with edge.session.get(admin_url(edge.edge) + "/readyz", headers=AUTH) as response:
        checks = (await response.json())["checks"]
    assert checks == {"listeners": "pass", "config": "pass", "shared": "pass"}
    async with edge.session.get(admin_url(edge.edge) + "/healthz", headers=AUTH) as response:
        assert response.status == 200


async def test_via_loop_is_508(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/loop", "x")
    edge = await make_edge(
        """
        server: {name: edge-loop, access_log: "off"}
        origins: {app: {url: "{origin}"}}
        behaviours: [{path: "*", origin: app}]
        """,
        origin,
    )
    looped, _ = await edge.get("/loop", headers={"Via": "1.1 edge-other, 1.1 edge-loop"})
    assert looped.status == 508
    fine, _ = await edge.get("/loop", headers={"Via": "1.1 edge-loop-2"})
    assert fine.status == 200


async def test_tiered_edges_show_each_layer(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/tier", "deep", Cache_Control="max-age=60")
    parent = await make_edge(
        """
        server: {name: regional, access_log: "off"}
        origins: {app: {url: "{origin}"}}
        behaviours: [{path: "*", origin: app}]
        """,
        origin,
    )
    child = await make_edge(
        """
        server: {name: edge-child, access_log: "off"}
        origins: {regional: {url: "{origin}", host_header: viewer}}
        behaviours: [{path: "*", origin: regional}]
        """,
        origin_url=parent.url,
    )
    miss, body = await child.get("/tier", headers=SITE)
    assert body == b"deep"
    layers = [member.split(";")[0].strip() for member in miss.headers["Cache-Status"].split(",")]
    assert layers == ["regional", "edge-child"]  # RFC 9211: the member closest to the origin comes first
    assert miss.headers["Via"].endswith("1.1 regional, 1.1 edge-child")
    hit, _ = await child.get("/tier", headers=SITE)
    assert hit.headers["Cache-Status"].split(",")[-1].strip().startswith("edge-child; hit")
    other_child_view, _ = await parent.get("/tier", headers=SITE)
    assert other_child_view.headers["Cache-Status"].startswith("regional; hit")
    assert origin.count("/tier") == 1


async def test_admin_reload_single_process(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/r", "r", Cache_Control="max-age=60")
    edge = await make_edge(
        """
        server: {name: edge-r, access_log: "off"}
        admin: {listen: "127.0.0.1:ADMINPORT"}
        origins: {app: {url: "{origin}"}}
        behaviours: [{path: "*", origin: app, methods: [GET, HEAD]}]
        """.replace("ADMINPORT", str(free_port())),
        origin,
    )
    source = Path(edge.edge.config.source_file)
    source.write_text(source.read_text().replace("methods: [GET, HEAD]", "methods: [GET, HEAD, POST]"))
    refused, _ = await edge.get("/r", method="POST")
    assert refused.status == 405
    async with edge.session.post(admin_url(edge.edge) + "/reload") as response:
        assert response.status == 200
    allowed, _ = await edge.get("/r", method="POST")
    assert allowed.status == 200
    source.write_text("behaviours: [oops")
    async with edge.session.post(admin_url(edge.edge) + "/reload") as response:
        assert response.status == 400
        assert "reload refused" in (await response.json())["error"]
    still, _ = await edge.get("/r", method="POST")
    assert still.status == 200


async def test_workers_without_shared_tier_refuse_invalidations(tmp_path: Path) -> None:
    """With several workers and no shared tier nothing would carry a ban to the other workers: refuse."""
    import aiohttp

    from proxy.settings import ListenAddress, parse_config

    (tmp_path / "site").mkdir()
    text = f"""
server: {{name: w, access_log: "off", workers: 2}}
admin: {{listen: "127.0.0.1:{free_port()}", token: t}}
origins: {{site: {{root: ./site}}}}
behaviours: [{{path: "*", origin: site}}]
"""
    edge = Edge(parse_config(text, str(tmp_path / "e.yaml"), env={}, base_dir=tmp_path), reuse_port=True)
    await edge.start((ListenAddress(host="127.0.0.1", port=0),))
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                admin_url(edge) + "/invalidations",
                json={"paths": ["/*"]},
                headers={"Authorization": "Bearer t"},
            ) as response,
        ):
            assert response.status == 503
            assert "cache.shared" in (await response.json())["error"]
    finally:
        await edge.stop()


async def test_memcached_shared_tier_between_two_edges(
    make_edge: EdgeFactory, origin: Origin, memcached_server: object
) -> None:
    origin.static("/mc", "from memcached", Cache_Control="max-age=120")
    url = memcached_server.url  # type: ignore[attr-defined]
    config = """
server: {name: NAME, access_log: "off"}
cache:
  shared: {url: "{mc}", timeout: 500ms}
origins: {app: {url: "{origin}"}}
behaviours: [{path: "*", origin: app}]
"""
    edge_a = await make_edge(config.replace("NAME", "mc-a"), origin, mc=url)
    edge_b = await make_edge(config.replace("NAME", "mc-b"), origin, mc=url)
    await edge_a.get("/mc", headers=SITE)
    shared = edge_a.edge.shared
    assert shared is not None and edge_a.edge.coordinator is None
    await wait_for(lambda: shared.stats()["sets"] >= 1)
    hit, body = await edge_b.get("/mc", headers=SITE)
    assert body == b"from memcached" and "detail=shared" in hit.headers["Cache-Status"]
    assert origin.count("/mc") == 1


async def test_rate_limit_budget_shared_by_two_edges(
    make_edge: EdgeFactory, origin: Origin, redis_server: RedisServer
) -> None:
    from proxy.edge.ratelimit import RateLimitGuard

    origin.static("/rl", "ok")
    config = """
server: {name: NAME, access_log: "off"}
cache: {shared: {url: "{redis}", timeout: 500ms}}
firewall: {rate_limit: {requests: 4, per: 1h, burst: 4, by: ip}}
origins: {app: {url: "{origin}"}}
behaviours: [{path: "*", origin: app}]
"""
    edge_a = await make_edge(config.replace("NAME", "rl-a"), origin, redis=redis_server.url)
    edge_b = await make_edge(config.replace("NAME", "rl-b"), origin, redis=redis_server.url)
    guard_a = next(g for g in edge_a.edge.pipeline.guards if isinstance(g, RateLimitGuard))
    guard_b = next(g for g in edge_b.edge.pipeline.guards if isinstance(g, RateLimitGuard))
    assert (await edge_b.get("/rl"))[0].status == 200  # edge B knows the client now
    for _ in range(3):
        assert (await edge_a.get("/rl"))[0].status == 200
    # Both edges learn what the other granted (a budget of 4 in all, cluster-wide).
    await wait_for(lambda: sum(guard_b.debts.values()) >= 3, timeout=10)
    await wait_for(lambda: sum(guard_a.debts.values()) >= 1, timeout=10)
    assert (await edge_b.get("/rl"))[0].status == 429
    assert (await edge_a.get("/rl"))[0].status == 429
