"""config/no-backend.yaml: static files, an edge-function API and redirects, with no origin server."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiohttp

from tests.integration.test_cli import REPO
from tests.server_process import free_port


async def test_no_backend_example_site() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "serve",
        "--config",
        "config/no-backend.yaml",
        "--listen",
        f"127.0.0.1:{port}",
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(30), aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(url + "/") as response:
                        page = await response.text()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            assert "Served by edgeproxy" in page
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            async with session.get(url + "/api/time") as response:
                data = json.loads(await response.text())
                assert response.status == 200 and set(data) == {"epoch", "iso"}
            async with session.get(url + "/home", allow_redirects=False) as response:
                assert response.status == 301 and response.headers["Location"] == "/"
            async with session.get(url + "/docs/intro", allow_redirects=False) as response:
                assert response.status == 302
                assert response.headers["Location"] == "https://docs.example.com/docs/intro"
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
