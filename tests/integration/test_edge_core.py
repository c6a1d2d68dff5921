"""The edge core through real sockets: miss then hit, TTL policy, keys, HEAD, 304, errors, streaming."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from proxy.observability.access_log import log_record
from tests.conftest import EdgeFactory, Origin, wait_for

ONE_BEHAVIOUR = """
server: {name: edge-t, access_log: "off"}
origins: {app: {url: "{origin}", read_timeout: 2s, connect_timeout: 1s}}
behaviours:
  - path: "*"
    origin: app
"""

TTL_BEHAVIOUR = """
server: {name: edge-t, access_log: "off"}
origins: {app: {url: "{origin}"}}
behaviours:
  - path: "*"
    origin: app
    ttl: {min: MIN, default: 100s, max: 1000s}
"""


def ttl_config(minimum: str = "0") -> str:
    return TTL_BEHAVIOUR.replace("MIN", minimum)


async def test_miss_then_hit(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/a", "alpha", Cache_Control="max-age=60")
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    first, body1 = await edge.get("/a")
    second, body2 = await edge.get("/a")
    assert body1 == body2 == b"alpha"
    assert first.headers["X-Cache"] == "Miss from edgeproxy"
    assert first.headers["Cache-Status"].startswith("edge-t; fwd=uri-miss; fwd-status=200")
    assert "stored" in first.headers["Cache-Status"]
    assert second.headers["X-Cache"] == "Hit from edgeproxy"
    assert second.headers["Cache-Status"].startswith("edge-t; hit")
    assert "Age" in second.headers and int(second.headers["Age"]) >= 0
    assert second.headers["Via"].endswith("1.1 edge-t")
    assert origin.count("/a") == 1


async def test_origin_sees_forwarding_headers(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/h", "x", Cache_Control="no-store")
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    await edge.get("/h", headers={"X-Forwarded-For": "6.6.6.6", "Host": "www.example.test"})
    seen = origin.seen[-1].headers
    assert seen["X-Forwarded-For"] == "127.0.0.1"  # a viewer's own value is never trusted
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] == "www.example.test"
    assert seen["Via"] == "1.1 edge-t"
    assert seen["Host"].startswith("127.0.0.1:")  # host_header: origin (the default)


async def test_hop_by_hop_headers_stripped_both_ways(make_edge: EdgeFactory, origin: Origin) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            text="ok",
            headers={"Connection": "X-Private-Hop", "X-Private-Hop": "1", "X-Kept": "yes", "Keep-Alive": "5"},
        )

    origin.route("/hop", handler)
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    response, _ = await edge.get(
        "/hop",
        headers={
            "Connection": "keep-alive, X-Viewer-Hop",
            "X-Viewer-Hop": "1",
            "TE": "trailers",
            "X-End": "1",
        },
    )
    seen = origin.seen[-1].headers
    assert "X-Viewer-Hop" not in seen and "TE" not in seen
    assert seen["X-End"] == "1"
    assert "X-Private-Hop" not in response.headers and "Keep-Alive" not in response.headers
    assert response.headers["X-Kept"] == "yes"


@pytest.mark.parametrize(
    ("cache_control", "expires", "expected_ttl"),
    [
        ("s-maxage=50, max-age=20", None, 50),  # s-maxage beats max-age
        ("max-age=20", None, 20),  # max-age beats Expires
        ("max-age=5000", None, 1000),  # clamped down to max
        ("max-age=1", None, 1),  # min is 0: kept as is
        (None, None, 100),  # nothing said: default
        (None, "+30", 30),  # Expires - Date
    ],
    ids=["s-maxage>max-age", "max-age", "clamp-max", "below-default", "default", "expires"],
)
async def test_ttl_policy_cloudfront(
    make_edge: EdgeFactory, origin: Origin, cache_control: str | None, expires: str | None, expected_ttl: int
) -> None:
    from proxy.http.dates import format_http_date

    async def handler(request: web.Request) -> web.Response:
        import time

        now = time.time()
        headers = {"Date": format_http_date(now)}
        if cache_control:
            headers["Cache-Control"] = cache_control
        if expires:
            headers["Expires"] = format_http_date(now + int(expires))
        return web.Response(text="t", headers=headers)

    origin.route("/ttl", handler)
    edge = await make_edge(ttl_config(), origin)
    miss, _ = await edge.get("/ttl")
    hit, _ = await edge.get("/ttl")
    assert hit.headers["X-Cache"] == "Hit from edgeproxy"
    ttl = int(miss.headers["Cache-Status"].split("ttl=")[1].split(";")[0])
    assert expected_ttl - 2 <= ttl <= expected_ttl


async def test_ttl_min_raises_short_lifetime(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/short", "s", Cache_Control="max-age=1")
    edge = await make_edge(ttl_config("30s"), origin)
    miss, _ = await edge.get("/short")
    ttl = int(miss.headers["Cache-Status"].split("ttl=")[1].split(";")[0])
    assert 28 <= ttl <= 30


@pytest.mark.parametrize("directive", ["no-store", "private", "no-cache"])
async def test_uncacheable_directives_not_stored_when_min_zero(
    make_edge: EdgeFactory, origin: Origin, directive: str
) -> None:
    origin.static("/u", "u", Cache_Control=directive)
    edge = await make_edge(ttl_config("0"), origin)
    first, _ = await edge.get("/u")
    second, _ = await edge.get("/u")
    assert f"detail={directive}" in first.headers["Cache-Status"]
    assert second.headers["X-Cache"] == "Miss from edgeproxy"
    assert origin.count("/u") == 2


@pytest.mark.parametrize("directive", ["no-store", "private", "no-cache"])
async def test_uncacheable_directives_kept_for_min(
    make_edge: EdgeFactory, origin: Origin, directive: str
) -> None:
    origin.static("/k", "k", Cache_Control=directive)
    edge = await make_edge(ttl_config("20s"), origin)
    first, _ = await edge.get("/k")
    second, _ = await edge.get("/k")
    assert second.headers["X-Cache"] == "Hit from edgeproxy"
    ttl = int(first.headers["Cache-Status"].split("ttl=")[1].split(";")[0])
    assert 18 <= ttl <= 20
    assert origin.count("/k") == 1


async def test_rfc_mode_without_freshness_not_stored(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/plain", "p")  # no Cache-Control, no Expires, no Last-Modified
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    await edge.get("/plain")
    second, _ = await edge.get("/plain")
    assert second.headers["X-Cache"] == "Miss from edgeproxy"
    assert origin.count("/plain") == 2


async def test_rfc_mode_honours_request_no_cache(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/r", "r", Cache_Control="max-age=60")
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    await edge.get("/r")
    again, _ = await edge.get("/r", headers={"Cache-Control": "no-cache"})
    assert again.headers["X-Cache"] != "Hit from edgeproxy"
    assert origin.count("/r") == 2


async def test_ttl_mode_ignores_request_no_cache(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/c", "c")
    edge = await make_edge(ttl_config(), origin)
    await edge.get("/c")
    again, _ = await edge.get("/c", headers={"Cache-Control": "no-cache", "Pragma": "no-cache"})
    assert again.headers["X-Cache"] == "Hit from edgeproxy"
    assert origin.count("/c") == 1


KEY_CONFIG = """
server: {name: edge-t, access_log: "off"}
origins: {app: {url: "{origin}"}}
behaviours:
  - path: "*"
    origin: app
    ttl: {default: 100s}
    cache_key: KEY
