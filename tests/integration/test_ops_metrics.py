"""Metrics, dashboard data and access log fields against known traffic on a real edge (real sockets, a
real aiohttp origin); ``/metrics`` is read with prometheus-client's own parser."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.app import Edge
from tests.conftest import EdgeFactory, Origin
from tests.server_process import free_port

TOKEN = "metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = "x" * 1000

CONFIG = """
server: {name: edge-m, access_log: "LOG", access_log_format: FORMAT}
admin: {listen: "127.0.0.1:ADMINPORT", token: metrics-token}
origins: {app: {url: "{origin}"}}
behaviours:
  - {path: "/api/*", origin: app, methods: [GET, HEAD, POST]}
  - {path: "*", origin: app}
"""


def config(log: Path | str = "off", fmt: str = "json") -> str:
    text = CONFIG.replace("ADMINPORT", str(free_port())).replace("LOG", str(log))
    return text.replace("FORMAT", fmt)


async def admin_get(edge: Edge, path: str) -> tuple[int, str]:
    host, port = edge.admin_addresses[0]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}{path}", headers=AUTH) as response,
    ):
        return response.status, await response.text()


async def traffic(make_edge: EdgeFactory, origin: Origin, **kwargs: Any) -> Edge:
    """3 misses then 6 hits on /a /b /c (cacheable), 2 passes (POST /api/x), 1 origin 404 (a miss)."""
    origin.static("/{name}", BODY, Cache_Control="max-age=300")
    origin.static("/api/x", BODY)
    running = await make_edge(config(**kwargs), origin)
    for _ in range(3):
        for path in ("/a", "/b", "/c"):
            response, body = await running.get(path)
            assert response.status == 200 and len(body) == 1000
    for _ in range(2):
        response, _ = await running.get("/api/x", method="POST", data=b"form")
    response, _ = await running.get("/missing/nothing")
    return running.edge


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family: Any, suffix: str = "", **labels: str) -> float:
    total = 0.0
    for sample in family.samples:
        if sample.name == family.name + suffix and all(sample.labels.get(k) == v for k, v in labels.items()):
            total += sample.value
    return total


async def test_metrics_match_known_traffic(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/missing/nothing", "no", status=404)
    edge = await traffic(make_edge, origin)
    status, text = await admin_get(edge, "/metrics")
    assert status == 200
    found = families(text)
    requests = found["edgeproxy_requests"]
    assert value(requests, "_total") == 12
    assert value(requests, "_total", result="hit") == 6
    assert value(requests, "_total", result="miss") == 4  # 3 fills and the 404
    assert value(requests, "_total", result="bypass", behaviour="/api/*", status_class="2xx") == 2
    assert value(requests, "_total", status_class="4xx") == 1
    sent = found["edgeproxy_sent_bytes"]
    assert value(sent, "_total", result="hit") == 6000
    assert value(found["edgeproxy_origin_bytes"], "_total") == 5 * 1000 + 2  # 3 fills, 2 passes, "no"
    response_time = found["edgeproxy_response_seconds"]
    assert value(response_time, "_count") == 12
    assert value(response_time, "_bucket", le="+Inf") == 12
    origin_time = found["edgeproxy_origin_response_seconds"]
    assert value(origin_time, "_count") == 6
    assert value(found["edgeproxy_origin_requests"], "_total") == 6
    assert value(found["edgeproxy_origin_up"], origin="app") == 1
    assert value(found["edgeproxy_cache_entries"], tier="memory") == 4  # the 404 is cached too
    assert value(found["edgeproxy_workers"]) == 1
    assert value(found["process_resident_memory_bytes"]) > 0
    assert value(found["process_cpu_seconds"], "_total") > 0


async def test_dashboard_data_matches_known_traffic(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/missing/nothing", "no", status=404)
    edge = await traffic(make_edge, origin)
    status, text = await admin_get(edge, "/dashboard/data")
    assert status == 200
    data = json.loads(text)
    assert data["version"] == 1 and data["node"] == "edge-m" and data["workers"] == 1
    assert data["generation"] == 1
    assert (data["requests"]["hit"], data["requests"]["miss"], data["requests"]["bypass"]) == (6, 4, 2)
    assert data["bytes"]["hit"] == 6000
    assert data["hit_ratio"]["requests"] == round(6 / 10, 4)
    assert data["status"] == {"1xx": 0, "2xx": 11, "3xx": 0, "4xx": 1, "5xx": 0}
    assert data["origin"]["requests"] == 6 and data["origin"]["bytes"] == 5002
    assert all(data["origin"]["latency_ms"][p] is not None for p in ("p50", "p95", "p99"))
    assert sum(data["rates"]["requests"].values()) > 0
    assert data["top_urls"][0]["requests"] == 3
    assert {u["path"] for u in data["top_urls"]} == {"/a", "/b", "/c", "/api/x", "/missing/nothing"}
    assert {u["path"]: u["requests"] for u in data["top_misses"]} == {
        "/a": 1,
        "/b": 1,
        "/c": 1,
        "/missing/nothing": 1,
    }
    assert data["origins"][0]["name"] == "app" and data["origins"][0]["state"] == "up"
    assert data["origins"][0]["last_check"] is not None
    assert data["tiers"]["memory"]["entries"] == 4 and data["tiers"]["disk"] is None
    assert data["tiers"]["shared"] is None


async def test_dashboard_data_lists_invalidations_and_purges(
    make_edge: EdgeFactory, origin: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgeproxy.admin")
    edge = await traffic(make_edge, origin)
    host, port = edge.admin_addresses[0]
    async with aiohttp.ClientSession(headers=AUTH) as session:
        base = f"http://{host}:{port}"
        async with session.post(base + "/invalidations", json={"paths": ["/a"]}) as response:
            assert response.status == 201
        async with session.post(base + "/purge", json={"tags": ["t1"], "soft": True}) as response:
            assert response.status == 200
        async with session.get(base + "/dashboard/data") as response:
            events = (await response.json())["events"]
    assert [(e["kind"], e["what"]) for e in events] == [("purge", ["t1"]), ("invalidation", ["/a"])]
    assert events[0]["soft"] is True
    logged = [r.getMessage() for r in caplog.records if r.name == "edgeproxy.admin"]
    assert len(logged) == 2  # each event once
    assert re.fullmatch(r"invalidation I[0-9A-F]{16} created for 1 paths \(/a\): completed", logged[0])
    assert re.fullmatch(r"soft purge P[0-9A-F]{16} created for 1 tags \(t1\): completed", logged[1])


async def test_access_log_json_has_the_new_fields(
    make_edge: EdgeFactory, origin: Origin, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    edge = await traffic(make_edge, origin, log=log)
    edge.access_log.flush()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 12
    miss, hit = lines[0], lines[3]
    assert miss["cache"] == "miss" and hit["cache"] == "hit"
    assert miss["protocol"] == "HTTP/1.1"
    assert miss["bytes_from_origin"] == 1000 and hit["bytes_from_origin"] == 0
    assert miss["origin_ms"] >= 0 and hit["origin_ms"] is None
    assert 0 <= miss["ttfb_ms"] <= miss["duration_ms"]
    ids = [line["request_id"] for line in lines]
    assert len(set(ids)) == 12 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)


async def test_access_log_combined_format(make_edge: EdgeFactory, origin: Origin, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    origin.static("/q", "hello")
    running = await make_edge(config(log=log, fmt="combined"), origin)
    await running.get("/q?x=1", headers={"Referer": 'http://ref.test/"quoted"', "User-Agent": "probe/1.0"})
    running.edge.access_log.flush()
    line = log.read_text()
    pattern = (
        r"127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "
        r'"GET /q\?x=1 HTTP/1\.1" 200 5 "http://ref\.test/\\x22quoted\\x22" "probe/1\.0"\n'
    )
    assert re.fullmatch(pattern, line), line


async def test_the_grafana_dashboard_uses_only_metrics_we_export(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    edge = await traffic(make_edge, origin)
    _, text = await admin_get(edge, "/metrics")
    exported = set()
    for family in text_string_to_metric_families(text):
        exported |= {sample.name for sample in family.samples} | {family.name}
        if family.type == "counter":  # a counter without samples yet (no guards here) is still exported
            exported.add(family.name + "_total")
    grafana = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
    dashboard = json.loads(grafana.read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b((?:edgeproxy|process)_[a-z_]+)\{", target["expr"]))
    assert len(used) > 20
    shared = {name for name in used if name.startswith("edgeproxy_shared_")}  # only with a shared tier
    assert used - shared <= exported, sorted(used - shared - exported)
