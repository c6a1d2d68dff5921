"""``forward`` (the origin request policy): the origin sees exactly what the policy says, through sockets.

The origin echoes what it received: its header fields, its Cookie header and its raw query string.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.conftest import EdgeFactory, Origin, RunningEdge

# Fields the edge always sends itself, whatever the policy (and the origin client's own framing).
EDGE_OWN = {"host", "via", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "surrogate-capability"}

VIEWER = {
    "X-A": "a",
    "X-B": "b",
    "Authorization": "Bearer token",
    "Accept-Language": "fr",
    "Cookie": "theme=dark; session=s1; tracking=t",
}


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    seen = {
        "headers": [name.lower() for name in request.headers],
        "cookie": request.headers.getall("Cookie", []),
        "query": request.raw_path.partition("?")[2],
        "path": request.path,
        "auth": request.headers.get("Authorization"),
        "content_type": request.headers.get("Content-Type"),
        "accept_encoding": request.headers.get("Accept-Encoding"),
        "body": body.decode(),
    }
    return web.json_response(seen, headers={"Cache-Control": "no-store"})


def config(behaviour: str) -> str:
    return f"""
server: {{name: edge-f, access_log: "off"}}
origins: {{app: {{url: "{{origin}}"}}}}
behaviours:
  - path: "*"
    origin: app
    methods: [GET, HEAD, POST]
{behaviour}
"""


async def seen_by_origin(
    edge: RunningEdge, target: str = "/p?b=2&a=1&q=x%20y", method: str = "GET", **kwargs: Any
) -> dict[str, Any]:
    headers = kwargs.pop("headers", VIEWER)
    response, body = await edge.get(target, method=method, headers=headers, **kwargs)
    assert response.status == 200, body
    seen: dict[str, Any] = json.loads(body)
    return seen


async def start(make_edge: EdgeFactory, origin: Origin, behaviour: str = "") -> RunningEdge:
    origin.route("/{tail:.*}", echo)
    return await make_edge(config(behaviour), origin)


def viewer_fields(seen: dict[str, Any]) -> set[str]:
    """What the origin got besides the edge's own fields and the origin client's defaults."""
    return set(seen["headers"]) - EDGE_OWN - {"accept", "accept-encoding", "user-agent", "content-length"}


async def test_ttl_default_forwards_all_headers_and_only_keyed_cookies(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    edge = await start(make_edge, origin, "    ttl: {default: 1m}\n    cache_key: {cookies: [session]}")
    seen = await seen_by_origin(edge)
    assert viewer_fields(seen) == {"x-a", "x-b", "authorization", "accept-language", "cookie"}
    assert seen["auth"] == "Bearer token"
    assert seen["cookie"] == ["session=s1"]
    assert seen["query"] == "b=2&a=1&q=x%20y"  # all of it, as the viewer sent it (the key sorts, not this)


async def test_ttl_default_without_keyed_cookies_sends_no_cookie(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    edge = await start(make_edge, origin, "    ttl: {default: 1m}")
    seen = await seen_by_origin(edge)
    assert seen["cookie"] == [] and "cookie" not in seen["headers"]
    assert {"x-a", "x-b", "authorization"} <= viewer_fields(seen)


async def test_rfc_mode_default_forwards_everything(make_edge: EdgeFactory, origin: Origin) -> None:
    edge = await start(make_edge, origin)
    seen = await seen_by_origin(edge)
    assert viewer_fields(seen) == {"x-a", "x-b", "authorization", "accept-language", "cookie"}
    assert seen["cookie"] == ["theme=dark; session=s1; tracking=t"]  # untouched
    assert seen["query"] == "b=2&a=1&q=x%20y"


async def test_explicit_lists(make_edge: EdgeFactory, origin: Origin) -> None:
    edge = await start(
        make_edge,
        origin,
        "    cache_key: {query: none}\n"
        "    forward: {headers: [X-A], cookies: [theme, tracking], query: [a, q]}",
    )
    seen = await seen_by_origin(edge, "/p?b=2&a=1&q=x%20y&a=3")
    assert viewer_fields(seen) == {"x-a", "cookie"}
    assert seen["cookie"] == ["theme=dark; tracking=t"]
    assert seen["query"] == "a=1&q=x%20y&a=3"  # order and raw encoding kept


async def test_the_whole_query_in_the_key_is_always_forwarded(make_edge: EdgeFactory, origin: Origin) -> None:
    edge = await start(make_edge, origin, "    forward: {query: none}")  # cache_key.query: all (the default)
    seen = await seen_by_origin(edge)
    assert seen["query"] == "b=2&a=1&q=x%20y"


async def test_none_sends_only_the_edges_own_fields(make_edge: EdgeFactory, origin: Origin) -> None:
    edge = await start(
        make_edge,
        origin,
        "    cache_key: {query: none}\n    forward: {headers: none, cookies: none, query: none}",
    )
    seen = await seen_by_origin(edge)
    assert viewer_fields(seen) == set()
    assert set(seen["headers"]) >= EDGE_OWN
    assert seen["query"] == "" and seen["cookie"] == [] and seen["auth"] is None


async def test_key_items_are_forwarded_even_when_the_policy_says_none(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    edge = await start(
        make_edge,
        origin,
        "    ttl: {default: 1m}\n"
        "    cache_key: {headers: [Accept-Language], cookies: [session], query: [q]}\n"
        "    forward: {headers: none, cookies: none, query: none}",
    )
    seen = await seen_by_origin(edge)
    assert viewer_fields(seen) == {"accept-language", "cookie"}
    assert seen["cookie"] == ["session=s1"]
    assert seen["query"] == "q=x%20y"


async def test_query_filter_applies_to_a_rewritten_target(make_edge: EdgeFactory, origin: Origin) -> None:
    edge = await start(
        make_edge,
        origin,
        '    rewrite: {from: "^/old/(.*)$", to: "/new/\\\\1"}\n'
        "    cache_key: {query: [a]}\n"
        "    forward: {query: none}",
    )
    seen = await seen_by_origin(edge, "/old/x?b=2&a=1")
    assert seen["path"] == "/new/x" and seen["query"] == "a=1"


async def test_compress_keeps_the_coding_bucket(make_edge: EdgeFactory, origin: Origin) -> None:
    edge = await start(make_edge, origin, "    compress: true\n    forward: {headers: none}")
    headers = {**VIEWER, "Accept-Encoding": "gzip, br"}
    seen = await seen_by_origin(edge, headers=headers)
    assert seen["accept_encoding"] in ("br", "gzip")
    assert "x-a" not in seen["headers"]


async def test_a_body_keeps_its_description_under_none(make_edge: EdgeFactory, origin: Origin) -> None:
    edge = await start(make_edge, origin, "    forward: {headers: none, cookies: none}")
    seen = await seen_by_origin(
        edge, "/form", method="POST", data=b"k=v", headers={"Content-Type": "text/x-k", "X-A": "a"}
    )
    assert seen["body"] == "k=v" and seen["content_type"] == "text/x-k"
    assert "x-a" not in seen["headers"]