"""


@pytest.mark.parametrize(
    ("policy", "first", "second", "shared"),
    [
        ("{query: all}", "/q?a=1", "/q?a=2", False),
        ("{query: all}", "/q?a=1&b=2", "/q?b=2&a=1", True),
        ("{query: all, sort_query: false}", "/q?a=1&b=2", "/q?b=2&a=1", False),
        ("{query: none}", "/q?a=1", "/q?a=2", True),
        ("{query: [a]}", "/q?a=1&x=1", "/q?a=1&x=2", True),
        ("{query: [a]}", "/q?a=1", "/q?a=2", False),
        ("{query: {except: [utm]}}", "/q?a=1&utm=x", "/q?a=1&utm=y", True),
        ("{query: {except: [utm]}}", "/q?a=1", "/q?a=2", False),
    ],
)
async def test_query_key_policies(
    make_edge: EdgeFactory, origin: Origin, policy: str, first: str, second: str, shared: bool
) -> None:
    origin.static("/q", "q")
    edge = await make_edge(KEY_CONFIG.replace("KEY", policy), origin)
    await edge.get(first)
    response, _ = await edge.get(second)
    assert (response.headers["X-Cache"] == "Hit from edgeproxy") is shared
    assert origin.count("/q") == (1 if shared else 2)


async def test_header_and_cookie_keys(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/v", "v")
    edge = await make_edge(
        KEY_CONFIG.replace("KEY", "{headers: [Accept-Language], cookies: [session]}"), origin
    )
    await edge.get("/v", headers={"Accept-Language": "en", "Cookie": "session=1; other=a"})
    same, _ = await edge.get("/v", headers={"Accept-Language": "en", "Cookie": "other=b; session=1"})
    other_lang, _ = await edge.get("/v", headers={"Accept-Language": "fr", "Cookie": "session=1"})
    other_cookie, _ = await edge.get("/v", headers={"Accept-Language": "en", "Cookie": "session=2"})
    assert same.headers["X-Cache"] == "Hit from edgeproxy"
    assert other_lang.headers["X-Cache"] == "Miss from edgeproxy"
    assert other_cookie.headers["X-Cache"] == "Miss from edgeproxy"


async def test_host_is_part_of_the_key(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/host", "h")
    edge = await make_edge(ttl_config(), origin)
    await edge.get("/host", headers={"Host": "a.test"})
    other, _ = await edge.get("/host", headers={"Host": "b.test"})
    same, _ = await edge.get("/host", headers={"Host": "A.test"})
    assert other.headers["X-Cache"] == "Miss from edgeproxy"
    assert same.headers["X-Cache"] == "Hit from edgeproxy"


async def test_head_miss_fills_with_get_and_has_no_body(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/head", "full body", Cache_Control="max-age=60")
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    head, body = await edge.get("/head", method="HEAD")
    assert body == b""
    assert head.headers["Content-Length"] == "9"
    assert origin.seen[-1].method == "GET"
    get, body = await edge.get("/head")
    assert body == b"full body"
    assert get.headers["X-Cache"] == "Hit from edgeproxy"
    head2, body2 = await edge.get("/head", method="HEAD")
    assert body2 == b"" and head2.headers["X-Cache"] == "Hit from edgeproxy"
    assert head2.headers["Content-Length"] == "9"


async def test_conditional_request_answered_at_edge(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/etag", "tagged", Cache_Control="max-age=60", ETag='"v1"')
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    await edge.get("/etag")
    not_modified, body = await edge.get("/etag", headers={"If-None-Match": 'W/"v1"'})
    assert not_modified.status == 304 and body == b""
    assert not_modified.headers["ETag"] == '"v1"'
    changed, body = await edge.get("/etag", headers={"If-None-Match": '"v0"'})
    assert changed.status == 200 and body == b"tagged"
    assert origin.count("/etag") == 1


async def test_conditional_fill_is_not_forwarded(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/cond", "body", Cache_Control="max-age=60", ETag='"v1"')
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    response, body = await edge.get("/cond", headers={"If-None-Match": '"v1"'})
    assert "If-None-Match" not in origin.seen[-1].headers  # the fill asks for the full response
    assert response.status == 304
    full, body = await edge.get("/cond")
    assert full.status == 200 and body == b"body" and full.headers["X-Cache"] == "Hit from edgeproxy"


async def test_range_on_cached_object(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/range", "0123456789", Cache_Control="max-age=60")
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    partial, body = await edge.get("/range", headers={"Range": "bytes=2-4"})
    assert "Range" not in origin.seen[-1].headers  # a range miss fills the whole object
    assert partial.status == 206 and body == b"234"
    assert partial.headers["Content-Range"] == "bytes 2-4/10"
    whole, body = await edge.get("/range")
    assert whole.status == 200 and body == b"0123456789" and whole.headers["X-Cache"] == "Hit from edgeproxy"
    unsatisfiable, _ = await edge.get("/range", headers={"Range": "bytes=50-60"})
    assert unsatisfiable.status == 416


async def test_revalidation_with_304_refreshes(make_edge: EdgeFactory, origin: Origin) -> None:
    calls: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.headers.get("If-None-Match"))
        if request.headers.get("If-None-Match") == '"r1"':
            return web.Response(status=304, headers={"ETag": '"r1"', "Cache-Control": "max-age=60"})
        return web.Response(text="rev", headers={"ETag": '"r1"', "Cache-Control": "max-age=0"})

    origin.route("/rev", handler)
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    first, _ = await edge.get("/rev")
    assert "detail=zero-ttl" in first.headers["Cache-Status"] or "stored" in first.headers["Cache-Status"]
    if "stored" not in first.headers["Cache-Status"]:
        pytest.skip("max-age=0 responses are not stored under this storage rule")
    second, body = await edge.get("/rev")
    assert calls == [None, '"r1"']
    assert second.status == 200 and body == b"rev"
    assert second.headers["X-Cache"] == "RefreshHit from edgeproxy"
    third, _ = await edge.get("/rev")
    assert third.headers["X-Cache"] == "Hit from edgeproxy"


async def test_method_not_allowed(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/m", "m")
    edge = await make_edge(
        """
        server: {name: edge-t, access_log: "off"}
        origins: {app: {url: "{origin}"}}
        behaviours:
          - path: "*"
            origin: app
            methods: [GET, HEAD]
        """,
        origin,
    )
    response, _ = await edge.get("/m", method="POST", data=b"x")
    assert response.status == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    assert origin.count() == 0


async def test_post_is_forwarded_with_body_and_not_cached(make_edge: EdgeFactory, origin: Origin) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), headers={"Cache-Control": "max-age=60"})

    origin.route("/echo", handler)
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    response, body = await edge.get("/echo", method="POST", data=b"payload" * 1000)
    assert body == b"payload" * 1000
    assert "fwd=method" in response.headers["Cache-Status"]
    again, _ = await edge.get("/echo", method="POST", data=b"x")
    assert again.headers["X-Cache"] == "Miss from edgeproxy"


async def test_vary_keeps_variants_apart(make_edge: EdgeFactory, origin: Origin) -> None:
    async def handler(request: web.Request) -> web.Response:
        lang = request.headers.get("Accept-Language", "none")
        return web.Response(text=lang, headers={"Vary": "Accept-Language", "Cache-Control": "max-age=60"})

    origin.route("/vary", handler)
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    _, en = await edge.get("/vary", headers={"Accept-Language": "en"})
    _, fr = await edge.get("/vary", headers={"Accept-Language": "fr"})
    hit_en, en2 = await edge.get("/vary", headers={"Accept-Language": "en"})
    hit_fr, fr2 = await edge.get("/vary", headers={"Accept-Language": "fr"})
    assert (en, fr, en2, fr2) == (b"en", b"fr", b"en", b"fr")
    assert hit_en.headers["X-Cache"] == hit_fr.headers["X-Cache"] == "Hit from edgeproxy"
    assert origin.count("/vary") == 2


async def test_origin_down_is_502(make_edge: EdgeFactory) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    edge = await make_edge(ONE_BEHAVIOUR, origin_url=f"http://127.0.0.1:{port}")
    response, body = await edge.get("/x")
    assert response.status == 502
    assert b"Bad Gateway" in body
    assert "detail=origin-unreachable" in response.headers["Cache-Status"]


async def test_slow_origin_is_504(make_edge: EdgeFactory, origin: Origin) -> None:
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(text="late")

    origin.route("/slow", handler)
    edge = await make_edge(ONE_BEHAVIOUR.replace("read_timeout: 2s", "read_timeout: 200ms"), origin)
    response, _body = await edge.get("/slow")
    assert response.status == 504
    assert "detail=origin-timeout" in response.headers["Cache-Status"]
    never.set()


async def test_origin_dies_mid_body_truncates_viewer(make_edge: EdgeFactory, origin: Origin) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Cache-Control": "max-age=60"})
        response.content_length = 1_000_000
        await response.prepare(request)
        await response.write(b"x" * 300_000)
        assert request.transport is not None
        request.transport.abort()
        return response

    origin.route("/dies", handler)
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    with pytest.raises(aiohttp.ClientPayloadError):
        await edge.get("/dies")
    with pytest.raises(aiohttp.ClientPayloadError):
        await edge.get("/dies")  # nothing was stored: the second viewer goes to the origin again
    assert origin.count("/dies") == 2


async def test_large_body_streams_through_without_being_buffered(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    first_chunk_seen = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Cache-Control": "max-age=60"})
        response.content_length = 4 * 65536
        await response.prepare(request)
        await response.write(b"a" * 65536)
        # The rest is only sent once the viewer has seen the first chunk: an edge that buffered the
        # whole body before answering would never get there (and the test would time out).
        await first_chunk_seen.wait()
        for _ in range(3):
            await response.write(b"b" * 65536)
        return response

    origin.route("/big", handler)
    edge = await make_edge(
        """
        server: {name: edge-t, access_log: "off"}
        cache: {memory: {max_bytes: 1MiB, max_object_bytes: 100KiB}}
        origins: {app: {url: "{origin}"}}
        behaviours: [{path: "*", origin: app}]
        """,
        origin,
    )
    async with asyncio.timeout(10):
        async with edge.session.get(edge.url + "/big") as response:
            assert "detail=too-large" in response.headers["Cache-Status"]
            first = await response.content.readexactly(65536)
            assert first == b"a" * 65536
            first_chunk_seen.set()
            rest = await response.read()
    assert len(rest) == 3 * 65536


async def test_cacheable_large_stream_is_stored_when_complete(make_edge: EdgeFactory, origin: Origin) -> None:
    payload = bytes(range(256)) * 2048  # 512 KiB: above the whole-read threshold, below max_object_bytes
    origin.static("/stream", payload, Cache_Control="max-age=60")
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    _, body = await edge.get("/stream")
    hit, body2 = await edge.get("/stream")
    assert body == body2 == payload
    assert hit.headers["X-Cache"] == "Hit from edgeproxy"


async def test_lru_eviction_at_byte_limit(make_edge: EdgeFactory, origin: Origin) -> None:
    for name in ("one", "two", "three"):
        origin.static(f"/{name}", "z" * 40_000, Cache_Control="max-age=60")
    edge = await make_edge(
        """
        server: {name: edge-t, access_log: "off"}
        cache: {memory: {max_bytes: 100KiB, max_object_bytes: 50KiB}}
        origins: {app: {url: "{origin}"}}
        behaviours: [{path: "*", origin: app}]
        """,
        origin,
    )
    await edge.get("/one")
    await edge.get("/two")
    await edge.get("/three")  # 3 x 40 KB > 100 KiB: /one, the least recently used, goes
    two, _ = await edge.get("/two")
    one, _ = await edge.get("/one")
    assert two.headers["X-Cache"] == "Hit from edgeproxy"
    assert one.headers["X-Cache"] == "Miss from edgeproxy"
    assert edge.edge.memory.stats().evictions >= 1
    await wait_for(lambda: origin.count("/one") == 2)


async def test_long_key_counts_toward_max_object_bytes(make_edge: EdgeFactory, origin: Origin) -> None:
    # A 2-byte body under an 8,000-character URL: the memory tier charges the key and the per-entry
    # overheads too, so the entry is above an 8 KiB max_object_bytes and is not stored.
    long_path = "/" + "p" * 8000
    origin.static(long_path, "ok", Cache_Control="max-age=60")
    origin.static("/short", "ok", Cache_Control="max-age=60")
    edge = await make_edge(
        """
        server: {name: edge-t, access_log: "off"}
        cache: {memory: {max_bytes: 1MiB, max_object_bytes: 8KiB}}
        origins: {app: {url: "{origin}"}}
        behaviours: [{path: "*", origin: app}]
        """,
        origin,
    )
    first, body = await edge.get(long_path)
    assert first.status == 200 and body == b"ok"
    assert "detail=too-large" in first.headers["Cache-Status"]
    second, _ = await edge.get(long_path)
    assert second.headers["X-Cache"] == "Miss from edgeproxy"
    assert origin.count(long_path) == 2
    await edge.get("/short")
    hit, _ = await edge.get("/short")
    assert hit.headers["X-Cache"] == "Hit from edgeproxy"
    assert len(edge.edge.memory) == 1 and edge.edge.memory.bytes_used <= 8 * 1024


async def test_request_body_streams_with_its_length(make_edge: EdgeFactory, origin: Origin) -> None:
    received: list[tuple[str | None, str | None, int]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        received.append(
            (request.headers.get("Content-Length"), request.headers.get("Transfer-Encoding"), len(body))
        )
        return web.Response(text="ok")

    origin.route("/upload", handler)
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    response, _ = await edge.get("/upload", method="PUT", data=b"z" * 300_000)
    assert response.status == 200
    assert received == [("300000", None, 300_000)]


async def test_cache_status_key_is_opt_in(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/k", "k", Cache_Control="max-age=60")
    plain = await make_edge(ONE_BEHAVIOUR, origin)
    response, _ = await plain.get("/k?b=2&a=1", headers={"Host": "www.example.test"})
    assert "key=" not in response.headers["Cache-Status"]
    keyed = await make_edge(ONE_BEHAVIOUR.replace("server:", "cache: {status_key: true}\nserver:"), origin)
    miss, _ = await keyed.get("/k?b=2&a=1", headers={"Host": "www.example.test"})
    hit, _ = await keyed.get("/k?a=1&b=2", headers={"Host": "www.example.test"})
    assert 'key="www.example.test/k?a=1&b=2"' in miss.headers["Cache-Status"]
    assert (
        hit.headers["Cache-Status"].startswith("edge-t; hit")
        and 'key="www.example.test/k?a=1&b=2"' in (hit.headers["Cache-Status"])
    )


async def test_streamed_fill_says_storing_in_the_head_and_the_outcome_in_the_log(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """A body over 256 KiB streams to the viewer while it is stored: the head cannot know yet whether it
    will be stored (RFC 9211 §2.5), so it says detail=storing; the access log line, written after the last
    byte, says stored for a complete body and not stored (incomplete) for one the origin cut short."""
    big = b"z" * 300_000

    async def whole(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Cache-Control": "max-age=60"})
        response.content_length = len(big)
        await response.prepare(request)
        for start in range(0, len(big), 65536):
            await response.write(big[start : start + 65536])
        return response

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Cache-Control": "max-age=60"})
        response.content_length = 1_000_000
        await response.prepare(request)
        await response.write(b"x" * 300_000)
        assert request.transport is not None
        request.transport.abort()
        return response

    origin.route("/whole", whole)
    origin.route("/cut", cut)
    edge = await make_edge(ONE_BEHAVIOUR, origin)
    records: list[dict[str, object]] = []
    edge.edge.access_log.write = lambda ctx: records.append(log_record(ctx))  # type: ignore[method-assign]

    response, body = await edge.get("/whole")
    assert body == big
    status = response.headers["Cache-Status"]
    assert "detail=storing" in status and "stored" not in status.replace("storing", ""), status
    await wait_for(lambda: len(records) == 1)
    assert records[0]["stored"] is True and records[0]["completed"] is True
    hit, body = await edge.get("/whole")
    assert hit.headers["X-Cache"] == "Hit from edgeproxy" and body == big

    async with edge.session.get(edge.url + "/cut") as truncated:
        status = truncated.headers["Cache-Status"]
        with pytest.raises(aiohttp.ClientPayloadError):
            await truncated.read()
    assert "detail=storing" in status and "stored" not in status.replace("storing", ""), status
    await wait_for(lambda: len(records) == 3)
    assert records[2]["path"] == "/cut"
    assert records[2]["stored"] is False and records[2]["reason"] == "incomplete"
