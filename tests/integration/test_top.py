"""``edgeproxy top`` against a real edge's admin API: ``--once`` snapshots, and the live view under tmux."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from proxy.app import Edge
from proxy.settings import ListenAddress, parse_config
from tests.conftest import Origin
from tests.integration.test_cli import REPO

TOKEN = "top-secret-token"


async def _edge(tmp_path: Path, origin: Origin) -> tuple[Edge, str, str]:
    origin.static("/x", "x" * 100, Cache_Control="max-age=60")
    url = await origin.start()
    text = (
        "server: {name: edge-top, access_log: 'off'}\n"
        f"admin: {{listen: '127.0.0.1:0', token: {TOKEN}}}\n"
        f"origins: {{app: {{url: '{url}'}}}}\n"
        "behaviours: [{path: '*', origin: app}]\n"
    )
    edge = Edge(
        parse_config(text, str(tmp_path / "edge.yaml"), env={}, base_dir=tmp_path), shutdown_grace=1.0
    )
    await edge.start((ListenAddress(host="127.0.0.1", port=0),))
    host, port = edge.addresses[0]
    admin_host, admin_port = edge.admin_addresses[0]
    return edge, f"http://{host}:{port}", f"http://{admin_host}:{admin_port}"


async def _top(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "proxy", "top", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "TERM": "dumb"},
    )


async def test_top_once_shows_the_edges_numbers(tmp_path: Path, origin: Origin) -> None:
    edge, url, admin = await _edge(tmp_path, origin)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(url + "/x") as response:
                    await response.read()
        result = await _top("--admin", admin, "--token", TOKEN, "--once")
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "edge-top" in out and "3 requests" in out and "hit ratio 66.7%" in out
        rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 3}
        assert "2" in rows["hit"].split("│")[2] and "1" in rows["miss"].split("│")[2]
        assert "app" in out
        refused = await _top("--admin", admin, "--token", "wrong", "--once")
        assert refused.returncode == 1 and "401" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        await edge.stop()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
async def test_top_live_under_tmux(tmp_path: Path, origin: Origin) -> None:
    edge, url, admin = await _edge(tmp_path, origin)
    session_name = f"edgeproxy-top-{tmp_path.name}"
    socket_path = str(tmp_path / "tmux.sock")
    tmux = ["tmux", "-S", socket_path]
    command = f"{sys.executable} -m proxy top --admin {admin} --token {TOKEN} --interval 0.3"
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", session_name, "-x", "150", "-y", "40", "-c", str(REPO), command],
        check=True,
    )

    async def screen_with(needle: str) -> str:
        async with asyncio.timeout(20):
            while True:
                shown = subprocess.run(
                    [*tmux, "capture-pane", "-p", "-t", session_name], capture_output=True, text=True
                ).stdout
                if needle in shown:
                    return shown
                await asyncio.sleep(0.1)

    try:
        await screen_with("edge-top")
        async with aiohttp.ClientSession() as session:
            for _ in range(4):
                async with session.get(url + "/x") as response:
                    await response.read()
        shown = await screen_with("4 requests")  # the live view picked up the new traffic
        assert "hit ratio 75.0%" in shown
        subprocess.run([*tmux, "send-keys", "-t", session_name, "C-c"], check=True)
        async with asyncio.timeout(20):
            while (
                subprocess.run([*tmux, "has-session", "-t", session_name], capture_output=True).returncode
                == 0
            ):
                await asyncio.sleep(0.1)  # Ctrl-C ends top, and with it the tmux session
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        await edge.stop()
