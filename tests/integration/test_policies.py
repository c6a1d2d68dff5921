"""Declarative behaviour policies through real sockets: redirects, rewrites, header policies, CORS, error
pages, viewer_protocol."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import EdgeFactory, Origin

POLICIES = """
server: {name: edge-p, access_log: "off"}
origins:
  app: {url: "{origin}"}
  site: {root: "{root}"}
behaviours:
  - path: /old/*
    redirect: {to: "https://new.example.test$path?$query", status: 308}
  - path: /legacy/*
    origin: app
    rewrite: {from: "^/legacy/(.*)$", to: "/v2/\\\\1"}
    ttl: {default: 60s}
  - path: /api/*
    origin: app
    request_headers: {set: {X-Env: prod}, remove: [X-Debug]}
    response_headers: {set: {Strict-Transport-Security: max-age=63072000}, remove: [X-Powered-By]}
    cors: {allow_origins: ["https://app.example.test"], allow_methods: [GET, POST], max_age: 1h}
    ttl: {default: 60s}
  - path: /secure/*
    origin: app
    viewer_protocol: redirect-to-https
  - path: /strict/*
    origin: app
    viewer_protocol: https-only
  - path: "*"
    origin: site
    error_pages: {404: /errors/404.html}
    error_ttl: 30s
    ttl: {default: 60s}
"""


async def _edge(make_edge: EdgeFactory, origin: Origin, tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "site"
    (root / "errors").mkdir(parents=True)
    (root / "errors" / "404.html").write_text("<h1>custom not found</h1>")
    (root / "index.html").write_text("home")
    return await make_edge(POLICIES, origin, root=str(root))


async def test_redirect_with_placeholders(make_edge: EdgeFactory, origin: Origin, tmp_path: Path) -> None:
    edge = await _edge(make_edge, origin, tmp_path)
    response, _ = await edge.get("/old/page?a=1", allow_redirects=False)
    assert response.status == 308
    assert response.headers["Location"] == "https://new.example.test/old/page?a=1"
    assert response.headers["X-Cache"] == "Redirect from edgeproxy"
    assert origin.count() == 0


async def test_rewrite_reaches_origin_and_key_uses_viewer_path(
    make_edge: EdgeFactory, origin: Origin, tmp_path: Path
) -> None:
    origin.static("/v2/{tail:.*}", "rewritten")
    edge = await _edge(make_edge, origin, tmp_path)
    _, body = await edge.get("/legacy/thing?x=1")
    assert body == b"rewritten"
    assert origin.seen[-1].path_qs == "/v2/thing?x=1"
    hit, _ = await edge.get("/legacy/thing?x=1")
    assert hit.headers["X-Cache"] == "Hit from edgeproxy"
    stored_keys = list(edge.edge.memory.keys())
    assert any("/legacy/thing" in key for key in stored_keys)
    assert not any("/v2/" in key for key in stored_keys)


async def test_header_policies_and_cors(make_edge: EdgeFactory, origin: Origin, tmp_path: Path) -> None:
    origin.static("/api/data", "{}", X_Powered_By="php")
    edge = await _edge(make_edge, origin, tmp_path)
    cors_origin = {"Origin": "https://app.example.test", "X-Debug": "1"}
    response, _ = await edge.get("/api/data", headers=cors_origin)
    seen = origin.seen[-1].headers
    assert seen["X-Env"] == "prod" and "X-Debug" not in seen
    assert "X-Powered-By" not in response.headers
    assert response.headers["Strict-Transport-Security"] == "max-age=63072000"
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.test"
    assert "Origin" in response.headers["Vary"]
    other, _ = await edge.get("/api/data", headers={"Origin": "https://evil.example.test"})
    assert other.headers["X-Cache"] == "Hit from edgeproxy"  # one cached object, CORS decided per viewer
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight, body = await edge.get(
        "/api/data",
        method="OPTIONS",
        headers={"Origin": "https://app.example.test", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204 and body == b""
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert preflight.headers["Access-Control-Max-Age"] == "3600"
    assert origin.count("/api/data") == 1  # the preflight never reached the origin
    refused, _ = await edge.get(
        "/api/data",
        method="OPTIONS",
        headers={"Origin": "https://evil.example.test", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status == 403


async def test_viewer_protocol(make_edge: EdgeFactory, origin: Origin, tmp_path: Path) -> None:
    edge = await _edge(make_edge, origin, tmp_path)
    moved, _ = await edge.get("/secure/x?y=1", allow_redirects=False, headers={"Host": "www.example.test"})
    assert moved.status == 301 and moved.headers["Location"] == "https://www.example.test/secure/x?y=1"
    refused, _ = await edge.get("/strict/x")
    assert refused.status == 403
    assert origin.count() == 0


async def test_error_page_keeps_status_and_is_cached(
    make_edge: EdgeFactory, origin: Origin, tmp_path: Path
) -> None:
    edge = await _edge(make_edge, origin, tmp_path)
    missing, body = await edge.get("/nope.html")
    assert missing.status == 404 and body == b"<h1>custom not found</h1>"
    assert missing.headers["Content-Type"].startswith("text/html")
    again, body = await edge.get("/nope.html")
    assert again.status == 404 and body == b"<h1>custom not found</h1>"
    assert again.headers["X-Cache"] == "Hit from edgeproxy"
    ttl = int(missing.headers["Cache-Status"].split("ttl=")[1].split(";")[0])
    assert 28 <= ttl <= 30
