"""HTTP/3 to viewers (``server.http3: true``): aioquic's own client against the edge over UDP on 127.0.0.1.

Hits and misses through the same pipeline, several streams at once on one connection, a large object paced
by QUIC flow control, request bodies to the origin, Alt-Svc on the HTTPS listener only when HTTP/3 is on,
Via and the access log naming HTTP/3, the stream limit, garbage datagrams, GOAWAY on a graceful stop.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from proxy.app import Edge
from proxy.settings import ListenAddress, parse_config
from proxy.settings.loader import ConfigError
from tests.conftest import Origin
from tests.h2_client import H2Client
from tests.h3_client import h3_connect
from tests.integration.test_tls import make_cert
from tests.server_process import free_port


def _config(tmp_path: Path, origin_url: str, *, http3: bool = True, extra: str = "") -> str:
    cert, key = tmp_path / "edge.crt", tmp_path / "edge.key"
    if not cert.exists():
        make_cert(tmp_path, "edge")
    return f"""
server:
  name: edge-h3
  access_log: {tmp_path / "access.log"}
  http3: {"true" if http3 else "false"}
  tls: {{listen: "127.0.0.1:{free_port()}", cert: {cert.name}, key: {key.name}}}
{extra}
origins: {{app: {{url: "{origin_url}"}}}}
behaviours: [{{path: "*", origin: app}}]
"""


async def _edge(tmp_path: Path, text: str) -> Edge:
    edge = Edge(
        parse_config(text, str(tmp_path / "edge.yaml"), env={}, base_dir=tmp_path), shutdown_grace=2.0
    )
    await edge.start((ListenAddress(host="127.0.0.1", port=0),))
    return edge


def _h3_port(edge: Edge) -> int:
    assert edge.h3_addresses, "the edge listens for HTTP/3"
    return edge.h3_addresses[0][1]


def _log_lines(edge: Edge, tmp_path: Path) -> list[dict[str, object]]:
    edge.access_log.flush()
    path = tmp_path / "access.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_hit_and_miss_over_h3(tmp_path: Path, origin: Origin) -> None:
    origin.static("/page", "cached page", Cache_Control="max-age=60", Content_Type="text/plain")
    edge = await _edge(tmp_path, _config(tmp_path, await origin.start()))
    try:
        async with h3_connect(_h3_port(edge), tmp_path / "edge.crt") as client:
            miss = await client.get("/page")
            hit = await client.get("/page")
        assert (miss.status, bytes(miss.body)) == (200, b"cached page")
        assert (hit.status, bytes(hit.body)) == (200, b"cached page")
        assert "fwd=uri-miss" in (miss.header("cache-status") or "")
        assert "; hit" in (hit.header("cache-status") or "")
        assert hit.header("content-length") == str(len(b"cached page"))
        assert hit.header("content-type") == "text/plain"
        for response in (miss, hit):
            names = response.header_names()
            assert all(name == name.lower() for name in names)
            assert not {"connection", "keep-alive", "transfer-encoding"} & set(names)
        assert origin.count("/page") == 1
        assert origin.seen[0].headers["Via"] == "3 edge-h3"  # RFC 9110 §7.6.3: the viewer spoke HTTP/3
        assert origin.seen[0].headers["Host"] != ""
        lines = _log_lines(edge, tmp_path)
        assert [line["protocol"] for line in lines] == ["HTTP/3", "HTTP/3"]
        assert all(line["ttfb_ms"] is not None and line["ttfb_ms"] <= line["duration_ms"] for line in lines)
        assert [line["cache"] for line in lines] == ["miss", "hit"]
    finally:
        await edge.stop()


async def test_concurrent_streams_one_slow(tmp_path: Path, origin: Origin) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="slow", headers={"Cache-Control": "no-store"})

    async def fast(request: web.Request) -> web.Response:
        return web.Response(text=request.path, headers={"Cache-Control": "no-store"})

    origin.route("/slow", slow)
    origin.route("/fast/{n}", fast)
    edge = await _edge(tmp_path, _config(tmp_path, await origin.start()))
    try:
        async with h3_connect(_h3_port(edge), tmp_path / "edge.crt") as client:
            _, slow_response = client.start("GET", "/slow")
            fast = await asyncio.gather(*(client.get(f"/fast/{n}") for n in range(40)))
            assert [bytes(r.body) for r in fast] == [f"/fast/{n}".encode() for n in range(40)]
            assert not slow_response.done.is_set()  # still waiting, and it blocked nobody
            release.set()
            await asyncio.wait_for(slow_response.done.wait(), 30)
            assert bytes(slow_response.body) == b"slow"
    finally:
        release.set()
        await edge.stop()


async def test_large_object_paced_by_flow_control(tmp_path: Path, origin: Origin) -> None:
    """A viewer that grants no more credit stalls the transfer: the edge keeps at most its send high-water
    mark unacknowledged and stops reading the origin, instead of buffering the object."""
    size = 24 * 1024 * 1024
    chunk = os.urandom(64 * 1024)
    produced = 0

    async def big(request: web.Request) -> web.StreamResponse:
        nonlocal produced
        response = web.StreamResponse(headers={"Cache-Control": "no-store", "Content-Length": str(size)})
        await response.prepare(request)
        for _ in range(size // len(chunk)):
            await response.write(chunk)
            produced += len(chunk)
        return response

    origin.route("/big", big)
    edge = await _edge(tmp_path, _config(tmp_path, await origin.start()))
    try:
        front = edge._h3_front
        assert front is not None
        async with h3_connect(
            _h3_port(edge), tmp_path / "edge.crt", max_stream_data=256 * 1024, max_data=1024 * 1024
        ) as client:
            client.hold(True)
            stream_id, response = client.start("GET", "/big")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            # Wait until the edge's stream task waits for credit (its unacknowledged bytes are at the mark).
            while loop.time() < deadline and not any(
                state.waiter is not None for c in front.connections for state in c._streams.values()
            ):
                await asyncio.sleep(0.01)
            (connection,) = front.connections
            assert connection._unacked(stream_id) <= 256 * 1024 + len(chunk)
            assert produced < size // 2  # the origin is read only as fast as the viewer takes the body
            client.hold(False)
            await asyncio.wait_for(response.done.wait(), 60)
        assert response.status == 200 and len(response.body) == size
        assert bytes(response.body[: len(chunk)]) == chunk
    finally:
        await edge.stop()


async def test_request_body_reaches_origin(tmp_path: Path, origin: Origin) -> None:
    async def echo(request: web.Request) -> web.Response:
        size, first = 0, b""
        async for data in request.content.iter_any():
            first = first or data[:5]
            size += len(data)
        return web.Response(text=f"{request.method} {size} {first.decode()}")

    origin.route("/upload", echo)
    edge = await _edge(tmp_path, _config(tmp_path, await origin.start()))
    try:
        body = b"hello" + b"x" * (3 * 1024 * 1024)
        async with h3_connect(_h3_port(edge), tmp_path / "edge.crt") as client:
            response = await client.request("POST", "/upload", [("content-type", "text/plain")], body)
            trailer_free = await client.request("PUT", "/upload", (), b"hello")
        assert (response.status, bytes(response.body)) == (200, f"POST {len(body)} hello".encode())
        assert bytes(trailer_free.body) == b"PUT 5 hello"
    finally:
        await edge.stop()


async def test_alt_svc_only_when_http3_is_on(tmp_path: Path, origin: Origin) -> None:
    origin.static("/x", "x", Cache_Control="max-age=60")
    origin_url = await origin.start()
    for http3 in (True, False):
        text = _config(tmp_path, origin_url, http3=http3)
        context = ssl.create_default_context(cafile=str(tmp_path / "edge.crt"))
        edge = await _edge(tmp_path, text)
        try:
            tls_port = edge.tls_addresses[0][1]
            http_port = edge.addresses[0][1]
            connector = aiohttp.TCPConnector(ssl=context)
            async with aiohttp.ClientSession(connector=connector) as session:
                for _ in range(2):  # the miss, then the hit fast path
                    async with session.get(f"https://127.0.0.1:{tls_port}/x") as response:
                        assert response.status == 200
                        alt_svc = response.headers.getall("Alt-Svc", [])
                        if http3:
                            assert alt_svc == [f'h3=":{tls_port}"; ma=86400']
                            assert _h3_port(edge) == tls_port
                        else:
                            assert alt_svc == []
                    async with session.get(f"http://127.0.0.1:{http_port}/x") as response:
                        assert "Alt-Svc" not in response.headers  # http:// origins are not h3 origins
            h2 = await H2Client.connect(tls_port, tls=H2Client.tls_context())  # HTTP/2 on the same listener
            try:
                reply = await h2.request("/x", method="GET")
                assert reply.status == 200
                assert reply.header("alt-svc") == (f'h3=":{tls_port}"; ma=86400' if http3 else None)
            finally:
                await h2.close()
            if not http3:
                assert edge.h3_addresses == []
            assert {line["protocol"] for line in _log_lines(edge, tmp_path)} == {"HTTP/1.1", "HTTP/2"}
        finally:
            await edge.stop()


async def test_garbage_datagrams_never_crash_the_edge(tmp_path: Path, origin: Origin) -> None:
    origin.static("/ok", "ok")
    edge = await _edge(tmp_path, _config(tmp_path, await origin.start()))
    try:
        port = _h3_port(edge)
        garbage = [
            b"",
            b"\x00",
            os.urandom(40),
            os.urandom(1200),
            b"\xc0\x00\x00\x00\x01" + os.urandom(1300),  # long header, QUIC v1, random rest
            b"\xc0\x00\x00\x00\x01\x08" + os.urandom(8) + b"\x08" + os.urandom(8) + b"\x00" * 1200,  # Initial
            b"\xff\xff\xff\xff\xff" + os.urandom(1200),  # unknown version: version negotiation
            b"\x40" + os.urandom(100),  # short header, unknown connection
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(20):
                for datagram in garbage:
                    sock.sendto(datagram, ("127.0.0.1", port))
        async with h3_connect(port, tmp_path / "edge.crt") as client:
            response = await client.get("/ok")
        assert (response.status, bytes(response.body)) == (200, b"ok")
    finally:
        await edge.stop()


async def test_stream_limit_and_header_limits(tmp_path: Path, origin: Origin) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="done", headers={"Cache-Control": "no-store"})

    origin.route("/slow/{n}", slow)
    origin.static("/x", "x")
    limits = "  limits: {max_concurrent_streams: 2, max_header_bytes: 2KiB}"
    edge = await _edge(tmp_path, _config(tmp_path, await origin.start(), extra=limits))
    try:
        async with h3_connect(_h3_port(edge), tmp_path / "edge.crt") as client:
            assert client._quic._remote_max_streams_bidi == 2  # what the edge granted in the handshake
            started = [client.start("GET", f"/slow/{n}") for n in range(3)]
            quic_streams = client._quic._streams
            assert quic_streams[started[2][0]].is_blocked  # the third waits for the edge's credit
            release.set()
            for _, response in started:
                await asyncio.wait_for(response.done.wait(), 30)
                assert bytes(response.body) == b"done"
            # A decoded head over max_header_bytes: 431, as over HTTP/1.1.
            too_big = await client.get("/x", [("x-big", "a" * 2500)])
            assert too_big.status == 431
            # A HEADERS frame larger than the limit is not even buffered: the stream is reset.
            huge = await client.get("/x", [("x-huge", os.urandom(6000).hex())])
            assert huge.reset == 0x107  # H3_EXCESSIVE_LOAD
            fine = await client.get("/x")
            assert (fine.status, bytes(fine.body)) == (200, b"x")
    finally:
        release.set()
        await edge.stop()


async def test_graceful_stop_finishes_streams_and_closes(tmp_path: Path, origin: Origin) -> None:
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="finished", headers={"Cache-Control": "no-store"})

    origin.route("/slow", slow)
    edge = await _edge(tmp_path, _config(tmp_path, await origin.start()))
    try:
        async with h3_connect(_h3_port(edge), tmp_path / "edge.crt") as client:
            _, response = client.start("GET", "/slow")
            await asyncio.wait_for(arrived.wait(), 30)
            front = edge._h3_front
            assert front is not None
            stopping = asyncio.create_task(edge.stop())
            while not front.draining:  # stop() has begun: GOAWAY went out, the stream is still served
                await asyncio.sleep(0.01)
            release.set()
            await asyncio.wait_for(response.done.wait(), 30)
            assert (response.status, bytes(response.body)) == (200, b"finished")
            await asyncio.wait_for(stopping, 30)
            await asyncio.wait_for(client.wait_closed(), 30)
            assert client.terminated is not None and client.terminated.error_code == 0x100  # H3_NO_ERROR
    finally:
        release.set()
        await edge.stop()


async def test_renewed_certificate_serves_new_h3_connections(tmp_path: Path, origin: Origin) -> None:
    origin.static("/x", "x")
    edge = await _edge(tmp_path, _config(tmp_path, await origin.start()))
    try:
        renewed_cert, renewed_key = make_cert(tmp_path, "renewed", common_name="second")
        (tmp_path / "edge.crt").write_bytes(renewed_cert.read_bytes())
        (tmp_path / "edge.key").write_bytes(renewed_key.read_bytes())
        assert edge.tls is not None and edge.tls.reload_if_changed()
        async with h3_connect(_h3_port(edge), renewed_cert) as client:  # trusts only the renewed one
            response = await client.get("/x")
        assert response.status == 200
    finally:
        await edge.stop()


def test_http3_needs_tls(tmp_path: Path) -> None:
    text = """
