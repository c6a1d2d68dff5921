"""Edge functions over real sockets, before the pipeline calls them: a small edge on 127.0.0.1 that runs the
four events through ``proxy.functions.bridge`` exactly where the pipeline will (no cache), in front of a
real aiohttp origin. Covers each event end to end, short-circuits, the examples loaded by spec, failing and
slow functions (502, the server keeps serving), and a blocked sync function not blocking the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDict

from proxy.functions import (
    DEVICE_HEADER,
    Event,
    FunctionError,
    FunctionSet,
    RequestInfo,
    Response,
    ViewerRequest,
    classify_device,
    respond,
)
from proxy.functions.bridge import (
    as_origin_response,
    edge_response,
    run_origin_request,
    run_origin_response,
    run_viewer_request,
    run_viewer_response,
)
from proxy.http.headers import HOP_BY_HOP
from proxy.messages import EdgeRequest, EdgeResponse
from proxy.origin.base import OriginRequest
from proxy.origin.http import HttpOrigin
from proxy.settings.model import FunctionsConfig
from tests.conftest import Origin

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
_DROPPED = HOP_BY_HOP | {"host", "content-length"}


def to_edge_request(raw: BaseRequest) -> EdgeRequest:
    """The pipeline's view of the mini edge's aiohttp request, as the viewer front builds it from the wire
    (raw path and query, headers as received)."""
    path, _, query = raw.raw_path.partition("?")
    return EdgeRequest(
        method=raw.method,
        path=path,
        query=query,
        headers=raw.headers,
        client_ip=raw.remote or "",
        host=raw.headers.get("Host", ""),
        version=(raw.version.major, raw.version.minor),
        body=raw.content.iter_any() if raw.body_exists else None,
        content_length=raw.content_length,
    )


class MiniEdge:
    """RECV → FETCH → STORE → DELIVER without a cache, calling the functions as the pipeline will."""

    def __init__(self, upstream: HttpOrigin, behaviours: Mapping[str, FunctionSet | None]) -> None:
        self.upstream = upstream
        self.behaviours = behaviours  # path prefix → functions; the longest matching prefix wins

    def functions_for(self, path: str) -> FunctionSet | None:
        prefix = max((p for p in self.behaviours if path.startswith(p)), key=len, default=None)
        return self.behaviours[prefix] if prefix is not None else None

    async def handle(self, raw: BaseRequest) -> web.StreamResponse:
        request = to_edge_request(raw)
        # RECV sets Edge-Viewer-Device once per request, replacing what the viewer sent.
        headers = CIMultiDict(request.headers)
        headers[DEVICE_HEADER] = classify_device(headers.get("User-Agent"))
        request = dataclasses.replace(request, headers=headers)
        functions = self.functions_for(request.path)
        try:
            answer = await self.respond(functions, request)
        except FunctionError:
            return web.Response(status=502, text="Bad Gateway: edge function failed\n")
        body = b"" if answer.no_body else bytes(answer.body)  # type: ignore[arg-type]
        return web.Response(status=answer.status, headers=answer.headers, body=body)

    async def respond(self, functions: FunctionSet | None, request: EdgeRequest) -> EdgeResponse:
        answer: EdgeResponse
        if functions is not None and functions.has(Event.VIEWER_REQUEST):
            step = await run_viewer_request(functions, request)
            if isinstance(step, Response):
                answer = edge_response(step, method=request.method)
                return await self.deliver(functions, request, answer)
            request = step
        outgoing = OriginRequest(
            method=request.method,
            target=request.target,
            headers=CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _DROPPED),
            viewer_host=request.host,
        )
        generated = False
        if functions is not None and functions.has(Event.ORIGIN_REQUEST):
            sent = await run_origin_request(functions, request, outgoing)
            if isinstance(sent, Response):
                response = as_origin_response(sent)
                generated = True
            else:
                response = await self.upstream.fetch(sent)
        else:
            response = await self.upstream.fetch(outgoing)
        if functions is not None and functions.has(Event.ORIGIN_RESPONSE) and not generated:
            response = await run_origin_response(functions, request, response, max_body=1 << 20)
        try:
            body = b"".join([chunk async for chunk in response.body])
        finally:
            await response.release()
        out = CIMultiDict((k, v) for k, v in response.headers.items() if k.lower() not in _DROPPED)
        answer = EdgeResponse(status=response.status, headers=out, body=body, content_length=len(body))
        return await self.deliver(functions, request, answer)

    async def deliver(
        self, functions: FunctionSet | None, request: EdgeRequest, answer: EdgeResponse
    ) -> EdgeResponse:
        if functions is not None and functions.has(Event.VIEWER_RESPONSE):
            answer = await run_viewer_response(functions, request, answer)
        return answer


@pytest.fixture
async def echo_origin(origin: Origin) -> AsyncIterator[Origin]:
    """A real origin answering every path with ``origin <path>`` (and recording what it received)."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"origin {request.path_qs}", headers={"Cache-Control": "max-age=60"})

    origin.route("/{tail:.*}", echo)
    await origin.start()
    yield origin


