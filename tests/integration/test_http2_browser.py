"""Issue 13 item 6: Chromium headless loads the demo site over HTTP/2 (ALPN ``h2``) from the edge's TLS
listener (a self-signed certificate, ``--ignore-certificate-errors``), and the access log says ``HTTP/2`` for
the page and each of its subresources. Through the DevTools protocol a second test sees the page and its
subresources arrive as ``h2`` over one connection. Chromium talks only to 127.0.0.1 (tests/browser.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.app import Edge
from proxy.settings import ListenAddress, parse_config
from proxy.starter import DEMO_DIR
from tests.browser import DevTools, chromium, dump_dom, launch
from tests.integration.test_tls import make_cert
from tests.server_process import free_port

EDGE_YAML = """
server:
  name: edge-h2-browser
  access_log: {log}
  tls: {{listen: "127.0.0.1:{tls_port}", cert: {cert}, key: {key}}}
origins:
  site: {{root: {site}, index: index.html}}
behaviours:
  - path: "*"
    origin: site
"""
PAGES = {"/", "/assets/site.css", "/assets/app.js"}


class DemoEdge:
    """The demo site behind an edge with a TLS listener; ``url`` is its ``https://127.0.0.1:PORT/``."""

    def __init__(self, edge: Edge, log_path: Path) -> None:
        self.edge = edge
        self.log_path = log_path
        self.url = f"https://127.0.0.1:{edge.tls_addresses[0][1]}/"

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoEdge]:
    chromium()
    cert, key = make_cert(tmp_path, "edge")
    log_path = tmp_path / "access.log"
    text = EDGE_YAML.format(log=log_path, tls_port=free_port(), cert=cert, key=key, site=DEMO_DIR / "site")
    edge = Edge(
        parse_config(text, str(tmp_path / "edge.yaml"), env={}, base_dir=tmp_path), shutdown_grace=2.0
    )
    await edge.start((ListenAddress(host="127.0.0.1", port=0),))
    try:
        yield DemoEdge(edge, log_path)
    finally:
        await edge.stop()


async def assert_logged_over_h2(demo: DemoEdge) -> None:
    """Every access-log line (the page, its subresources, the browser's favicon probe) says ``HTTP/2``."""
    await demo.edge.stop()  # flushes the access log
    lines = demo.log_lines()
    assert {line["path"] for line in lines if line["status"] == 200} >= PAGES, lines
    assert {line["protocol"] for line in lines} == {"HTTP/2"}, lines


async def test_chromium_renders_the_demo_site_over_http2(demo: DemoEdge, tmp_path: Path) -> None:
    dom = await dump_dom(demo.url, tmp_path / "profile", "--ignore-certificate-errors")
    assert "<title>edgeproxy demo site</title>" in dom
    assert "Served by edgeproxy" in dom
    assert 'data-served-by="edgeproxy"' in dom  # app.js ran: the script came over the same protocol
    await assert_logged_over_h2(demo)


async def test_chromium_loads_page_and_subresources_on_one_h2_connection(
    demo: DemoEdge, tmp_path: Path
) -> None:
    tools: DevTools
    async with launch(tmp_path / "profile", "--ignore-certificate-errors") as tools:
        await tools.call("Network.enable")
        await tools.call("Network.setCacheDisabled", cacheDisabled=True)
        await tools.call("Page.navigate", url=demo.url)
        await tools.until("document.documentElement.dataset.servedBy === 'edgeproxy'")
        await tools.until("getComputedStyle(document.body).fontFamily !== ''")
        await tools.until("document.readyState === 'complete'")
        responses = [
            event["params"]["response"]
            for event in tools.events
            if event.get("method") == "Network.responseReceived"
        ]
    by_url = {response["url"].removeprefix(demo.url[:-1]): response for response in responses}
    assert set(by_url) >= PAGES, sorted(by_url)
    assert {by_url[path]["protocol"] for path in PAGES} == {"h2"}
    assert len({by_url[path]["connectionId"] for path in PAGES}) == 1
    await assert_logged_over_h2(demo)
