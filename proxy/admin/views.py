"""What the admin API shows, computed from the workers' snapshots: ``/dashboard/data`` and ``/metrics``.

``merge`` adds up the per-worker snapshots (``EdgeAdmin.local_snapshot``, one per live worker of the node);
``dashboard_data`` and ``prometheus_text`` turn the sum, plus what only the answering worker knows (origin
health, shared tier, bans, generation), into the two views. Called by ``EdgeAdmin`` for each request.
Derived numbers (rates, ratios, percentiles) are computed here, once, so every client shows the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from proxy.cache.bans import Ban
from proxy.observability.stats import BUCKETS, HITS, RESULTS, STATUS_CLASSES, percentile
from proxy.origin.health import OriginHealth

__all__ = ["NodeView", "dashboard_data", "merge", "prometheus_text"]

TOP_SHOWN = 20
EVENTS_SHOWN = 20


def _add(into: dict[str, Any], key: str, value: Any) -> None:
    """Sum ``value`` (number, list of numbers or dict of numbers) into ``into[key]``."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        into[key] = into.get(key, 0) + value
    elif isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        have = into.get(key)
        into[key] = [a + b for a, b in zip(have, value, strict=True)] if have else list(value)
    elif isinstance(value, dict):
        inner = into.setdefault(key, {})
        for name, item in value.items():
            _add(inner, name, item)


