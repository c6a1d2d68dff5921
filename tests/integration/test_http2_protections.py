"""HTTP/2 protections (issue 13 item 2), each against a hostile raw client (tests/h2_client.RawClient), each
checking that the edge keeps answering a well-behaved client on another connection: concurrent streams,
header list size and HPACK bombs, rapid reset (CVE-2023-44487), CONTINUATION floods, SETTINGS/PING/
WINDOW_UPDATE floods, zero-window readers, idle connections, GOAWAY on graceful stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.conftest import Origin, wait_for
from tests.h2_client import H2Client, RawClient
from tests.integration.test_http2 import BIG, Gate, H2Edge, start_h2_edge

LIMITS = """\
    max_concurrent_streams: 10
    max_header_list_size: 16KiB
    max_stream_resets: 50
    max_control_frames: 100
    idle_timeout: 1s
    send_timeout: 1s
"""


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def guarded(tmp_path: Path, origin: Origin, gate: Gate) -> AsyncIterator[H2Edge]:
    from aiohttp import web

    origin.static("/page", "cached page", Cache_Control="max-age=60")
    origin.static("/big", BIG, Cache_Control="max-age=60")

    async def slow(request: web.Request) -> web.Response:
        await gate.release.wait()
        return web.Response(text="slow", headers={"Cache-Control": "no-store"})

    origin.route("/slow", slow)
    running = await start_h2_edge(tmp_path, origin, LIMITS)
    yield running
    gate.release.set()
    await running.edge.stop()


async def raw(edge: H2Edge) -> RawClient:
    return await RawClient.connect(edge.tls_port, H2Client.tls_context())


async def still_serving(edge: H2Edge) -> None:
    """A well-behaved viewer on its own connection is answered."""
    client = await edge.client()
    try:
        reply = await client.request("/page")
        assert reply.status == 200 and bytes(reply.body) == b"cached page"
    finally:
        await client.close()


async def expect_goaway(client: RawClient, code: int) -> None:
    await client.wait(lambda: client.goaway is not None)
    assert client.goaway is not None and client.goaway.error_code == code
    await client.wait(lambda: client.closed)
    assert client.closed
    await client.close()


async def test_settings_announce_the_limits(guarded: H2Edge) -> None:
    client = await raw(guarded)
    await client.wait(lambda: bool(client.settings))
    assert client.settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 10
    assert client.settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 16 * 1024
    assert client.settings[SettingCodes.HEADER_TABLE_SIZE] == 4096
    assert client.settings[SettingCodes.ENABLE_PUSH] == 0
    await client.close()


async def test_streams_beyond_max_concurrent_streams_are_refused(
    guarded: H2Edge, gate: Gate, origin: Origin
) -> None:
    client = await raw(guarded)
    # Distinct URLs: identical misses would be collapsed into one origin fetch.
    client.send(b"".join(client.headers(1 + 2 * n, f"/slow?{n}") for n in range(11)))
    # RFC 9113 §5.1.2: the 11th stream is a stream error (REFUSED_STREAM); the connection goes on.
    await client.wait(lambda: 21 in client.resets)
    assert client.resets == {21: ErrorCodes.REFUSED_STREAM}
    await wait_for(lambda: origin.count("/slow") == 10)  # the 10 others are served, all at once
    gate.release.set()
    await client.wait(lambda: len(client.ended) == 10)
    assert client.ended == set(range(1, 21, 2)) and 21 not in client.answered
    # The streams ended: a new one is served on the same connection (its HPACK state intact).
    client.send(client.headers(23, "/page"))
    await client.wait(lambda: 23 in client.ended)
    assert bytes(client.bodies[23]) == b"cached page"
    assert client.goaway is None and not client.closed
    assert origin.count("/slow") == 10
    await client.close()
    await still_serving(guarded)


@pytest.mark.parametrize("paced", [True, False], ids=["one-by-one", "one-burst"])
async def test_a_viewer_that_keeps_exceeding_the_stream_limit_is_cut(guarded: H2Edge, paced: bool) -> None:
    """Refusals are charged to the rapid-reset budget (50): one by one, the 51st refusal ends the
    connection; in one burst, more streams than the limit and the budget together end it at once."""
    client = await raw(guarded)
    client.send(b"".join(client.headers(1 + 2 * n, "/slow") for n in range(10)))
    excess = [1 + 2 * n for n in range(10, 10 + 200)]
    if paced:
        for stream in excess:
            client.send(client.headers(stream, "/slow"))
            await client.wait(lambda s=stream: s in client.resets or client.goaway is not None)  # type: ignore[misc]
            if client.goaway is not None:
                break
        assert 50 <= len(client.resets) <= 51
        assert set(client.resets.values()) == {ErrorCodes.REFUSED_STREAM}
    else:
        client.send(b"".join(client.headers(stream, "/slow") for stream in excess))
    await expect_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)
    await still_serving(guarded)


async def test_hpack_bomb_and_oversized_header_list(guarded: H2Edge) -> None:
    client = await raw(guarded)
    # HPACK by hand (RFC 7541): GET https / with :authority as literals that are never indexed …
    pseudo = b"\x82\x87\x84\x01\x09127.0.0.1"
    # … and a 4000-byte field entering the dynamic table (it fits the 4096-byte table) …
    bomb = b"\x40\x06x-bomb\x7f\xa1\x1e" + b"a" * 4000
    client.send(HeadersFrame(1, pseudo + bomb, flags=["END_HEADERS", "END_STREAM"]).serialize())
    await client.wait(lambda: 1 in client.answered)
    # … then a 210-byte block names it (index 62) 200 times: 800 KB decoded, over max_header_list_size.
    client.send(HeadersFrame(3, pseudo + b"\xbe" * 200, flags=["END_HEADERS", "END_STREAM"]).serialize())
    await client.wait(lambda: client.goaway is not None)
    assert client.goaway is not None and client.goaway.error_code != ErrorCodes.NO_ERROR
    assert 3 not in client.answered
    await client.close()
    # A dynamic table size update above the announced HEADER_TABLE_SIZE (RFC 7541 §6.3).
    client = await raw(guarded)
    block = b"\x3f\xe1\xff\x03" + client.encoder.encode([(":method", "GET")])
    oversize = HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"])
    client.send(oversize.serialize())
    await client.wait(lambda: client.goaway is not None)
    assert client.goaway is not None and client.goaway.error_code != ErrorCodes.NO_ERROR
    await client.close()
    await still_serving(guarded)


async def test_rapid_reset_gets_goaway(guarded: H2Edge, origin: Origin) -> None:
    client = await raw(guarded)
    burst = b"".join(
        client.headers(stream, "/slow") + RstStreamFrame(stream, error_code=ErrorCodes.CANCEL).serialize()
        for stream in range(1, 2 * 500, 2)
    )
    client.send(burst)
    await expect_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)
    await still_serving(guarded)
    assert origin.count("/slow") <= 60  # the budget (50), not the 500 streams, reached the origin


async def test_continuation_flood(guarded: H2Edge) -> None:
    client = await raw(guarded)
    start = HeadersFrame(1, client.encoder.encode([(":method", "GET")]))
    client.send(start.serialize())  # no END_HEADERS: the block goes on …
    for _ in range(200):  # … 200 KB of CONTINUATION, never ending
        client.send(ContinuationFrame(1, b"\x00" * 1000).serialize())
        if client.closed:
            break
    await expect_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)
    # Empty CONTINUATION frames cost nothing in bytes: they are counted as control frames.
    client = await raw(guarded)
    client.send(start.serialize() + ContinuationFrame(1, b"").serialize() * 500)
    await expect_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)
    await still_serving(guarded)


@pytest.mark.parametrize(
    "flood",
    [
        SettingsFrame(0).serialize(),
        PingFrame(0, b"12345678").serialize(),
        WindowUpdateFrame(0, 1).serialize(),
        WindowUpdateFrame(1, 1).serialize(),
    ],
    ids=["settings", "ping", "window-update", "stream-window-update"],
)
async def test_control_frame_floods(guarded: H2Edge, flood: bytes) -> None:
    client = await raw(guarded)
    if flood[3] == 0x8 and flood[5:9] != b"\0\0\0\0":
        client.send(client.headers(1, "/slow"))  # a stream to update
    client.send(flood * 2000)
    await expect_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)
    await still_serving(guarded)


async def test_zero_window_reader_is_reset_after_send_timeout(guarded: H2Edge) -> None:
    client = await guarded.client(settings={SettingCodes.INITIAL_WINDOW_SIZE: 0}, auto_ack=False)
    try:
        stream = client.start("/big")
        await client.wait(lambda: client.replies[stream].reset is not None, timeout=15.0)
        assert client.replies[stream].reset == ErrorCodes.CANCEL
    finally:
        await client.close()
    # The connection window shut (streams open, the connection never acknowledged): the connection goes.
    client = await guarded.client(settings={SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24}, auto_ack=False)
    try:
        client.start("/big")
        await client.wait(lambda: client.goaway is not None, timeout=15.0)
        assert client.goaway is not None and client.goaway.error_code == ErrorCodes.FLOW_CONTROL_ERROR
    finally:
        await client.close()
    await still_serving(guarded)


async def test_idle_connection_gets_goaway(guarded: H2Edge) -> None:
    client = await guarded.client()
    try:
        assert (await client.request("/page")).status == 200
        await client.wait(lambda: client.goaway is not None, timeout=15.0)
        assert client.goaway is not None and client.goaway.error_code == ErrorCodes.NO_ERROR
        await client.wait(lambda: False, timeout=15.0)
        assert client.closed
    finally:
        await client.close()


async def test_graceful_stop_sends_goaway_and_lets_open_streams_finish(
    guarded: H2Edge, gate: Gate, origin: Origin
) -> None:
    # A raw client: the h2 library's own client drops every frame after a GOAWAY.
    client = await raw(guarded)
    try:
        client.send(client.headers(1, "/slow"))
        await wait_for(lambda: origin.count("/slow") == 1)
        stopping = asyncio.get_running_loop().create_task(guarded.edge.stop())
        await client.wait(lambda: client.goaway is not None)
        assert client.goaway is not None and client.goaway.error_code == ErrorCodes.NO_ERROR
        assert client.goaway.last_stream_id == 1
        assert 1 not in client.ended
        client.send(client.headers(3, "/page"))  # sent after the GOAWAY: refused, never served
        gate.release.set()
        await client.wait(lambda: 1 in client.ended)
        assert bytes(client.bodies[1]) == b"slow"
        await stopping
        assert 3 not in client.answered
    finally:
        await client.close()
