"""The one per-request object the phases read and write (Pingora's CTX).

Created by ``Pipeline.handle`` when a request arrives; handed to the access log when the response is done.
Everything the log and ``Cache-Status`` say about a request comes from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.cache.locks import Lease
from proxy.http.reasons import BlockReason, CacheResult, FwdReason, NotStoredReason, SynthReason
from proxy.messages import EdgeRequest

if TYPE_CHECKING:
    from proxy.pipeline.runtime import BehaviourRuntime


@dataclass(init=False)
class RequestContext:
    """State of one request as it moves through RECV → … → LOG.

    Not slotted, with its own ``__init__``: a request sets only the fields its path touches, the others
    read the class defaults (a cache hit sets a handful of the 24).
    """

    request: EdgeRequest
    now: float  # wall clock (epoch seconds) when the request arrived: the `now` of every caching rule
    started: float  # monotonic clock at arrival, for durations
    behaviour: BehaviourRuntime | None = None
    key: str | None = None
    encoding: str = "identity"  # the coding bucket of a compress: true behaviour (br, gzip, identity)
    fill: bool = False  # the origin request is a cache fill (viewer conditionals and Range dropped)
    result: CacheResult = CacheResult.MISS
    fwd: FwdReason | None = None
    not_stored: NotStoredReason | None = None
    synth: SynthReason | None = None
    blocked: BlockReason | None = (
        None  # a guard's reason for answering the request itself (firewall, rate limit)
    )
    stored: bool = False  # STORE's outcome: some cache tier took the response
    lease: Lease | None = None  # the fetch locks this request holds for its key (COLLAPSE → STORE)
    collapsed: bool = False  # served from another request's fetch
    tier: str | None = None  # the lower tier a hit came from (promoted into memory): "shared" …
    origin: str | None = None
    tried: list[str] | None = None  # origins tried, in order (failover)
    fwd_status: int | None = None
    ttl: float | None = None
    status: int = 0
    bytes_sent: int = 0
    completed: bool = True
    # For the access log and metrics (proxy.observability): time to the origin's response head (seconds),
    # origin body bytes read for this request, when the front wrote the first byte (perf_counter), the id
    # shown to the viewer in an error answer.
    origin_seconds: float | None = None
    bytes_from_origin: int = 0
    first_byte: float = 0.0
    request_id: str | None = None
    # A WebSocket tunnel's bytes after the 101 head, viewer → origin and origin → viewer (None: no tunnel).
    tunnel_bytes: tuple[int, int] | None = None

    def __init__(
        self, request: EdgeRequest, now: float, started: float, behaviour: BehaviourRuntime | None = None
    ) -> None:
        self.request = request
        self.now = now
        self.started = started
        self.behaviour = behaviour

    @property
    def reason(self) -> str | None:
        """The one word that explains the outcome: why blocked, why not stored, or why forwarded."""
        if self.blocked is not None:
            return self.blocked
        if self.synth is not None:
            return self.synth.value
        if self.not_stored is not None:
            return self.not_stored.value
        if self.fwd is not None:
            return self.fwd.value
        return None
