"""``set_cookie: pass | strip | store``: no viewer ever receives another viewer's cookie (unless ``store``).

The origin answers every viewer with a cookie derived from the viewer's own (``seen=<user>``), cacheable
for a minute: a shared cache that replays it hands alice's session to bob.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from proxy.app import Edge
from proxy.settings import ListenAddress, config_for_origin
from tests.conftest import EdgeFactory, Origin, RunningEdge
from tests.server_process import free_port

REPO = Path(__file__).resolve().parents[2]

BEHAVIOUR = """
server: {name: edge-c, access_log: "off"}
origins: {app: {url: "{origin}"}}
behaviours:
  - path: "*"
    origin: app
    SETTING
"""


def config(mode: str | None) -> str:
    return BEHAVIOUR.replace("SETTING", f"set_cookie: {mode}" if mode else "")


def _user(request: web.Request) -> str | None:
    return request.cookies.get("user")


async def per_viewer(request: web.Request) -> web.Response:
    """Cacheable for a minute, and it sets a cookie derived from the viewer's own."""
    headers = {"Cache-Control": "max-age=60"}
    user = _user(request)
    if user is not None:
        headers["Set-Cookie"] = f"seen={user}; Path=/"
    return web.Response(text="page", headers=headers)


async def revalidated(request: web.Request) -> web.Response:
    """Always stale (max-age=0 with an ETag: stored, revalidated each time); the 304 sets the cookie too."""
    headers = {"Cache-Control": "max-age=0", "ETag": '"v1"'}
    user = _user(request)
    if user is not None:
        headers["Set-Cookie"] = f"seen={user}; Path=/"
    if request.headers.get("If-None-Match") == '"v1"':
        return web.Response(status=304, headers=headers)
    return web.Response(text="page", headers=headers)


def cookies_of(response: aiohttp.ClientResponse) -> list[str]:
    return response.headers.getall("Set-Cookie", [])


def detail(response: aiohttp.ClientResponse) -> str:
    return response.headers["Cache-Status"]


async def as_viewer(edge: RunningEdge, path: str, user: str | None) -> aiohttp.ClientResponse:
    headers = {"Cookie": f"user={user}"} if user else {}
    response, body = await edge.get(path, headers=headers)
    assert body == b"page"
    return response


@pytest.fixture
async def origin_mode(origin: Origin) -> AsyncIterator[RunningEdge]:
    """An edge built as ``edgeproxy serve --origin URL`` builds it (no config file)."""
    origin.route("/page", per_viewer)
    cfg = config_for_origin(await origin.start(), "127.0.0.1:0")
    edge = Edge(cfg, shutdown_grace=1.0)
    (host, port), *_ = await edge.start((ListenAddress(host="127.0.0.1", port=0),))
    session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    try:
        yield RunningEdge(edge=edge, url=f"http://{host}:{port}", session=session)
    finally:
        await session.close()
        await edge.stop()


async def test_origin_mode_never_hands_one_viewers_cookie_to_another(
    origin_mode: RunningEdge, origin: Origin
) -> None:
    alice = await as_viewer(origin_mode, "/page", "alice")
    bob = await as_viewer(origin_mode, "/page", "bob")
    assert cookies_of(alice) == ["seen=alice; Path=/"]
    assert cookies_of(bob) == ["seen=bob; Path=/"]
    for response in (alice, bob):
        assert response.headers["X-Cache"] == "Miss from edgeproxy"
        assert "detail=set-cookie" in detail(response) and "stored" not in detail(response)
    assert origin.count("/page") == 2