Start = Callable[[Mapping[str, FunctionSet | None]], Awaitable[str]]


@pytest.fixture
async def start_edge(echo_origin: Origin, aiohttp_raw_server: Any) -> AsyncIterator[Start]:
    upstreams: list[HttpOrigin] = []

    async def start(behaviours: Mapping[str, FunctionSet | None]) -> str:
        upstream = HttpOrigin("app", echo_origin.url)
        upstreams.append(upstream)
        server = await aiohttp_raw_server(MiniEdge(upstream, behaviours).handle)  # on 127.0.0.1
        assert server.host == "127.0.0.1"
        return f"http://127.0.0.1:{server.port}"

    yield start
    for upstream in upstreams:
        await upstream.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        yield client


async def get(session: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, CIMultiDict[str], str]:
    fields = {name.replace("_", "-"): value for name, value in headers.items()}
    async with session.get(url, headers=fields) as response:
        return response.status, CIMultiDict(response.headers), await response.text()


@pytest.fixture
def released() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


# --------------------------------------------------------------------------------------------- every event


async def viewer_request(request: ViewerRequest) -> Response | None:
    if request.path == "/blocked":
        return respond(403, "blocked at the edge\n")
    request.path = "/v" + request.path
    request.headers["X-Viewer-Request"] = request.device
    return None


def origin_request(request: ViewerRequest) -> Response | None:  # sync: runs in a function thread
    if request.path == "/v/generated":
        return respond(200, "generated for the origin\n", {"Cache-Control": "max-age=5"})
    request.headers["X-Signed"] = "yes"
    request.query = "signed=1"
    return None


async def origin_response(request: RequestInfo, response: Response) -> None:
    response.body = (response.body or b"").upper()
    response.headers["X-Origin-Response"] = "stored"


async def viewer_response(request: RequestInfo, response: Response) -> None:
    response.headers["X-Viewer-Response"] = request.path


async def test_every_event(start_edge: Start, echo_origin: Origin, session: aiohttp.ClientSession) -> None:
    functions = FunctionSet(
        {
            Event.VIEWER_REQUEST: viewer_request,
            Event.ORIGIN_REQUEST: origin_request,
            Event.ORIGIN_RESPONSE: origin_response,
            Event.VIEWER_RESPONSE: viewer_response,
        }
    )
    edge = await start_edge({"/": functions})
    status, headers, text = await get(session, edge + "/page?x=1", User_Agent=IPHONE)
    assert status == 200
    seen = echo_origin.seen[-1]
    assert seen.path_qs == "/v/page?signed=1"  # viewer_request then origin_request
    assert seen.headers["X-Viewer-Request"] == "mobile" and seen.headers["X-Signed"] == "yes"
    assert seen.headers[DEVICE_HEADER] == "mobile"
    assert text == "ORIGIN /V/PAGE?SIGNED=1"  # origin_response changed the body
    assert headers["X-Origin-Response"] == "stored"
    assert headers["X-Viewer-Response"] == "/v/page"  # viewer_response sees the rewritten request


async def test_short_circuits(start_edge: Start, echo_origin: Origin, session: aiohttp.ClientSession) -> None:
    functions = FunctionSet(
        {
            Event.VIEWER_REQUEST: viewer_request,
            Event.ORIGIN_REQUEST: origin_request,
            Event.ORIGIN_RESPONSE: origin_response,
            Event.VIEWER_RESPONSE: viewer_response,
        }
    )
    edge = await start_edge({"/": functions})
    status, headers, text = await get(session, edge + "/blocked")
    assert (status, text) == (403, "blocked at the edge\n")
    assert headers["X-Viewer-Response"] == "/blocked"  # viewer_response runs on the edge's answers too
    status, headers, text = await get(session, edge + "/generated")
    # origin_request's answer stands in for the origin's: origin_response is not called on it.
    assert (status, text) == (200, "generated for the origin\n")
    assert "X-Origin-Response" not in headers
    assert echo_origin.count() == 0


# --------------------------------------------------------------------------------------------- examples


def example(**specs: str) -> FunctionSet:
    functions = FunctionSet.from_config(FunctionsConfig(**specs))
    assert functions is not None
    return functions


