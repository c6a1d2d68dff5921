"""Hostile input at the viewer side, through raw sockets: open-proxy attempts, smuggling, oversized heads
and bodies, slow viewers, connection floods, and a fuzz run after which the edge must still serve.

The edge here is served by ``proxy.server.http1.make_server`` (the HTTP/1.1 front with the hardening);
``test_edge_serves_through_the_hardened_server`` checks that ``proxy.app.Edge`` uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from proxy.app import Edge
from proxy.server.http1 import H1Server, make_server
from proxy.settings import parse_config
from tests.conftest import EdgeFactory, Origin, wait_for

CONFIG = """
server:
  name: edge-test
  access_log: "off"
  limits: {{max_header_bytes: 4KiB, max_body_bytes: 1KiB, client_timeout: {timeout}}}
  {extra}
origins: {{app: {{url: "{{origin}}"}}}}
behaviours: [{{path: "*", origin: app}}]
"""
LEAKS = (b"Traceback", b"aiohttp", b"Python/", b'File "', b".py")


@dataclass
class RawEdge:
    edge: Edge
    server: H1Server
    port: int

    async def exchange(self, data: bytes, *, source: str = "127.0.0.1", eof: bool = False) -> bytes:
        """Send ``data`` on a new connection (``eof``: then half-close) and read until the edge closes."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))
        try:
            writer.write(data)
            if eof:
                writer.write_eof()
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


HardenedFactory = Callable[..., Awaitable[RawEdge]]


@pytest.fixture
async def hardened(tmp_path: Path) -> AsyncIterator[HardenedFactory]:
    started: list[tuple[H1Server, Edge]] = []

    async def start(
        origin: Origin,
        *,
        extra: str = "",
        timeout: str = "60s",
        max_connections: int | None = None,
        lingering_time: float = 10.0,
    ) -> RawEdge:
        text = CONFIG.format(extra=extra, timeout=timeout).replace("{origin}", await origin.start())
        config = parse_config(text, str(tmp_path / "edge.yaml"), env={}, base_dir=tmp_path)
        edge = Edge(config, shutdown_grace=1.0)
        await edge.runtime.start()
        server = make_server(
            edge.pipeline, config.server, max_connections=max_connections, lingering_time=lingering_time
        )
        started.append((server, edge))
        bound = await server.listen("127.0.0.1", 0)
        return RawEdge(edge, server, bound[0][1])

    yield start
    for server, edge in started:
        await server.shutdown(1.0)
        await edge.stop()


def catch_all(origin: Origin) -> None:
    """Every path answers 200 with its method, path and body; the origin names itself without versions."""

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        text = f"{request.method} {request.path_qs} {len(body)}"
        return web.Response(text=text, headers={"Server": "origin", "Cache-Control": "no-store"})

    origin.route("/{tail:.*}", handler)


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/"), response[:200]
    return int(response.split(b" ", 2)[1])


def head_of(response: bytes) -> dict[str, str]:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in head)}


def assert_no_leaks(response: bytes) -> None:
    for leak in LEAKS:
        assert leak not in response, (leak, response[:300])


# ----------------------------------------------------------------------------------- never an open proxy


