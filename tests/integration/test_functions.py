"""Edge functions through the real pipeline: each event, what is stored and what is per viewer,
short-circuits, failing and slow functions, device variants."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from aiohttp import web

from proxy.observability.access_log import log_record
from tests.conftest import EdgeFactory, Origin, wait_for

HOOKS = """
import asyncio
from proxy.functions import respond

calls = {"viewer_request": 0, "origin_request": 0, "origin_response": 0, "viewer_response": 0}

async def viewer_request(request):
    calls["viewer_request"] += 1
    if request.path == "/generated":
        return respond(200, "made at the edge", content_type="text/plain")
    if request.path.startswith("/alias/"):
        request.path = "/real/" + request.path[len("/alias/"):]
    return None

def origin_request(request):
    calls["origin_request"] += 1
    request.headers["X-Signed"] = "yes"

async def origin_response(request, response):
    calls["origin_response"] += 1
    response.headers["X-Stored-Change"] = "1"
    if response.body is not None:
        response.body = response.body.upper()

async def viewer_response(request, response):
    calls["viewer_response"] += 1
    response.headers["X-Per-Viewer"] = request.headers.get("X-Viewer", "none")

async def broken(request):
    raise KeyError("boom")

async def slow(request):
    await asyncio.sleep(30)
"""

CONFIG = """
server: {name: edge-f, access_log: "off"}
origins: {app: {url: "{origin}"}}
behaviours:
  - path: /broken/*
    origin: app
    functions: {viewer_request: MODULE:broken}
  - path: /slow/*
    origin: app
    functions: {viewer_request: MODULE:slow}
  - path: /pretty/*
    origin: app
    error_pages: {502: /errors/502.html}
    functions: {viewer_request: MODULE:broken}
  - path: /device/*
    origin: app
    ttl: {default: 60s}
    cache_key: {headers: [Edge-Viewer-Device]}
  - path: "*"
    origin: app
    ttl: {default: 60s}
    functions:
      viewer_request: MODULE:viewer_request
      origin_request: MODULE:origin_request
      origin_response: MODULE:origin_response
      viewer_response: MODULE:viewer_response
"""


@pytest.fixture
def module(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    name = "hooks_" + re.sub(r"\W", "_", request.node.name)
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(HOOKS))
    return name


async def test_events_stored_and_per_viewer_changes(
    make_edge: EdgeFactory, origin: Origin, module: str
) -> None:
    origin.static("/real/page", "hello")
    edge = await make_edge(CONFIG.replace("MODULE", module), origin)
    first, body = await edge.get("/alias/page", headers={"X-Viewer": "alice"})
    assert body == b"HELLO"  # origin_response changed the body before it was stored
    assert origin.seen[-1].path_qs == "/real/page"  # viewer_request rewrote the path
    assert origin.seen[-1].headers["X-Signed"] == "yes"  # origin_request changed the origin request
    assert first.headers["X-Stored-Change"] == "1" and first.headers["X-Per-Viewer"] == "alice"
    second, body = await edge.get("/alias/page", headers={"X-Viewer": "bob"})
    assert second.headers["X-Cache"] == "Hit from edgeproxy" and body == b"HELLO"
    assert second.headers["X-Stored-Change"] == "1"  # stored with the entry
    assert second.headers["X-Per-Viewer"] == "bob"  # viewer_response is per viewer, never stored
    assert origin.count("/real/page") == 1


async def test_viewer_request_short_circuit(make_edge: EdgeFactory, origin: Origin, module: str) -> None:
    edge = await make_edge(CONFIG.replace("MODULE", module), origin)
    response, body = await edge.get("/generated")
    assert response.status == 200 and body == b"made at the edge"
    assert "detail=edge-function" in response.headers["Cache-Status"]
    assert response.headers["X-Per-Viewer"] == "none"  # viewer_response also sees generated answers
    assert origin.count() == 0


async def test_generated_answer_is_labelled_generated_not_error(
    make_edge: EdgeFactory, origin: Origin, module: str
) -> None:
    """A 200 made by a viewer_request function is neither a hit nor an error: X-Cache says so (as
    CloudFront's FunctionGeneratedResponse), and so do the access log and the stats; a failing function
    is still an Error."""
    origin.static("/{tail:.*}", "never")
    edge = await make_edge(CONFIG.replace("MODULE", module), origin)
    records: list[dict[str, object]] = []
    edge.edge.access_log.write = lambda ctx: records.append(log_record(ctx))  # type: ignore[method-assign]
    response, _ = await edge.get("/generated")
    assert response.status == 200
    assert response.headers["X-Cache"] == "FunctionGeneratedResponse from edgeproxy"
    assert response.headers["Cache-Status"] == "edge-f; detail=edge-function"
    await wait_for(lambda: len(records) == 1)
    assert records[0]["cache"] == "generated" and records[0]["reason"] == "edge-function"
    assert edge.edge.pipeline.stats.requests["generated"] == 1
    broken, _ = await edge.get("/broken/x")
    assert broken.status == 502 and broken.headers["X-Cache"] == "Error from edgeproxy"


@pytest.mark.parametrize("path", ["/broken/x", "/slow/x"])
async def test_failing_or_slow_function_is_502(
    make_edge: EdgeFactory, origin: Origin, module: str, path: str
) -> None:
    origin.static("/{tail:.*}", "never")
    edge = await make_edge(CONFIG.replace("MODULE", module), origin)
    response, body = await edge.get(path)
    assert response.status == 502
    assert "detail=function-error" in response.headers["Cache-Status"]
    assert b"Traceback" not in body
    assert origin.count() == 0
    again, _ = await edge.get("/generated")  # the worker is fine
    assert again.status == 200


async def test_missing_function_module_is_a_config_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.integration.test_cli import REPO

    config = tmp_path / "edge.yaml"
    config.write_text(
        'origins: {app: {url: "http://127.0.0.1:9"}}\n'
        'behaviours: [{path: "*", origin: app, functions: {viewer_request: "nope.mod:fn"}}]\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "behaviours[0].functions.viewer_request" in result.stderr and "nope.mod" in result.stderr
    assert "Traceback" not in result.stderr


async def test_device_variants_one_origin_fetch_per_class(
    make_edge: EdgeFactory, origin: Origin, module: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("Edge-Viewer-Device", "?"))

    origin.route("/device/page", handler)
    edge = await make_edge(CONFIG.replace("MODULE", module), origin)
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
    pixel = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36"
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
    bodies = []
    for agent in (iphone, pixel, firefox, iphone, firefox):
        _, body = await edge.get(
            "/device/page", headers={"User-Agent": agent, "Edge-Viewer-Device": "smarttv"}
        )
        bodies.append(body)
    assert bodies == [b"mobile", b"mobile", b"desktop", b"mobile", b"desktop"]
    assert origin.count("/device/page") == 2  # one fetch per device class, not per User-Agent


async def test_failing_function_serves_the_configured_error_page(
    make_edge: EdgeFactory, origin: Origin, module: str
) -> None:
    origin.static("/errors/502.html", "<h1>we are fixing it</h1>", Content_Type="text/html")
    edge = await make_edge(CONFIG.replace("MODULE", module), origin)
    response, body = await edge.get("/pretty/x")
    assert response.status == 502 and body == b"<h1>we are fixing it</h1>"
    assert response.headers["Content-Type"].startswith("text/html")
