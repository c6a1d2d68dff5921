"""The request pipeline: RECV → HASH → LOOKUP → COLLAPSE → FETCH → STORE → DELIVER (→ LOG), plus SYNTH.

``Pipeline.handle`` is called by a front (HTTP/1.1 today) for every viewer request and returns the context
and the response to write; the front calls ``Pipeline.finish`` once the response is written (LOG). This
module only shows the trip in order; each phase is a module of its own beside it (``recv``, ``lookup``,
``collapse``, ``fetch``, ``store``, ``deliver``, ``refresh``, ``upgrade``, ``invalidate``), the caching
decisions are the pure functions of ``proxy.http`` and ``proxy.cache.admission``, the tiers sit behind the
``TieredCache`` facade, the fetch locks behind ``FetchLocks``, and every extension is a hook
(``proxy.pipeline.hooks``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from multidict import CIMultiDict

from proxy.cache.bans import BanList
from proxy.cache.collapse import Collapser
from proxy.cache.locks import ClusterLock, FetchLock, FetchLocks, LocalLock, LockService
from proxy.cache.memory import MemoryStore
from proxy.cache.tiers import LowerTier, TieredCache
from proxy.edge.hardening import Answer
from proxy.edge.verdicts import REQUEST_ID_HEADER, new_request_id
from proxy.functions import FunctionError
from proxy.http.reasons import CacheResult, FwdReason, NotStoredReason, SynthReason
from proxy.http.status import reason_phrase
from proxy.messages import EdgeRequest, EdgeResponse, Guard
from proxy.observability.access_log import AccessLog
from proxy.observability.stats import PipelineStats
from proxy.pipeline.background import Background
from proxy.pipeline.collapse import collapse, settle
from proxy.pipeline.context import RequestContext
from proxy.pipeline.deliver import Deliverer
from proxy.pipeline.fetch import fetch, function_failed
from proxy.pipeline.invalidate import invalidate
from proxy.pipeline.lookup import hash_key, reuse
from proxy.pipeline.parts import Parts
from proxy.pipeline.recv import recv
from proxy.pipeline.runtime import CACHEABLE_METHODS, BehaviourRuntime, Runtime
from proxy.pipeline.upgrade import upgrade


class Pipeline:
    """Sequences one request. One instance per worker process, shared by every connection."""

    def __init__(
        self,
        runtime: Runtime,
        memory: MemoryStore,
        *,
        name: str,
        access_log: AccessLog,
        lower: Sequence[LowerTier] = (),
        collapse: bool = True,
        show_key: bool = False,
        guards: Sequence[Guard] = (),
        bans: BanList | None = None,
        coordinator: LockService | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Called once per worker by ``proxy.app.Edge``. ``lower`` are the cache tiers below memory, in
        lookup order; ``coordinator`` (set when ``cache.shield`` is on) adds the cluster-wide fetch lock
        after in-process collapsing."""
        background = Background()
        stats = PipelineStats()
        cache = TieredCache(
            memory, lower, bans=bans if bans is not None else BanList(), spawn=background.spawn
        )
        local = LocalLock(Collapser(), clock)
        locks: list[FetchLock] = []
        if collapse:
            locks.append(local)
            if coordinator is not None and lower:
                locks.append(ClusterLock(coordinator, on_lead=stats.count_shield_fetch))
        self.parts = Parts(
            runtime=runtime,
            cache=cache,
            locks=FetchLocks(locks, local=local, spawn=background.spawn, clock=clock),
            deliver=Deliverer(name, show_key=show_key),
            background=background,
            name=name,
            guards=tuple(guards),
            stats=stats,
            clock=clock,
            monotonic=monotonic,
        )
        self.access_log = access_log

    # ---------------------------------------------------------------- what the edge and admin API read
    @property
    def runtime(self) -> Runtime:
        return self.parts.runtime

    @runtime.setter
    def runtime(self, runtime: Runtime) -> None:
        self.parts.runtime = runtime  # a reload: requests already running keep the behaviour they matched

    @property
    def guards(self) -> tuple[Guard, ...]:
        return self.parts.guards

    @guards.setter
    def guards(self, guards: tuple[Guard, ...]) -> None:
        self.parts.guards = guards

    @property
    def stats(self) -> PipelineStats:
        return self.parts.stats

    @property
    def bans(self) -> BanList:
        return self.parts.cache.bans

    @property
    def collapser(self) -> Collapser:
        return self.parts.locks.local.collapser

    @property
    def cache(self) -> TieredCache:
        return self.parts.cache

    @property
    def deliver(self) -> Deliverer:
        return self.parts.deliver

    @property
    def background(self) -> Background:
        return self.parts.background

    async def close(self) -> None:
        """Stop background refreshes and fills; called once at shutdown."""
        await self.parts.background.close()

    # ---------------------------------------------------------------- the trip
    async def handle(self, request: EdgeRequest) -> tuple[RequestContext, EdgeResponse]:
        """Run the phases for one request; the response's body may still be streaming when this returns.

        An edge function that fails anywhere on the trip ends it here, in one place: 502, or the behaviour's
        error page for 502."""
        parts = self.parts
        ctx = RequestContext(request, parts.clock(), time.perf_counter())
        try:
            response = await recv(parts, ctx)  # RECV (routes: sets ctx.behaviour)
            behaviour = ctx.behaviour
            assert behaviour is not None
            if response is None:  # not answered in RECV (verdicts, redirects, functions' answers, 405, 508)
                if ctx.request.upgrade is not None:
                    response = await upgrade(parts, ctx, behaviour)  # a WebSocket handshake: never cached
                elif ctx.request.method in CACHEABLE_METHODS:
                    response = await self._cacheable(ctx, behaviour)
                else:
                    response = await self._origin_only(ctx, behaviour)
            # DELIVER's last step, on every answer (the edge's own included), per viewer: never stored.
            for hook in behaviour.hooks.viewer_response:
                response = await hook.viewer_response(ctx, response)
        except FunctionError:
            response = await function_failed(parts, ctx)
        return ctx, response

    async def _cacheable(self, ctx: RequestContext, behaviour: BehaviourRuntime) -> EdgeResponse:
        """GET and HEAD: HASH → LOOKUP → (hit: DELIVER) → COLLAPSE → FETCH → STORE → DELIVER."""
        parts = self.parts
        cache = parts.cache
        key = hash_key(ctx, behaviour)  # HASH (its hooks may normalise the request's fields first)
        headers = ctx.request.headers
        entry, miss_reason = cache.lookup_memory(key, headers)  # LOOKUP: memory, never awaits
        if entry is None and cache.lower:
            entry, ctx.tier = await cache.lookup_lower(key, headers)  # then the lower tiers, promoted
        response, entry, request_cc = reuse(parts, ctx, behaviour, entry, miss_reason)  # bans, RFC 9111 §4
        if response is not None:
            return response  # a fresh hit, or stale while one refresh runs
        honour = behaviour.honour_request_cache_control
        # RFC 9111 §5.2.1.7: only-if-cached and no stored response usable as is → 504, never the origin.
        if honour and request_cc.only_if_cached:
            ctx.synth = SynthReason.ORIGIN_TIMEOUT
            return parts.deliver.synthetic(ctx, 504, "Gateway Timeout (only-if-cached)\n")
        if honour and request_cc.no_store:
            # RFC 9111 §5.2.1.5: a request no-store forbids storing what comes back.
            ctx.not_stored = NotStoredReason.NO_STORE
            return await fetch(parts, ctx, behaviour, fill=False, entry=None)
        try:
            collapsed = await collapse(parts, ctx)  # COLLAPSE: one origin fetch per key
            if collapsed is not None:
                return collapsed
            return await fetch(parts, ctx, behaviour, fill=True, entry=entry)  # FETCH → STORE → DELIVER
        finally:
            settle(ctx)  # a streaming fill took the lease and settles once its body is complete

    async def _origin_only(self, ctx: RequestContext, behaviour: BehaviourRuntime) -> EdgeResponse:
        """Other methods: FETCH, never stored; a non-error answer invalidates what it names (RFC 9111
        §4.4)."""
        ctx.result = CacheResult.BYPASS
        ctx.fwd = FwdReason.METHOD
        response = await fetch(self.parts, ctx, behaviour, fill=False, entry=None)
        invalidate(self.parts, ctx, response)
        return response

    def refuse(
        self, request: EdgeRequest, answer: Answer, ctx: RequestContext | None = None
    ) -> tuple[RequestContext, EdgeResponse]:
        """Called by a front that refuses a request before (or while) the phases run: the screening's or
        the body limits' ``answer`` (400, 408, 413, 421 …), decorated like any SYNTH answer. An error
        status gets a request id in the body and in ``X-Request-Id``. ``ctx`` is the request's context when
        ``handle`` already made one; the front writes the response and calls ``finish`` as usual."""
        if ctx is None:
            ctx = RequestContext(request, self.parts.clock(), time.perf_counter())
        ctx.blocked = answer.reason
        extra: CIMultiDict[str] = CIMultiDict(answer.headers)
        text = ""
        if answer.status >= 400:
            request_id = ctx.request_id = new_request_id()
            extra[REQUEST_ID_HEADER] = request_id
            text = f"{answer.status} {reason_phrase(answer.status)}\nrequest id: {request_id}\n"
        return ctx, self.parts.deliver.synthetic(ctx, answer.status, text, extra)

    # ---------------------------------------------------------------- LOG
    def finish(self, ctx: RequestContext, status: int, bytes_sent: int, completed: bool) -> None:
        """Called by the front once the response was written (or the viewer went away)."""
        ctx.status = status
        ctx.bytes_sent = bytes_sent
        ctx.completed = completed
        stats = self.parts.stats
        stats.requests[ctx.result] += 1  # a StrEnum member is its value as a key: no property call
        stats.bytes_sent += bytes_sent
        if ctx.tried is not None and len(ctx.tried) > 1:
            stats.failovers += 1
        stats.record(ctx, ctx.now)
        self.access_log.write(ctx)
