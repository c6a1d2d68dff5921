"""HTTP/2 to viewers (issue 13): ALPN on the TLS listener, h2c with prior knowledge, streams through the same
pipeline, flow control both ways, stream errors for malformed requests, connection errors for bad frames.
Real sockets on 127.0.0.1, a real aiohttp origin, the ``h2`` library as the client (tests/h2_client.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from proxy.app import Edge
from proxy.settings import ListenAddress, parse_config
from tests.conftest import Origin
from tests.h2_client import H2Client
from tests.integration.test_tls import make_cert
from tests.server_process import free_port

BIG = bytes(range(256)) * 4096  # 1 MiB


@dataclass
class H2Edge:
    edge: Edge
    tls_port: int
    plain_port: int
    origin: Origin
    log_path: Path

    async def client(self, **kwargs: object) -> H2Client:
        return await H2Client.connect(self.tls_port, tls=H2Client.tls_context(), **kwargs)  # type: ignore[arg-type]

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]


EDGE_YAML = """
server:
  name: edge-h2
  access_log: {log}
  h2c: true
  tls: {{listen: "127.0.0.1:{tls_port}", cert: {cert}, key: {key}}}
  limits:
{limits}
origins: {{app: {{url: "{origin}"}}}}
behaviours:
  - path: "*"
    origin: app
