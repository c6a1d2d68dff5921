"""Shared fixtures: real aiohttp origins and real edges on 127.0.0.1 (port 0), nothing mocked."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import settings
from multidict import CIMultiDictProxy

from proxy.app import Edge
from proxy.settings import ListenAddress, parse_config

# No timing assertions in tests (speed lives in benchmarks/): hypothesis' per-example deadline would fail a
# parser test on a busy CI machine for being slow, not wrong.
settings.register_profile("edgeproxy", deadline=None)
settings.load_profile("edgeproxy")


@dataclass
class SeenRequest:
    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]


@dataclass
class Origin:
    """A real aiohttp origin: handlers are registered per test; every request it receives is recorded.

    Routes are added before the first request (aiohttp freezes the router on start), so the server starts
    lazily with ``await origin.start()`` (the edge fixtures call it) and can be stopped mid-test.
    """

    app: web.Application
    launch: Callable[[web.Application], Awaitable[Any]]
    url: str = ""
    seen: list[SeenRequest] = field(default_factory=list)
    server: Any = None

    def count(self, path: str | None = None) -> int:
        return sum(1 for r in self.seen if path is None or r.path_qs.split("?")[0] == path)

    def route(self, path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.app.router.add_route("*", path, handler)

    def static(self, path: str, body: bytes | str = b"hello", status: int = 200, **headers: str) -> None:
        """A route answering every request with a fixed response; header names use _ for -."""
        data = body.encode() if isinstance(body, str) else body
        fixed = {k.replace("_", "-"): v for k, v in headers.items()}

        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=status, body=data, headers=fixed)

        self.route(path, handler)

    async def start(self) -> str:
        if self.server is None:
            self.server = await self.launch(self.app)
            self.url = f"http://127.0.0.1:{self.server.port}"
        return self.url

    async def stop(self) -> None:
        """Stop listening: from now on connections to this origin are refused."""
        if self.server is not None:
            await self.server.close()


OriginFactory = Callable[[], Origin]


@pytest.fixture
def make_origin(aiohttp_server: Any) -> OriginFactory:
    def factory() -> Origin:
        app = web.Application()

        async def launch(application: web.Application) -> Any:
            return await aiohttp_server(application, host="127.0.0.1")

        box = Origin(app=app, launch=launch)

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            box.seen.append(SeenRequest(request.method, request.path_qs, request.headers))
            response: web.StreamResponse = await handler(request)
            return response

        app.middlewares.append(record)
        return box

    return factory


@pytest.fixture
def origin(make_origin: OriginFactory) -> Origin:
    return make_origin()


@dataclass
class RunningEdge:
    edge: Edge
    url: str
    session: aiohttp.ClientSession

    async def get(
        self, path: str, method: str = "GET", **kwargs: Any
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        async with self.session.request(method, self.url + path, **kwargs) as response:
            body = await response.read()
            return response, body


EdgeFactory = Callable[..., Awaitable[RunningEdge]]


@pytest.fixture
async def make_edge(tmp_path: Path) -> AsyncIterator[EdgeFactory]:
    """Start an edge from YAML text; ``{origin}`` in the text is replaced by the origin fixture's URL."""
    running: list[RunningEdge] = []

    async def factory(
        yaml_text: str, origin: Origin | None = None, origin_url: str | None = None, **fmt: str
    ) -> RunningEdge:
        if origin is not None:
            fmt["origin"] = await origin.start()
        elif origin_url is not None:
            fmt["origin"] = origin_url
        text = textwrap.dedent(yaml_text)
        for name, value in fmt.items():
            text = text.replace("{" + name + "}", value)
        config_file = tmp_path / f"edge{len(running)}.yaml"
        config_file.write_text(text)
        config = parse_config(text, str(config_file), env={}, base_dir=tmp_path)
        edge = Edge(config, shutdown_grace=1.0)
        addresses = await edge.start((ListenAddress(host="127.0.0.1", port=0),))
        host, port = addresses[0]
        session = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
        item = RunningEdge(edge=edge, url=f"http://{host}:{port}", session=session)
        running.append(item)
        return item

    yield factory
    for item in running:
        await item.session.close()
        await item.edge.stop()


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (polling the loop), failing the test after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
