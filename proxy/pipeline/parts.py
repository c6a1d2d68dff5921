"""What the phases share: one ``Parts`` per worker process, made by ``Pipeline`` and handed to each phase.

Each phase module (``recv``, ``lookup``, ``collapse``, ``fetch``, ``store``, ``refresh``, ``upgrade``,
``invalidate``; ``deliver`` builds responses) is a set of functions over a ``Parts`` and the request's
``RequestContext``: the phases hold no state of their own, so their order is read in one place
(``proxy/pipeline/pipeline.py``), and a test can build a ``Parts`` from fakes (``tests/playbook.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.cache.locks import FetchLocks
from proxy.cache.tiers import TieredCache
from proxy.messages import Guard
from proxy.observability.stats import PipelineStats
from proxy.pipeline.background import Background
from proxy.pipeline.deliver import Deliverer
from proxy.pipeline.runtime import Runtime


@dataclass(slots=True)
class Parts:
    """The worker's shared objects. ``runtime`` and ``guards`` are replaced on a config reload."""

    runtime: Runtime
    cache: TieredCache
    locks: FetchLocks
    deliver: Deliverer
    background: Background
    name: str  # this edge's name: Via, Cache-Status, loop detection, Surrogate-Control device
    guards: tuple[Guard, ...] = ()
    stats: PipelineStats = field(default_factory=PipelineStats)
    clock: Callable[[], float] = time.time  # wall clock: the `now` of every caching rule
    monotonic: Callable[[], float] = time.monotonic  # for origin health
    via: str = ""  # our Via member, "1.1 NAME" (RFC 9110 §7.6.3)

    def __post_init__(self) -> None:
        if not self.via:
            self.via = f"1.1 {self.name}"