server:
  http3: true
origins: {app: {url: "http://127.0.0.1:1"}}
behaviours: [{path: "*", origin: app}]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, str(tmp_path / "edge.yaml"), env={}, base_dir=tmp_path)
    message = str(caught.value)
    assert "http3" in message and "server.tls" in message and "edge.yaml:3" in message


async def test_slow_reader_is_cut_after_client_timeout(tmp_path: Path, origin: Origin) -> None:
    """A viewer that grants no credit for client_timeout loses the stream (or the idle connection); the
    origin transfer stops and the edge serves the next viewer."""
    origin.static("/big", os.urandom(4 * 1024 * 1024), Cache_Control="no-store")
    limits = "  limits: {client_timeout: 1s}"
    edge = await _edge(tmp_path, _config(tmp_path, await origin.start(), extra=limits))
    try:
        async with h3_connect(_h3_port(edge), tmp_path / "edge.crt", max_stream_data=64 * 1024) as client:
            client.hold(True)
            _, response = client.start("GET", "/big")
            await asyncio.wait_for(response.done.wait(), 30)
            assert response.reset == 0x10C or client.terminated is not None  # H3_REQUEST_CANCELLED
            assert len(response.body) < 4 * 1024 * 1024
        async with h3_connect(_h3_port(edge), tmp_path / "edge.crt") as client:
            complete = await client.get("/big")
        assert len(complete.body) == 4 * 1024 * 1024
        lines = _log_lines(edge, tmp_path)
        assert [line["completed"] for line in lines] == [False, True]
    finally:
        await edge.stop()