@pytest.fixture
async def examples_edge(start_edge: Start) -> str:
    return await start_edge(
        {
            "/api/": example(viewer_request="examples.functions.json_api:viewer_request"),
            "/news": example(origin_request="examples.functions.device_origin:origin_request"),
            "/shop": example(
                viewer_request="examples.functions.ab_test:viewer_request",
                viewer_response="examples.functions.ab_test:viewer_response",
            ),
            "/": example(viewer_response="examples.functions.security_headers:viewer_response"),
        }
    )


async def test_example_ab_test(
    examples_edge: str, echo_origin: Origin, session: aiohttp.ClientSession
) -> None:
    status, headers, text = await get(session, examples_edge + "/shop")
    assert status == 200
    cookie = headers["Set-Cookie"]
    bucket = cookie.split(";")[0].split("=")[1]
    assert bucket in ("a", "b")
    assert text == f"origin /{bucket}/shop"
    status, headers, text = await get(session, examples_edge + "/shop", Cookie=f"ab-bucket={bucket}")
    assert text == f"origin /{bucket}/shop" and "Set-Cookie" not in headers
    assert echo_origin.seen[-1].headers["X-AB-Bucket"] == bucket


async def test_example_device_origin(
    examples_edge: str, echo_origin: Origin, session: aiohttp.ClientSession
) -> None:
    assert (await get(session, examples_edge + "/news", User_Agent=IPHONE))[2] == "origin /m/news"
    assert (await get(session, examples_edge + "/news", User_Agent="Roku/DVP-9.10"))[2] == "origin /tv/news"
    assert (await get(session, examples_edge + "/news", User_Agent="Mozilla/5.0 (X11)"))[2] == "origin /news"
    # The viewer cannot pick its class: the edge replaced the header it sent.
    forged = await get(session, examples_edge + "/news", User_Agent=IPHONE, Edge_Viewer_Device="smarttv")
    assert forged[2] == "origin /m/news"


async def test_example_security_headers(examples_edge: str, session: aiohttp.ClientSession) -> None:
    status, headers, _ = await get(session, examples_edge + "/index.html")
    assert status == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "default-src 'self'" in headers["Content-Security-Policy"]


async def test_example_json_api_needs_no_origin(
    examples_edge: str, echo_origin: Origin, session: aiohttp.ClientSession
) -> None:
    async with session.get(examples_edge + "/api/echo?name=edge", headers={"User-Agent": IPHONE}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        echo = await response.json()
    assert echo["query"] == {"name": ["edge"]} and echo["device"] == "mobile"
    assert echo["client_ip"] == "127.0.0.1"
    async with session.get(examples_edge + "/api/time") as response:
        assert response.status == 200 and isinstance((await response.json())["epoch"], float)
    async with session.head(examples_edge + "/api/time") as response:
        assert response.status == 200 and await response.read() == b""
    assert echo_origin.count() == 0


# --------------------------------------------------------------------------------------------- failures


async def fails(request: ViewerRequest) -> None:
    raise RuntimeError("bug in the function")


async def test_a_failing_function_is_a_502_and_a_log_line(
    start_edge: Start, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="edgeproxy.functions")
    edge = await start_edge({"/bad": FunctionSet({Event.VIEWER_REQUEST: fails}), "/": None})
    status, _, _ = await get(session, edge + "/bad")
    assert status == 502
    lines = [r.getMessage() for r in caplog.records if r.name == "edgeproxy.functions"]
    assert lines == [
        f"edge function {__name__}:fails (viewer_request) failed: RuntimeError: bug in the function"
    ]
    # The worker still serves.
    assert (await get(session, edge + "/fine"))[0] == 200


async def test_a_slow_function_is_a_502(start_edge: Start, session: aiohttp.ClientSession) -> None:
    async def slow(request: RequestInfo, response: Response) -> None:
        await asyncio.sleep(3600)

    edge = await start_edge({"/": FunctionSet({Event.VIEWER_RESPONSE: slow}, timeout=0.05)})
    assert (await get(session, edge + "/page"))[0] == 502


async def test_a_blocked_sync_function_does_not_block_the_loop(
    start_edge: Start, session: aiohttp.ClientSession, released: threading.Event
) -> None:
    started = threading.Event()

    def blocking(request: ViewerRequest) -> None:
        started.set()
        released.wait(60)  # blocks its thread, never the event loop

    edge = await start_edge(
        {
            "/slow": FunctionSet({Event.VIEWER_REQUEST: blocking}, timeout=60),
            "/": FunctionSet({Event.VIEWER_RESPONSE: viewer_response}),
        }
    )
    slow = asyncio.create_task(get(session, edge + "/slow"))
    while not started.is_set():
        await asyncio.sleep(0.01)
    # While the sync function is blocked, other requests are answered.
    status, headers, _ = await get(session, edge + "/other")
    assert status == 200 and headers["X-Viewer-Response"] == "/other"
    assert not slow.done()
    released.set()
    assert (await slow)[0] == 200
