"""Per-worker counters behind ``/stats``, ``/metrics`` and the dashboard; updated by the pipeline, read by
the admin API.

Plain integers and floats bumped in place (no locks: one event loop per worker, and nothing from
prometheus-client on the request path: its families are built from these numbers at scrape time).
``record`` is called once per finished request by the LOG phase; ``sample`` about once a second by the
worker's publisher (``proxy.observability.publish``) to keep the short history that rates and recent
percentiles come from; ``snapshot()`` gives a JSON-able dict that the admin API adds up over the workers.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy.http.reasons import CacheResult
from proxy.messages import EdgeRequest, RoutedTo

RESULTS = tuple(r.value for r in CacheResult)
_MISS = CacheResult.MISS
HITS = ("hit", "refresh-hit", "stale")  # served from a stored entry
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Histogram upper bounds in seconds (response time to viewers, origin time to the response head)."""
STATUS_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")
WINDOW = 10.0  # seconds of history behind rates and recent percentiles
TOP_SPAN = 60  # seconds per top-URL bucket
TOP_BUCKETS = 5  # buckets kept: the last 5 minutes
TOP_KEEP = 2000  # distinct paths per bucket before the rarest are dropped
TOP_SHOWN = 50  # paths per worker in a snapshot


class Recorded(Protocol):
    """What ``record`` reads of a finished request (the pipeline's ``RequestContext``)."""

    @property
    def request(self) -> EdgeRequest: ...
    @property
    def behaviour(self) -> RoutedTo | None: ...
    @property
    def result(self) -> CacheResult: ...
    @property
    def status(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def started(self) -> float: ...
    @property
    def tried(self) -> list[str] | None: ...
    @property
    def origin_seconds(self) -> float | None: ...
    @property
    def bytes_from_origin(self) -> int: ...


# The access log's and /metrics' name of each viewer protocol version.
PROTOCOL_NAMES: dict[tuple[int, int], str] = {
    (1, 0): "HTTP/1.0",
    (1, 1): "HTTP/1.1",
    (2, 0): "HTTP/2",
    (3, 0): "HTTP/3",
}


def protocol_name(version: tuple[int, int]) -> str:
    """``HTTP/1.1``, ``HTTP/2`` … for a request's version (RFC 9110 §2.5 names)."""
    name = PROTOCOL_NAMES.get(version)
    return name if name is not None else f"HTTP/{version[0]}.{version[1]}"


@dataclass(slots=True)
class PipelineStats:
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    bytes_sent: int = 0
    origin_requests: int = 0
    origin_seconds: float = 0.0
    origin_errors: int = 0
    failovers: int = 0
    # Filled by ``record``:
    bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    _by_status: dict[tuple[str, str, int], int] = field(default_factory=dict)  # behaviour, result, status
    response_buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    response_sum: float = 0.0
    origin_buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    origin_observed: float = 0.0
    bytes_from_origin: int = 0
    retries: int = 0
    shield_fetches: int = 0
    started: float = field(default_factory=time.time)
    _top: deque[tuple[int, dict[str, list[int]]]] = field(default_factory=lambda: deque(maxlen=TOP_BUCKETS))
    _top_paths: dict[str, list[int]] = field(default_factory=dict)  # the current minute's bucket
    _top_end: float = 0.0  # when the current bucket's minute ends
    _history: deque[tuple[float, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=64))
    _versions: dict[tuple[int, int], int] = field(default_factory=dict)  # viewer requests by HTTP version

    @property
    def protocols(self) -> dict[str, int]:
        """Viewer requests by protocol name (``HTTP/1.1``, ``HTTP/2``, ``HTTP/3`` …)."""
        return {protocol_name(version): count for version, count in self._versions.items()}

    def count_shield_fetch(self) -> None:
        """Called by the cluster fetch lock each time this worker leads a fetch for the whole cluster."""
        self.shield_fetches += 1

    def record(self, ctx: Recorded, now: float) -> None:
        """Count one finished request (called by ``Pipeline.finish``; ``now`` is its wall clock).

        On every hit, so kept to plain dict and list updates: the result (a ``StrEnum``) is a key as it is,
        the status class and per-class counts are derived at snapshot time from the per-status counts.
        """
        result = ctx.result
        sent = ctx.bytes_sent
        version = ctx.request.version
        versions = self._versions
        versions[version] = versions.get(version, 0) + 1
        self.bytes[result] += sent
        behaviour = ctx.behaviour
        label = (behaviour.path if behaviour is not None else "-", result, ctx.status)
        by_label = self._by_status
        by_label[label] = by_label.get(label, 0) + 1
        elapsed = time.perf_counter() - ctx.started
        self.response_buckets[bisect_left(BUCKETS, elapsed)] += 1
        self.response_sum += elapsed
        origin = ctx.origin_seconds
        if origin is not None:  # this request fetched from an origin
            self.origin_buckets[bisect_left(BUCKETS, origin)] += 1
            self.origin_observed += origin
            self.bytes_from_origin += ctx.bytes_from_origin
        tried = ctx.tried
        if tried is not None and len(tried) > 1:
            self.retries += len(tried) - 1
        # Top URLs: one bucket per minute; counts are [requests, bytes, misses, miss bytes].
        if now >= self._top_end:
            self._next_top_bucket(now)
        paths = self._top_paths
        path = ctx.request.path
        counts = paths.get(path)
        if counts is None:
            if len(paths) >= TOP_KEEP:
                _prune(paths)
            counts = paths[path] = [0, 0, 0, 0]
        counts[0] += 1
        counts[1] += sent
        if result is _MISS:
            counts[2] += 1
            counts[3] += sent

    def _next_top_bucket(self, now: float) -> None:
        minute = int(now) // TOP_SPAN
        self._top_end = (minute + 1) * TOP_SPAN
        self._top_paths = {}
        self._top.append((minute, self._top_paths))

    @property
    def by_label(self) -> dict[tuple[str, str, str], int]:
        """Requests by (behaviour path, cache result, status class)."""
        out: dict[tuple[str, str, str], int] = {}
        for (path, result, status), count in self._by_status.items():
            key = (path, str(result), STATUS_CLASSES[status // 100 if 0 < status < 600 else 0])
            out[key] = out.get(key, 0) + count
        return out

    @property
    def status(self) -> dict[str, int]:
        """Responses by status class."""
        out = dict.fromkeys(STATUS_CLASSES, 0)
        for (_, _, status), count in self._by_status.items():
            out[STATUS_CLASSES[status // 100 if 0 < status < 600 else 0]] += count
        return out

    def _totals(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "bytes": dict(self.bytes),
            "origin_buckets": list(self.origin_buckets),
        }

    def sample(self, now: float) -> None:
        """Remember the totals at ``now`` (wall clock); called about once a second by the publisher."""
        history = self._history
        if history and now - history[-1][0] < 0.5:
            return
        history.append((now, self._totals()))
        while len(history) > 2 and now - history[1][0] >= WINDOW:
            history.popleft()

    def recent(self, now: float) -> dict[str, Any]:
        """Differences of the totals over about the last ``WINDOW`` seconds: ``seconds``, ``requests``,
        ``bytes`` (by result) and ``origin_buckets``."""
        current = self._totals()
        base_time, base = self._history[0] if self._history else (self.started, None)
        seconds = max(now - base_time, 1e-3)
        if base is None:
            return {"seconds": seconds, **current}
        origin = zip(current["origin_buckets"], base["origin_buckets"], strict=True)
        return {
            "seconds": seconds,
            "requests": {k: v - base["requests"].get(k, 0) for k, v in current["requests"].items()},
            "bytes": {k: v - base["bytes"].get(k, 0) for k, v in current["bytes"].items()},
            "origin_buckets": [a - b for a, b in origin],
        }

    def top(self, now: float) -> list[list[Any]]:
        """The most requested paths of the last 5 minutes: ``[path, requests, bytes, misses, miss bytes]``,
        at most ``TOP_SHOWN`` by requests and ``TOP_SHOWN`` by misses."""
        oldest = int(now) // TOP_SPAN - TOP_BUCKETS + 1
        merged: dict[str, list[int]] = {}
        for minute, paths in self._top:
            if minute < oldest:
                continue
            for path, counts in paths.items():
                into = merged.get(path)
                if into is None:
                    merged[path] = list(counts)
                else:
                    for i, value in enumerate(counts):
                        into[i] += value
        by_requests = sorted(merged.items(), key=lambda item: -item[1][0])[:TOP_SHOWN]
        by_misses = sorted((item for item in merged.items() if item[1][2]), key=lambda item: -item[1][2])[
            :TOP_SHOWN
        ]
        chosen = dict(by_requests + by_misses)
        return [[path, *counts] for path, counts in chosen.items()]

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Everything as plain JSON values (the per-worker part of ``/stats``, ``/metrics``, dashboard)."""
        now = time.time() if now is None else now
        return {
            "requests": dict(self.requests),
            "bytes_sent": self.bytes_sent,
            "origin_requests": self.origin_requests,
            "origin_seconds": self.origin_seconds,
            "origin_errors": self.origin_errors,
            "failovers": self.failovers,
            "bytes": dict(self.bytes),
            "by_label": [[*label, count] for label, count in self.by_label.items()],
            "status": self.status,
            "response_buckets": list(self.response_buckets),
            "response_sum": self.response_sum,
            "origin_buckets": list(self.origin_buckets),
            "origin_observed": self.origin_observed,
            "bytes_from_origin": self.bytes_from_origin,
            "retries": self.retries,
            "shield_fetches": self.shield_fetches,
            "started": self.started,
            "recent": self.recent(now),
            "top": self.top(now),
            "protocols": self.protocols,
        }


def _prune(paths: dict[str, list[int]]) -> None:
    """Keep the most requested half of a full top-URL bucket (bounded memory under path scans)."""
    keep = sorted(paths.items(), key=lambda item: -item[1][0])[: TOP_KEEP // 2]
    paths.clear()
    paths.update(keep)


class _CountsOrigin(Protocol):
    bytes_from_origin: int


async def counted(body: AsyncIterator[bytes], ctx: _CountsOrigin) -> AsyncIterator[bytes]:
    """``body`` (an origin response body) passed through, adding its size to ``ctx.bytes_from_origin``;
    wrapped around a fetched body by the FETCH phase."""
    async for chunk in body:
        ctx.bytes_from_origin += len(chunk)
        yield chunk


def percentile(buckets: list[int], q: float) -> float | None:
    """The ``q`` quantile (0-1) estimated from histogram ``buckets`` (counts per ``BUCKETS`` bound, the last
    one above them all), interpolating linearly inside a bucket, in seconds; None without observations."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            low = BUCKETS[index - 1] if index > 0 else 0.0
            high = BUCKETS[index] if index < len(BUCKETS) else BUCKETS[-1] * 2
            return low + (high - low) * ((rank - seen) / count)
        seen += count
    return BUCKETS[-1]