async def test_connect_is_refused(hardened: HardenedFactory, origin: Origin) -> None:
    catch_all(origin)
    edge = await hardened(origin)
    response = await edge.exchange(b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n")
    assert status_of(response) == 405
    assert "GET" in head_of(response)["allow"]
    assert origin.count() == 0


async def test_absolute_form_for_a_foreign_host_is_refused(hardened: HardenedFactory, origin: Origin) -> None:
    catch_all(origin)
    edge = await hardened(origin)
    response = await edge.exchange(b"GET http://evil.example/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status_of(response) == 400
    assert "detail=foreign-host" in head_of(response)["cache-status"]
    assert origin.count() == 0
    # Absolute-form naming the host we serve is read as origin-form.
    response = await edge.exchange(
        b"GET http://a.test/x?y=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    )
    assert status_of(response) == 200
    assert origin.seen[-1].path_qs == "/x?y=1"


async def test_server_hosts_answer_421_for_other_hosts(hardened: HardenedFactory, origin: Origin) -> None:
    catch_all(origin)
    edge = await hardened(origin, extra='hosts: [cdn.example, "*.cdn.example"]')
    ok = await edge.exchange(b"GET /a HTTP/1.1\r\nHost: img.cdn.example\r\nConnection: close\r\n\r\n")
    assert status_of(ok) == 200
    other = await edge.exchange(b"GET /a HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    assert status_of(other) == 421
    assert "detail=misdirected" in head_of(other)["cache-status"]
    assert origin.count() == 1


async def test_host_spellings_share_one_cache_entry_and_pass_server_hosts(
    hardened: HardenedFactory, origin: Origin
) -> None:
    """``Host`` is normalised in the cache key (case, trailing dot, default port) and ``server.hosts`` takes
    the same spellings: one origin fetch serves them all."""
    origin.static("/cached", "one copy", Cache_Control="max-age=60")
    catch_all(origin)
    edge = await hardened(origin, extra="hosts: [example.com]")
    statuses = []
    for host in (b"example.com", b"Example.COM.", b"example.com:80", b"EXAMPLE.com.:80"):
        response = await edge.exchange(
            b"GET /cached HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        )
        statuses.append((status_of(response), head_of(response)["x-cache"].split()[0]))
        assert response.endswith(b"one copy")
    assert statuses == [(200, "Miss"), (200, "Hit"), (200, "Hit"), (200, "Hit")]
    assert origin.count("/cached") == 1
    other_port = await edge.exchange(
        b"GET /cached HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n"
    )
    assert status_of(other_port) == 200 and head_of(other_port)["x-cache"].startswith("Miss")


@pytest.mark.parametrize("target", [b"*", b"@evil.example/x", b"/a#b", b"evil.example:80"])
async def test_odd_targets_are_refused(hardened: HardenedFactory, origin: Origin, target: bytes) -> None:
    catch_all(origin)
    edge = await hardened(origin)
    response = await edge.exchange(b"GET " + target + b" HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert status_of(response) == 400
    assert_no_leaks(response)
    assert origin.count() == 0


# ----------------------------------------------------------------------------------- smuggling

SMUGGLING = {
    "content-length and transfer-encoding": (
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    ),
    "duplicate content-length": (
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\n"
        b"abcGET /smuggled HTTP/1.1\r\n\r\n"
    ),
    "content-length list": b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
    "obsolete line folding": b"GET /a HTTP/1.1\r\nHost: a\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n",
    "transfer-encoding twice": (
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"
        b"0\r\n\r\n"
    ),
    "transfer coding list": (
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding on http/1.0": (
        b"POST /a HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "space before colon": b"GET /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
    "bare line feeds": b"GET /a HTTP/1.1\nHost: a\n\n",
    "two host fields": b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad chunk size": (
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", list(SMUGGLING))
async def test_ambiguous_framing_is_refused_and_never_forwarded(
    hardened: HardenedFactory, origin: Origin, name: str
) -> None:
    catch_all(origin)
    edge = await hardened(origin)
    response = await edge.exchange(SMUGGLING[name])
    assert status_of(response) in (400, 501)
    assert response.count(b"HTTP/1.") == 1  # nothing after the refusal was read as a second request
    head = head_of(response)
    assert head["server"] == "edgeproxy"
    assert head.get("connection", "close").lower() == "close"
    assert_no_leaks(response)
    assert origin.count() == 0


# ----------------------------------------------------------------------------------- limits


async def test_oversized_request_heads_get_431(hardened: HardenedFactory, origin: Origin) -> None:
    catch_all(origin)
    edge = await hardened(origin)
    one_huge_field = b"GET /a HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    many_fields = b"GET /a HTTP/1.1\r\nHost: a\r\n" + b"".join(
        b"X-%d: %s\r\n" % (i, b"b" * 100) for i in range(60)
    )
    too_many = b"GET /a HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(300)) + b"\r\n"
    long_target = b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    for message in (one_huge_field, many_fields + b"\r\n", too_many, long_target):
        response = await edge.exchange(message)
        assert status_of(response) == 431, response[:100]
        assert_no_leaks(response)
    assert origin.count() == 0


async def test_declared_body_over_the_limit_gets_413(hardened: HardenedFactory, origin: Origin) -> None:
    catch_all(origin)
    edge = await hardened(origin)
    response = await edge.exchange(
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n" + b"x" * 1025
    )
    assert status_of(response) == 413
    assert "detail=body-too-large" in head_of(response)["cache-status"]
    assert origin.count() == 0
    response = await edge.exchange(
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n" + b"x" * 1024
    )
    assert status_of(response) == 200 and response.endswith(b"POST /a 1024")


async def test_streamed_body_over_the_limit_gets_413(hardened: HardenedFactory, origin: Origin) -> None:
    catch_all(origin)
    edge = await hardened(origin)
    chunks = b"".join(b"100\r\n" + b"y" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
    response = await edge.exchange(
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    )
    assert status_of(response) == 413
    assert_no_leaks(response)
    small = b"100\r\n" + b"y" * 256 + b"\r\n0\r\n\r\n"
    response = await edge.exchange(
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + small
    )
    assert status_of(response) == 200 and response.endswith(b"POST /a 256")


async def test_slow_viewers_are_dropped_after_client_timeout(
    hardened: HardenedFactory, origin: Origin
) -> None:
    catch_all(origin)
    edge = await hardened(origin, timeout="200ms")
    # A head that never ends (slowloris): the edge closes the connection, answering nothing.
    assert await edge.exchange(b"GET /a HTTP/1.1\r\nHost: a\r\nX-Slow: ") == b""
    # A body that stops coming: 408, and the origin request is abandoned.
    response = await edge.exchange(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly part")
    assert status_of(response) == 408
    assert "detail=client-timeout" in head_of(response)["cache-status"]


async def test_connections_are_bounded(hardened: HardenedFactory, origin: Origin) -> None:
    catch_all(origin)
    edge = await hardened(origin, max_connections=2)
    idle = [await asyncio.open_connection("127.0.0.1", edge.port) for _ in range(2)]
    try:
        await wait_for(lambda: len(edge.server.connections) == 2)
        refused = await edge.exchange(b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert refused == b""
        assert edge.server.refused_connections == 1
    finally:
        for _, writer in idle:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    await wait_for(lambda: len(edge.server.connections) == 0)
    response = await edge.exchange(b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 200


async def test_parse_errors_say_nothing_about_the_server(hardened: HardenedFactory, origin: Origin) -> None:
    catch_all(origin)
    edge = await hardened(origin)
    response = await edge.exchange(b"G@T /<script>alert(1)</script> HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status_of(response) == 400
    assert head_of(response)["server"] == "edgeproxy"
    assert b"<script>" not in response
    assert_no_leaks(response)


# ----------------------------------------------------------------------------------- fuzzing

_METHODS = (
    [b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS"],
    [b"CONNECT", b"TRACE", b"G\x00T", b"", b"GET GET", b"\x16\x03\x01"],
)
_TARGETS = (
    [b"/", b"/a?b=c", b"/%2e%2e/%2e%2e/etc/passwd", b"//x", b"http://a/x"],
    [b"*", b"http://evil.example/", b"/%00", b"/\xff\xfe", b"/a b", b"/" + b"z" * 5000, b"", b"?x"],
)
_VERSIONS = (
    [b"HTTP/1.1", b"HTTP/1.0"],
    [b"HTTP/2.0", b"HTTP/1.1x", b"HTTP/0.9", b"", b"http/1.1", b"HTTP/1.1 "],
)
_FIELDS = (
    [
        b"Content-Length: 5",
        b"Transfer-Encoding: chunked",
        b"Expect: 100-continue",
        b"Range: bytes=0-0,0-0,0-0,0-0,0-0",
        b"Cookie: " + b"a=b; " * 50,
        b"X-Forwarded-For: 1.2.3.4, <script>",
        b"Accept-Encoding: \xff\xfe",
        b"Upgrade: h2c",
        b"Connection: Upgrade\r\nUpgrade: websocket",
    ],
    [
        b"Host: a\r\nHost: b",
        b"Content-Length: -1",
        b"Content-Length: 99999999999999999999",
        b"Content-Length: 3\r\nContent-Length: 4",
        b"Transfer-Encoding: chunked\r\nContent-Length: 3",
        b"Transfer-Encoding: xchunked",
        b"X-Fold: a\r\n b",
        b"X-Nul: a\x00b",
        b"X-Bad Name: v",
        b": empty",
        b"X-Long: " + b"q" * 5000,
    ],
)
_BODIES = [
    b"",
    b"abcde",
    b"5\r\nabcde\r\n0\r\n\r\n",
    b"zz\r\n",
    b"5;ext=1\r\nabcde\r\n0\r\nTrailer: x\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
]
SENTINEL = b"GET /sentinel HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def _pick(rng: random.Random, choices: tuple[list[bytes], list[bytes]], hostile: float) -> bytes:
    return rng.choice(choices[1] if rng.random() < hostile else choices[0])


def fuzz_message(rng: random.Random) -> bytes:
    """One request, hostile in some of its parts: structured pieces (each hostile with some probability),
    then byte-level mutations (none in about a third of the cases, so that some requests stay valid)."""
    line = b" ".join((_pick(rng, _METHODS, 0.2), _pick(rng, _TARGETS, 0.2), _pick(rng, _VERSIONS, 0.15)))
    fields = [b"Host: a"] if rng.random() < 0.85 else []
    fields += [_pick(rng, _FIELDS, 0.4) for _ in range(rng.randrange(0, 4))]
    message = bytearray(
        line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + rng.choice(_BODIES)
    )
    for _ in range(rng.choice((0, 0, 1, 2, 3))):
        operation = rng.randrange(4)
        position = rng.randrange(len(message) + 1)
        if operation == 0 and message:
            message[min(position, len(message) - 1)] = rng.randrange(256)
        elif operation == 1:
            message[position:position] = rng.choice([b"\r", b"\n", b"\x00", b" ", b"\t", b":", b"\r\n", b"%"])
        elif operation == 2:
            del message[position:]
        else:
            message[position:position] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    return bytes(message)


async def test_fuzzed_requests_never_break_the_edge(
    hardened: HardenedFactory, origin: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    catch_all(origin)
    # client_timeout and lingering_time bound the cases that leave a request unfinished (a body shorter
    # than declared): the edge waits for the rest that long before it answers or closes.
    edge = await hardened(origin, timeout="200ms", lingering_time=0.2)
    rng = random.Random(20240611)
    statuses: dict[int, int] = {}
    with caplog.at_level(logging.ERROR):
        for _ in range(300):
            # A well-formed request follows each fuzzed one so that the edge always has a reason to answer
            # and close: after a refusal it is never read, after a valid request it is served too.
            response = await edge.exchange(fuzz_message(rng) + SENTINEL)
            if response:
                status = status_of(response)
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500 or status in (501, 502, 504, 505), response[:300]
                assert_no_leaks(response)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert statuses.get(400, 0) > 50, statuses  # the fuzzer did reach the parser's refusals
    assert statuses.get(200, 0) > 5, statuses  # and some requests were well-formed enough to serve
    # Still serving, GETs and bodies alike.
    response = await edge.exchange(b"GET /after?fuzz=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 200 and response.endswith(b"GET /after?fuzz=1 0")
    response = await edge.exchange(
        b"POST /after HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"
    )
    assert status_of(response) == 200 and response.endswith(b"POST /after 4")


# ----------------------------------------------------------------------------------- wiring


async def test_edge_serves_through_the_hardened_server(make_edge: EdgeFactory, origin: Origin) -> None:
    catch_all(origin)
    edge = await make_edge(
        'server: {hosts: [cdn.example]}\norigins: {app: {url: "{origin}"}}\n'
        'behaviours: [{path: "*", origin: app}]',
        origin,
    )
    port = int(edge.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"G@T / HTTP/1.1\r\nHost: cdn.example\r\n\r\n")
        async with asyncio.timeout(30):
            response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    assert head_of(response)["server"] == "edgeproxy"
    other, _ = await edge.get("/", headers={"Host": "evil.example"})
    assert other.status == 421


# ----------------------------------------------------------------------------------- versions and framing


@pytest.mark.parametrize(
    "version", [b"HTTP/2.0", b"HTTP/3.1", b"HTTP/1.2", b"HTTP/0.9", b"HTTP/2.1", b"HTTP/9.9"]
)
async def test_version_not_supported_status_line_says_http_1_1(
    hardened: HardenedFactory, origin: Origin, version: bytes
) -> None:
    catch_all(origin)
    edge = await hardened(origin)
    response = await edge.exchange(b"GET / " + version + b"\r\nHost: a\r\n\r\n")
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    assert status_of(response) in (400, 505), status_line
    assert origin.count() == 0


def _responses(data: bytes) -> list[tuple[bytes, dict[str, str], bytes]]:
    """Split what came back on one connection into (status line, head fields, body) per response, using
    Content-Length framing (every answer in these tests has one)."""
    out: list[tuple[bytes, dict[str, str], bytes]] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data[:300]
        fields = head_of(head + b"\r\n\r\n")
        length = int(fields.get("content-length", "0"))
        out.append((head.split(b"\r\n", 1)[0], fields, rest[:length]))
        data = rest[length:]
    return out


async def test_pipelined_http_1_0_requests_get_the_first_answered_then_close(
    hardened: HardenedFactory, origin: Origin
) -> None:
    catch_all(origin)
    edge = await hardened(origin)
    request = b"GET /one HTTP/1.0\r\nHost: a\r\n\r\nGET /two HTTP/1.0\r\nHost: a\r\n\r\n"
    responses = _responses(await edge.exchange(request))
    assert len(responses) == 1, responses
    status_line, fields, body = responses[0]
    assert status_line.startswith(b"HTTP/1.1 200 ") and body == b"GET /one 0"
    assert fields.get("connection", "close").lower() == "close"


async def test_http_1_0_keep_alive_pipelined_requests_are_both_answered(
    hardened: HardenedFactory, origin: Origin
) -> None:
    catch_all(origin)
    edge = await hardened(origin)
    request = (
        b"GET /one HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
        b"GET /two HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
        b"GET /three HTTP/1.0\r\nHost: a\r\n\r\n"
    )
    responses = _responses(await edge.exchange(request))
    assert [body for _, _, body in responses] == [b"GET /one 0", b"GET /two 0", b"GET /three 0"]
    for status_line, fields, _ in responses[:2]:
        assert status_line.startswith(b"HTTP/1.1 200 ") and fields["connection"].lower() == "keep-alive"
    assert responses[2][1].get("connection", "close").lower() == "close"


async def test_many_pipelined_requests_with_bodies_are_all_answered(
    hardened: HardenedFactory, origin: Origin
) -> None:
    """The adapter parses pipelined requests one at a time: more than aiohttp's queue of 32 in one write,
    bodies among them, are all answered in order; a ``Connection: close`` request is the last one served."""
    catch_all(origin)
    edge = await hardened(origin)
    requests = []
    for i in range(70):
        if i % 3 == 0:
            requests.append(f"POST /p{i} HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc".encode())
        else:
            requests.append(f"GET /g{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    requests.append(b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    requests.append(b"GET /never HTTP/1.1\r\nHost: a\r\n\r\n")
    responses = _responses(await edge.exchange(b"".join(requests)))
    expected = [f"POST /p{i} 3" if i % 3 == 0 else f"GET /g{i} 0" for i in range(70)] + ["GET /last 0"]
    assert [body.decode() for _, _, body in responses] == expected
    assert origin.count("/never") == 0


async def test_request_pipelined_behind_a_body_split_across_writes_is_answered(
    hardened: HardenedFactory, origin: Origin
) -> None:
    """The second write ends the first request's body and carries the next request: both are answered
    (the parser, paused after the first request, must parse on)."""
    catch_all(origin)
    edge = await hardened(origin)
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    try:
        # A chunked body (no length) is streamed, not buffered for a retry: the origin sees the request
        # before its body ends.
        writer.write(b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n")
        await writer.drain()
        await wait_for(lambda: origin.count("/p") == 1)  # the edge is forwarding the first request
        writer.write(b"5\r\n67890\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(30):
            data = await reader.read()
    finally:
        writer.close()
    assert [body for _, _, body in _responses(data)] == [b"POST /p 10", b"GET /next 0"]
