"""Diagnostics on stderr: ISO time, level and worker on every line, as text or JSON (``--log-format``,
``--log-level``), from a real ``edgeproxy serve`` process; and the formatters themselves."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from proxy.observability.logs import configure
from tests.conftest import Origin
from tests.server_process import free_port

REPO = Path(__file__).resolve().parents[2]
ISO = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_text_and_json_lines(restore_logging: object) -> None:
    out = io.StringIO()
    configure("text", "info", worker="worker 42", stream=out)
    logging.getLogger("edgeproxy").info("origin %s is UP again", "app")
    logging.getLogger("edgeproxy").debug("not shown at info")
    assert re.fullmatch(rf"{ISO} INFO worker 42: origin app is UP again\n", out.getvalue())
    out = io.StringIO()
    configure("json", "warning", worker="supervisor", stream=out)
    logging.getLogger("edgeproxy").info("not shown at warning")
    try:
        raise OSError("boom")
    except OSError:
        logging.getLogger("edgeproxy.admin").exception("failed: %s", "x")
    record = json.loads(out.getvalue())
    assert re.fullmatch(ISO, record.pop("time"))
    assert "OSError: boom" in record.pop("error")
    assert record == {
        "level": "error",
        "worker": "supervisor",
        "logger": "edgeproxy.admin",
        "message": "failed: x",
    }


async def _serve(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "serve",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _wait(url: str) -> None:
    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    await response.read()
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_serve_writes_timed_levelled_lines(origin: Origin, fmt: str) -> None:
    origin_url = await origin.start()
    port = free_port()
    process = await _serve("--origin", origin_url, "--listen", f"127.0.0.1:{port}", "--log-format", fmt)
    try:
        await _wait(f"http://127.0.0.1:{port}/")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    lines = stderr.decode().splitlines()
    assert lines, "nothing on stderr"
    pid = process.pid
    if fmt == "text":
        assert all(re.match(rf"{ISO} (INFO|WARNING|ERROR) edge {pid}: ", line) for line in lines), lines
        assert any("serving on http://127.0.0.1:" in line for line in lines)
    else:
        records = [json.loads(line) for line in lines]
        assert all(r["worker"] == f"edge {pid}" and re.fullmatch(ISO, r["time"]) for r in records)
        assert any(r["level"] == "info" and "serving on" in r["message"] for r in records)
        assert any(r["message"] == "edgeproxy: shutting down" for r in records)


async def test_log_level_warning_hides_the_start_line(origin: Origin) -> None:
    origin_url = await origin.start()
    port = free_port()
    process = await _serve("--origin", origin_url, "--listen", f"127.0.0.1:{port}", "--log-level", "warning")
    try:
        await _wait(f"http://127.0.0.1:{port}/")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert "serving on" not in stderr.decode()
    assert process.returncode == 0
