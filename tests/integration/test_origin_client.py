"""The origin client (``proxy.origin.http``, ``connection``, ``pool``) through real sockets on 127.0.0.1.

Origins here are raw asyncio servers parsing requests with httptools (so the framing the edge sends is seen
exactly as a strict origin sees it), Python's stock ``http.server``, or the aiohttp fixtures.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

import aiohttp
import httptools
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.origin.base import (
    OriginConnectError,
    OriginProtocolError,
    OriginRequest,
    OriginResponse,
    OriginTimeoutError,
)
from proxy.origin.http import HttpOrigin
from tests.conftest import EdgeFactory, RunningEdge, wait_for


# ----------------------------------------------------------------------------------------- a raw origin
@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int  # 1 for the origin's first connection, ...
    index: int  # 0 for the first request on its connection

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class Reply:
    data: bytes
    close: bool = False  # close the connection after writing


# What the origin does with a request: bytes to write, a Reply, or None: close without answering.
Script = Callable[[Seen], "bytes | Reply | None"]


def ok(body: bytes = b"hello", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


class _OriginProtocol(asyncio.Protocol):
    def __init__(self, origin: RawOrigin) -> None:
        self.origin = origin
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.number = 0
        self.index = 0
        self.idle: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.origin.opened += 1
        self.number = self.origin.opened
        self.origin.live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.origin.closed += 1
        self.origin.live.discard(self)
        if self.idle is not None:
            self.idle.cancel()

    def data_received(self, data: bytes) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.origin.bad_requests += 1
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"
            )
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode(), value.decode()))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        assert self.transport is not None
        seen = Seen(
            self.parser.get_method().decode(),
            self.url.decode(),
            self.headers,
            self.body,
            self.number,
            self.index,
        )
        self.index += 1
        self._reset()
        self.origin.seen.append(seen)
        answer = self.origin.script(seen)
        if answer is None:
            self.transport.close()
            return
        reply = answer if isinstance(answer, Reply) else Reply(answer)
        self.transport.write(reply.data)
        if reply.close:
            self.transport.close()
        elif self.origin.idle_close is not None:
            loop = asyncio.get_running_loop()
            self.idle = loop.call_later(self.origin.idle_close, self.transport.close)


@dataclass
class RawOrigin:
    script: Script
    idle_close: float | None = None  # close a keep-alive connection idle for this long (Node does 5 s)
    seen: list[Seen] = field(default_factory=list)
    opened: int = 0
    closed: int = 0
    bad_requests: int = 0
    live: set[_OriginProtocol] = field(default_factory=set)
    server: asyncio.Server | None = None
    url: str = ""

    async def start(self) -> str:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _OriginProtocol(self), "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for protocol in list(self.live):
                if protocol.transport is not None:
                    protocol.transport.close()
            await self.server.wait_closed()


@pytest.fixture
async def raw_origins() -> AsyncIterator[Callable[..., RawOrigin]]:
    made: list[RawOrigin] = []

    def factory(script: Script, idle_close: float | None = None) -> RawOrigin:
        origin = RawOrigin(script, idle_close)
        made.append(origin)
        return origin

    yield factory
    for origin in made:
        await origin.stop()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., HttpOrigin]]:
    made: list[HttpOrigin] = []

    def factory(url: str, **options: float | int | bool | str) -> HttpOrigin:
        client = HttpOrigin("app", url, **options)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.close()


async def fetch_all(
    client: HttpOrigin,
    method: str = "GET",
    target: str = "/",
    body: bytes | AsyncIterator[bytes] | None = None,
    **kw: object,
) -> tuple[OriginResponse, bytes]:
    headers = kw.pop("headers", None) or CIMultiDict()
    request = OriginRequest(method, target, headers, body=body, **kw)  # type: ignore[arg-type]
    response = await client.fetch(request)
    try:
        data = b"".join([chunk async for chunk in response.body])
    finally:
        await response.release()
    return response, data


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


# ------------------------------------------------------------------------------- 1. framing is ours
async def test_framing_is_decided_by_the_body(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(lambda seen: ok())
    client = clients(await origin.start())
    stale = CIMultiDict(
        [
            ("Content-Length", "5"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("Keep-Alive", "5"),
            ("Expect", "100-continue"),
            ("X-Keep", "yes"),
        ]
    )
    await fetch_all(client, "GET", "/none", headers=CIMultiDict(stale))
    await fetch_all(client, "POST", "/empty-post", headers=CIMultiDict(stale))
    await fetch_all(client, "PUT", "/bytes", b"12345678", headers=CIMultiDict(stale))
    await fetch_all(client, "POST", "/stream", stream(b"abc", b"", b"defg"), headers=CIMultiDict(stale))
    await fetch_all(
        client, "PUT", "/sized", stream(b"abc", b"de"), headers=CIMultiDict(stale), content_length=5
    )
    none, post, sized_bytes, chunked, sized_stream = origin.seen
    for seen in origin.seen:
        assert seen.header("Expect") is None and seen.header("Keep-Alive") is None
        assert seen.header("Connection") is None and seen.header("X-Keep") == "yes"
    assert none.header("Content-Length") is None and none.header("Transfer-Encoding") is None
    assert post.header("Transfer-Encoding") is None and post.header("Content-Length") in (None, "0")
    assert (sized_bytes.header("Content-Length"), sized_bytes.body) == ("8", b"12345678")
    assert chunked.header("Transfer-Encoding") == "chunked" and chunked.header("Content-Length") is None
    assert chunked.body == b"abcdefg"
    assert (sized_stream.header("Content-Length"), sized_stream.body) == ("5", b"abcde")
    assert origin.opened == 1 and origin.bad_requests == 0  # one connection carried all of them


async def test_host_header_and_extra_headers(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(lambda seen: ok())
    url = await origin.start()
    by_origin = clients(url + "/prefix", headers={"X-Secret": "s"})
    by_viewer = clients(url, host_header="viewer")
    literal = clients(url, host_header="assets.example")
    await fetch_all(by_origin, target="/a?b=1", headers=CIMultiDict({"X-Secret": "viewer's", "Host": "x"}))
    await fetch_all(by_viewer, viewer_host="shop.example")
    await fetch_all(literal)
    first, second, third = origin.seen
    assert first.target == "/prefix/a?b=1" and first.header("Host") == url.removeprefix("http://")
    assert [v for k, v in first.headers if k == "X-Secret"] == ["s"]
    assert second.header("Host") == "shop.example" and third.header("Host") == "assets.example"


async def test_header_with_a_line_break_is_refused(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(lambda seen: ok())
    client = clients(await origin.start())
    with pytest.raises(OriginProtocolError):
        await fetch_all(client, headers=CIMultiDict({"X-Evil": "a\r\nX-Injected: 1"}))
    assert origin.seen == []


# ----------------------------------------------------------- 3. a reused connection closed under a request
async def test_request_on_a_reused_connection_the_origin_closed_is_retried_once(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    # The origin drops the second request of each connection unanswered: what a keep-alive connection
    # closed by the origin just as the request was sent looks like.
    origin = raw_origins(lambda seen: None if seen.index == 1 else ok(seen.body))
    client = clients(await origin.start())
    for method, body in (("PUT", b"one"), ("POST", b"two"), ("GET", None), ("POST", b"three")):
        _, data = await fetch_all(client, method, "/r", body)
        assert data == (body or b"")
    assert origin.opened == 4  # each retry went to a new connection
    # A streamed body cannot be replayed: the failure is the origin's.
    with pytest.raises(OriginProtocolError):
        await fetch_all(client, "POST", "/r", stream(b"x"))


async def test_a_fresh_connection_closed_before_an_answer_is_not_retried(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(lambda seen: None)
    client = clients(await origin.start())
    with pytest.raises(OriginProtocolError):
        await fetch_all(client, "PUT", "/r", b"body")
    assert len(origin.seen) == 1


async def test_pool_drops_connections_the_origin_closed_while_idle(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(lambda seen: ok(), idle_close=0.05)
    client = clients(await origin.start())
    await fetch_all(client)
    assert client.pool.idle == 1
    await wait_for(lambda: origin.closed == 1)
    await wait_for(lambda: client.pool.idle == 0 and client.pool.size == 0)
    await fetch_all(client)
    assert origin.opened == 2


async def test_pool_closes_connections_idle_for_keepalive_timeout(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(lambda seen: ok())
    client = clients(await origin.start(), keepalive_timeout=0.05)
    await fetch_all(client)
    await wait_for(lambda: origin.closed == 1)  # closed by the edge, not the origin
    assert client.pool.size == 0


EDGE = """
server: {name: edge-t, access_log: "off"}
origins: {app: {url: "{origin}", read_timeout: READ, connect_timeout: 1s}}
behaviours:
  - path: "/cached/*"
    origin: app
    ttl: {default: 100s}
  - path: "*"
    origin: app
    methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]
