"""HealthProber against real origins on 127.0.0.1 that fail on cue (503, refused, hanging, redirecting).

Probes run every 50 ms; the tests wait on the health state (bounded by ``wait_for``), never on time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from proxy.origin.health import HealthProber, HealthState, OriginHealth, ProbeTarget
from tests.conftest import Origin, wait_for

INTERVAL = 0.05


def target(url: str, health: OriginHealth, *, path: str = "/healthz", timeout: float = 2.0) -> ProbeTarget:
    return ProbeTarget(
        name=health.name, url=url, path=path, interval=INTERVAL, timeout=timeout, health=health
    )


def new_health() -> OriginHealth:
    # A long cooldown: only probes can bring the origin back here, no live trial is ever admitted.
    return OriginHealth("app", unhealthy_after=3, healthy_after=2, cooldown=3600.0)


@pytest.fixture
async def flipping(origin: Origin) -> AsyncIterator[tuple[Origin, list[int]]]:
    """An origin whose /app/healthz answers with ``status[0]``; the test changes it."""
    status = [503]

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=status[0], text="state")

    origin.route("/app/healthz", healthz)
    await origin.start()
    yield origin, status


async def test_down_on_503_then_up_again_on_200(
    flipping: tuple[Origin, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    origin, status = flipping
    health = new_health()
    probe = target(origin.url + "/app", health)
    caplog.set_level(logging.WARNING, logger="proxy.origin.health")
    async with HealthProber([probe]):
        await wait_for(lambda: health.state is HealthState.DOWN)
        assert health.consecutive_failures >= 3
        status[0] = 200
        await wait_for(lambda: health.state is HealthState.UP)
    assert origin.count("/app/healthz") >= 5
    assert {r.method for r in origin.seen} == {"GET"}
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("origin app is DOWN (3 consecutive failures; last: probe: HTTP 503")
    assert messages[1:] == ["origin app is UP again"]


async def test_connection_refused_marks_down() -> None:
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    health = new_health()
    async with HealthProber([target(f"http://127.0.0.1:{port}", health)]):
        await wait_for(lambda: health.state is HealthState.DOWN)
    assert health.total_failures >= 3


async def test_hanging_origin_times_out_and_marks_down(origin: Origin) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    origin.route("/healthz", hang)
    url = await origin.start()
    health = new_health()
    try:
        async with HealthProber([target(url, health, timeout=INTERVAL)]):
            await wait_for(lambda: health.state is HealthState.DOWN)
    finally:
        release.set()


async def test_redirect_counts_as_success_and_is_not_followed(origin: Origin) -> None:
    origin.static("/healthz", b"", status=302, Location="/elsewhere")
    url = await origin.start()
    health = new_health()
    async with HealthProber([target(url, health)]):
        await wait_for(lambda: health.consecutive_successes >= 3)
    assert health.state is HealthState.UP
    assert health.total_failures == 0
    assert origin.count("/elsewhere") == 0


async def test_probe_sends_configured_headers(origin: Origin) -> None:
    origin.static("/ping", b"ok")
    url = await origin.start()
    health = new_health()
    probe = ProbeTarget(
        name="app",
        url=url + "/",
        path="/ping",
        interval=INTERVAL,
        timeout=2.0,
        health=health,
        headers={"Host": "www.example.com", "X-Edge-Secret": "s3"},
    )
    async with HealthProber([probe]):
        await wait_for(lambda: origin.count("/ping") >= 1)
    seen = origin.seen[0]
    assert seen.headers["Host"] == "www.example.com"
    assert seen.headers["X-Edge-Secret"] == "s3"


async def test_probes_each_target_and_close_stops_them(flipping: tuple[Origin, list[int]]) -> None:
    origin, _ = flipping
    unavailable, missing = OriginHealth("unavailable"), OriginHealth("missing")
    prober = HealthProber(
        [target(origin.url + "/app", unavailable), target(origin.url, missing, path="/gone")]
    )
    await prober.start()
    try:
        assert prober.running
        # 503 and 404 are both failures; each target feeds its own OriginHealth.
        await wait_for(lambda: unavailable.state is HealthState.DOWN and missing.state is HealthState.DOWN)
        assert origin.count("/app/healthz") >= 3
        assert origin.count("/gone") >= 3
    finally:
        await prober.close()
    assert not prober.running
    await prober.close()  # idempotent
    with pytest.raises(RuntimeError):
        await prober.start()


async def test_no_targets_starts_nothing() -> None:
    prober = HealthProber([])
    await prober.start()
    assert not prober.running
    await prober.close()
