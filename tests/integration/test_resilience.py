"""Never let the origin hurt the viewer: collapsing, failover, health, stale serving, error caching, fills.

Origins here fail on cue: refused connections, 503s, hangs, deaths mid-body, malformed answers.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import EdgeFactory, Origin, OriginFactory, RunningEdge, wait_for


def dead_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def backup(make_origin: OriginFactory) -> Origin:
    """A second origin, independent of the ``origin`` fixture."""
    return make_origin()


def group_config(primary: str, secondary: str, extra: str = "", methods: str = "") -> str:
    return f"""
server: {{name: edge-r, access_log: "off"}}
origins:
  primary: {{url: "{primary}", connect_timeout: 1s, read_timeout: 2s}}
  secondary: {{url: "{secondary}", connect_timeout: 1s, read_timeout: 2s}}
origin_groups:
  ha: {{members: [primary, secondary], failover_on: [500, 502, 503, 504]}}
behaviours:
  - path: "*"
    origin: ha
    {methods}
    {extra}
"""


SINGLE = """
server: {name: edge-r, access_log: "off"}
origins: {app: {url: "{origin}", connect_timeout: 1s, read_timeout: READ}}
behaviours:
  - path: "*"
    origin: app
"""


def single(read_timeout: str = "2s") -> str:
    return SINGLE.replace("READ", read_timeout)


# ------------------------------------------------------------------ collapsing


async def test_100_concurrent_cold_requests_make_one_origin_request(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="collapsed", headers={"Cache-Control": "max-age=60"})

    origin.route("/cold", handler)
    edge = await make_edge(single(), origin)
    requests = [asyncio.ensure_future(edge.get("/cold")) for _ in range(100)]
    flights = edge.edge.pipeline.collapser
    # Everyone but the leader is queued behind its fetch before the origin answers.
    await wait_for(lambda: origin.count("/cold") == 1 and _waiters(edge) == 99, timeout=20)
    release.set()
    results = await asyncio.gather(*requests)
    assert all(r.status == 200 and body == b"collapsed" for r, body in results)
    assert origin.count("/cold") == 1
    assert flights.collapsed == 99
    collapsed = [r for r, _ in results if "collapsed" in r.headers["Cache-Status"]]
    assert len(collapsed) == 99


def _waiters(edge: RunningEdge) -> int:
    flights = edge.edge.pipeline.collapser._flights
    return sum(f.waiters for f in flights.values())


async def test_uncacheable_response_releases_waiters_and_is_remembered(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="private", headers={"Cache-Control": "no-store"})

    origin.route("/nostore", handler)
    edge = await make_edge(single(), origin)
    requests = [asyncio.ensure_future(edge.get("/nostore")) for _ in range(5)]
    await wait_for(lambda: _waiters(edge) == 4)
    release.set()
    results = await asyncio.gather(*requests)
    assert all(r.status == 200 for r, _ in results)
    assert origin.count("/nostore") == 5  # the waiters fetched on their own
    # Hit-for-miss: later requests for the key go straight to the origin without queueing.
    key = next(iter(k for k in edge.edge.pipeline.collapser._uncacheable))
    assert key.endswith("/nostore")
    concurrent = [asyncio.ensure_future(edge.get("/nostore")) for _ in range(3)]
    await wait_for(lambda: origin.count("/nostore") == 8)
    assert _waiters(edge) == 0
    await asyncio.gather(*concurrent)


async def test_failed_leader_fails_waiters_over_to_their_own_fetch(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    never = asyncio.Event()
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await never.wait()  # the leader's fetch hangs until the edge's read timeout
        return web.Response(text="second", headers={"Cache-Control": "max-age=60"})

    origin.route("/flaky", handler)
    edge = await make_edge(single(read_timeout="300ms"), origin)
    requests = [asyncio.ensure_future(edge.get("/flaky")) for _ in range(4)]
    await wait_for(lambda: _waiters(edge) == 3)
    results = await asyncio.gather(*requests)
    statuses = sorted(r.status for r, _ in results)
    assert statuses == [200, 200, 200, 504]  # only the leader saw its own failure
    assert [body for r, body in results if r.status == 200] == [b"second"] * 3
    never.set()


# ------------------------------------------------------------------ failover and health


async def test_primary_dead_secondary_serves_1000_requests_without_5xx(
    make_edge: EdgeFactory, backup: Origin
) -> None:
    backup.static("/{name}", "from secondary", Cache_Control="no-store")
    secondary = await backup.start()
    edge = await make_edge(group_config(dead_url(), secondary))
    statuses: list[int] = []

    async def worker(n: int) -> None:
        for i in range(50):
            response, _ = await edge.get(f"/item{n}-{i}")
            statuses.append(response.status)

    await asyncio.gather(*(worker(n) for n in range(20)))
    assert len(statuses) == 1000 and set(statuses) == {200}
    health = edge.edge.runtime.health["primary"]
    # Passive health: after unhealthy_after failures the primary is skipped instead of being tried each time.
    assert health.total_failures < 50


async def test_failover_on_status_and_origin_in_log(
    make_edge: EdgeFactory, origin: Origin, backup: Origin
) -> None:
    origin.static("/x", "primary broken", status=503)
    backup.static("/x", "secondary ok")
    primary = await origin.start()
    secondary = await backup.start()
    edge = await make_edge(group_config(primary, secondary))
    written: list[Any] = []
    edge.edge.access_log.write = written.append  # type: ignore[method-assign]
    response, body = await edge.get("/x")
    assert response.status == 200 and body == b"secondary ok"
    ctx = written[-1]
    assert ctx.origin == "secondary" and ctx.tried == ["primary", "secondary"]


async def test_post_is_not_retried(make_edge: EdgeFactory, origin: Origin, backup: Origin) -> None:
    origin.static("/form", "primary broken", status=503)
    backup.static("/form", "secondary ok")
    primary = await origin.start()
    secondary = await backup.start()
    edge = await make_edge(group_config(primary, secondary))
    response, _ = await edge.get("/form", method="POST", data=b"x")
    assert response.status == 503
    assert backup.count("/form") == 0
    put, body = await edge.get("/form", method="PUT", data=b"payload")
    assert put.status == 200 and body == b"secondary ok"  # idempotent: retried with its body


async def test_all_down_still_tries_the_primary(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/z", "back")
    primary = await origin.start()
    edge = await make_edge(group_config(primary, dead_url()))
    for health in edge.edge.runtime.health.values():
        for _ in range(5):
            health.record_failure(0.0)
    response, body = await edge.get("/z")
    assert response.status == 200 and body == b"back"


async def test_single_origin_marked_down_still_answers_every_later_request(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """Issue item 4: dropped connections mark the only origin DOWN, but with no other member to fail over to
    it is still tried, so every request after the drops gets the origin's answer, not a 502."""
    drops = 8  # the origin client may retry a GET once on a dropped connection: 4 or more failures

    async def flaky(request: web.Request) -> web.Response:
        nonlocal drops
        if drops > 0:
            drops -= 1
            assert request.transport is not None
            request.transport.close()  # no response at all, as cache-tests' disconnect does
            raise ConnectionResetError("dropped on purpose")
        return web.Response(text="answered")

    origin.route("/flaky", flaky)
    origin.static("/other", "other", Cache_Control="max-age=0, stale-if-error=600", ETag='"o"')
    edge = await make_edge(single(), origin)
    health = edge.edge.runtime.health["app"]
    await edge.get("/other")  # stored, stale at once, with stale-if-error
    while drops > 0:
        response, _ = await edge.get("/flaky")
        assert response.status == 502
    assert health.times_down >= 1
    for _ in range(5):
        response, body = await edge.get("/flaky")
        assert (response.status, body) == (200, b"answered")
        response, body = await edge.get("/other")
        assert (response.status, body) == (200, b"other")


