"""The HTTP/1.1 viewer front (``proxy.server.http1``) through raw sockets: pipelining, HTTP/1.0 rules,
framing of bodiless answers, request bodies streamed to the origin, backpressure towards a slow viewer,
``Expect: 100-continue``, status lines, and the graceful stop with keep-alive viewers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httptools
import pytest
from aiohttp import web

from proxy.app import Edge
from proxy.server.http1 import H1Server
from proxy.settings import ListenAddress, parse_config
from tests.conftest import Origin, wait_for

CONFIG = """
server:
  name: edge-test
  access_log: "off"
  limits: {max_body_bytes: 1KiB, client_timeout: 30s}
origins: {app: {url: "ORIGIN"}}
behaviours: [{path: "*", origin: app}]
"""

Response = tuple[int, dict[str, str], bytes]
Front = Callable[[], Awaitable[tuple[Edge, int]]]


class _Collector:
    """Splits the bytes of several responses (to HEAD requests where ``heads`` says so)."""

    def __init__(self, heads: list[bool]) -> None:
        self.heads = heads
        self.responses: list[Response] = []
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self._headers = {}
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> bool | None:
        return None

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.responses.append((self.parser.get_status_code(), self._headers, b"".join(self._body)))


def split_responses(data: bytes) -> list[Response]:
    """The complete responses in ``data`` (none of them to a HEAD request)."""
    collector = _Collector([])
    with contextlib.suppress(httptools.HttpParserError):
        collector.parser.feed_data(data)
    return collector.responses


@pytest.fixture
async def front(tmp_path: Path, origin: Origin) -> AsyncIterator[Front]:
    """An edge (``proxy.app.Edge``, so the wiring is the production one) in front of ``origin``; routes
    must be added before the first use of the fixture value, so the origin starts here lazily."""
    holder: list[Edge] = []

    async def start() -> tuple[Edge, int]:
        url = await origin.start()
        text = CONFIG.replace("ORIGIN", url)
        config = parse_config(text, str(tmp_path / "edge.yaml"), env={}, base_dir=tmp_path)
        edge = Edge(config, shutdown_grace=5.0)
        addresses = await edge.start((ListenAddress(host="127.0.0.1", port=0),))
        holder.append(edge)
        return edge, addresses[0][1]

    yield start
    for edge in holder:
        with contextlib.suppress(Exception):
            await edge.stop()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until the edge closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        chunks: list[bytes] = []
        async with asyncio.timeout(30):
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):
                    chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def echo(origin: Origin) -> None:
    """Every path answers with method, path, body length and body digest; never stored."""

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        digest = hashlib.sha256(body).hexdigest()[:16]
        text = f"{request.method} {request.path_qs} {len(body)} {digest}"
        return web.Response(text=text, headers={"Cache-Control": "no-store"})

    origin.route("/{tail:.*}", handler)


# ----------------------------------------------------------------------------------- keep-alive, order


async def test_a_hundred_pipelined_requests_are_answered_in_order(front: Front, origin: Origin) -> None:
    echo(origin)
    _, port = await front()
    requests = b"".join(b"GET /p%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(99))
    requests += b"GET /p99 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    responses = split_responses(await exchange(port, requests))
    assert [status for status, _, _ in responses] == [200] * 100
    assert [body.split()[1] for _, _, body in responses] == [b"/p%d" % i for i in range(100)]
    assert responses[-1][1]["connection"] == "close"


async def test_http10_keeps_alive_only_when_asked(front: Front, origin: Origin) -> None:
    echo(origin)
    _, port = await front()
    # Two pipelined HTTP/1.0 requests without keep-alive: the first is answered, then the edge closes.
    data = await exchange(port, b"GET /one HTTP/1.0\r\nHost: a\r\n\r\nGET /two HTTP/1.0\r\nHost: a\r\n\r\n")
    responses = split_responses(data)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.count(b"HTTP/1.1 ") == 1
    assert responses[0][2].startswith(b"GET /one ")
    # Keep-alive asked for: both are answered, the second (not asking) closes the connection.
    data = await exchange(
        port,
        b"GET /one HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /two HTTP/1.0\r\nHost: a\r\n\r\n",
    )
    responses = split_responses(data)
    assert [r[2].split()[1] for r in responses] == [b"/one", b"/two"]
    assert responses[0][1]["connection"] == "keep-alive"
    assert "connection" not in responses[1][1]


async def test_status_lines_are_always_http11(front: Front, origin: Origin) -> None:
    echo(origin)
    _, port = await front()
    assert (await exchange(port, b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")).startswith(b"HTTP/1.1 200 OK\r\n")
    refused = await exchange(port, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")


async def test_bodiless_answers_carry_no_body(front: Front, origin: Origin) -> None:
    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Cache-Control": "no-store"})

    origin.route("/empty", empty)
    origin.static("/tagged", b"x" * 1000, ETag='"v1"', Cache_Control="max-age=60")
    _, port = await front()
    data = await exchange(
        port,
        b"HEAD /tagged HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /empty HTTP/1.1\r\nHost: a\r\n\r\n"
        b'GET /tagged HTTP/1.1\r\nHost: a\r\nIf-None-Match: "v1"\r\n\r\n'
        b"GET /tagged HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    heads = data.split(b"\r\n\r\n")
    # Four heads, no body between them, then the 1000 bytes of the last answer.
    assert [h.split(b" ", 2)[1] for h in heads[:4]] == [b"200", b"204", b"304", b"200"]
    assert heads[4] == b"x" * 1000
    assert b"content-length: 1000" in heads[0].lower()  # HEAD announces the length of the GET answer
    assert b"content-length" not in heads[1].lower() and b"content-length" not in heads[2].lower()


# ----------------------------------------------------------------------------------- request bodies


async def test_request_bodies_are_streamed_to_the_origin(front: Front, origin: Origin) -> None:
    echo(origin)
    _, port = await front()
    body = bytes(range(256)) * 4  # 1 KiB: the configured limit
    digest = hashlib.sha256(body).hexdigest()[:16].encode()
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 100]), body[i : i + 100]) for i in range(0, 1024, 100)
    )
    data = await exchange(
        port,
        b"POST /fixed HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n"
        + body
        + b"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + chunked
        + b"0\r\n\r\n",
    )
    responses = split_responses(data)
    assert [r[2] for r in responses] == [b"POST /fixed 1024 " + digest, b"POST /chunked 1024 " + digest]


async def test_expect_100_continue_is_answered_by_the_edge(front: Front, origin: Origin) -> None:
    echo(origin)
    _, port = await front()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"PUT /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        async with asyncio.timeout(30):
            interim = await reader.readuntil(b"\r\n\r\n")
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            writer.write(b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    responses = split_responses(data)
    assert [r[2].split()[:3] for r in responses] == [[b"PUT", b"/e", b"5"], [b"GET", b"/after", b"0"]]
    put = [seen for seen in origin.seen if seen.method == "PUT"]
    assert "Expect" not in put[0].headers
    # A declared body over the limit: the final 413 at once, no 100, and the body is never read.
    refused = await exchange(
        port, b"PUT /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
    )
    assert refused.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in refused
    assert origin.count("/e") == 1


# ----------------------------------------------------------------------------------- backpressure


async def test_a_slow_reader_never_makes_the_edge_buffer_the_object(front: Front, origin: Origin) -> None:
    size = 20 * 1024 * 1024
    block = b"z" * 65536

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Cache-Control": "no-store", "Content-Type": "x/y"})
        response.content_length = size
        await response.prepare(request)
        for _ in range(size // len(block)):
            await response.write(block)
        await response.write_eof()
        return response

    origin.route("/big", big)
    edge, port = await front()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=65536)
    try:
        writer.write(b"GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(60):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            # The viewer reads nothing more: the edge must stop pulling once its socket buffer is full.
            front_server = edge._front
            assert isinstance(front_server, H1Server)
            connection = next(iter(front_server.connections))
            await wait_for(lambda: connection._writing_paused, timeout=30)
            transport = connection._transport
            assert transport is not None
            assert transport.get_write_buffer_size() <= 1024 * 1024
            # Reading everything now, slowly, gets every byte.
            received = 0
            while chunk := await reader.read(65536):
                received += len(chunk)
                assert transport.get_write_buffer_size() <= 1024 * 1024
            assert received == size
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# ----------------------------------------------------------------------------------- graceful stop


async def test_stop_closes_idle_viewers_and_answers_busy_ones(front: Front, origin: Origin) -> None:
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="slow", headers={"Cache-Control": "no-store"})

    origin.route("/slow", slow)
    echo(origin)
    edge, port = await front()
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        idle_writer.write(b"GET /warm HTTP/1.1\r\nHost: a\r\n\r\n")
        async with asyncio.timeout(30):
            await idle_reader.readuntil(b"/warm 0 " + hashlib.sha256(b"").hexdigest()[:16].encode())
            busy_writer.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            await arrived.wait()
            stopping = asyncio.get_running_loop().create_task(edge.stop())
            # The idle keep-alive connection is closed at once, while the busy one is still waiting.
            assert await idle_reader.read() == b""
            assert not stopping.done()
            release.set()
            data = await busy_reader.read()
            await stopping
    finally:
        for writer in (idle_writer, busy_writer):
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    responses = split_responses(data)
    assert len(responses) == 1
    status, headers, body = responses[0]
    assert (status, body, headers["connection"]) == (200, b"slow", "close")


async def test_stop_answers_every_request_already_read(front: Front, origin: Origin) -> None:
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="slow", headers={"Cache-Control": "no-store"})

    origin.route("/slow", slow)
    echo(origin)
    edge, port = await front()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # Two pipelined requests: the second is read (queued) while the first waits for its origin.
        writer.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        async with asyncio.timeout(30):
            await arrived.wait()
            front_server = edge._front
            assert isinstance(front_server, H1Server)
            connection = next(iter(front_server.connections))
            await wait_for(lambda: len(connection._queue) == 1)
            stopping = asyncio.get_running_loop().create_task(edge.stop())
            release.set()
            data = await reader.read()
            await stopping
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    responses = split_responses(data)
    assert [r[2].split()[:2] for r in responses] == [[b"slow"], [b"GET", b"/next"]]
    assert "connection" not in responses[0][1]
    assert responses[1][1]["connection"] == "close"
