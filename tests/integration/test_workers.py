"""server.workers: several processes on one port, replaced when they die, reloaded by SIGHUP."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

from tests.integration.test_cli import REPO
from tests.server_process import free_port

CONFIG = """
server: {{listen: "127.0.0.1:{port}", name: {name}, workers: 2, access_log: "off"}}
origins: {{site: {{root: ./site}}}}
behaviours: [{{path: "*", origin: site, ttl: {{default: 60s}}}}]
"""


async def _read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> re.Match[str]:
    """Read stderr lines until one matches ``pattern`` (bounded by the caller's timeout)."""
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError("supervisor exited; stderr so far:\n" + "".join(seen))
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found


async def _start_workers(tmp_path: Path) -> tuple[int, Path, asyncio.subprocess.Process]:
    """``edgeproxy serve`` with two workers (generation "gen-one") serving a one-page folder; its stderr
    is piped for ``_read_until``."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("hello")
    port = free_port()
    config = tmp_path / "edge.yaml"
    config.write_text(CONFIG.format(port=port, name="gen-one"))
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "proxy", "serve", "--config", str(config)),
        cwd=REPO,
        stderr=asyncio.subprocess.PIPE,
    )
    return port, config, process


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        await response.read()
        return response.status, response.headers.get("Via", "")


async def test_workers_replace_crashed_and_reload_without_dropping(tmp_path: Path) -> None:
    port, config, process = await _start_workers(tmp_path)
    assert process.stderr is not None
    seen: list[str] = []
    url = f"http://127.0.0.1:{port}/"
    try:
        async with asyncio.timeout(60), aiohttp.ClientSession() as session:
            running = await _read_until(process.stderr, r"2 workers running \(pids (\d+), (\d+)\)", seen)
            pids = [int(running.group(1)), int(running.group(2))]
            assert (await _get(session, url))[0] == 200

            # A worker killed outright is replaced; the port keeps being served.
            os.kill(pids[0], signal.SIGKILL)
            started = await _read_until(process.stderr, r"worker pid (\d+) started", seen)
            assert int(started.group(1)) not in pids
            for _ in range(20):
                assert (await _get(session, url))[0] == 200

            # SIGHUP with a changed config: new workers take over while requests keep flowing.
            config.write_text(CONFIG.format(port=port, name="gen-two"))
            failures: list[object] = []
            statuses: list[int] = []
            reloaded = asyncio.Event()

            async def load() -> None:
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
                    while not reloaded.is_set() or len(statuses) < 50:
                        try:
                            status, via = await _get(fresh, url)
                            statuses.append(status)
                            if "gen-two" in via:
                                reloaded.set()
                        except aiohttp.ClientError as exc:
                            failures.append(exc)

            loader = asyncio.ensure_future(load())
            process.send_signal(signal.SIGHUP)
            await _read_until(process.stderr, r"reloaded: generation 2", seen)
            await loader
            assert failures == []
            assert set(statuses) == {200}
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
    assert process.returncode == 0


async def _keep_alive_client(port: int, stop: asyncio.Event, answered: list[int], lost: list[str]) -> None:
    """One viewer on keep-alive connections, like wrk: requests back to back, a new connection only when
    the edge said ``Connection: close`` (or closed after a complete answer). A request whose connection
    ends before its complete answer is lost."""
    request = b"GET / HTTP/1.1\r\nHost: edge\r\n\r\n"
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not stop.is_set():
                writer.write(request)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    fields = dict(
                        line.split(": ", 1)
                        for line in head.decode("latin-1").split("\r\n")[1:]
                        if ": " in line
                    )
                    await reader.readexactly(int(fields.get("Content-Length", "0")))
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    lost.append(repr(exc))
                    break
                answered.append(int(head[9:12]))
                if fields.get("Connection", "").lower() == "close":
                    break
        finally:
            writer.close()


async def test_three_reloads_under_keep_alive_load_lose_no_request(tmp_path: Path) -> None:
    """Issue #12: SIGHUP closes idle keep-alive connections between requests and says Connection: close
    on busy ones; a request already sent is always answered, so viewers that keep their connections
    open lose nothing across three reloads in a row."""
    port, _, process = await _start_workers(tmp_path)
    assert process.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(120):
            await _read_until(process.stderr, r"2 workers running", seen)
            stop = asyncio.Event()
            answered: list[int] = []
            lost: list[str] = []
            clients = [
                asyncio.ensure_future(_keep_alive_client(port, stop, answered, lost)) for _ in range(8)
            ]
            for generation in (2, 3, 4):
                before = len(answered)
                await _wait_for_count(answered, before + 200)
                process.send_signal(signal.SIGHUP)
                await _read_until(process.stderr, rf"reloaded: generation {generation}", seen)
            await _wait_for_count(answered, len(answered) + 200)
            stop.set()
            await asyncio.gather(*clients)
            assert lost == []
            assert set(answered) == {200}
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
    assert process.returncode == 0


async def _wait_for_count(answered: list[int], count: int) -> None:
    while len(answered) < count:
        await asyncio.sleep(0.01)
