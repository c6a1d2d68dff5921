"""The admin API's view of a running edge: ``EdgeAdmin`` implements ``AdminOps`` over an ``AdminSurface``.

``AdminSurface`` is the narrow view of one worker the admin needs (bans, counters, health, reload);
``proxy.app.Edge`` implements it, so the admin never reaches into the pipeline or imports the app.
Created by ``Edge.__init__``. Invalidations and purges become bans
(``proxy.cache.bans``): applied locally at once, then, with a shared tier, published to every worker and
node, and the call returns "Completed" only once every live worker acknowledged the ban.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from proxy.admin.api import AdminError, Invalidation
from proxy.admin.metrics import Family, render
from proxy.cache.bans import Ban
from proxy.cache.coordination import Coordinator
from proxy.cache.memory import MemoryStats
from proxy.origin.health import OriginHealth
from proxy.settings import ConfigError

ACK_TIMEOUT = 5.0  # how long an invalidation waits for every worker to confirm it
_KEPT_INVALIDATIONS = 1000


class AdminSurface(Protocol):
    """What the admin API reads and does on one worker (``proxy.app.Edge`` implements it)."""

    @property
    def node_name(self) -> str:
        """``server.name``: the node's id in the cluster registry."""
        ...

    @property
    def supervised(self) -> bool:
        """True in a worker of the supervisor (``server.workers`` > 1)."""
        ...

    @property
    def coordinator(self) -> Coordinator | None:
        """The cluster coordinator (Redis shared tier), or None."""
        ...

    @property
    def behaviour_count(self) -> int:
        """How many behaviours the current config has."""
        ...

    def add_ban(self, ban: Ban) -> None:
        """Put ``ban`` in force on this worker."""

    def find_ban(self, ban_id: str) -> Ban | None:
        """The ban with this id in the (cluster's) ban list, or None."""

    def ban_count(self) -> int:
        """How many bans are in force."""

    def pipeline_stats(self) -> dict[str, Any]:
        """The pipeline's counters (``PipelineStats.snapshot``)."""

    def memory_stats(self) -> MemoryStats:
        """The memory tier's counters."""

    def collapsed_requests(self) -> int:
        """Requests served from another request's fetch."""

    def guard_stats(self) -> dict[str, Any]:
        """The guards' counters (``proxy.edge.guard_stats``)."""

    def origin_health(self) -> Mapping[str, OriginHealth]:
        """Each origin's health, by name."""

    def shared_stats(self) -> dict[str, int] | None:
        """The shared tier's counters, or None without one."""

    def shared_available(self) -> bool | None:
        """Whether the shared tier answers, or None without one."""

    async def reload(self) -> None:
        """Re-read the config file and switch to it; raises ``ConfigError`` when it has errors."""


