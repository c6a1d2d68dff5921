"""The edge as a firewall, through real sockets: each viewer is a distinct loopback source address
(127.0.0.2, 127.0.0.3 …) talking to a real edge in front of a real origin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.edge import guard_stats
from tests.conftest import EdgeFactory, Origin, RunningEdge
from tests.geo_db import write_country_db

ViewerFactory = Callable[[str], aiohttp.ClientSession]


@pytest.fixture
async def viewer() -> AsyncIterator[ViewerFactory]:
    """A client session whose connections come from ``address`` (a distinct viewer for the edge)."""
    sessions: list[aiohttp.ClientSession] = []

    def factory(address: str) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(address, 0)),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        sessions.append(session)
        return session

    yield factory
    for session in sessions:
        await session.close()


async def fetch(
    session: aiohttp.ClientSession, edge: RunningEdge, path: str, method: str = "GET", **kwargs: Any
) -> tuple[int, Mapping[str, str], str]:
    async with session.request(method, edge.url + path, **kwargs) as response:
        return response.status, response.headers, await response.text()


def echo_client(origin: Origin) -> None:
    """``/who`` answers with the X-Forwarded-For the origin received (never cached)."""

    async def who(request: web.Request) -> web.Response:
        return web.Response(
            text=request.headers.get("X-Forwarded-For", ""), headers={"Cache-Control": "no-store"}
        )

    origin.route("/who", who)


BASE = """
origins: {{app: {{url: "{{origin}}"}}}}
{extra}
behaviours:
{behaviours}
  - {{path: "*", origin: app}}
"""


def yaml(extra: str = "", behaviours: str = "") -> str:
    return BASE.format(extra=extra, behaviours=behaviours)


# ----------------------------------------------------------------------------------- client address


async def test_untrusted_viewer_cannot_choose_its_address(
    make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory
) -> None:
    echo_client(origin)
    edge = await make_edge(yaml("server: {trusted_proxies: [127.0.0.2/32]}"), origin)
    status, _, body = await fetch(viewer("127.0.0.3"), edge, "/who", headers={"X-Forwarded-For": "1.2.3.4"})
    assert (status, body) == (200, "127.0.0.3")


async def test_trusted_proxy_forwards_the_client_address(
    make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory
) -> None:
    echo_client(origin)
    edge = await make_edge(yaml("server: {trusted_proxies: [127.0.0.2/32]}"), origin)
    proxy = viewer("127.0.0.2")
    # The viewer behind the proxy claimed 6.6.6.6 itself; the proxy appended what it saw.
    status, _, body = await fetch(proxy, edge, "/who", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7"})
    assert (status, body) == (200, "198.51.100.7")
    status, _, body = await fetch(proxy, edge, "/who")
    assert body == "127.0.0.2"


async def test_firewall_sees_the_forwarded_client(
    make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory
) -> None:
    origin.static("/page", "ok")
    text = yaml("server: {trusted_proxies: [127.0.0.2/32]}\nfirewall: {deny: [198.51.100.0/24]}")
    edge = await make_edge(text, origin)
    proxy = viewer("127.0.0.2")
    status, _, _ = await fetch(proxy, edge, "/page", headers={"X-Forwarded-For": "198.51.100.7"})
    assert status == 403
    status, _, _ = await fetch(proxy, edge, "/page", headers={"X-Forwarded-For": "203.0.113.1"})
    assert status == 200
    # Without trust, the same header changes nothing.
    status, _, _ = await fetch(
        viewer("127.0.0.3"), edge, "/page", headers={"X-Forwarded-For": "198.51.100.7"}
    )
    assert status == 200


async def test_spoofed_forwarding_fields_are_replaced(
    make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory
) -> None:
    origin.static("/page", "ok", Cache_Control="no-store")
    edge = await make_edge(yaml(), origin)
    spoofed = {"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    status, _, _ = await fetch(viewer("127.0.0.3"), edge, "/page", headers=spoofed)
    assert status == 200
    seen = origin.seen[-1].headers
    assert seen.getall("X-Forwarded-For") == ["127.0.0.3"]
    assert seen.getall("X-Forwarded-Proto") == ["http"]
    assert seen.getall("X-Forwarded-Host") == [edge.url.removeprefix("http://")]


async def test_viewer_url_and_forwarding_overrides_never_reach_the_origin(
    make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory
) -> None:
    origin.static("/page", "ok", Cache_Control="no-store")
    edge = await make_edge(yaml(), origin)
    spoofed = {
        "Forwarded": "for=1.2.3.4;host=evil.example;proto=https",
        "X-Original-URL": "/admin",
        "X-Rewrite-URL": "/admin",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Prefix": "/evil",
        "X-Forwarded-Server": "evil.example",
        "X-Real-IP": "1.2.3.4",
        "True-Client-IP": "1.2.3.4",
    }
    status, _, _ = await fetch(viewer("127.0.0.3"), edge, "/page", headers=spoofed)
    assert status == 200
    seen = origin.seen[-1].headers
    assert [name for name in spoofed if name in seen] == []


# ----------------------------------------------------------------------------------- networks


async def test_denied_network_gets_403_with_a_request_id(
    make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory
) -> None:
    origin.static("/page", "ok")
    edge = await make_edge(yaml("firewall: {deny: [127.0.0.3/32]}"), origin)
    status, headers, body = await fetch(viewer("127.0.0.3"), edge, "/page")
    assert status == 403
    request_id = headers["X-Request-Id"]
    assert request_id in body
    assert "detail=firewall-deny" in headers["Cache-Status"]
    assert origin.count("/page") == 0
    status, _, body = await fetch(viewer("127.0.0.2"), edge, "/page")
    assert (status, body) == (200, "ok")
    # Cache hits are guarded too: the object is stored now, the denied viewer still gets nothing.
    status, _, _ = await fetch(viewer("127.0.0.3"), edge, "/page")
    assert status == 403
    assert guard_stats(edge.edge.pipeline.guards)["blocked"]["firewall-deny"] == 2


async def test_allow_list_admits_only_its_networks(
    make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory
) -> None:
    origin.static("/page", "ok")
    edge = await make_edge(yaml("firewall: {allow: [127.0.0.2/32, 127.0.0.5/32]}"), origin)
    assert (await fetch(viewer("127.0.0.2"), edge, "/page"))[0] == 200
    assert (await fetch(viewer("127.0.0.5"), edge, "/page"))[0] == 200
    status, headers, _ = await fetch(viewer("127.0.0.4"), edge, "/page")
    assert status == 403 and "detail=firewall-not-allowed" in headers["Cache-Status"]


# ----------------------------------------------------------------------------------- rules

RULES = """
firewall:
  rules:
    - name: block-admin
      match: {path: "^/admin", method: [POST], header: {User-Agent: "sqlmap|nikto"}}
    - name: no-php
      match: {path: "\\\\.php$"}
    - name: xss
      match: {query: "<script"}
    - name: count-curl
      match: {header: {User-Agent: "^curl/"}}
      action: count
