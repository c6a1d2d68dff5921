"""The dashboard in a real browser: Chromium headless (tests/browser.py).

Without the token the page is the login form (``--dump-dom``). Through the DevTools protocol the test then
signs in with the form (the HttpOnly cookie), waits until the live numbers of known traffic are rendered,
checks that nothing overflows at 1280x800 and at a phone's width, and saves screenshots to ``artifacts/``
(git-ignored; CI keeps them). Chromium talks only to 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from proxy.app import Edge
from tests.browser import DevTools, chromium, dump_dom, launch
from tests.conftest import EdgeFactory, Origin
from tests.server_process import free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
TOKEN = "browser-token"
CONFIG = """
server: {name: edge-browser, access_log: "off"}
admin: {listen: "127.0.0.1:ADMINPORT", token: browser-token}
origins: {app: {url: "{origin}"}}
behaviours: [{path: "*", origin: app}]
"""


async def start_edge(make_edge: EdgeFactory, origin: Origin) -> tuple[Edge, str]:
    origin.static("/{name}", "z" * 2048, Cache_Control="max-age=300")
    running = await make_edge(CONFIG.replace("ADMINPORT", str(free_port())), origin)
    for path in ("/index.html", "/app.css", "/logo.svg"):
        for _ in range(3):
            response, _ = await running.get(path)
            assert response.status == 200
    host, port = running.edge.admin_addresses[0]
    return running.edge, f"http://{host}:{port}"


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    async with launch(tmp_path / "profile") as tools:
        yield tools


async def screenshot(tools: DevTools, name: str) -> None:
    shot = await tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(base64.b64decode(shot["data"]))


async def test_without_the_token_the_page_is_the_login_form(
    make_edge: EdgeFactory, origin: Origin, tmp_path: Path
) -> None:
    chromium()
    _, admin = await start_edge(make_edge, origin)
    dom = await dump_dom(admin + "/dashboard", tmp_path / "p")
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
