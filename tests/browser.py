"""Chromium headless for the tests that need a real browser (Debian ``chromium``; ``.ci/run`` installs it).

``chromium()`` finds the binary (a skip without it, a failure when ``CI`` is set), ``FLAGS`` are the flags
that work on a CI machine without a display or sandbox, ``dump_dom`` runs one ``--dump-dom`` load, and
``launch`` starts a browser driven through the DevTools protocol (``DevTools``). Chromium talks only to
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
]


def chromium() -> str:
    """The Chromium binary; skips the test when it is missing (fails it when ``CI`` is set)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(message)
    return found


async def dump_dom(url: str, profile: Path, *extra: str) -> str:
    """Load ``url`` once in a fresh headless Chromium and return the DOM it rendered (``--dump-dom``)."""
    args = [
        chromium(),
        *FLAGS,
        *extra,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
        "--dump-dom",
    ]
    result = await asyncio.to_thread(
        subprocess.run, [*args, url], capture_output=True, text=True, timeout=120
    )
    return result.stdout


class DevTools:
    """A minimal Chrome DevTools protocol client over aiohttp's WebSocket client."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.ws.receive()).data)
            if message.get("id") == call_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result
            self.events.append(message)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll ``expression`` in the page until it is truthy (bounded): the page updates on its own."""
        async with asyncio.timeout(timeout):
            while True:
                value = await self.evaluate(expression)
                if value:
                    return value
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def launch(profile: Path, *extra: str) -> AsyncIterator[DevTools]:
    """A headless Chromium on about:blank with the DevTools protocol connected to its page (``Page`` enabled);
    the browser is stopped on exit."""
    process = await asyncio.create_subprocess_exec(
        chromium(),
        *FLAGS,
        *extra,
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "--window-size=1280,800",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        active = profile / "DevToolsActivePort"
        async with asyncio.timeout(60):
            while not active.exists() or len(active.read_text().splitlines()) < 2:
                assert process.returncode is None, "chromium exited"
                await asyncio.sleep(0.05)
        port = active.read_text().splitlines()[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                pages = [t for t in await response.json() if t["type"] == "page"]
            async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tools = DevTools(ws)
                await tools.call("Page.enable")
                yield tools
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