async def test_pass_is_the_default_and_does_not_hold_up_the_key(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    origin.route("/page", per_viewer)
    edge = await make_edge(config(None), origin)
    first = await as_viewer(edge, "/page", "alice")
    assert "detail=set-cookie" in detail(first)
    # Hit-for-miss: concurrent viewers of a key whose answer sets cookies each get their own answer.
    answers = await asyncio.gather(*(as_viewer(edge, "/page", f"u{i}") for i in range(5)))
    assert [cookies_of(r) for r in answers] == [[f"seen=u{i}; Path=/"] for i in range(5)]
    # A viewer without a cookie gets an answer without one: that one is stored and shared.
    anonymous = await as_viewer(edge, "/page", None)
    assert cookies_of(anonymous) == [] and "stored" in detail(anonymous)
    again = await as_viewer(edge, "/page", None)
    assert again.headers["X-Cache"] == "Hit from edgeproxy" and cookies_of(again) == []
    assert origin.count("/page") == 7


@pytest.mark.parametrize(
    ("mode", "second_gets", "first_detail", "origin_requests"),
    [
        ("pass", ["seen=bob; Path=/"], "detail=set-cookie", 2),
        ("strip", [], "stored", 1),
        ("store", ["seen=alice; Path=/"], "stored", 1),
    ],
)
async def test_set_cookie_modes(
    make_edge: EdgeFactory,
    origin: Origin,
    mode: str,
    second_gets: list[str],
    first_detail: str,
    origin_requests: int,
) -> None:
    origin.route("/page", per_viewer)
    edge = await make_edge(config(mode), origin)
    alice = await as_viewer(edge, "/page", "alice")
    bob = await as_viewer(edge, "/page", "bob")
    assert cookies_of(alice) == ["seen=alice; Path=/"]  # the fetching viewer always gets its cookie
    assert first_detail in detail(alice)
    assert cookies_of(bob) == second_gets
    assert origin.count("/page") == origin_requests
    if mode != "pass":
        assert bob.headers["X-Cache"] == "Hit from edgeproxy"


@pytest.mark.parametrize("mode", ["pass", "strip"])
async def test_a_304_with_set_cookie_never_puts_it_in_the_entry(
    make_edge: EdgeFactory, origin: Origin, mode: str
) -> None:
    origin.route("/r", revalidated)
    edge = await make_edge(config(mode), origin)
    first = await as_viewer(edge, "/r", None if mode == "pass" else "alice")
    assert "stored" in detail(first)
    bob = await as_viewer(edge, "/r", "bob")  # revalidated: 304 with bob's cookie
    assert bob.headers["X-Cache"] == "RefreshHit from edgeproxy"
    assert cookies_of(bob) == ["seen=bob; Path=/"]
    if mode == "pass":
        assert "detail=set-cookie" in detail(bob)
    anonymous = await as_viewer(edge, "/r", None)  # revalidated again: a 304 without a cookie
    assert cookies_of(anonymous) == []
    assert [r.headers.get("If-None-Match") for r in origin.seen] == [None, '"v1"', '"v1"']


async def test_a_304_with_set_cookie_is_stored_under_store(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.route("/r", revalidated)
    edge = await make_edge(config("store"), origin)
    await as_viewer(edge, "/r", None)
    await as_viewer(edge, "/r", "bob")
    anonymous = await as_viewer(edge, "/r", None)
    assert cookies_of(anonymous) == ["seen=bob; Path=/"]  # why store is documented as dangerous


async def test_error_pages_follow_the_rule(make_edge: EdgeFactory, origin: Origin) -> None:
    async def missing(request: web.Request) -> web.Response:
        user = _user(request) or "nobody"
        return web.Response(status=404, text="page", headers={"Set-Cookie": f"seen={user}"})

    origin.route("/missing", missing)
    edge = await make_edge(config("strip"), origin)
    alice = await as_viewer(edge, "/missing", "alice")
    bob = await as_viewer(edge, "/missing", "bob")
    assert alice.status == bob.status == 404
    assert cookies_of(alice) == ["seen=alice"] and cookies_of(bob) == []
    assert bob.headers["X-Cache"] == "Hit from edgeproxy"


async def test_cli_origin_mode(origin: Origin) -> None:
    """The real ``edgeproxy serve --origin`` process: bob never gets alice's cookie."""
    origin.route("/page", per_viewer)
    origin_url = await origin.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "serve",
        "--origin",
        origin_url,
        "--listen",
        f"127.0.0.1:{port}",
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            async with asyncio.timeout(20):
                while True:
                    assert process.returncode is None, "edge exited early"
                    try:
                        async with session.get(url + "/__ready__") as response:
                            await response.read()
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
            got = []
            for user in ("alice", "bob"):
                async with session.get(url + "/page", headers={"Cookie": f"user={user}"}) as response:
                    assert await response.read() == b"page"
                    got.append(response.headers.getall("Set-Cookie", []))
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    assert got == [["seen=alice; Path=/"], ["seen=bob; Path=/"]]
    assert origin.count("/page") == 2