"""


def edge_config(read_timeout: str = "2s") -> str:
    return EDGE.replace("READ", read_timeout)


async def test_origin_closing_idle_connections_causes_no_502(
    make_edge: EdgeFactory, raw_origins: Callable[..., RawOrigin]
) -> None:
    origin = raw_origins(lambda seen: ok(b"got " + seen.body), idle_close=1.0)
    edge = await make_edge(edge_config(), origin_url=await origin.start())
    statuses = []
    for _ in range(2):
        for method in ("PUT", "POST"):
            response, body = await edge.get("/api", method=method, data=b"payload")
            statuses.append(response.status)
            assert body == b"got payload"
        await wait_for(lambda: origin.closed == origin.opened)  # the origin closed every idle connection
    assert statuses == [200] * 4
    assert edge.edge.pipeline.stats.origin_errors == 0


async def test_origin_closing_a_connection_under_a_request_causes_no_502(
    make_edge: EdgeFactory, raw_origins: Callable[..., RawOrigin]
) -> None:
    """The race the idle timeout cannot prevent: the origin closes just as a reused connection carries a
    request. PUT and POST bodies (up to 1 MiB) are buffered, so the request is sent again."""
    origin = raw_origins(lambda seen: None if seen.index == 1 else ok(b"got " + seen.body))
    edge = await make_edge(edge_config(), origin_url=await origin.start())
    for method in ("PUT", "POST", "PUT", "GET"):
        response, body = await edge.get("/api", method=method, data=b"payload" if method != "GET" else None)
        assert response.status == 200
        assert body == (b"got payload" if method != "GET" else b"got ")
    assert edge.edge.pipeline.stats.origin_errors == 0
    health = edge.edge.runtime.health["app"]
    assert health.total_failures == 0


# --------------------------------------------------------------------- 1. a body that is not forwarded
async def test_get_with_a_body_becomes_a_fill_without_body_and_the_connection_stays_in_sync(
    make_edge: EdgeFactory, raw_origins: Callable[..., RawOrigin]
) -> None:
    origin = raw_origins(lambda seen: ok(b"page " + seen.target.encode(), "Cache-Control: max-age=60\r\n"))
    edge = await make_edge(edge_config(), origin_url=await origin.start())
    response, body = await edge.get("/cached/a", data=b"12345")
    assert (response.status, body) == (200, b"page /cached/a")
    head, body = await edge.get("/cached/h", method="HEAD")
    assert (head.status, body) == (200, b"")
    second, body = await edge.get("/cached/b")
    assert (second.status, body) == (200, b"page /cached/b")
    assert origin.bad_requests == 0 and origin.opened == 1  # one pooled connection, still in sync
    for seen in origin.seen:
        assert seen.method == "GET" and seen.body == b""
        assert seen.header("Content-Length") is None and seen.header("Transfer-Encoding") is None


# --------------------------------------------------------------------------------- 2. Expect: 100-continue
class _Http10Handler(BaseHTTPRequestHandler):
    """Python's stock server: HTTP/1.0, never sends 100 Continue, reads the body by Content-Length."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        payload = b"stock " + body + b" expect=" + str(self.headers.get("Expect")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def stock_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Http10Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def raw_exchange(
    edge: RunningEdge, head: bytes, body: bytes = b"", wait_continue: bool = False
) -> bytes:
    """Send ``head`` (then ``body``, after a 100 Continue when ``wait_continue``); return the answer."""
    host, port = edge.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        received = b""
        if wait_continue:
            received = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if not received.startswith(b"HTTP/1.1 100"):
                return received + await asyncio.wait_for(reader.read(), 5)
        writer.write(body)
        await writer.drain()
        return received + await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_expect_100_continue_toward_an_origin_that_never_sends_100(
    make_edge: EdgeFactory, stock_origin: str
) -> None:
    edge = await make_edge(edge_config("2s"), origin_url=stock_origin)
    host = edge.url.removeprefix("http://")
    for method in ("POST", "PUT", "POST"):
        head = (
            f"{method} /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n"
        ).encode()
        answer = await raw_exchange(edge, head, b"hello", wait_continue=True)
        # The front says 100 Continue before reading the body; the origin never sees Expect.
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
        assert answer.endswith(b"stock hello expect=None")
    response, body = await edge.get("/later")
    assert (response.status, body) == (200, b"stock  expect=None")