# ------------------------------------------------------------------ stale serving


async def test_stale_while_revalidate_serves_at_once_with_one_refresh(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    version = 0
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        nonlocal version
        version += 1
        if version > 1:
            await release.wait()  # the refresh is slow: viewers must not wait for it
        return web.Response(
            text=f"v{version}",
            headers={"Cache-Control": "max-age=0, stale-while-revalidate=60", "ETag": f'"{version}"'},
        )

    origin.route("/swr", handler)
    edge = await make_edge(single(), origin)
    _, first = await edge.get("/swr")
    assert first == b"v1"
    results = await asyncio.gather(*(edge.get("/swr") for _ in range(20)))
    assert all(body == b"v1" for _, body in results)
    assert all("fwd=stale" in r.headers["Cache-Status"] for r, _ in results)
    await wait_for(lambda: origin.count("/swr") == 2)
    release.set()
    await wait_for(lambda: len(edge.edge.pipeline.background) == 0)
    assert origin.count("/swr") == 2  # exactly one background refresh
    _, refreshed = await edge.get("/swr")
    assert refreshed in (b"v2", b"v1")


async def test_stale_if_error_on_5xx(make_edge: EdgeFactory, origin: Origin) -> None:
    broken = False

    async def handler(request: web.Request) -> web.Response:
        if broken:
            return web.Response(status=503, text="down")
        return web.Response(
            text="good", headers={"Cache-Control": "max-age=0, stale-if-error=60", "ETag": '"g"'}
        )

    origin.route("/sie", handler)
    edge = await make_edge(single(), origin)
    await edge.get("/sie")
    broken = True
    response, body = await edge.get("/sie")
    assert response.status == 200 and body == b"good"
    assert (
        "fwd=stale" in response.headers["Cache-Status"]
        and "fwd-status=503" in response.headers["Cache-Status"]
    )


async def test_every_origin_dead_keeps_serving_stale_with_zero_5xx(
    make_edge: EdgeFactory, backup: Origin
) -> None:
    backup.static("/{name}", "cached", Cache_Control="max-age=0, stale-if-error=600", ETag='"c"')
    secondary_url = await backup.start()
    edge = await make_edge(group_config(dead_url(), secondary_url))
    paths = [f"/obj{i}" for i in range(10)]
    for path in paths:
        await edge.get(path)
    await backup.stop()  # now every origin refuses connections
    statuses: list[int] = []
    for _ in range(10):
        for path in paths:
            response, body = await edge.get(path)
            statuses.append(response.status)
            assert body == b"cached"
    assert set(statuses) == {200}


async def test_known_down_origin_serves_stale_without_waiting(make_edge: EdgeFactory, origin: Origin) -> None:
    hang = False
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if hang:
            await never.wait()
        return web.Response(
            text="kept", headers={"Cache-Control": "max-age=0, stale-if-error=600", "ETag": '"k"'}
        )

    origin.route("/k", handler)
    edge = await make_edge(single(read_timeout="200ms"), origin)
    await edge.get("/k")
    hang = True
    for _ in range(3):  # each waits out the read timeout, then gets the stale copy
        response, body = await edge.get("/k")
        assert response.status == 200 and body == b"kept"
    seen = origin.count("/k")
    for _ in range(5):  # the origin is now known down: stale at once, the origin is not asked
        response, body = await edge.get("/k")
        assert response.status == 200 and body == b"kept"
    assert origin.count("/k") == seen
    never.set()


# ------------------------------------------------------------------ error caching


@pytest.mark.parametrize("status", [404, 503])
async def test_errors_cached_for_error_ttl_under_ttl_policy(
    make_edge: EdgeFactory, origin: Origin, status: int
) -> None:
    origin.static("/err", "error", status=status)
    edge = await make_edge(
        """
        server: {name: edge-r, access_log: "off"}
        origins: {app: {url: "{origin}"}}
        behaviours:
          - path: "*"
            origin: app
            ttl: {default: 1d}
            error_ttl: 7s
        """,
        origin,
    )
    first, _ = await edge.get("/err")
    second, _ = await edge.get("/err")
    assert first.status == second.status == status
    assert second.headers["X-Cache"] == "Hit from edgeproxy"
    ttl = int(first.headers["Cache-Status"].split("ttl=")[1].split(";")[0])
    assert 5 <= ttl <= 7
    assert origin.count("/err") == 1


async def test_rfc_mode_caches_404_but_not_503(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/gone", "nope", status=404)
    origin.static("/busy", "busy", status=503)
    edge = await make_edge(single(), origin)
    for _ in range(2):
        await edge.get("/gone")
        await edge.get("/busy")
    assert origin.count("/gone") == 1
    assert origin.count("/busy") == 2


# ------------------------------------------------------------------ fills and broken origins


async def test_viewer_abort_still_fills_the_cache(make_edge: EdgeFactory, origin: Origin) -> None:
    payload = b"f" * (2 * 1024 * 1024)
    origin.static("/fill", payload, Cache_Control="max-age=60")
    edge = await make_edge(single(), origin)
    async with aiohttp.ClientSession() as session, session.get(edge.url + "/fill") as response:
        await response.content.readexactly(65536)
        # Leaving the block closes the connection with most of the body unread.
    await wait_for(lambda: edge.edge.memory.stats().entries >= 1)
    hit, body = await edge.get("/fill")
    assert hit.headers["X-Cache"] == "Hit from edgeproxy" and body == payload
    assert origin.count("/fill") == 1


async def test_read_timeout_mid_body_truncates_and_stores_nothing(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Cache-Control": "max-age=60"})
        response.content_length = 1_000_000
        await response.prepare(request)
        await response.write(b"s" * 400_000)
        await never.wait()
        return response

    origin.route("/stall", handler)
    edge = await make_edge(single(read_timeout="300ms"), origin)
    with pytest.raises(aiohttp.ClientPayloadError):
        await edge.get("/stall")
    assert edge.edge.memory.stats().entries == 0
    never.set()


async def test_malformed_origin_response_is_502(make_edge: EdgeFactory) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"THIS IS NOT HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        edge = await make_edge(SINGLE.replace("READ", "2s"), origin_url=f"http://127.0.0.1:{port}")
        response, _ = await edge.get("/x")
        assert response.status == 502
    finally:
        server.close()
        await server.wait_closed()
