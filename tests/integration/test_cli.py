"""The command line as a user runs it: real processes, real signals, real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.conftest import Origin
from tests.server_process import free_port

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_check_default_config() -> None:
    result = run_cli("check")  # the demo edge installed with the package
    assert result.returncode == 0, result.stderr
    assert "/assets/*" in result.stdout and "site" in result.stdout


def test_check_reference_config_has_no_inactive_keys() -> None:
    result = run_cli("check", "--config", "config/reference.yaml")
    assert result.returncode == 0, result.stderr
    assert "not active yet" not in result.stdout  # forward, the last one, is active


def test_check_shows_the_origin_request_policy_per_behaviour(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "origins: {app: {url: 'http://127.0.0.1:9'}}\n"
        "behaviours:\n"
        "  - path: /api/*\n"
        "    origin: app\n"
        "    ttl: {default: 1m}\n"
        "    cache_key: {headers: [Accept-Language], cookies: [session], query: [q]}\n"
        "    forward: {headers: none, query: none}\n"
        "  - path: /cdn/*\n"
        "    origin: app\n"
        "    ttl: {default: 1h}\n"
        "  - path: /go\n"
        "    redirect: {to: /}\n"
        "  - path: '*'\n"
        "    origin: app\n"
    )
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("What reaches the origin (forward, with its defaults and the cache key):")
    assert lines[start + 1 : start + 4] == [
        "  0  /api/*  headers [accept-language], cookies [session], query [q]",
        "  1  /cdn/*  headers all, cookies none, query all",
        "  3  *       headers all, cookies all, query all",
    ]


def test_check_reports_every_error_with_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "server:\n"
        "  listne: 127.0.0.1:8080\n"
        "origins:\n"
        "  app: {url: 'http://127.0.0.1:9'}\n"
        "behaviours:\n"
        "  - path: /a/*\n"
        "    origin: ap\n"
        "    ttl: {default: 5 minutes}\n"
    )
    result = run_cli("check", "--config", str(bad))
    assert result.returncode == 2
    err = result.stderr
    assert "Traceback" not in err
    assert f"{bad}:2:3: server.listne: unknown key; did you mean 'listen'?" in err
    assert "behaviours[0].origin" in err and "did you mean 'app'" in err and f"{bad}:7:" in err
    assert "behaviours[0].ttl.default" in err and "5 minutes" in err
    assert 'the last behaviour must have path "*"' in err


def test_check_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    missing = run_cli("check", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: [unclosed\n")
    result = run_cli("check", "--config", str(broken))
    assert result.returncode == 2 and "Traceback" not in result.stderr and str(broken) in result.stderr


def _alias_bomb() -> str:
    """The "billion laughs": nine levels of ten aliases each, 10^9 strings once expanded."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def test_check_refuses_an_alias_bomb(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb())
    result = run_cli("check", "--config", str(bomb))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{bomb}:5:" in result.stderr  # the first alias past the limit, on the line of a4
    assert "aliases expand the document by more than 100,000 nodes" in result.stderr


def test_check_refuses_a_50_mb_file_unread(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("w") as file:
        file.write("origins:\n  app: {url: 'http://127.0.0.1:9'}\nbehaviours:\n")
        chunk = "".join(f"  - {{path: /p{i}/*, origin: app}}\n" for i in range(1000))
        while file.tell() < 50 * 1024 * 1024:
            file.write(chunk)
    result = run_cli("check", "--config", str(huge))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{huge}: the file is larger than 1MiB, the most a config may be" in result.stderr


def test_check_refuses_an_absurd_header_limit_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "origins:\n"
        "  app: {url: 'http://127.0.0.1:9'}\n"
        "server:\n"
        "  limits:\n"
        "    max_header_bytes: 100000000000000000000TiB\n"
        "behaviours:\n"
        "  - {path: '*', origin: app}\n"
    )
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "OverflowError" not in result.stderr
    assert (
        f"{config}:5:23: server.limits.max_header_bytes: must be at most 1MiB, got 100000000000000000000TiB"
        in result.stderr
    )


def test_check_every_bundled_config() -> None:
    configs = sorted((REPO / "config").glob("*.yaml")) + sorted((REPO / "examples").rglob("*.yaml"))
    configs += sorted((REPO / "proxy" / "demo").glob("*.yaml"))
    assert len(configs) >= 5
    env = {**os.environ, "EDGEPROXY_ADMIN_TOKEN": "test-token"}  # what docker-compose.yml passes
    for config in configs:
        result = subprocess.run(
            [sys.executable, "-m", "proxy", "check", "--config", str(config)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode == 0, f"{config}: {result.stderr}"


def test_serve_with_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("behaviours: []\n")
    result = run_cli("serve", "--config", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr


async def _wait_until_serving(url: str, process: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        while True:
            assert process.returncode is None, "edge exited early"
            try:
                async with session.get(url + "/__ready__") as response:
                    await response.read()
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)


async def _start(*args: str, cwd: Path = REPO) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_serve_origin_mode_and_access_log(origin: Origin) -> None:
    origin.static("/x", "fronted", Cache_Control="max-age=60")
    origin_url = await origin.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await _start("serve", "--origin", origin_url, "--listen", f"127.0.0.1:{port}")
    try:
        await _wait_until_serving(url, process)
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.get(url + "/x") as response:
                    assert await response.read() == b"fronted"
            assert response.headers["X-Cache"] == "Hit from edgeproxy"
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    lines = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    hits = [line for line in lines if line["path"] == "/x"]
    assert [h["cache"] for h in hits] == ["miss", "hit"]
    first = hits[0]
    for field in ("time", "client", "method", "host", "path", "status", "bytes", "duration_ms", "cache"):
        assert field in first
    assert first["reason"] == "uri-miss" and first["behaviour"] == "*" and first["origin"] == "origin"
    assert first["status"] == 200 and first["bytes"] == len(b"fronted")


async def test_sigterm_finishes_in_flight_requests(origin: Origin, tmp_path: Path) -> None:
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="finished")

    origin.route("/slow", slow)
    origin_url = await origin.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await _start("serve", "--origin", origin_url, "--listen", f"127.0.0.1:{port}")
    terminated = False
    try:
        await _wait_until_serving(url, process)
        async with aiohttp.ClientSession() as session:
            in_flight = asyncio.ensure_future(session.get(url + "/slow"))
            await asyncio.wait_for(arrived.wait(), 10)
            process.send_signal(signal.SIGTERM)
            terminated = True
            # The edge stops accepting new connections while the in-flight request is still running.
            async with asyncio.timeout(10):
                while True:
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=1):
                            pass
                        await asyncio.sleep(0.02)
                    except OSError:
                        break
            release.set()
            response = await asyncio.wait_for(in_flight, 10)
            assert response.status == 200 and await response.text() == "finished"
    finally:
        if not terminated:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0


def test_serve_port_in_use_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--origin", "http://127.0.0.1:9", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1 and "cannot listen" in result.stderr and "Traceback" not in result.stderr