# ------------------------------------------------------------------------- 4. Content-Length mismatches
async def test_body_longer_than_content_length_is_cut_and_the_connection_closed(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(lambda seen: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more")
    client = clients(await origin.start())
    response, data = await fetch_all(client)
    assert (response.content_length, data) == (5, b"hello")
    await wait_for(lambda: origin.closed == 1)  # never reused
    _, data = await fetch_all(client)
    assert data == b"hello" and origin.opened == 2


async def test_body_shorter_than_content_length_is_a_truncation(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(
        lambda seen: Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", close=True)
    )
    client = clients(await origin.start())
    with pytest.raises(OriginProtocolError):
        await fetch_all(client)
    chunked = raw_origins(
        lambda seen: Reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", close=True)
    )
    client = clients(await chunked.start())
    with pytest.raises(OriginProtocolError):
        await fetch_all(client)


async def test_content_length_mismatches_through_the_edge(
    make_edge: EdgeFactory, raw_origins: Callable[..., RawOrigin]
) -> None:
    """Longer: delivered and stored at the declared length (cache-tests headers-store-Content-Length), the
    connection closed. Shorter: never stored; a small body (read whole before answering) is a 502, a large
    streamed one aborts the viewer connection so the truncation shows."""
    big = 1024 * 1024

    def script(seen: Seen) -> bytes | Reply:
        if seen.target.endswith("/long"):
            return b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello world"
        if seen.target.endswith("/short-big"):
            head = f"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {big}\r\n\r\n"
            return Reply(head.encode() + b"z" * (big // 2), close=True)
        return Reply(
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 10\r\n\r\nhello", close=True
        )

    origin = raw_origins(script)
    edge = await make_edge(edge_config(), origin_url=await origin.start())
    for expected in ("Miss", "Hit"):
        response, body = await edge.get("/cached/long")
        assert (response.status, body, response.headers["Content-Length"]) == (200, b"hello", "5")
        assert response.headers["X-Cache"] == f"{expected} from edgeproxy"
    for _ in range(2):
        response, _ = await edge.get("/cached/short")
        assert response.status == 502
        with pytest.raises(aiohttp.ClientPayloadError):
            await edge.get("/cached/short-big")
    for target in ("/cached/short", "/cached/short-big"):
        assert sum(1 for seen in origin.seen if seen.target == target) == 2  # never stored


# --------------------------------------------------------------- 5. framing of responses, interim answers
async def test_http10_close_delimited_and_connection_close_are_not_reused(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    def script(seen: Seen) -> Reply:
        if seen.target == "/eof":
            return Reply(b"HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nuntil the end", close=True)
        return Reply(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")

    origin = raw_origins(script)
    client = clients(await origin.start())
    response, data = await fetch_all(client, target="/eof")
    assert (response.content_length, data) == (None, b"until the end")
    _, data = await fetch_all(client, target="/close")
    assert data == b"ok"
    await wait_for(lambda: client.pool.size == 0)
    _, data = await fetch_all(client, target="/close")
    assert origin.opened == 3


async def test_transfer_coding_other_than_chunked_ends_at_close(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    """RFC 9112 §6.3: a response whose final transfer coding is not chunked is read until the origin
    closes (cache-tests headers-store-Transfer-Encoding)."""

    def script(seen: Seen) -> Reply:
        return Reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: whatever\r\n\r\nuntil the end",
            close=True,
        )

    origin = raw_origins(script)
    client = clients(await origin.start())
    response, data = await fetch_all(client, target="/te")
    assert (response.content_length, data) == (None, b"until the end")
    assert "Transfer-Encoding" not in response.headers
    await fetch_all(client, target="/te")
    assert origin.opened == 2  # never reused


async def test_chunked_head_and_bodiless_statuses(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    answers = {
        "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n",
        "/head": b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        "/204": b"HTTP/1.1 204 No Content\r\n\r\n",
        "/304": b'HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: "x"\r\n\r\n',
    }
    origin = raw_origins(lambda seen: answers[seen.target])
    client = clients(await origin.start())
    response, data = await fetch_all(client, target="/chunked")
    assert (
        data == b"abcdefg"
        and "Transfer-Encoding" not in response.headers
        and "X-Trailer" not in response.headers
    )
    response, data = await fetch_all(client, "HEAD", "/head")
    assert (response.status, data, response.headers["Content-Length"]) == (200, b"", "1234")
    for target in ("/204", "/304", "/chunked"):
        response, data = await fetch_all(client, target=target)
        assert response.status == int(target[1:]) if target != "/chunked" else data == b"abcdefg"
    assert origin.opened == 1  # all on one connection, in sync


async def test_interim_responses(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(
        lambda seen: (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
            b"HTTP/1.1 102 Processing\r\n\r\n" + ok(b"final", "X-Final: 1\r\n")
        )
    )
    client = clients(await origin.start())
    hints: list[tuple[int, CIMultiDictProxy[str]]] = []
    response, data = await fetch_all(
        client, on_interim=lambda status, headers: hints.append((status, headers))
    )
    assert (response.status, data, response.headers["X-Final"]) == (200, b"final", "1")
    assert [(status, dict(headers)) for status, headers in hints] == [(103, {"Link": "</a.css>"}), (102, {})]
    assert "Link" not in response.headers
    upgrade = raw_origins(
        lambda seen: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
    )
    client = clients(await upgrade.start())
    with pytest.raises(OriginProtocolError):
        await fetch_all(client)


# ------------------------------------------------------------------------------------ 6. response fields
async def test_response_fields_kept_as_sent(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(
        lambda seen: (
            b"HTTP/1.1 299 Quite Fine\r\nSet-Cookie: a=1\r\nx-lower-Case: v\r\nSet-Cookie: b=2\r\n"
            b"Connection: X-Hop\r\nX-Hop: h\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n"
        )
    )
    client = clients(await origin.start())
    response, _ = await fetch_all(client)
    assert (response.status, response.reason) == (299, "Quite Fine")
    assert response.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert "x-lower-Case" in list(response.headers.keys())
    for hop in ("Connection", "X-Hop", "Keep-Alive"):
        assert hop not in response.headers


# ----------------------------------------------------------------------------- 7. timeouts and bounds
async def test_refused_and_connect_timeout(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OriginConnectError):
        await fetch_all(clients(f"http://127.0.0.1:{port}"))
    # A TLS handshake that never completes is bounded by connect_timeout.
    accepted: list[asyncio.BaseTransport] = []

    class Silent(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.append(transport)  # and never a byte back

    loop = asyncio.get_running_loop()
    silent = await loop.create_server(Silent, "127.0.0.1", 0)
    try:
        port = silent.sockets[0].getsockname()[1]
        with pytest.raises(OriginTimeoutError):
            await fetch_all(clients(f"https://127.0.0.1:{port}", connect_timeout=0.1))
        await wait_for(lambda: len(accepted) == 1)
    finally:
        for transport in accepted:
            transport.close()
        silent.close()
        await silent.wait_closed()


async def test_read_timeouts(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    def script(seen: Seen) -> bytes:
        if seen.target == "/silent":
            return b""
        if seen.target == "/drip":
            return b"HTTP/1.1 200 OK\r\n"  # and never the rest of the head
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"

    origin = raw_origins(script)
    client = clients(await origin.start(), read_timeout=0.1)
    for target in ("/silent", "/drip"):
        with pytest.raises(OriginTimeoutError):
            await fetch_all(client, target=target)
    with pytest.raises(OriginTimeoutError):
        await fetch_all(client, target="/stall")
    await wait_for(lambda: origin.closed == origin.opened == 3)


async def test_release_before_the_end_closes_the_connection(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(lambda seen: ok(b"x" * 1_000_000))
    client = clients(await origin.start())
    response = await client.fetch(OriginRequest("GET", "/", CIMultiDict()))
    assert len(await response.body.__anext__()) > 0
    await response.release()
    await wait_for(lambda: origin.closed == 1)
    assert client.pool.size == 0


async def test_large_body_is_not_buffered_whole(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(lambda seen: ok(b"y" * (8 * 1024 * 1024)))
    client = clients(await origin.start())
    response = await client.fetch(OriginRequest("GET", "/", CIMultiDict()))
    body = response.body
    first = await body.__anext__()
    connection = next(iter(client.pool._all))
    await asyncio.sleep(0.05)  # give the origin time to push more than the high-water mark, if it could
    assert connection._buffered <= 512 * 1024  # reading paused: not the whole 8 MiB
    total = len(first) + sum([len(chunk) async for chunk in body])
    assert total == 8 * 1024 * 1024


async def test_oversized_head_and_garbage_are_protocol_errors(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    def script(seen: Seen) -> Reply:
        if seen.target == "/big":
            return Reply(b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"b" * 70_000 + b"\r\n\r\n")
        return Reply(b"NOT HTTP AT ALL\r\n\r\n")

    origin = raw_origins(script)
    client = clients(await origin.start(), read_timeout=5)
    for target in ("/big", "/garbage"):
        with pytest.raises(OriginProtocolError):
            await fetch_all(client, target=target)


async def test_max_connections_makes_requests_wait(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(lambda seen: ok(seen.target.encode()))
    client = clients(await origin.start(), max_connections=1, connect_timeout=0.2)
    response = await client.fetch(OriginRequest("GET", "/first", CIMultiDict()))  # holds the one connection
    with pytest.raises(OriginTimeoutError):
        await fetch_all(client, target="/waits-too-long")
    waiting = asyncio.create_task(fetch_all(client, target="/second"))
    await asyncio.sleep(0)
    assert [c async for c in response.body] == [b"/first"]  # the body ends: the connection is handed on
    await response.release()
    _, data = await waiting
    assert data == b"/second" and origin.opened == 1


async def test_close_refuses_new_requests(
    raw_origins: Callable[..., RawOrigin], clients: Callable[..., HttpOrigin]
) -> None:
    origin = raw_origins(lambda seen: ok())
    client = clients(await origin.start())
    await fetch_all(client)
    await client.close()
    assert origin.opened == 1
    await wait_for(lambda: origin.closed == 1)
    with pytest.raises(OriginTimeoutError):
        await fetch_all(client)


def test_client_works_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        origin = RawOrigin(lambda seen: None if seen.index == 2 else ok(b"uv " + seen.body))
        client = HttpOrigin("app", await origin.start())
        try:
            for body in (b"a", b"b", b"c", None):
                _, data = await fetch_all(client, "PUT", "/", body)
                assert data == b"uv " + (body or b"")
            assert origin.opened == 2
        finally:
            await client.close()
            await origin.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
