"""compress: true through real sockets: negotiation, cached variants per coding, Vary, ETags, ranges."""

from __future__ import annotations

import gzip

import brotli
from aiohttp import web

from tests.conftest import EdgeFactory, Origin

CONFIG = """
server: {name: edge-z, access_log: "off"}
origins: {app: {url: "{origin}"}}
behaviours:
  - path: "*"
    origin: app
    compress: true
    ttl: {default: 60s}
"""
PAGE = ("<p>" + "edgeproxy compresses this page. " * 200 + "</p>").encode()


async def test_variants_per_coding_each_fetched_once(make_edge: EdgeFactory, origin: Origin) -> None:
    seen_codings: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen_codings.append(request.headers.get("Accept-Encoding"))
        return web.Response(body=PAGE, content_type="text/html", headers={"ETag": '"p1"'})

    origin.route("/page", handler)
    edge = await make_edge(CONFIG, origin)
    gz, body = await edge.get("/page", headers={"Accept-Encoding": "gzip, deflate"})
    assert gz.headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == PAGE
    assert gz.headers["Vary"] == "Accept-Encoding" and gz.headers["ETag"] == 'W/"p1"'
    br, body = await edge.get("/page", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert br.headers["Content-Encoding"] == "br" and brotli.decompress(body) == PAGE
    plain, body = await edge.get("/page", headers={"Accept-Encoding": "identity"})
    assert (
        "Content-Encoding" not in plain.headers
        and body == PAGE
        and plain.headers["Vary"] == "Accept-Encoding"
    )
    again, body = await edge.get("/page", headers={"Accept-Encoding": "deflate, gzip;q=0.8"})
    assert again.headers["X-Cache"] == "Hit from edgeproxy" and gzip.decompress(body) == PAGE
    assert seen_codings == ["gzip", "br", "identity"]  # the key holds one of br, gzip, identity
    assert len(body) < len(PAGE) // 5


async def test_not_compressed_when_not_worth_it(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/tiny", "small", Content_Type="text/plain")
    origin.static("/image", b"\x89PNG" + bytes(4000), Content_Type="image/png")
    origin.static("/notransform", PAGE, Content_Type="text/html", Cache_Control="no-transform, max-age=60")
    edge = await make_edge(CONFIG, origin)
    for path in ("/tiny", "/image", "/notransform"):
        response, _ = await edge.get(path, headers={"Accept-Encoding": "gzip"})
        assert "Content-Encoding" not in response.headers, path


async def test_origin_compressed_body_passes_untouched(make_edge: EdgeFactory, origin: Origin) -> None:
    packed = gzip.compress(PAGE, mtime=0)
    origin.static("/packed", packed, Content_Type="text/html", Content_Encoding="gzip")
    edge = await make_edge(CONFIG, origin)
    response, body = await edge.get("/packed", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip" and body == packed


async def test_range_addresses_the_compressed_bytes(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/r", PAGE, Content_Type="text/html")
    edge = await make_edge(CONFIG, origin)
    _, whole = await edge.get("/r", headers={"Accept-Encoding": "gzip"})
    part, body = await edge.get("/r", headers={"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert part.status == 206 and body == whole[:10]
    assert part.headers["Content-Range"] == f"bytes 0-9/{len(whole)}"
    multi, body = await edge.get("/r", headers={"Accept-Encoding": "gzip", "Range": "bytes=0-1,5-6"})
    assert multi.status == 200 and body == whole  # no multipart body under an outer coding
