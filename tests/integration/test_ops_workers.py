"""With ``server.workers: 2`` and no shared tier, ``/dashboard/data`` and ``/metrics`` sum both workers
(each publishes its counters to the supervisor's stats folder), and a reload shows the next generation."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_cli import REPO
from tests.server_process import free_port

AUTH = {"Authorization": "Bearer workers-token"}
CONFIG = """
server: {{listen: "127.0.0.1:{port}", name: summed, workers: 2, access_log: "off"}}
admin: {{listen: "127.0.0.1:{admin}", token: workers-token}}
origins: {{site: {{root: ./site}}}}
behaviours: [{{path: "*", origin: site, ttl: {{default: 60s}}}}]
"""


async def _data(session: aiohttp.ClientSession, admin: str) -> dict[str, Any]:
    async with session.get(admin + "/dashboard/data", headers=AUTH) as response:
        assert response.status == 200
        data: dict[str, Any] = await response.json()
        return data


async def test_two_workers_are_summed(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("hello")
    port, admin_port = free_port(), free_port()
    config = tmp_path / "edge.yaml"
    config.write_text(CONFIG.format(port=port, admin=admin_port))
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "proxy", "serve", "--config", str(config)),
        cwd=REPO,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    try:
        async with asyncio.timeout(60):
            async with aiohttp.ClientSession() as probe:
                while True:
                    try:
                        async with probe.get(admin + "/readyz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.1)
            # New connections each time, so the kernel spreads them over both workers; each worker has its
            # own memory tier, so each one's first request is a miss: go on until both have answered.
            sent = misses = 0
            while misses < 2 or sent < 40:
                async with aiohttp.ClientSession() as session, session.get(url + "/") as response:
                    assert response.status == 200
                    misses += response.headers["X-Cache"].startswith("Miss")
                    sent += 1
            async with aiohttp.ClientSession() as session:
                while True:  # every worker publishes about once a second
                    data = await _data(session, admin)
                    if data["workers"] == 2 and sum(data["requests"].values()) == sent:
                        break
                    await asyncio.sleep(0.2)
                assert data["requests"]["miss"] == 2 and data["requests"]["hit"] == sent - 2
                assert data["tiers"]["memory"]["entries"] == 2
                async with session.get(admin + "/metrics", headers=AUTH) as response:
                    text = await response.text()
                found = {f.name: f for f in text_string_to_metric_families(text)}
                assert sum(s.value for s in found["edgeproxy_requests"].samples) == sent
                assert found["edgeproxy_workers"].samples[0].value == 2
                assert data["generation"] == 1
                process.send_signal(signal.SIGHUP)
                while (await _data(session, admin))["generation"] != 2:
                    await asyncio.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
    assert process.returncode == 0
