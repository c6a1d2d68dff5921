"""Orchestrators' probes on a real edge: ``/healthz`` (liveness) and ``/readyz`` (readiness) answer without
the admin token and say nothing but their status; the token adds the checks."""

from __future__ import annotations

import asyncio

import aiohttp

from proxy.app import Edge
from proxy.settings import parse_config
from tests.conftest import EdgeFactory, Origin
from tests.redis_server import RedisServer
from tests.server_process import free_port

AUTH = {"Authorization": "Bearer probe-token"}

CONFIG = """
server: {name: edge-probe, access_log: "off"}
admin: {listen: "127.0.0.1:ADMINPORT", token: probe-token}
SHARED
origins: {app: {url: "{origin}"}}
behaviours: [{path: "*", origin: app}]
"""


def config(shared: bool = False) -> str:
    text = CONFIG.replace("ADMINPORT", str(free_port()))
    return text.replace("SHARED", 'cache: {shared: {url: "{redis}", timeout: 300ms}}' if shared else "")


async def probe(edge: Edge, path: str, auth: bool = False) -> tuple[int, object]:
    host, port = edge.admin_addresses[0]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}{path}", headers=AUTH if auth else {}) as response,
    ):
        return response.status, await response.json()


async def test_probes_on_a_running_edge(make_edge: EdgeFactory, origin: Origin) -> None:
    await origin.stop()  # an origin that is down does not make the edge unhealthy or unready
    edge = (await make_edge(config(), origin_url=f"http://127.0.0.1:{free_port()}")).edge
    assert await probe(edge, "/healthz") == (200, {"status": "pass"})
    assert await probe(edge, "/readyz") == (200, {"status": "pass"})
    status, body = await probe(edge, "/readyz", auth=True)
    assert (status, body) == (
        200,
        {"status": "pass", "checks": {"listeners": "pass", "config": "pass", "shared": None}},
    )


async def test_ready_but_degraded_without_the_shared_tier(
    make_edge: EdgeFactory, origin: Origin, redis_server: RedisServer
) -> None:
    origin.static("/{name}", "ok")
    running = await make_edge(config(shared=True), origin, redis=redis_server.url)
    status, body = await probe(running.edge, "/readyz", auth=True)
    assert isinstance(body, dict) and body["checks"]["shared"] == "pass"
    redis_server.kill()
    shared = running.edge.shared
    assert shared is not None
    async with asyncio.timeout(20):
        n = 0
        while shared.available:  # requests drive the breaker open
            n += 1
            await running.get(f"/x{n}")
    assert await probe(running.edge, "/readyz") == (200, {"status": "pass"})
    status, body = await probe(running.edge, "/readyz", auth=True)
    assert status == 200
    assert isinstance(body, dict) and body["checks"]["shared"] == "degraded"


async def test_not_ready_before_the_listeners_are_up(tmp_path: object) -> None:
    text = config().replace("{origin}", "http://127.0.0.1:9")
    edge = Edge(parse_config(text, "edge.yaml", env={}))
    ready, checks = await edge.admin.readyz()
    assert (ready, checks["listeners"]) == (False, "fail")