"""


async def test_rules_block_allow_and_count(
    make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory
) -> None:
    for path in ("/admin/login", "/public/admin", "/index.php", "/search"):
        origin.static(path, "ok", Cache_Control="no-store")
    behaviours = (
        "  - {path: /admin/*, origin: app, firewall: {rules: [block-admin]}}\n"
        "  - {path: /public/*, origin: app}"
    )
    edge = await make_edge(yaml(RULES, behaviours), origin)
    session = viewer("127.0.0.2")
    scanner = {"User-Agent": "sqlmap/1.7"}
    status, headers, body = await fetch(session, edge, "/admin/login", "POST", headers=scanner, data=b"x")
    assert status == 403 and "detail=firewall-rule" in headers["Cache-Status"]
    assert headers["X-Request-Id"] in body
    assert (await fetch(session, edge, "/admin/login", "POST", data=b"x"))[0] == 200
    assert (await fetch(session, edge, "/admin/login", headers=scanner))[0] == 200
    # The rule is scoped to its behaviour.
    assert (await fetch(session, edge, "/public/admin", "POST", headers=scanner, data=b"x"))[0] == 200
    # Unscoped rules apply everywhere, on raw and decoded forms.
    assert (await fetch(session, edge, "/index.php"))[0] == 403
    assert (await fetch(session, edge, "/index%2ephp"))[0] == 403
    assert (await fetch(session, edge, "/search?q=%3Cscript%3Ealert(1)"))[0] == 403
    assert (await fetch(session, edge, "/search?q=hello"))[0] == 200
    for _ in range(3):
        assert (await fetch(session, edge, "/search", headers={"User-Agent": "curl/8.0"}))[0] == 200
    stats = guard_stats(edge.edge.pipeline.guards)
    assert stats["rule_matches"]["count-curl"] == 3
    assert stats["rule_matches"]["block-admin"] == 1
    assert stats["blocked"]["firewall-rule"] == 4
    assert origin.count("/index.php") == 0


async def test_no_protection_configured_builds_no_guards(make_edge: EdgeFactory, origin: Origin) -> None:
    edge = await make_edge(yaml(), origin)
    assert edge.edge.pipeline.guards == ()


# ----------------------------------------------------------------------------------- rate limits


async def test_rate_limit_counts_429s_against_the_budget(
    make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory
) -> None:
    origin.static("/page", "ok", Cache_Control="max-age=3600")
    # 3 requests per hour: no refill can blur the count during the test.
    edge = await make_edge(yaml("firewall: {rate_limit: {requests: 3, per: 1h, burst: 3}}"), origin)
    first = viewer("127.0.0.2")
    statuses = [(await fetch(first, edge, "/page"))[0] for _ in range(10)]
    assert statuses.count(200) == 3
    assert statuses.count(429) == 7
    status, headers, body = await fetch(first, edge, "/page")
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 1200
    assert "detail=rate-limited" in headers["Cache-Status"]
    assert headers["X-Request-Id"] in body
    # Another viewer has a budget of its own.
    second = viewer("127.0.0.3")
    statuses = [(await fetch(second, edge, "/page"))[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    stats = guard_stats(edge.edge.pipeline.guards)
    assert stats["blocked"]["rate-limited"] == 10
    assert stats["rate_limit"]["clients"] == 2


async def test_rate_limit_by_header(make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory) -> None:
    origin.static("/api", "ok", Cache_Control="no-store")
    text = yaml("firewall: {rate_limit: {requests: 2, per: 1h, by: 'header:X-Api-Key'}}")
    edge = await make_edge(text, origin)
    one, other = viewer("127.0.0.2"), viewer("127.0.0.3")
    key_a = {"X-Api-Key": "a"}
    assert (await fetch(one, edge, "/api", headers=key_a))[0] == 200
    assert (await fetch(other, edge, "/api", headers=key_a))[0] == 200
    assert (await fetch(one, edge, "/api", headers=key_a))[0] == 429
    assert (await fetch(one, edge, "/api", headers={"X-Api-Key": "b"}))[0] == 200


# ----------------------------------------------------------------------------------- geo


async def test_geo_restriction_and_country_in_the_cache_key(
    make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory, tmp_path: Path
) -> None:
    database = write_country_db(
        tmp_path / "countries.mmdb", {"127.0.0.2/32": "DE", "127.0.0.3/32": "KP", "127.0.0.5/32": "FR"}
    )

    async def hello(request: web.Request) -> web.Response:
        country = request.headers.get("Edge-Viewer-Country", "?")
        return web.Response(text=f"hello {country}", headers={"Cache-Control": "max-age=3600"})

    origin.route("/hello", hello)
    text = f"""