class EdgeAdmin:
    """``AdminOps`` for one worker process of an edge."""

    def __init__(self, edge: AdminSurface) -> None:
        self.edge = edge
        self._invalidations: OrderedDict[str, Invalidation] = OrderedDict()

    # ---------------------------------------------------------------- bans
    async def _ban(self, ban: Ban) -> str:
        """Put ``ban`` in force here and, with a shared tier, everywhere; the resulting status."""
        coordinator = self.edge.coordinator
        if coordinator is None and self.edge.supervised:
            # Without a shared tier, the other worker processes would never learn of the ban.
            raise AdminError(
                "invalidations with server.workers > 1 need cache.shared (Redis) to reach every worker", 503
            )
        self.edge.add_ban(ban)
        if coordinator is None:
            return "Completed"
        try:
            await coordinator.publish(ban)
        except OSError as exc:
            raise AdminError(f"the ban is in force on this worker only: {exc}", 503) from exc
        await coordinator.ack(ban.id)
        done = await coordinator.wait_for_acks(ban.id, ACK_TIMEOUT)
        return "Completed" if done else "InProgress"

    def _remember(self, invalidation: Invalidation) -> None:
        self._invalidations[invalidation.id] = invalidation
        while len(self._invalidations) > _KEPT_INVALIDATIONS:
            self._invalidations.popitem(last=False)

    async def _recall(self, invalidation_id: str) -> Invalidation | None:
        """An invalidation created by this worker, or (with a shared tier) by any worker or node: its ban
        is in the cluster's ban list."""
        found = self._invalidations.get(invalidation_id)
        if found is not None:
            return found
        ban = self.edge.find_ban(invalidation_id)
        if ban is None or not ban.paths:
            return None
        return Invalidation(ban.id, "InProgress", ban.created, ban.paths)

    async def invalidate(self, paths: list[str]) -> Invalidation:
        ban = Ban(id="I" + uuid.uuid4().hex[:16].upper(), created=time.time(), paths=tuple(paths))
        status = await self._ban(ban)
        invalidation = Invalidation(
            ban.id, "Completed" if status == "Completed" else "InProgress", ban.created, ban.paths
        )
        self._remember(invalidation)
        return invalidation

    async def get_invalidation(self, invalidation_id: str) -> Invalidation | None:
        found = await self._recall(invalidation_id)
        coordinator = self.edge.coordinator
        if (
            found is not None
            and found.status == "InProgress"
            and coordinator is not None
            and await coordinator.wait_for_acks(found.id, 0.0)
        ):
            found = Invalidation(found.id, "Completed", found.created, found.paths)
            self._remember(found)
        return found

    async def purge(self, tags: list[str], soft: bool) -> dict[str, Any]:
        ban = Ban(id="P" + uuid.uuid4().hex[:16].upper(), created=time.time(), tags=tuple(tags), soft=soft)
        status = await self._ban(ban)
        return {"id": ban.id, "status": status, "tags": list(ban.tags), "soft": soft}

    # ---------------------------------------------------------------- observing
    def local_snapshot(self) -> dict[str, Any]:
        """This worker's counters (shared with the other workers through the cluster registry)."""
        edge = self.edge
        memory = edge.memory_stats()
        return {
            "pipeline": edge.pipeline_stats(),
            "memory": {
                "entries": memory.entries,
                "bytes": memory.bytes,
                "hits": memory.hits,
                "misses": memory.misses,
                "evictions": memory.evictions,
            },
            "collapsed": edge.collapsed_requests(),
        }

    async def _snapshots(self) -> list[dict[str, Any]]:
        coordinator = self.edge.coordinator
        if coordinator is not None:
            try:
                rows = await coordinator.worker_stats()
            except Exception:
                rows = []
            node = self.edge.node_name + ":"
            mine = [r["stats"] for r in rows if str(r.get("worker", "")).startswith(node) and "stats" in r]
            if mine:
                return mine
        return [self.local_snapshot()]

    async def stats(self) -> dict[str, Any]:
        snapshots = await self._snapshots()
        requests: dict[str, int] = {}
        for snap in snapshots:
            for result, count in snap["pipeline"]["requests"].items():
                requests[result] = requests.get(result, 0) + count
        hits = requests.get("hit", 0) + requests.get("stale", 0) + requests.get("refresh-hit", 0)
        looked = hits + requests.get("miss", 0)
        edge = self.edge
        return {
            "node": edge.node_name,
            "workers": len(snapshots),
            "entries": sum(s["memory"]["entries"] for s in snapshots),
            "bytes": sum(s["memory"]["bytes"] for s in snapshots),
            "hit_ratio": round(hits / looked, 4) if looked else None,
            "requests": requests,
            "origins": {name: h.snapshot() for name, h in edge.origin_health().items()},
            "shared": edge.shared_stats(),
            "bans": edge.ban_count(),
            "guards": edge.guard_stats(),
        }

    async def metrics(self) -> str:
        snapshots = await self._snapshots()
        requests = Family("edgeproxy_requests_total", "counter", "Viewer requests by cache result.")
        totals: dict[str, int] = {}
        for snap in snapshots:
            for result, count in snap["pipeline"]["requests"].items():
                totals[result] = totals.get(result, 0) + count
        for result, count in sorted(totals.items()):
            requests.set(count, {"result": result})

        def total(path: tuple[str, str]) -> float:
            return float(sum(s[path[0]][path[1]] for s in snapshots))

        sent = Family("edgeproxy_sent_bytes_total", "counter", "Body bytes sent to viewers.")
        sent.set(total(("pipeline", "bytes_sent")))
        latency = Family(
            "edgeproxy_origin_response_seconds", "summary", "Time to the origin's response head."
        )
        latency.observe(total(("pipeline", "origin_seconds")), total(("pipeline", "origin_requests")))
        errors = Family("edgeproxy_origin_errors_total", "counter", "Origin requests that failed outright.")
        errors.set(total(("pipeline", "origin_errors")))
        failovers = Family("edgeproxy_failovers_total", "counter", "Requests that moved to another origin.")
        failovers.set(total(("pipeline", "failovers")))
        collapsed = Family(
            "edgeproxy_collapsed_requests_total", "counter", "Requests served by another's fetch."
        )
        collapsed.set(float(sum(s["collapsed"] for s in snapshots)))
        evictions = Family("edgeproxy_cache_evictions_total", "counter", "Memory tier LRU evictions.")
        evictions.set(total(("memory", "evictions")))
        entries = Family("edgeproxy_cache_entries", "gauge", "Objects in the memory tiers.")
        entries.set(total(("memory", "entries")))
        size = Family("edgeproxy_cache_bytes", "gauge", "Bytes in the memory tiers.")
        size.set(total(("memory", "bytes")))
        up = Family("edgeproxy_origin_up", "gauge", "1 when this worker considers the origin healthy.")
        for name, health in self.edge.origin_health().items():
            up.set(1.0 if health.state.value == "up" else 0.0, {"origin": name})
        protocols = Family(
            "edgeproxy_viewer_requests_total", "counter", "Viewer requests by protocol (HTTP/1.1, HTTP/2 …)."
        )
        by_protocol: dict[str, int] = {}
        for snap in snapshots:
            for name, count in snap["pipeline"].get("protocols", {}).items():
                by_protocol[name] = by_protocol.get(name, 0) + count
        for name, count in sorted(by_protocol.items()):
            protocols.set(count, {"protocol": name})
        return render(
            [requests, protocols, sent, latency, errors, failovers, collapsed, evictions, entries, size, up]
        )

    async def healthz(self) -> tuple[bool, dict[str, Any]]:
        states = {name: h.state.value for name, h in self.edge.origin_health().items()}
        return True, {
            "origins": states,
            "shared": self.edge.shared_available(),
        }

    async def reload(self) -> dict[str, Any]:
        if self.edge.supervised:
            os.kill(os.getppid(), signal.SIGHUP)
            return {"status": "reloading", "how": "new workers are starting"}
        try:
            await self.edge.reload()
        except ConfigError as exc:
            raise AdminError(f"reload refused: {exc}", 400) from exc
        return {"status": "reloaded", "behaviours": self.edge.behaviour_count}
