"""The admin API's view of a running edge: ``EdgeAdmin`` implements ``AdminOps`` over an ``AdminSurface``.

``AdminSurface`` is the narrow view of one worker the admin needs (bans, counters, health, reload);
``proxy.app.Edge`` implements it, so the admin never reaches into the pipeline or imports the app.
Created by ``Edge.__init__``. Invalidations and purges become bans
(``proxy.cache.bans``): applied locally at once, then, with a shared tier, published to every worker and
node, and the call returns "Completed" only once every live worker acknowledged the ban.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from proxy.admin.api import AdminError, Invalidation
from proxy.admin.views import NodeView, dashboard_data, merge, prometheus_text
from proxy.cache.bans import Ban
from proxy.cache.coordination import Coordinator
from proxy.cache.memory import MemoryStats
from proxy.observability.process import process_stats
from proxy.observability.publish import read_snapshots
from proxy.origin.health import OriginHealth
from proxy.settings import ConfigError

log = logging.getLogger("edgeproxy.admin")

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

    def disk_stats(self) -> dict[str, int] | None:
        """The disk tier's counters and size (``DiskStore.stats``), or None without one."""

    def listening(self) -> bool:
        """Whether the viewer listeners are up and accepting (False before start and once stopping)."""

    @property
    def generation(self) -> int:
        """The reload generation (the supervisor's, or 1 + reloads done in this process)."""
        ...

    @property
    def stats_folder(self) -> str | None:
        """The node's stats folder (workers of a supervisor), or None in a single process."""
        ...

    @property
    def memory_max_bytes(self) -> int:
        """``cache.memory.max_bytes`` (per worker)."""
        ...

    def bans(self) -> tuple[Ban, ...]:
        """The bans (invalidations and purges) in force, oldest first."""

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
        _log_ban("invalidation", ban, "paths", ban.paths, invalidation.status)
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
            log.info("invalidation %s completed (every worker acknowledged it)", found.id)
        return found

    async def purge(self, tags: list[str], soft: bool) -> dict[str, Any]:
        ban = Ban(id="P" + uuid.uuid4().hex[:16].upper(), created=time.time(), tags=tuple(tags), soft=soft)
        status = await self._ban(ban)
        _log_ban("soft purge" if soft else "purge", ban, "tags", ban.tags, status)
        return {"id": ban.id, "status": status, "tags": list(ban.tags), "soft": soft}

    # ---------------------------------------------------------------- observing
    def local_snapshot(self) -> dict[str, Any]:
        """This worker's counters (shared with the other workers through the stats folder or the cluster
        registry); called about once a second by the publisher and by the admin API."""
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
            "guards": edge.guard_stats(),
            "process": process_stats(),
        }

    async def _snapshots(self) -> list[dict[str, Any]]:
        folder = self.edge.stats_folder
        if folder is not None:
            found = [row["stats"] for row in await asyncio.to_thread(read_snapshots, folder)]
            if found:
                return found
        coordinator = self.edge.coordinator
        if coordinator is not None and folder is None:
            try:
                rows = await coordinator.worker_stats()
            except Exception:
                rows = []
            node = self.edge.node_name + ":"
            mine = [r["stats"] for r in rows if str(r.get("worker", "")).startswith(node) and "stats" in r]
            if mine:
                return mine
        return [self.local_snapshot()]

    def _view(self) -> NodeView:
        edge = self.edge
        return NodeView(
            node=edge.node_name,
            generation=edge.generation,
            origins=edge.origin_health(),
            shared=edge.shared_stats(),
            shared_available=edge.shared_available(),
            memory_max_bytes=edge.memory_max_bytes,
            disk=edge.disk_stats(),
            bans=edge.bans(),
        )

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
            "generation": edge.generation,
            "entries": sum(s["memory"]["entries"] for s in snapshots),
            "bytes": sum(s["memory"]["bytes"] for s in snapshots),
            "hit_ratio": round(hits / looked, 4) if looked else None,
            "requests": requests,
            "origins": {name: h.snapshot() for name, h in edge.origin_health().items()},
            "shared": edge.shared_stats(),
            "disk": edge.disk_stats(),
            "bans": edge.ban_count(),
            "guards": edge.guard_stats(),
        }

    async def dashboard(self) -> dict[str, Any]:
        return dashboard_data(merge(await self._snapshots()), self._view())

    async def metrics(self) -> str:
        return prometheus_text(merge(await self._snapshots()), self._view()).decode("utf-8")

    async def healthz(self) -> tuple[bool, dict[str, Any]]:
        states = {name: h.state.value for name, h in self.edge.origin_health().items()}
        return True, {
            "origins": states,
            "shared": self.edge.shared_available(),
        }

    async def readyz(self) -> tuple[bool, dict[str, Any]]:
        edge = self.edge
        listening = edge.listening()
        shared = edge.shared_available()
        # A shared tier that does not answer leaves the edge serving from memory and origins: degraded,
        # still ready (taking it out of rotation would only move its load to the other edges).
        checks = {
            "listeners": "pass" if listening else "fail",
            "config": "pass",
            "shared": None if shared is None else ("pass" if shared else "degraded"),
        }
        return listening, checks

    async def reload(self) -> dict[str, Any]:
        if self.edge.supervised:
            os.kill(os.getppid(), signal.SIGHUP)
            return {"status": "reloading", "how": "new workers are starting"}
        try:
            await self.edge.reload()
        except ConfigError as exc:
            log.error("reload refused, the config has errors (still serving the old one):\n%s", exc)
            raise AdminError(f"reload refused: {exc}", 400) from exc
        return {"status": "reloaded", "behaviours": self.edge.behaviour_count}


def _log_ban(kind: str, ban: Ban, what: str, items: tuple[str, ...], status: str) -> None:
    """One line when an invalidation or purge is created, saying whether it is already complete."""
    shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
    state = "completed" if status == "Completed" else "in progress (waiting for every worker)"
    log.info("%s %s created for %d %s (%s): %s", kind, ban.id, len(items), what, shown, state)
