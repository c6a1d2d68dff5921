"""The edge as a web server: a folder origin through real sockets."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import EdgeFactory, RunningEdge

CONFIG = """
server: {name: edge-s, access_log: "off"}
origins: {site: {root: "{root}", index: index.html}}
behaviours:
  - path: /nocache/*
    origin: site
    methods: [GET, HEAD]
    ttl: {min: 0, default: 0s, max: 0s}
  - path: "*"
    origin: site
    methods: [GET, HEAD]
    ttl: {default: 60s}
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "docs").mkdir(parents=True)
    (root / "nocache").mkdir()
    (root / "empty").mkdir()
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "docs" / "index.html").write_text("<h1>docs</h1>")
    (root / "style.css").write_text("body{}")
    (root / "data.bin").write_bytes(bytes(range(256)) * 4)
    (root / "nocache" / "file.txt").write_text("0123456789")
    (root / "hello world.txt").write_text("spaced")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, root / "escape.txt")
    os.symlink(tmp_path, root / "up")
    return root


@pytest.fixture
async def static_edge(make_edge: EdgeFactory, site: Path) -> RunningEdge:
    return await make_edge(CONFIG, root=str(site))


async def test_index_and_content_type(static_edge: RunningEdge) -> None:
    response, body = await static_edge.get("/")
    assert response.status == 200 and body == b"<h1>home</h1>"
    assert response.headers["Content-Type"].startswith("text/html")
    assert "ETag" in response.headers and "Last-Modified" in response.headers
    css, _ = await static_edge.get("/style.css")
    assert css.headers["Content-Type"].startswith("text/css")
    _docs, body = await static_edge.get("/docs/")
    assert body == b"<h1>docs</h1>"
    _spaced, body = await static_edge.get("/hello%20world.txt")
    assert body == b"spaced"


async def test_directory_without_slash_redirects(static_edge: RunningEdge) -> None:
    response, _ = await static_edge.get("/docs", allow_redirects=False)
    assert response.status == 301 and response.headers["Location"] == "/docs/"


async def test_static_responses_are_cached(static_edge: RunningEdge) -> None:
    await static_edge.get("/style.css")
    hit, body = await static_edge.get("/style.css")
    assert hit.headers["X-Cache"] == "Hit from edgeproxy" and body == b"body{}"


async def test_conditional_get_304(static_edge: RunningEdge) -> None:
    first, _ = await static_edge.get("/nocache/file.txt")
    etag = first.headers["ETag"]
    response, body = await static_edge.get("/nocache/file.txt", headers={"If-None-Match": etag})
    assert response.status == 304 and body == b""
    since = first.headers["Last-Modified"]
    response, _ = await static_edge.get("/nocache/file.txt", headers={"If-Modified-Since": since})
    assert response.status == 304


async def test_range_requests_on_folder_origin(static_edge: RunningEdge) -> None:
    response, body = await static_edge.get("/nocache/file.txt", headers={"Range": "bytes=3-5"})
    assert response.status == 206 and body == b"345"
    assert response.headers["Content-Range"] == "bytes 3-5/10"
    response, body = await static_edge.get("/nocache/file.txt", headers={"Range": "bytes=-2"})
    assert body == b"89"
    response, _ = await static_edge.get("/nocache/file.txt", headers={"Range": "bytes=20-"})
    assert response.status == 416 and response.headers["Content-Range"] == "bytes */10"
    response, body = await static_edge.get("/nocache/file.txt", headers={"Range": "bytes=0-0,8-9"})
    assert response.status == 206
    assert response.headers["Content-Type"].startswith("multipart/byteranges")
    assert b"Content-Range: bytes 0-0/10" in body and b"Content-Range: bytes 8-9/10" in body


async def test_range_on_cached_static_object(static_edge: RunningEdge) -> None:
    await static_edge.get("/data.bin")
    response, body = await static_edge.get("/data.bin", headers={"Range": "bytes=256-259"})
    assert response.status == 206 and body == bytes([0, 1, 2, 3])
    assert response.headers["X-Cache"] == "Hit from edgeproxy"


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/docs/..%2f..%2fsecret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "/escape.txt",
        "/up/secret.txt",
        "/index.html%00.txt",
        "/empty/",
        "/missing.html",
        "/%ff%fe",
    ],
)
async def test_no_escape_from_root(static_edge: RunningEdge, path: str) -> None:
    # Sent raw (no client-side normalisation of dots) so the edge sees exactly this target.
    from yarl import URL

    url = URL(static_edge.url + path, encoded=True)
    async with static_edge.session.get(url) as response:
        body = await response.read()
    assert response.status == 404, path
    assert b"secret" not in body


async def test_only_get_and_head(static_edge: RunningEdge) -> None:
    response, _ = await static_edge.get("/style.css", method="DELETE")
    assert response.status == 405


async def test_head_on_static(static_edge: RunningEdge) -> None:
    response, body = await static_edge.get("/nocache/file.txt", method="HEAD")
    assert response.status == 200 and body == b""
    assert response.headers["Content-Length"] == "10"


async def test_raw_session_unaffected_by_bad_requests(static_edge: RunningEdge) -> None:
    async with aiohttp.ClientSession() as session, session.get(static_edge.url + "/") as response:
        assert response.status == 200


REWRITE_CONFIG = """
server: {name: edge-s, access_log: "off"}
origins: {site: {root: "{root}", index: index.html}}
behaviours:
  - path: /static/*
    origin: site
    methods: [GET, HEAD]
    rewrite: {from: "^/static/(.*)$", to: "/\\\\1"}
    ttl: {default: 60s}
  - path: "*"
    origin: site
    methods: [GET, HEAD]
    ttl: {default: 60s}
"""


async def test_directory_redirect_behind_rewrite_names_the_viewer_path(
    make_edge: EdgeFactory, site: Path
) -> None:
    edge = await make_edge(REWRITE_CONFIG, root=str(site))
    response, _ = await edge.get("/static/docs", allow_redirects=False)
    assert response.status == 301 and response.headers["Location"] == "/static/docs/"
    response, _ = await edge.get("/static/docs?v=1", allow_redirects=False)
    assert response.status == 301 and response.headers["Location"] == "/static/docs/?v=1"
    response, body = await edge.get("/static/docs/")
    assert response.status == 200 and body == b"<h1>docs</h1>"
    # Without a rewrite nothing changes, and a redirect is never protocol-relative.
    response, _ = await edge.get("/docs", allow_redirects=False)
    assert response.status == 301 and response.headers["Location"] == "/docs/"
    from yarl import URL

    async with edge.session.get(URL(edge.url + "//docs", encoded=True), allow_redirects=False) as raw:
        assert raw.status == 301 and raw.headers["Location"] == "/docs/"
