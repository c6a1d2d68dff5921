"""The first hour of a new user, through real processes and sockets: ``--version``, ``init``, the demo
edge installed inside the package (a non-editable install into a fresh venv, served from an empty folder),
the port-in-use message, the startup line, SIGHUP in ``--origin`` mode, and the edge's own error pages."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import venv
from pathlib import Path

import aiohttp

from tests.conftest import EdgeFactory, Origin
from tests.integration.test_cli import REPO, _start, _wait_until_serving, run_cli
from tests.server_process import free_port


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "edgeproxy 0.1.0"


def test_init_writes_an_editable_starter_that_checks(tmp_path: Path) -> None:
    target = tmp_path / "my-edge"
    result = run_cli("init", str(target))
    assert result.returncode == 0, result.stderr
    assert (target / "edge.yaml").is_file() and (target / "site" / "index.html").is_file()
    assert "edgeproxy serve --config" in result.stdout
    text = (target / "edge.yaml").read_text()
    assert text.startswith("# A starter edge written by `edgeproxy init`") and "root: ./site" in text
    checked = run_cli("check", "--config", str(target / "edge.yaml"), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    # Nothing is overwritten.
    (target / "edge.yaml").write_text("# mine\n")
    again = run_cli("init", str(target))
    assert again.returncode == 1 and "already exists" in again.stderr
    assert (target / "edge.yaml").read_text() == "# mine\n"


def test_init_into_the_current_folder(tmp_path: Path) -> None:
    result = run_cli("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "edge.yaml").is_file() and (tmp_path / "site" / "assets" / "site.css").is_file()


async def test_packaged_default_serves_from_an_empty_folder(tmp_path: Path) -> None:
    """``pip install <repo>`` (a wheel, not editable) and ``edgeproxy serve`` in a folder with nothing in
    it: the demo config and site come from the installed package."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    installed = await asyncio.to_thread(
        subprocess.run,
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(REPO)],
        capture_output=True,
        text=True,
        timeout=540,
        env=pip_env,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(env_dir / "bin" / "edgeproxy"),
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        cwd=empty,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_until_serving(url, process)
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/") as response:
                body = await response.text()
                assert response.status == 200 and "<html" in body.lower()
            async with session.get(url + "/assets/site.css") as response:
                assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert "site-packages/proxy/demo/edge.yaml" in stderr.decode()
    assert list(empty.iterdir()) == []


def test_port_in_use_names_the_address_and_the_fix(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "edge.yaml"
        config.write_text(
            f"server: {{listen: 127.0.0.1:{port}, access_log: 'off'}}\n"
            "origins: {app: {url: 'http://127.0.0.1:9'}}\n"
            "behaviours: [{path: '*', origin: app}]\n"
        )
        result = run_cli("serve", "--config", str(config))
        admin_taken = tmp_path / "admin.yaml"
        admin_taken.write_text(
            "server: {listen: 127.0.0.1:0, access_log: 'off'}\n"
            f"admin: {{listen: 127.0.0.1:{port}}}\n"
            "origins: {app: {url: 'http://127.0.0.1:9'}}\n"
            "behaviours: [{path: '*', origin: app}]\n"
        )
        admin_result = run_cli("serve", "--config", str(admin_taken))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port} (server.listen): address already in use" in result.stderr
    assert f"change server.listen in {config}" in result.stderr and "--listen HOST:PORT" in result.stderr
    assert admin_result.returncode == 1
    assert f"127.0.0.1:{port} (admin.listen): address already in use" in admin_result.stderr


async def _stderr_line(process: asyncio.subprocess.Process, needle: str) -> str:
    assert process.stderr is not None
    async with asyncio.timeout(20):
        while True:
            line = (await process.stderr.readline()).decode()
            assert line, f"stderr ended before {needle!r}"
            if needle in line:
                return line


async def test_startup_line_names_every_listener(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"server: {{name: edge-s, listen: 127.0.0.1:{port}, access_log: 'off'}}\n"
        f"admin: {{listen: 127.0.0.1:{admin_port}}}\n"
        "origins: {app: {url: 'http://127.0.0.1:9'}}\n"
        "behaviours: [{path: '*', origin: app}]\n"
    )
    process = await _start("serve", "--config", str(config))
    try:
        line = await _stderr_line(process, "serving on")
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 30)
    assert f"edgeproxy edge-s: serving on http://127.0.0.1:{port}" in line
    assert f"admin http://127.0.0.1:{admin_port}" in line
    assert "1 worker" in line and "shared tier none" in line and f"config {config}" in line


async def test_sighup_in_origin_mode_reloads_nothing_and_says_so(origin: Origin) -> None:
    origin.static("/x", "x")
    origin_url = await origin.start()
    port = free_port()
    process = await _start("serve", "--origin", origin_url, "--listen", f"127.0.0.1:{port}")
    try:
        await _stderr_line(process, "serving on")
        process.send_signal(signal.SIGHUP)
        line = await _stderr_line(process, "SIGHUP")
        assert "nothing to reload" in line and "--origin" in line
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/x") as response:
            assert response.status == 200  # still serving
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert "config file" not in stderr.decode().replace("no config file", "")
    assert process.returncode == 0


ERRORS = """
server: {name: edge-err, access_log: "off"}
origins:
  down: {url: "http://127.0.0.1:{dead}"}
  site: {root: "{root}"}
behaviours:
  - path: /down/*
    origin: down
  - path: "*"
    origin: site
"""

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_default_error_pages_html_or_text(make_edge: EdgeFactory, tmp_path: Path) -> None:
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("home")
    edge = await make_edge(ERRORS, root=str(root), dead=str(free_port()))
    page, body = await edge.get("/down/x", headers={"Accept": BROWSER_ACCEPT})
    text = body.decode()
    request_id = page.headers["X-Request-Id"]
    assert page.status == 502 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<style>" in text and "502" in text and "edge-err" in text and request_id in text
    plain, body = await edge.get("/down/x", headers={"Accept": "*/*"})
    assert plain.status == 502 and plain.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body.decode() == (
        "502 Bad Gateway\nThe origin could not be reached\nedge: edge-err\n"
        f"request id: {plain.headers['X-Request-Id']}\n"
    ).replace("The origin", "the origin")
    assert plain.headers["X-Request-Id"] != request_id
    missing, body = await edge.get("/nope", headers={"Accept": BROWSER_ACCEPT})
    assert missing.status == 404 and missing.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"<style>" in body and b"404" in body and b"Not Found" in body
    missing_plain, body = await edge.get("/nope", headers={"Accept": "*/*"})
    assert missing_plain.status == 404 and body.startswith(b"404 Not Found\n")
