"""Per-worker counters behind ``/stats`` and ``/metrics``; updated by the pipeline, read by the admin API.

Plain integers and floats bumped in place (no locks: one event loop per worker). ``snapshot()`` gives a
JSON-able dict that workers share through the cluster registry so the admin API can add them up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.http.reasons import CacheResult

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
    requests: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in CacheResult})
    bytes_sent: int = 0
    origin_requests: int = 0
    origin_seconds: float = 0.0
    origin_errors: int = 0
    failovers: int = 0
    protocols: dict[str, int] = field(default_factory=dict)  # viewer requests by protocol

    def count_protocol(self, version: tuple[int, int]) -> None:
        """One more viewer request over ``version`` (called by the LOG phase)."""
        name = protocol_name(version)
        self.protocols[name] = self.protocols.get(name, 0) + 1

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": dict(self.requests),
            "bytes_sent": self.bytes_sent,
            "origin_requests": self.origin_requests,
            "origin_seconds": self.origin_seconds,
            "origin_errors": self.origin_errors,
            "failovers": self.failovers,
            "protocols": dict(self.protocols),
        }