def merge(snapshots: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The node's totals: numbers summed over ``snapshots``; labelled counters and top URLs merged; the
    recent windows turned into per-second rates before summing (workers' windows differ a little)."""
    total: dict[str, Any] = {"workers": len(snapshots)}
    labels: dict[tuple[str, ...], int] = {}
    top: dict[str, list[int]] = {}
    rates: dict[str, dict[str, float]] = {"requests": {}, "bytes": {}}
    recent_origin = [0] * (len(BUCKETS) + 1)
    started = []
    for snap in snapshots:
        pipeline = snap["pipeline"]
        for key, value in snap.items():
            if key not in ("pipeline", "process"):
                _add(total, key, value)
        for key, value in pipeline.items():
            if key not in ("by_label", "top", "recent", "started"):
                _add(total, key, value)
        process = snap.get("process", {})
        for key in ("cpu_seconds", "rss_bytes", "open_fds"):
            _add(total.setdefault("process", {}), key, process.get(key, 0))
        started.append(float(pipeline.get("started", time.time())))
        for *label, count in pipeline.get("by_label", []):
            labels[tuple(label)] = labels.get(tuple(label), 0) + count
        for path, *counts in pipeline.get("top", []):
            into = top.setdefault(path, [0, 0, 0, 0])
            for i, value in enumerate(counts):
                into[i] += value
        recent = pipeline.get("recent")
        if recent:
            seconds = max(float(recent["seconds"]), 1e-3)
            for kind in ("requests", "bytes"):
                for result, value in recent[kind].items():
                    rates[kind][result] = rates[kind].get(result, 0.0) + value / seconds
            recent_origin = [a + b for a, b in zip(recent_origin, recent["origin_buckets"], strict=True)]
    total["by_label"] = labels
    total["top"] = top
    total["rates"] = rates
    total["recent_origin_buckets"] = recent_origin
    total["started"] = min(started) if started else time.time()
    return total


@dataclass
class NodeView:
    """What only the answering worker knows, next to the merged counters."""

    node: str
    generation: int
    origins: Mapping[str, OriginHealth]
    shared: dict[str, int] | None
    shared_available: bool | None
    memory_max_bytes: int
    bans: Sequence[Ban] = ()
    guards: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    disk: dict[str, int] | None = None  # the disk tier's folder-wide size and this worker's counters


def _ratio(hit: float, looked: float) -> float | None:
    return round(hit / looked, 4) if looked else None


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 3) if seconds is not None else None


def _top(top: Mapping[str, list[int]], index: int) -> list[dict[str, Any]]:
    chosen = sorted((item for item in top.items() if item[1][index]), key=lambda item: -item[1][index])
    return [
        {"path": path, "requests": counts[index], "bytes": counts[index + 1]}
        for path, counts in chosen[:TOP_SHOWN]
    ]


def dashboard_data(total: Mapping[str, Any], view: NodeView, now: float | None = None) -> dict[str, Any]:
    """The ``GET /dashboard/data`` document (shape in docs/operations.md, version 1)."""
    now = time.time() if now is None else now
    requests = {r: int(total.get("requests", {}).get(r, 0)) for r in RESULTS}
    sent = {r: int(total.get("bytes", {}).get(r, 0)) for r in RESULTS}
    hits = sum(requests[r] for r in HITS)
    hit_bytes = sum(sent[r] for r in HITS)
    rates = total.get("rates", {})
    recent = total.get("recent_origin_buckets") or [0]
    buckets = recent if sum(recent) else total.get("origin_buckets", [0] * (len(BUCKETS) + 1))
    memory = total.get("memory", {})
    events = []
    for ban in sorted(view.bans, key=lambda b: -b.created)[:EVENTS_SHOWN]:
        event: dict[str, Any] = {
            "time": ban.created,
            "kind": "invalidation" if ban.paths else "purge",
            "id": ban.id,
            "what": list(ban.paths or ban.tags),
        }
        if not ban.paths:
            event["soft"] = ban.soft
        events.append(event)
    status = total.get("status", {})
    return {
        "version": 1,
        "node": view.node,
        "time": now,
        "started": total.get("started", now),
        "generation": view.generation,
        "workers": total.get("workers", 1),
        "window_seconds": 10.0,
        "requests": requests,
        "bytes": sent,
        "rates": {
            kind: {r: round(float(rates.get(kind, {}).get(r, 0.0)), 3) for r in RESULTS}
            for kind in ("requests", "bytes")
        },
        "hit_ratio": {
            "requests": _ratio(hits, hits + requests["miss"]),
            "bytes": _ratio(hit_bytes, hit_bytes + sent["miss"]),
        },
        "status": {cls: int(status.get(cls, 0)) for cls in STATUS_CLASSES if cls != "0xx"},
        "origin": {
            "requests": int(total.get("origin_requests", 0)),
            "errors": int(total.get("origin_errors", 0)),
            "failovers": int(total.get("failovers", 0)),
            "retries": int(total.get("retries", 0)),
            "bytes": int(total.get("bytes_from_origin", 0)),
            "latency_ms": {f"p{q}": _ms(percentile(buckets, q / 100)) for q in (50, 95, 99)},
        },
        "origins": [
            {
                "name": name,
                "state": health.state.value,
                "last_check": health.last_check,
                "last_error": health.last_error,
                "failures": health.total_failures,
                "successes": health.total_successes,
                "times_down": health.times_down,
            }
            for name, health in view.origins.items()
        ],
        "top_urls": _top(total.get("top", {}), 0),
        "top_misses": _top(total.get("top", {}), 2),
        "tiers": {
            "memory": {
                "entries": int(memory.get("entries", 0)),
                "bytes": int(memory.get("bytes", 0)),
                "max_bytes": view.memory_max_bytes * int(total.get("workers", 1)),
                "evictions": int(memory.get("evictions", 0)),
            },
            "disk": None
            if view.disk is None
            else {
                "entries": view.disk["entries"],
                "bytes": view.disk["bytes"],
                "max_bytes": view.disk["max_bytes"],
                "evictions": view.disk["evictions"],
            },
            "shared": None
            if view.shared is None
            else {"available": bool(view.shared_available), **view.shared},
        },
        "events": events,
    }


def _cumulative(buckets: Sequence[int]) -> list[tuple[str, float]]:
    out = []
    running = 0
    for bound, count in zip([*BUCKETS, float("inf")], buckets, strict=True):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
    return out


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def prometheus_text(total: Mapping[str, Any], view: NodeView) -> bytes:
    """The ``/metrics`` body (Prometheus text 0.0.4), built with prometheus-client from the sums."""
    families: list[Metric] = []

    def counter(name: str, doc: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        family = CounterMetricFamily(name, doc, labels=list(labels or ()))
        family.add_metric(list((labels or {}).values()), float(value))
        families.append(family)

    requests = CounterMetricFamily(
        "edgeproxy_requests",
        "Viewer requests by behaviour, cache result and status class.",
        labels=["behaviour", "result", "status_class"],
    )
    for (behaviour, result, cls), count in sorted(total.get("by_label", {}).items()):
        requests.add_metric([behaviour, result, cls], float(count))
    families.append(requests)
    protocols = CounterMetricFamily(
        "edgeproxy_viewer_requests",
        "Viewer requests by protocol (HTTP/1.1, HTTP/2, HTTP/3).",
        labels=["protocol"],
    )
    for name, count in sorted(total.get("protocols", {}).items()):
        protocols.add_metric([name], float(count))
    families.append(protocols)
    sent = CounterMetricFamily("edgeproxy_sent_bytes", "Body bytes sent to viewers.", labels=["result"])
    for result in RESULTS:
        sent.add_metric([result], float(total.get("bytes", {}).get(result, 0)))
    families.append(sent)
    counter("edgeproxy_origin_bytes", "Body bytes read from origins.", total.get("bytes_from_origin", 0))
    for name, doc, buckets, total_sum in (
        (
            "edgeproxy_response_seconds",
            "Time from a viewer request's arrival to the end of its response.",
            total.get("response_buckets"),
            total.get("response_sum", 0.0),
        ),
        (
            "edgeproxy_origin_response_seconds",
            "Time from sending a viewer request's origin request to the origin's response head.",
            total.get("origin_buckets"),
            total.get("origin_observed", 0.0),
        ),
    ):
        histogram = HistogramMetricFamily(name, doc)
        histogram.add_metric([], _cumulative(buckets or [0] * (len(BUCKETS) + 1)), float(total_sum))
        families.append(histogram)
    counter("edgeproxy_origin_requests", "Requests sent to origins.", total.get("origin_requests", 0))
    counter("edgeproxy_origin_errors", "Origin requests that failed outright.", total.get("origin_errors", 0))
    counter("edgeproxy_failovers", "Requests that moved to another origin.", total.get("failovers", 0))
    counter("edgeproxy_origin_retries", "Origin attempts beyond a request's first.", total.get("retries", 0))
    counter("edgeproxy_collapsed_requests", "Requests served by another's fetch.", total.get("collapsed", 0))
    counter(
        "edgeproxy_shield_fetches",
        "Fetches made holding the cluster shield lock.",
        total.get("shield_fetches", 0),
    )
    up = GaugeMetricFamily(
        "edgeproxy_origin_up", "1 when the answering worker considers the origin up.", labels=["origin"]
    )
    failures = CounterMetricFamily(
        "edgeproxy_origin_failures", "Failed origin attempts (answering worker).", labels=["origin"]
    )
    downs = CounterMetricFamily(
        "edgeproxy_origin_down_transitions", "Times the origin went down.", labels=["origin"]
    )
    for name, health in view.origins.items():
        up.add_metric([name], 1.0 if health.state.value == "up" else 0.0)
        failures.add_metric([name], float(health.total_failures))
        downs.add_metric([name], float(health.times_down))
    families += [up, failures, downs]
    memory = total.get("memory", {})
    entries = GaugeMetricFamily("edgeproxy_cache_entries", "Objects stored, by tier.", labels=["tier"])
    entries.add_metric(["memory"], float(memory.get("entries", 0)))
    size = GaugeMetricFamily("edgeproxy_cache_bytes", "Bytes stored, by tier.", labels=["tier"])
    size.add_metric(["memory"], float(memory.get("bytes", 0)))
    limit = GaugeMetricFamily("edgeproxy_cache_max_bytes", "Configured size, by tier.", labels=["tier"])
    limit.add_metric(["memory"], float(view.memory_max_bytes * int(total.get("workers", 1))))
    evictions = CounterMetricFamily("edgeproxy_cache_evictions", "Entries evicted, by tier.", labels=["tier"])
    evictions.add_metric(["memory"], float(memory.get("evictions", 0)))
    if view.disk is not None:  # the folder is shared by the workers: its size is not summed over them
        entries.add_metric(["disk"], float(view.disk["entries"]))
        size.add_metric(["disk"], float(view.disk["bytes"]))
        limit.add_metric(["disk"], float(view.disk["max_bytes"]))
        evictions.add_metric(["disk"], float(view.disk["evictions"]))
        counter(
            "edgeproxy_disk_errors",
            "Disk tier reads, writes and deletes that failed (answering worker).",
            view.disk["errors"],
        )
        counter(
            "edgeproxy_disk_corrupt",
            "Disk tier files that failed their checks and were removed (answering worker).",
            view.disk["corrupt"],
        )
        writable = GaugeMetricFamily("edgeproxy_disk_writable", "1 while the disk tier takes writes.")
        writable.add_metric([], float(view.disk["writable"]))
        families.append(writable)
    families += [entries, size, limit, evictions]
    if view.shared is not None:
        operations = CounterMetricFamily(
            "edgeproxy_shared_operations",
            "Shared tier calls by outcome (answering worker).",
            labels=["outcome"],
        )
        for outcome, count in sorted(view.shared.items()):
            operations.add_metric([outcome], float(count))
        shared_up = GaugeMetricFamily("edgeproxy_shared_up", "1 while the shared tier's circuit is closed.")
        shared_up.add_metric([], 1.0 if view.shared_available else 0.0)
        errors = view.shared.get("errors", 0) + view.shared.get("timeouts", 0)
        counter("edgeproxy_shared_errors", "Shared tier calls that failed or timed out.", errors)
        families += [operations, shared_up]
    verdicts = CounterMetricFamily(
        "edgeproxy_guard_blocked", "Requests refused by a guard, by reason.", labels=["reason"]
    )
    for reason, count in sorted(view.guards.get("blocked", {}).items()):
        verdicts.add_metric([reason], float(count))
    rules = CounterMetricFamily(
        "edgeproxy_firewall_rule_matches", "Firewall rule matches, by rule.", labels=["rule"]
    )
    for rule, count in sorted(view.guards.get("rule_matches", {}).items()):
        rules.add_metric([rule], float(count))
    families += [verdicts, rules]
    bans = GaugeMetricFamily("edgeproxy_bans", "Invalidations and purges in force.")
    bans.add_metric([], float(len(view.bans)))
    workers = GaugeMetricFamily("edgeproxy_workers", "Worker processes counted in these metrics.")
    workers.add_metric([], float(total.get("workers", 1)))
    generation = GaugeMetricFamily("edgeproxy_generation", "Reload generation of the answering worker.")
    generation.add_metric([], float(view.generation))
    families += [bans, workers, generation]
    process = total.get("process", {})
    counter("process_cpu_seconds", "User and system CPU time of the workers.", process.get("cpu_seconds", 0))
    for name, doc, value in (
        ("process_resident_memory_bytes", "Resident memory of the workers.", process.get("rss_bytes", 0)),
        ("process_open_fds", "Open file descriptors of the workers.", process.get("open_fds", 0)),
        ("process_start_time_seconds", "Start of the oldest worker (epoch).", total.get("started", 0)),
    ):
        gauge = GaugeMetricFamily(name, doc)
        gauge.add_metric([], float(value))
        families.append(gauge)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)
