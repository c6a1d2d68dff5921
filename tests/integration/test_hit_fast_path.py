"""The hit fast path (``proxy.pipeline.encoded``) through a real socket: a fresh hit served from the entry's
pre-encoded head has the same bytes as the general path's answer to the same request (a behaviour with a
no-op ``response_headers`` policy takes the general path), except ``Age`` and the ttl in
``Cache-Status``; requests that DELIVER must answer itself (conditionals, Range) still are."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from proxy.app import Edge
from proxy.http.dates import format_http_date
from proxy.settings import ListenAddress, parse_config
from tests.conftest import Origin

CONFIG = """
server:
  name: edge-test
  access_log: "off"
origins: {app: {url: "ORIGIN"}}
behaviours:
  - {path: "/general/*", origin: app, response_headers: {remove: [X-Never-Sent]}}
  - {path: "*", origin: app}
"""

BODY = b"<p>fast</p>" * 50
FIELDS = {
    "Cache-Control": "max-age=3600",
    "Content-Type": "text/html",
    "ETag": '"v1"',
    "Last-Modified": "Mon, 30 Jun 2025 10:00:00 GMT",
    "Surrogate-Key": "page home",
    "X-Origin": "kept",
}

Start = Callable[[], Awaitable[tuple[Edge, int]]]


@pytest.fixture
async def start(tmp_path: Path, origin: Origin) -> AsyncIterator[Start]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(body=BODY, headers={**FIELDS, "Date": format_http_date(time.time())})

    origin.route("/{tail:.*}", page)
    holder: list[Edge] = []

    async def run() -> tuple[Edge, int]:
        url = await origin.start()
        text = CONFIG.replace("ORIGIN", url)
        config = parse_config(text, str(tmp_path / "edge.yaml"), env={}, base_dir=tmp_path)
        edge = Edge(config, shutdown_grace=5.0)
        addresses = await edge.start((ListenAddress(host="127.0.0.1", port=0),))
        holder.append(edge)
        return edge, addresses[0][1]

    yield run
    for edge in holder:
        with contextlib.suppress(Exception):
            await edge.stop()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until the edge closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(30):
            return await reader.read(-1)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def request(method: str, path: str, extra: str = "", version: str = "1.1") -> bytes:
    close = "Connection: close\r\n" if version == "1.1" else ""
    return f"{method} {path} HTTP/{version}\r\nHost: example.com\r\n{extra}{close}\r\n".encode()


def normalised(raw: bytes) -> bytes:
    """``raw`` with what legitimately differs between two hits blanked: Date, Age and the ttl left."""
    raw = re.sub(rb"\r\nDate: [^\r]+\r\n", b"\r\nDate: D\r\n", raw)
    raw = re.sub(rb"\r\nAge: \d+\r\n", b"\r\nAge: N\r\n", raw)
    return re.sub(rb"; ttl=\d+", b"; ttl=N", raw)


def encoded(edge: Edge, path: str) -> bool:
    """Whether the stored entry for ``path`` was served by the fast path (its head was pre-encoded)."""
    entry = edge.memory.get("example.com" + path)
    assert entry is not None
    return entry.wire is not None


@pytest.mark.parametrize(
    ("method", "version", "extra"),
    [
        ("GET", "1.1", ""),
        ("HEAD", "1.1", ""),
        ("GET", "1.0", ""),
        ("GET", "1.0", "Connection: keep-alive\r\n"),
    ],
)
async def test_fast_hit_bytes_equal_general_path(start: Start, method: str, version: str, extra: str) -> None:
    edge, port = await start()
    for path in ("/page", "/general/page"):
        await exchange(port, request("GET", path))  # the miss that stores it
    # A keep-alive 1.0 request is followed by one that closes the connection (both answered from the cache).
    after = request("GET", "/page", "", "1.0") if "keep-alive" in extra else b""
    fast = await exchange(port, request(method, "/page", extra, version) + after)
    general = await exchange(port, request(method, "/general/page", extra, version) + after)
    assert encoded(edge, "/page") and not encoded(edge, "/general/page")
    assert b"\r\nX-Cache: Hit from edgeproxy\r\n" in fast
    assert b"Surrogate-Key" not in fast and b"X-Origin: kept\r\n" in fast
    assert normalised(fast) == normalised(general)
    head, _, body = fast.partition(b"\r\n\r\n")
    assert body == b"" if method == "HEAD" else body.startswith(BODY)
    assert f"\r\nContent-Length: {len(BODY)}\r\n".encode() in head + b"\r\n"


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ('If-None-Match: "v1"\r\n', b"304"),
        ("Range: bytes=0-9\r\n", b"206"),
        ("If-Modified-Since: Mon, 30 Jun 2025 10:00:00 GMT\r\n", b"304"),
    ],
)
async def test_conditionals_and_ranges_on_hits_take_the_general_path(
    start: Start, extra: str, status: bytes
) -> None:
    _, port = await start()
    for path in ("/page", "/general/page"):
        await exchange(port, request("GET", path))
    fast = await exchange(port, request("GET", "/page", extra))
    general = await exchange(port, request("GET", "/general/page", extra))
    assert fast.startswith(b"HTTP/1.1 " + status)
    assert normalised(fast).replace(b"/general", b"") == normalised(general).replace(b"/general", b"")
