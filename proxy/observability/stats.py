"""Per-worker counters behind ``/stats`` and ``/metrics``; updated by the pipeline, read by the admin API.

Plain integers and floats bumped in place (no locks: one event loop per worker). ``snapshot()`` gives a
JSON-able dict that workers share through the cluster registry so the admin API can add them up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.http.reasons import CacheResult


@dataclass(slots=True)
class PipelineStats:
    requests: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in CacheResult})
    bytes_sent: int = 0
    origin_requests: int = 0
    origin_seconds: float = 0.0
    origin_errors: int = 0
    failovers: int = 0

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": dict(self.requests),
            "bytes_sent": self.bytes_sent,
            "origin_requests": self.origin_requests,
            "origin_seconds": self.origin_seconds,
            "origin_errors": self.origin_errors,
            "failovers": self.failovers,
        }
