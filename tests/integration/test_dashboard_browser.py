"""The dashboard in a real browser: Chromium headless (Debian ``chromium``; ``.ci/run`` installs it).

Without the token the page is the login form (``--dump-dom``). Through the DevTools protocol the test then
signs in with the form (the HttpOnly cookie), waits until the live numbers of known traffic are rendered,
checks that nothing overflows at 1280x800 and at a phone's width, and saves screenshots to ``artifacts/``
(git-ignored; CI keeps them). Chromium talks only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
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

from proxy.app import Edge
from tests.conftest import EdgeFactory, Origin
from tests.server_process import free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
TOKEN = "browser-token"
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
CONFIG = """
server: {name: edge-browser, access_log: "off"}
admin: {listen: "127.0.0.1:ADMINPORT", token: browser-token}
origins: {app: {url: "{origin}"}}
behaviours: [{path: "*", origin: app}]
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(message)
    return found


async def start_edge(make_edge: EdgeFactory, origin: Origin) -> tuple[Edge, str]:
    origin.static("/{name}", "z" * 2048, Cache_Control="max-age=300")
    running = await make_edge(CONFIG.replace("ADMINPORT", str(free_port())), origin)
    for path in ("/index.html", "/app.css", "/logo.svg"):
        for _ in range(3):
            response, _ = await running.get(path)
            assert response.status == 200
    host, port = running.edge.admin_addresses[0]
    return running.edge, f"http://{host}:{port}"


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


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    binary = chromium()
    profile = tmp_path / "profile"
    process = await asyncio.create_subprocess_exec(
        binary,
        *FLAGS,
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


async def screenshot(tools: DevTools, name: str) -> None:
    shot = await tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(base64.b64decode(shot["data"]))


async def test_without_the_token_the_page_is_the_login_form(
    make_edge: EdgeFactory, origin: Origin, tmp_path: Path
) -> None:
    binary = chromium()
    _, admin = await start_edge(make_edge, origin)
    args = [binary, *FLAGS, f"--user-data-dir={tmp_path / 'p'}", "--virtual-time-budget=3000", "--dump-dom"]
    result = await asyncio.to_thread(
        subprocess.run, [*args, admin + "/dashboard"], capture_output=True, text=True, timeout=120
    )
    dom = result.stdout
    assert '<form id="login" method="post" action="/dashboard/login">' in dom
    assert 'name="token"' in dom and "req-hit" not in dom
    async with aiohttp.ClientSession() as session, session.get(admin + "/dashboard/data") as response:
        assert response.status == 401


async def test_dashboard_shows_live_numbers_after_signing_in(
    make_edge: EdgeFactory, origin: Origin, browser: DevTools
) -> None:
    edge, admin = await start_edge(make_edge, origin)
    await browser.call("Page.navigate", url=admin + "/dashboard")
    await browser.until("document.getElementById('login') !== null")
    await browser.evaluate(
        f"document.getElementById('token').value = {json.dumps(TOKEN)};"
        "document.getElementById('login').submit(); true"
    )
    # Signed in (the cookie is HttpOnly: the page's script cannot read it), the numbers arrive by polling.
    assert await browser.until("document.getElementById('req-hit')?.textContent === '6'")
    assert await browser.evaluate("document.cookie") == ""
    assert await browser.evaluate("document.getElementById('req-miss').textContent") == "3"
    assert await browser.evaluate("document.getElementById('hit-ratio').textContent") == "66.7%"
    assert await browser.evaluate("document.getElementById('node').textContent") == "edge-browser"
    paths = await browser.evaluate(
        "[...document.querySelectorAll('#top-urls tr td:first-child')].map(td => td.textContent)"
    )
    assert sorted(paths) == ["/app.css", "/index.html", "/logo.svg"]
    # Live: more traffic shows up without reloading the page.
    async with aiohttp.ClientSession() as session:
        host, port = edge.addresses[0]
        for _ in range(4):
            async with session.get(f"http://{host}:{port}/index.html") as response:
                await response.read()
    assert await browser.until("document.getElementById('req-hit').textContent === '10'")
    assert await browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await screenshot(browser, "dashboard.png")
    await browser.call(
        "Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True
    )
    await browser.until("document.documentElement.clientWidth === 390")
    assert await browser.evaluate("document.documentElement.scrollWidth <= 390")
    await screenshot(browser, "dashboard-phone.png")