origins: {{app: {{url: "{{origin}}"}}}}
geoip: {{database: {database}}}
firewall: {{countries: {{deny: [KP]}}}}
behaviours:
  - {{path: "*", origin: app, cache_key: {{headers: [Edge-Viewer-Country]}}}}
"""
    edge = await make_edge(text, origin)
    germany = viewer("127.0.0.2")
    assert (await fetch(germany, edge, "/hello", headers={"Edge-Viewer-Country": "US"}))[2] == "hello DE"
    status, headers, body = await fetch(germany, edge, "/hello")
    assert (status, body) == (200, "hello DE") and "hit" in headers["Cache-Status"]
    status, headers, body = await fetch(viewer("127.0.0.3"), edge, "/hello")
    assert status == 403 and "detail=geo-blocked" in headers["Cache-Status"]
    assert headers["X-Request-Id"] in body
    assert (await fetch(viewer("127.0.0.5"), edge, "/hello"))[2] == "hello FR"
    assert (await fetch(viewer("127.0.0.4"), edge, "/hello"))[2] == "hello XX"
    assert origin.count("/hello") == 3  # DE, FR and unknown: one entry each


async def test_geo_allow_list(
    make_edge: EdgeFactory, origin: Origin, viewer: ViewerFactory, tmp_path: Path
) -> None:
    database = write_country_db(tmp_path / "countries.mmdb", {"127.0.0.2/32": "DE", "127.0.0.3/32": "FR"})
    origin.static("/page", "ok")
    text = yaml(f"geoip: {{database: {database}}}\nfirewall: {{countries: {{allow: [DE]}}}}")
    edge = await make_edge(text, origin)
    assert (await fetch(viewer("127.0.0.2"), edge, "/page"))[0] == 200
    assert (await fetch(viewer("127.0.0.3"), edge, "/page"))[0] == 403
    assert (await fetch(viewer("127.0.0.4"), edge, "/page"))[0] == 403
