"""WebSocket through the edge (issue 12 item 6): a real aiohttp WebSocket origin, a real aiohttp WebSocket
client (and raw sockets where the bytes on the wire matter). The handshake goes through RECV (firewall,
``websocket: false``), is never cached, and after the origin's 101 the edge pipes bytes both ways with
backpressure, an idle timeout and closes passed on from either side; the access log line comes at the end."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from proxy.server.tunnel import Tunnel
from tests.conftest import EdgeFactory, Origin, RunningEdge, wait_for
from tests.integration.test_tls import client_context, make_cert, start_edge
from tests.server_process import free_port

CONFIG = """
server: {{name: edge-ws, access_log: "{log}"}}
origins: {{app: {{url: "{{origin}}", read_timeout: {read_timeout}}}}}
{extra}
behaviours:
{behaviours}
  - {{path: "*", origin: app}}
"""


def config(log: str = "off", read_timeout: str = "30s", extra: str = "", behaviours: str = "") -> str:
    return CONFIG.format(log=log, read_timeout=read_timeout, extra=extra, behaviours=behaviours)


def ws_url(edge: RunningEdge, path: str) -> str:
    return edge.url.replace("http://", "ws://") + path


def tunnels(edge: RunningEdge) -> set[Tunnel]:
    front = edge.edge._front
    assert front is not None
    return front.tunnels


class EchoOrigin:
    """``/ws`` greets, then echoes every text and binary message (text prefixed with ``echo:``); records
    how each session ended."""

    def __init__(self, origin: Origin) -> None:
        self.closed = asyncio.Event()
        self.close_kind: WSMsgType | None = None
        self.sessions = 0
        origin.route("/ws", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sessions += 1
        await ws.send_str("hello")
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if msg.data == "close-please":
                        await ws.close(code=4000, message=b"origin closes")
                        break
                    await ws.send_str("echo:" + msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_bytes(msg.data[::-1])
            self.close_kind = WSMsgType.CLOSE if ws.closed else None
        finally:
            # The test server cancels a handler whose connection was lost (that is a close too).
            self.closed.set()
        return ws


async def test_echo_text_and_binary_both_ways(make_edge: EdgeFactory, origin: Origin) -> None:
    app = EchoOrigin(origin)
    edge = await make_edge(config(), origin)
    async with edge.session.ws_connect(ws_url(edge, "/ws")) as ws:
        assert (await ws.receive_str()) == "hello"  # sent by the origin right after its 101
        await ws.send_str("one")
        assert (await ws.receive_str()) == "echo:one"
        payload = os.urandom(300_000)  # larger than any single socket read: crosses many writes
        await ws.send_bytes(payload)
        assert (await ws.receive_bytes()) == payload[::-1]
        await ws.send_str("two" * 1000)
        assert (await ws.receive_str()) == "echo:" + "two" * 1000
    seen = origin.seen[-1]
    assert seen.headers["Upgrade"].lower() == "websocket"
    assert "Sec-WebSocket-Key" in seen.headers
    assert "edge-ws" in seen.headers["Via"]
    assert app.sessions == 1


async def test_101_head_relayed_with_via(make_edge: EdgeFactory, origin: Origin) -> None:
    EchoOrigin(origin)
    edge = await make_edge(config(), origin)
    async with edge.session.ws_connect(ws_url(edge, "/ws")) as ws:
        response = ws._response
        assert response.status == 101
        assert response.headers["Upgrade"].lower() == "websocket"
        assert "Sec-WebSocket-Accept" in response.headers  # end-to-end: checked by the client itself
        assert "edge-ws" in response.headers["Via"]
        assert "fwd=bypass" in response.headers["Cache-Status"]
        assert len(response.headers.getall("Date")) == 1
        assert (await ws.receive_str()) == "hello"


async def test_close_from_the_client_reaches_the_origin(make_edge: EdgeFactory, origin: Origin) -> None:
    app = EchoOrigin(origin)
    edge = await make_edge(config(), origin)
    ws = await edge.session.ws_connect(ws_url(edge, "/ws"))
    assert (await ws.receive_str()) == "hello"
    await ws.close()
    async with asyncio.timeout(10):
        await app.closed.wait()
    assert app.close_kind is WSMsgType.CLOSE
    await wait_for(lambda: not tunnels(edge))


async def test_close_from_the_origin_reaches_the_client(make_edge: EdgeFactory, origin: Origin) -> None:
    EchoOrigin(origin)
    edge = await make_edge(config(), origin)
    async with edge.session.ws_connect(ws_url(edge, "/ws")) as ws:
        assert (await ws.receive_str()) == "hello"
        await ws.send_str("close-please")
        async with asyncio.timeout(10):
            msg = await ws.receive()
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == 4000
        assert ws.closed or (await ws.receive()).type in (WSMsgType.CLOSED, WSMsgType.CLOSING)
    await wait_for(lambda: not tunnels(edge))


async def test_a_slow_reader_makes_the_tunnel_pause_not_buffer(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """The origin sends 20 MiB while the viewer reads nothing: the edge stops reading from the origin once
    the viewer's transport is full, so what the edge holds stays bounded; then everything arrives."""
    total = 20 * 1024 * 1024
    piece = 64 * 1024
    sent = 0
    done = asyncio.Event()

    async def flood(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        block = b"x" * piece
        while sent < total:
            await ws.send_bytes(block)  # waits while the edge does not read (TCP flow control)
            sent += piece
        done.set()
        await ws.receive()  # until the client closes
        return ws

    origin.route("/flood", flood)
    edge = await make_edge(config(), origin)
    async with edge.session.ws_connect(ws_url(edge, "/flood"), max_msg_size=0) as ws:
        await wait_for(lambda: len(tunnels(edge)) == 1)
        (tunnel,) = tunnels(edge)
        # The viewer reads nothing yet: the tunnel must stop reading the origin.
        await wait_for(lambda: tunnel.origin.reading_paused, timeout=20)
        assert not done.is_set()
        assert sent < total
        received = 0
        async with asyncio.timeout(60):
            while received < total:
                received += len(await ws.receive_bytes())
        assert received == total
        assert tunnel.read_pauses >= 1
        # Never more than the transport's high-water mark plus one read from the origin is held.
        assert tunnel.max_viewer_buffer < 1024 * 1024, tunnel.max_viewer_buffer


async def test_idle_timeout_closes_both_sides(make_edge: EdgeFactory, origin: Origin) -> None:
    app = EchoOrigin(origin)
    edge = await make_edge(config(read_timeout="0.5s"), origin)
    async with edge.session.ws_connect(ws_url(edge, "/ws"), autoping=False, heartbeat=None) as ws:
        assert (await ws.receive_str()) == "hello"
        async with asyncio.timeout(10):
            msg = await ws.receive()  # nothing moves: the edge closes the connection
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
    async with asyncio.timeout(10):
        await app.closed.wait()
    await wait_for(lambda: not tunnels(edge))


async def test_the_firewall_applies_to_the_handshake(make_edge: EdgeFactory, origin: Origin) -> None:
    app = EchoOrigin(origin)
    origin.route("/open/ws", app.handle)
    rules = 'firewall:\n  rules:\n    - name: no-ws\n      match: {path: "^/ws"}\n'
    edge = await make_edge(config(extra=rules), origin)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await edge.session.ws_connect(ws_url(edge, "/ws"))
    assert refused.value.status == 403
    assert origin.count() == 0  # refused at RECV: no origin connection
    async with edge.session.ws_connect(ws_url(edge, "/open/ws")) as ws:  # a path the rule does not match
        assert (await ws.receive_str()) == "hello"


async def test_an_origin_that_cannot_be_reached_is_a_502(make_edge: EdgeFactory, origin: Origin) -> None:
    EchoOrigin(origin)
    edge = await make_edge(config(), origin)
    await origin.stop()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await edge.session.ws_connect(ws_url(edge, "/ws"))
    assert refused.value.status == 502
    assert not tunnels(edge)


async def _raw(edge: RunningEdge, request: bytes) -> bytes:
    """Send ``request`` on a new connection and read until the edge closes it."""
    host, port = edge.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        async with asyncio.timeout(10):
            return await reader.read(-1)
    finally:
        writer.close()


def handshake(path: str, extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


async def test_websocket_false_answers_400_saying_why(make_edge: EdgeFactory, origin: Origin) -> None:
    EchoOrigin(origin)
    edge = await make_edge(config(behaviours="  - {path: /ws, origin: app, websocket: false}"), origin)
    answer = await _raw(edge, handshake("/ws"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"websocket: false" in body
    assert origin.count() == 0
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await edge.session.ws_connect(ws_url(edge, "/ws"))
    assert refused.value.status == 400


async def test_a_non_101_answer_is_delivered_and_never_cached(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/ws", b"no websocket here", Cache_Control="max-age=600")
    edge = await make_edge(config(), origin)
    for _ in range(2):
        answer = await _raw(edge, handshake("/ws"))
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"Connection: close" in head
        assert b"fwd=bypass" in head
        assert body == b"no websocket here"
    assert origin.count("/ws") == 2  # both handshakes went to the origin: nothing was stored
    assert all(seen.headers.get("Upgrade") == "websocket" for seen in origin.seen)
    # The same URL without the upgrade is a normal cacheable request: stored on the first fetch.
    await edge.get("/ws")
    await edge.get("/ws")
    assert origin.count("/ws") == 3


async def test_other_upgrades_are_served_without_switching(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/plain", b"plain answer")
    edge = await make_edge(config(), origin)
    request = (
        b"GET /plain HTTP/1.1\r\nHost: edge\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    answer = await _raw(edge, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == b"plain answer"
    seen = origin.seen[-1]
    assert "Upgrade" not in seen.headers
    assert "HTTP2-Settings" not in seen.headers


def client_frame(text: str) -> bytes:
    """A masked text frame (RFC 6455 §5.2), as a client sends it (payload < 126 bytes)."""
    data = text.encode()
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))
    return bytes([0x81, 0x80 | len(data)]) + mask + masked


async def test_bytes_in_the_handshake_packet_are_forwarded(make_edge: EdgeFactory, origin: Origin) -> None:
    """A viewer may send its first frame right behind the handshake, in the same packet."""
    EchoOrigin(origin)
    edge = await make_edge(config(), origin)
    host, port = edge.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(handshake("/ws") + client_frame("early"))
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            frames = b""
            while b"echo:early" not in frames:
                chunk = await reader.read(65536)
                assert chunk, "the edge closed the tunnel"
                frames += chunk
        assert b"hello" in frames  # the origin's greeting came first
    finally:
        writer.close()


async def test_access_log_line_after_the_close(
    make_edge: EdgeFactory, origin: Origin, tmp_path: Path
) -> None:
    EchoOrigin(origin)
    log = tmp_path / "access.log"
    edge = await make_edge(config(log=str(log)), origin)
    async with edge.session.ws_connect(ws_url(edge, "/ws")) as ws:
        assert (await ws.receive_str()) == "hello"
        await ws.send_bytes(b"u" * 10_000)
        assert len(await ws.receive_bytes()) == 10_000
        edge.edge.pipeline.access_log.flush()
        assert not log.exists() or '"status":101' not in log.read_text()  # not while it is open

    def logged() -> bool:
        edge.edge.pipeline.access_log.flush()
        return log.exists() and '"status":101' in log.read_text()

    await wait_for(logged)
    (line,) = [json.loads(text) for text in log.read_text().splitlines() if '"status":101' in text]
    assert line["path"] == "/ws"
    assert line["cache"] == "BYPASS" or line["cache"].lower() == "bypass"
    assert line["tunnel_bytes_up"] > 10_000  # the message plus frame headers and the close frame
    assert line["tunnel_bytes_down"] > 10_000 + len("hello")
    assert line["bytes"] == line["tunnel_bytes_down"]
    assert line["duration_ms"] > 0
    assert line["origin"] == "app"


async def test_wss_through_the_tls_listener(tmp_path: Path, origin: Origin) -> None:
    """The TLS front tunnels too (no half-close there: a close from either side closes both)."""
    app = EchoOrigin(origin)
    cert, key = make_cert(tmp_path, "edge")
    origin_url = await origin.start()
    tls_port = free_port()
    edge = await start_edge(
        tmp_path,
        f"""
server:
  name: edge-wss
  access_log: "off"
  tls: {{listen: "127.0.0.1:{tls_port}", cert: {cert.name}, key: {key.name}}}
origins: {{app: {{url: "{origin_url}"}}}}
behaviours:
  - {{path: "*", origin: app}}
""",
    )
    try:
        connector = aiohttp.TCPConnector(ssl=client_context(cert))
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.ws_connect(f"wss://127.0.0.1:{tls_port}/ws") as ws:
                assert (await ws.receive_str()) == "hello"
                payload = os.urandom(200_000)
                await ws.send_bytes(payload)
                assert (await ws.receive_bytes()) == payload[::-1]
            async with asyncio.timeout(10):
                await app.closed.wait()
            assert app.close_kind is WSMsgType.CLOSE
            async with session.ws_connect(f"wss://127.0.0.1:{tls_port}/ws") as ws:
                assert (await ws.receive_str()) == "hello"
                await ws.send_str("close-please")
                async with asyncio.timeout(10):
                    msg = await ws.receive()
                assert msg.type is WSMsgType.CLOSE
        front = edge._tls_front
        assert front is not None
        await wait_for(lambda: not front.tunnels)
    finally:
        await edge.stop()