"""


async def start_h2_edge(tmp_path: Path, origin: Origin, limits: str = "") -> H2Edge:
    cert, key = make_cert(tmp_path, "edge")
    origin_url = await origin.start()
    tls_port = free_port()
    log_path = tmp_path / "access.log"
    text = EDGE_YAML.format(
        log=log_path,
        tls_port=tls_port,
        cert=cert,
        key=key,
        origin=origin_url,
        limits=limits or "    client_timeout: 30s",
    )
    edge = Edge(
        parse_config(text, str(tmp_path / "edge.yaml"), env={}, base_dir=tmp_path), shutdown_grace=2.0
    )
    await edge.start((ListenAddress(host="127.0.0.1", port=0),))
    return H2Edge(edge, edge.tls_addresses[0][1], edge.addresses[0][1], origin, log_path)


class Gate:
    """Holds the origin's /slow answers until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def h2edge(tmp_path: Path, origin: Origin, gate: Gate) -> AsyncIterator[H2Edge]:
    origin.static("/page", "cached page", Cache_Control="max-age=60", ETag='"v1"')
    origin.static("/big", BIG, Cache_Control="max-age=60")
    origin.static("/empty", b"", status=204)

    async def echo(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.Response(text=f"{size} {digest.hexdigest()}", headers={"Cache-Control": "no-store"})

    async def slow(request: web.Request) -> web.Response:
        await gate.release.wait()
        return web.Response(text="slow", headers={"Cache-Control": "no-store"})

    async def fast(request: web.Request) -> web.Response:
        return web.Response(text=request.path, headers={"Cache-Control": "no-store"})

    origin.route("/echo", echo)
    origin.route("/slow", slow)
    origin.route("/fast/{n}", fast)
    running = await start_h2_edge(tmp_path, origin)
    yield running
    gate.release.set()
    await running.edge.stop()


async def test_hit_and_miss_over_tls_alpn(h2edge: H2Edge) -> None:
    client = await h2edge.client()
    try:
        first = await client.request("/page", headers=[("via", "1.1 upstream")])
        assert first.status == 200 and bytes(first.body) == b"cached page"
        assert first.header("x-cache") == "Miss from edgeproxy"
        assert first.header("content-length") == str(len(b"cached page"))
        second = await client.request("/page")
        assert second.status == 200 and bytes(second.body) == b"cached page"
        assert second.header("x-cache") == "Hit from edgeproxy"
        # RFC 9113 §8.2.2: no connection-specific field is ever sent.
        for reply in (first, second):
            names = {name for name, _ in reply.headers}
            assert not names & {
                "connection",
                "keep-alive",
                "transfer-encoding",
                "upgrade",
                "proxy-connection",
            }
            assert all(name == name.lower() for name in names)
    finally:
        await client.close()
    assert h2edge.origin.count("/page") == 1
    # RFC 9110 §7.6.3: what the edge forwards says it received HTTP/2.
    assert h2edge.origin.seen[-1].headers["Via"] == "1.1 upstream, 2 edge-h2"
    assert h2edge.edge.pipeline.stats.protocols == {"HTTP/2": 2}
    await h2edge.edge.stop()
    records = h2edge.log_lines()
    assert [r["protocol"] for r in records] == ["HTTP/2", "HTTP/2"]
    assert [r["cache"] for r in records] == ["miss", "hit"]
    assert all(r["ttfb_ms"] is not None and r["ttfb_ms"] <= r["duration_ms"] for r in records)


async def test_h2c_prior_knowledge_and_http11_on_the_same_port(h2edge: H2Edge) -> None:
    client = await H2Client.connect(h2edge.plain_port)
    try:
        reply = await client.request("/page", scheme="http")
        assert reply.status == 200 and bytes(reply.body) == b"cached page"
        again = await client.request("/page", scheme="http")
        assert again.header("x-cache") == "Hit from edgeproxy"
    finally:
        await client.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", h2edge.plain_port)
    writer.write(b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"cached page")
    assert h2edge.edge.pipeline.stats.protocols == {"HTTP/2": 2, "HTTP/1.1": 1}


async def test_h2c_is_off_by_default(tmp_path: Path, origin: Origin) -> None:
    origin.static("/page", "p")
    url = await origin.start()
    text = (
        f'server: {{access_log: "off"}}\norigins: {{app: {{url: "{url}"}}}}\n'
        'behaviours: [{path: "*", origin: app}]\n'
    )
    edge = Edge(parse_config(text, str(tmp_path / "e.yaml"), env={}, base_dir=tmp_path), shutdown_grace=1.0)
    await edge.start((ListenAddress(host="127.0.0.1", port=0),))
    try:
        client = await H2Client.connect(edge.addresses[0][1])
        stream_id = client.start("/page", scheme="http")
        await client.wait(lambda: False, timeout=5.0)  # the HTTP/1.1 front refuses the preface and closes
        assert client.closed and client.replies[stream_id].status == 0
        await client.close()
    finally:
        await edge.stop()


async def test_head_204_and_304_have_no_body(h2edge: H2Edge) -> None:
    client = await h2edge.client()
    try:
        head = await client.request("/page", method="HEAD")
        assert head.status == 200 and head.ended and bytes(head.body) == b""
        empty = await client.request("/empty")
        assert empty.status == 204 and bytes(empty.body) == b"" and empty.header("content-length") is None
        await client.request("/page")
        not_modified = await client.request("/page", headers=[("if-none-match", '"v1"')])
        assert not_modified.status == 304 and not_modified.ended and bytes(not_modified.body) == b""
    finally:
        await client.close()


async def test_100_concurrent_streams_one_slow_stream_blocks_nothing(h2edge: H2Edge, gate: Gate) -> None:
    client = await h2edge.client()
    try:
        slow = client.start("/slow")
        fast = [client.start(f"/fast/{n}") for n in range(99)]
        await client.wait(lambda: all(client.replies[s].ended for s in fast))
        assert all(bytes(client.replies[s].body) == f"/fast/{n}".encode() for n, s in enumerate(fast))
        assert not client.replies[slow].ended  # still waiting on its origin, alone
        gate.release.set()
        await client.wait(lambda: client.replies[slow].ended)
        assert bytes(client.replies[slow].body) == b"slow"
    finally:
        await client.close()


async def test_large_object_with_a_tiny_window(h2edge: H2Edge) -> None:
    # A 1 KiB stream window the client reopens as it reads: the object arrives whole, in small frames.
    client = await h2edge.client(settings={SettingCodes.INITIAL_WINDOW_SIZE: 1024})
    try:
        for _ in range(2):  # the miss (streamed from the origin) and the hit
            reply = await client.request("/big", timeout=60.0)
            assert reply.status == 200 and bytes(reply.body) == BIG
    finally:
        await client.close()


async def test_zero_window_pauses_that_stream_only(h2edge: H2Edge) -> None:
    # Stream windows start at zero; the client opens only the second stream's window. /big is a hit (a
    # miss would collapse the second request onto the first one's fill, which waits for its viewer).
    warm = await h2edge.client()
    assert bytes((await warm.request("/big")).body) == BIG
    await warm.close()
    client = await h2edge.client(settings={SettingCodes.INITIAL_WINDOW_SIZE: 0}, auto_ack=False)
    try:
        blocked = client.start("/big")
        flowing = client.start("/big")
        client.conn.increment_flow_control_window(len(BIG), stream_id=flowing)
        client.conn.increment_flow_control_window(len(BIG))  # the connection window
        client.flush()
        await client.wait(lambda: client.replies[flowing].ended, timeout=30.0)
        assert bytes(client.replies[flowing].body) == BIG
        assert client.replies[blocked].status == 200 and client.replies[blocked].body == b""
        client.conn.increment_flow_control_window(len(BIG), stream_id=blocked)
        client.conn.increment_flow_control_window(len(BIG))
        client.flush()
        await client.wait(lambda: client.replies[blocked].ended, timeout=30.0)
        assert bytes(client.replies[blocked].body) == BIG
    finally:
        await client.close()


async def test_request_body_streams_to_the_origin_within_windows(h2edge: H2Edge) -> None:
    client = await h2edge.client()
    try:
        payload = BIG * 3  # 3 MiB: beyond the edge's 1 MiB connection window and 64 KiB stream windows
        stream_id = client.open("/echo", headers=[("content-length", str(len(payload)))])
        await client.send_body(stream_id, payload)
        reply = client.replies[stream_id]
        await client.wait(lambda: reply.ended or reply.reset is not None)
        assert bytes(reply.body).decode() == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"
    finally:
        await client.close()


async def test_malformed_request_is_a_stream_error(h2edge: H2Edge) -> None:
    client = await h2edge.client()
    try:
        # An upper-case field name and a connection-specific field (RFC 9113 §8.2.1, §8.2.2): the h2
        # client library would refuse to send them, so its validation is turned off for this.
        client.conn.config.validate_outbound_headers = False
        client.conn.config.normalize_outbound_headers = False
        bad = client.start("/page", headers=[("X-Upper", "1")])
        worse = client.start("/page", headers=[("connection", "keep-alive")])
        await client.wait(
            lambda: client.replies[bad].reset is not None and client.replies[worse].reset is not None
        )
        assert client.replies[bad].reset == ErrorCodes.PROTOCOL_ERROR
        assert client.replies[worse].reset == ErrorCodes.PROTOCOL_ERROR
        good = await client.request("/page")  # the connection goes on
        assert good.status == 200
    finally:
        await client.close()


async def test_bad_frames_are_a_connection_error_never_a_crash(h2edge: H2Edge) -> None:
    bystander = await h2edge.client()
    garbage = [
        b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00",  # WINDOW_UPDATE increment 0
        b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"\x00" * 8,  # PING on a stream
        b"\x00\x00\x05\x01\x05\x00\x00\x00\x02" + b"\xff" * 5,  # HEADERS, broken HPACK, even stream
        b"\x00\x00\x01\x09\x04\x00\x00\x00\x01\x82",  # CONTINUATION with no HEADERS
        b"\xff" * 64,  # no frame at all
    ]
    try:
        for data in garbage:
            client = await h2edge.client()
            client.send_raw(data)
            await client.wait(lambda c=client: c.goaway is not None)
            assert client.goaway is not None and client.goaway.error_code != ErrorCodes.NO_ERROR
            await client.close()
            reply = await bystander.request("/page")
            assert reply.status == 200
    finally:
        await bystander.close()


def _curl_has_http2() -> bool:
    import shutil
    import subprocess

    if shutil.which("curl") is None:
        return False
    return "HTTP2" in subprocess.run(["curl", "-V"], capture_output=True, text=True).stdout


needs_curl_http2 = pytest.mark.skipif(not _curl_has_http2(), reason="curl without HTTP/2 (nghttp2)")


async def _curl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "curl", "-s", "-i", "--max-time", "20", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    return out.decode("utf-8", "replace")


@needs_curl_http2
async def test_curl_http2_over_tls_and_prior_knowledge(h2edge: H2Edge) -> None:
    tls = await _curl("--http2", "-k", f"https://127.0.0.1:{h2edge.tls_port}/page")
    assert tls.startswith("HTTP/2 200") and tls.endswith("cached page")
    for _ in range(2):  # http://… is another cache key than https://…: a miss, then a hit
        plain = await _curl("--http2-prior-knowledge", f"http://127.0.0.1:{h2edge.plain_port}/page")
    assert plain.startswith("HTTP/2 200") and "x-cache: Hit from edgeproxy" in plain
    big = await _curl("--http2", "-k", "-o", "/dev/null", "-w", "%{http_version} %{size_download}",
                      f"https://127.0.0.1:{h2edge.tls_port}/big")  # fmt: skip
    assert big.endswith(f"2 {len(BIG)}")
