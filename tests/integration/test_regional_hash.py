"""A hashed regional tier (issue 15 item 4): two POP edges → three regional edges (balance: hash) → origin.

Every process here is a real edge on 127.0.0.1 with its own memory cache and no shared tier: the POPs
agree on which regional edge owns a key only through rendezvous hashing of the cache key, so an object is
fetched from the origin once however many POPs ask for it, and a stopped regional edge hands its keys to
the next member in each key's hash order.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from proxy.origin.rendezvous import Rendezvous
from tests.conftest import EdgeFactory, Origin, RunningEdge, wait_for

REGIONAL = """
server: {name: NAME, access_log: "off"}
origins: {app: {url: "{origin}", connect_timeout: 1s, read_timeout: 5s}}
behaviours:
  - path: "*"
    origin: app
"""

POP = """
server: {name: NAME, access_log: LOG}
cache: {status_key: true}
origins:
  r1: {url: "{r1}", connect_timeout: 1s, read_timeout: 5s}
  r2: {url: "{r2}", connect_timeout: 1s, read_timeout: 5s}
  r3: {url: "{r3}", connect_timeout: 1s, read_timeout: 5s}
origin_groups:
  regional: {members: [r1, r2, r3], balance: hash}
behaviours:
  - path: "*"
    origin: regional
"""

MEMBERS = ["r1", "r2", "r3"]
REGIONAL_NAME = {"r1": "regional-1", "r2": "regional-2", "r3": "regional-3"}
RING = Rendezvous(MEMBERS)
HOST = "www.example.test"


def serve_objects(origin: Origin) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=f"object {request.path}".encode(), headers={"Cache-Control": "max-age=300"})

    origin.route("/obj/{name}", handler)


def key_of(cache_status: str) -> str:
    """The POP's cache key, from its ``key="…"`` (``cache.status_key: true``) in the last member."""
    pop_member = cache_status.split(",")[-1]
    return pop_member.split('key="', 1)[1].split('"', 1)[0]


def members(cache_status: str) -> list[str]:
    """The cache names in ``Cache-Status``, nearest the origin first (RFC 9211 §2)."""
    return [member.split(";")[0].strip() for member in cache_status.split(",")]


async def topology(
    make_edge: EdgeFactory, origin: Origin, log: Path
) -> tuple[RunningEdge, RunningEdge, dict[str, RunningEdge]]:
    serve_objects(origin)
    regionals = {
        member: await make_edge(REGIONAL.replace("NAME", REGIONAL_NAME[member]), origin=origin)
        for member in MEMBERS
    }
    urls = {member: edge.url for member, edge in regionals.items()}
    pop_a = await make_edge(POP.replace("NAME", "pop-a").replace("LOG", json.dumps(str(log))), **urls)
    pop_b = await make_edge(POP.replace("NAME", "pop-b").replace("LOG", '"off"'), **urls)
    return pop_a, pop_b, regionals


async def get(edge: RunningEdge, path: str) -> tuple[str, list[str], str]:
    """GET ``path`` from a POP as a viewer of the site would (the same Host at every POP)."""
    response, body = await edge.get(path, headers={"Host": HOST})
    assert response.status == 200, (path, response.status, body)
    assert body == f"object {path}".encode()
    status = response.headers["Cache-Status"]
    return status, members(status), key_of(status)


def log_lines(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


async def test_each_object_comes_from_the_origin_once_through_its_regional_owner(
    make_edge: EdgeFactory, origin: Origin, tmp_path: Path
) -> None:
    log = tmp_path / "pop-a.log"
    pop_a, pop_b, _ = await topology(make_edge, origin, log)
    paths = [f"/obj/{i}" for i in range(24)]
    owners: dict[str, str] = {}
    for path in paths:
        status, names, key = await get(pop_a, path)
        owner = RING.owner(key)
        owners[path] = owner
        # The regional edge that answered is the key's owner; its Cache-Status member names it.
        assert names == [REGIONAL_NAME[owner], "pop-a"], status
        assert "hit" not in status.split(",")[0]
    assert set(owners.values()) == set(MEMBERS)  # every regional edge owns a slice of these keys
    for path in paths:
        status, names, _ = await get(pop_b, path)
        # pop-b computes the same owner, whose memory already holds the object: a regional hit.
        assert names == [REGIONAL_NAME[owners[path]], "pop-b"], status
        assert status.split(",")[0].split(";")[1].strip() == "hit", status
        assert origin.count(path) == 1, path
    # The hash choice is in pop-a's access log: the origin member that answered each key.
    await wait_for(lambda: len(log_lines(log)) >= len(paths))
    logged = {str(line["path"]): line["origin"] for line in log_lines(log)}
    assert logged == owners


async def test_a_stopped_regional_hands_its_keys_to_the_next_in_hash_order(
    make_edge: EdgeFactory, origin: Origin, tmp_path: Path
) -> None:
    log = tmp_path / "pop-a.log"
    pop_a, pop_b, regionals = await topology(make_edge, origin, log)
    # Objects whose owner is r2 (by the POPs' cache key: host and path).
    r2_paths = [p for p in (f"/obj/{i}" for i in range(40)) if RING.owner(HOST + p) == "r2"][:6]
    assert len(r2_paths) == 6
    _, names, key = await get(pop_a, r2_paths[0])
    assert key == HOST + r2_paths[0]
    assert names[0] == "regional-2"  # while r2 is up, it serves its keys
    await regionals["r2"].edge.stop()
    for path in r2_paths[1:]:
        status, names, key = await get(pop_a, path)
        heir = [RING.names[i] for i in RING.order(key)][1]  # the next member in this key's hash order
        assert heir != "r2"
        assert names == [REGIONAL_NAME[heir], "pop-a"], status
    for path in r2_paths[1:]:
        # pop-b finds r2 down too and goes to the same heir, which already holds the object.
        heir = [RING.names[i] for i in RING.order(HOST + path)][1]
        status, names, _ = await get(pop_b, path)
        assert names == [REGIONAL_NAME[heir], "pop-b"], status
        assert status.split(",")[0].split(";")[1].strip() == "hit", status
    for path in r2_paths:
        assert origin.count(path) == 1, path
    await wait_for(lambda: len(log_lines(log)) >= len(r2_paths))
    lines = {str(line["path"]): line for line in log_lines(log)}
    tried = lines[r2_paths[1]]["origins_tried"]
    assert isinstance(tried, list) and tried[0] == "r2" and len(tried) == 2  # r2 first, then its heir


async def test_a_request_without_a_cache_key_hashes_its_target(
    make_edge: EdgeFactory, origin: Origin, tmp_path: Path
) -> None:
    pop_a, _, _ = await topology(make_edge, origin, tmp_path / "pop-a.log")
    seen = set()
    for i in range(12):
        path = f"/obj/{i}?q=1"
        response, body = await pop_a.get(path, method="POST", data=b"x", headers={"Host": HOST})
        assert response.status == 200 and body == f"object /obj/{i}".encode()
        names = members(response.headers["Cache-Status"])
        assert names == [REGIONAL_NAME[RING.owner(path)], "pop-a"], response.headers["Cache-Status"]
        seen.add(names[0])
    assert len(seen) == 3
