"""The request pipeline: RECV → HASH → LOOKUP → COLLAPSE → FETCH → STORE → DELIVER (→ LOG), plus SYNTH.

``Pipeline.handle`` is called by a server adapter for every viewer request and returns the context and the
response to write; the adapter calls ``Pipeline.finish`` once the response is written (LOG). Caching
decisions are delegated to the pure functions of ``proxy.http``; this module only sequences them and does
the I/O (memory tier, origins, background refreshes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence

from multidict import CIMultiDict

from proxy.cache.bans import BanList, target_of_key
from proxy.cache.collapse import Collapser
from proxy.cache.coordination import Coordinator
from proxy.cache.entry import CacheEntry
from proxy.cache.keys import variant_key
from proxy.cache.memory import MemoryStore
from proxy.cache.storage import Storage
from proxy.edge.client_address import FORWARDING_HEADERS, METHOD_OVERRIDE_HEADERS
from proxy.edge.compression import (
    KEY_SUFFIXES,
    add_vary_accept_encoding,
    compress,
    compressed_headers,
    freshens_compressed,
    key_suffix,
    negotiate,
    would_compress,
)
from proxy.edge.compression import MAX_SIZE as COMPRESS_MAX_SIZE
from proxy.edge.hardening import Answer
from proxy.edge.verdicts import REQUEST_ID_HEADER, new_request_id
from proxy.functions import DEVICE_HEADER, Event, FunctionError, classify_device
from proxy.functions import Response as FunctionResponse
from proxy.functions.bridge import (
    as_origin_response,
    edge_response,
    run_origin_request,
    run_origin_response,
    run_viewer_request,
    run_viewer_response,
)
from proxy.http.cache_control import parse_cache_control, pragma_no_cache
from proxy.http.dates import parse_http_date
from proxy.http.error_caching import apply_error_ttl
from proxy.http.freshness import (
    ReuseDecision,
    corrected_initial_age,
    decide_store,
    parse_expires,
    reuse_decision,
)
from proxy.http.headers import HOP_BY_HOP, parse_list_header
from proxy.http.invalidation import invalidation_targets
from proxy.http.reasons import BlockReason, CacheResult, FwdReason, NotStoredReason, SynthReason
from proxy.http.status import reason_phrase
from proxy.http.storing import (
    EDGE_RECOMPUTED,
    SET_COOKIE_FIELDS,
    CookieHandling,
    fields_to_store,
    set_cookie_handling,
)
from proxy.http.targeted import effective_cache_control, surrogate_capability
from proxy.http.validation import freshens, update_stored_headers
from proxy.messages import EdgeRequest, EdgeResponse, Guard
from proxy.observability.access_log import AccessLog
from proxy.observability.stats import PipelineStats
from proxy.origin.base import (
    Origin,
    OriginError,
    OriginProtocolError,
    OriginRequest,
    OriginResponse,
    OriginTimeoutError,
)
from proxy.pipeline.background import Background
from proxy.pipeline.context import RequestContext
from proxy.pipeline.deliver import Deliverer
from proxy.pipeline.fill import Fill
from proxy.pipeline.runtime import CACHEABLE_METHODS, BehaviourRuntime, Runtime
from proxy.pipeline.variants import VARY_MARKER_STATUS, lookup_variant, vary_marker

# Request fields never sent on a cache fill: the edge evaluates them itself against the full response.
_FILL_DROPPED = (
    "Range",
    "If-Range",
    "If-None-Match",
    "If-Modified-Since",
    "If-Match",
    "If-Unmodified-Since",
    *METHOD_OVERRIDE_HEADERS,
    # No body goes with a fill: announcing the viewer's would make the origin wait for it (RFC 9112 §6.3).
    "Content-Length",
)
# Request fields the edge rewrites itself rather than passing on from the viewer.
# Forwarding headers from viewers are never trusted nor passed on (cache-poisoning defence, docs/security.md).
# Expect: 100-continue belongs to the viewer's hop (the front answers it); an origin that never sends 100
# must not hold the request (RFC 9110 §10.1.1).
_REQUEST_DROPPED = frozenset(h.lower() for h in (*HOP_BY_HOP, "Host", "Expect", *FORWARDING_HEADERS))
# Response fields not kept in a stored entry: framing is redone per delivery, Age is recomputed (§4.2.3),
# X-Cache is ours.
# RFC 9110 §9.2.2: only these may be retried on another origin (and only before any byte reached the viewer).
IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))
# Not-stored reasons that say the response itself is uncacheable: later requests skip the collapse queue.
_UNCACHEABLE = frozenset(
    {
        NotStoredReason.NO_STORE,
        NotStoredReason.PRIVATE,
        NotStoredReason.NO_CACHE,
        NotStoredReason.AUTHORIZATION,
        NotStoredReason.NO_FRESHNESS,
        NotStoredReason.ZERO_TTL,
        NotStoredReason.TOO_LARGE,
        NotStoredReason.STATUS,
        NotStoredReason.VARY_STAR,
        # set_cookie: pass. A URL whose response sets cookies is most likely per viewer (a session, a
        # login, a cart): making the next requests for the key queue behind one fetch would only delay
        # them, each gets its own answer (and cookie) from the origin. Hit-for-miss until it changes.
        NotStoredReason.SET_COOKIE,
    }
)
# What a stored entry leaves out under set_cookie: strip.
_STRIPPED_FIELDS = EDGE_RECOMPUTED | SET_COOKIE_FIELDS
# Fields of an origin error kept when an error page replaces its body.
_ERROR_FIELDS = ("Cache-Control", "Expires", "Date", "Retry-After", "Vary", "Set-Cookie")
SMALL_BODY = 256 * 1024  # bodies up to this size (with a known length) are read whole, then written once
REPLAYABLE_BODY = 1024 * 1024  # request bodies up to this size are buffered so a failover can resend them
COLLAPSE_WAIT = 30.0  # longest a collapsed request waits for its leader before fetching on its own
SHIELD_LOCK_SECONDS = 30.0  # a shield lock whose holder died expires after this
SHIELD_POLL_SECONDS = 0.02  # how often shield waiters look for the holder's entry


class Pipeline:
    """Sequences one request. One instance per worker process, shared by every connection."""

    def __init__(
        self,
        runtime: Runtime,
        memory: MemoryStore,
        *,
        name: str,
        access_log: AccessLog,
        collapse: bool = True,
        show_key: bool = False,
        shared: Storage | None = None,
        shared_object_limit: int = 0,
        guards: Sequence[Guard] = (),
        bans: BanList | None = None,
        coordinator: Coordinator | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.memory = memory
        self.name = name
        self.access_log = access_log
        self.collapse = collapse
        self.shared = shared
        self.guards = tuple(guards)
        self.bans = bans if bans is not None else BanList()
        self.stats = PipelineStats()
        self.coordinator = coordinator  # set when cache.shield is on: cluster-wide collapsing
        # The largest object any tier keeps; larger responses stream through without being collected.
        self._object_limit = max(memory.max_object_bytes, shared_object_limit)
        self.collapser = Collapser()
        self.background = Background()
        self._clock = clock
        self._monotonic = monotonic
        self._via = f"1.1 {name}"
        self.deliver = Deliverer(name, show_key=show_key)

    async def close(self) -> None:
        """Stop background refreshes and fills; called once at shutdown."""
        await self.background.close()

    # ---------------------------------------------------------------- RECV
    async def handle(self, request: EdgeRequest) -> tuple[RequestContext, EdgeResponse]:
        """Run the phases for one request; the response's body may still be streaming when this returns."""
        ctx = RequestContext(request, self._clock(), time.perf_counter())
        response = await self._recv(ctx)
        behaviour = ctx.behaviour
        functions = behaviour.functions if behaviour is not None else None
        if (
            functions is not None
            and functions.has(Event.VIEWER_RESPONSE)
            and ctx.synth is not SynthReason.FUNCTION_ERROR
            and response.tunnel is None  # a switched connection is relayed as the origin sent it
        ):
            # viewer_response: per viewer, after the cache (its changes are never stored).
            try:
                response = await run_viewer_response(functions, ctx.request, response)
            except FunctionError:
                response = await self._function_failed(ctx)
        return ctx, response

    def refuse(
        self, request: EdgeRequest, answer: Answer, ctx: RequestContext | None = None
    ) -> tuple[RequestContext, EdgeResponse]:
        """Called by a front that refuses a request before (or while) the phases run: the screening's or
        the body limits' ``answer`` (400, 408, 413, 421 …), decorated like any SYNTH answer. An error
        status gets a request id in the body and in ``X-Request-Id``. ``ctx`` is the request's context when
        ``handle`` already made one; the front writes the response and calls ``finish`` as usual."""
        if ctx is None:
            ctx = RequestContext(request, self._clock(), time.perf_counter())
        ctx.blocked = answer.reason
        extra: CIMultiDict[str] = CIMultiDict(answer.headers)
        text = ""
        if answer.status >= 400:
            request_id = new_request_id()
            extra[REQUEST_ID_HEADER] = request_id
            text = f"{answer.status} {reason_phrase(answer.status)}\nrequest id: {request_id}\n"
        return ctx, self.deliver.synthetic(ctx, answer.status, text, extra)

    async def _function_failed(self, ctx: RequestContext) -> EdgeResponse:
        """An edge function raised or timed out (already logged, naming it): 502, or the behaviour's
        configured error page for 502 (served from its origin, status kept)."""
        ctx.synth = SynthReason.FUNCTION_ERROR
        ctx.result = CacheResult.ERROR
        behaviour = ctx.behaviour
        policies = behaviour.policies if behaviour is not None else None
        if behaviour is not None and behaviour.group is not None and policies is not None:
            path = policies.error_pages.get(502)
            if path is not None:
                page = await self._page(ctx, behaviour.group.primary[0], path)
                if page is not None:
                    page.status = 502
                    return self.deliver.from_origin(ctx, page, stream=_released(page), body=None)
        return self.deliver.synthetic(ctx, 502, "Bad Gateway: an edge function failed\n")

    async def _page(self, ctx: RequestContext, origin: Origin, path: str) -> OriginResponse | None:
        """GET ``path`` from ``origin`` for an error page; None unless it answered 200."""
        headers: CIMultiDict[str] = CIMultiDict({"Via": self._via, "X-Forwarded-For": ctx.request.client_ip})
        try:
            page = await origin.fetch(OriginRequest("GET", path, headers, viewer_host=ctx.request.host))
        except OriginError:
            return None
        if page.status != 200:
            await page.release()
            return None
        return page

    async def _recv(self, ctx: RequestContext) -> EdgeResponse:
        request = ctx.request
        behaviour = self.runtime.router.match(request.path)
        ctx.behaviour = behaviour
        if self.runtime.needs_device:
            # Edge-Viewer-Device: computed once, replacing whatever the viewer sent.
            headers = CIMultiDict(request.headers)
            headers[DEVICE_HEADER] = classify_device(headers.get("User-Agent"))
            request.headers = headers
        via = request.headers.get("Via")
        if via is not None and _via_names(via, self.name):
            # This request already went through this edge: answering beats forwarding it in a loop.
            ctx.synth = SynthReason.LOOP
            return self.deliver.synthetic(ctx, 508, "Loop Detected\n")
        for guard in self.guards:
            verdict = guard.check(ctx)
            if verdict is not None:
                ctx.blocked = verdict.reason
                body = verdict.body or f"{verdict.status} {reason_phrase(verdict.status)}\n"
                return self.deliver.synthetic(ctx, verdict.status, body, verdict.headers)
        policies = behaviour.policies
        if policies is not None:
            answer = policies.on_recv(request)
            if answer is not None:
                ctx.blocked = answer.reason
                return self.deliver.synthetic(ctx, answer.status, answer.body, answer.headers)
        functions = behaviour.functions
        if functions is not None and functions.has(Event.VIEWER_REQUEST):
            try:
                step = await run_viewer_request(functions, request)
            except FunctionError:
                return await self._function_failed(ctx)
            if isinstance(step, FunctionResponse):
                ctx.blocked = BlockReason.EDGE_FUNCTION
                return self.deliver.generated(ctx, edge_response(step, method=request.method))
            ctx.request = request = step
        method = request.method
        if method not in behaviour.methods:
            ctx.synth = SynthReason.METHOD_NOT_ALLOWED
            extra = CIMultiDict({"Allow": behaviour.allow})
            return self.deliver.synthetic(ctx, 405, "Method Not Allowed\n", extra)
        if request.upgrade is not None:
            return await self._upgrade(ctx, behaviour)
        if method in CACHEABLE_METHODS:
            return await self._cacheable(ctx, behaviour)
        ctx.result = CacheResult.BYPASS
        ctx.fwd = FwdReason.METHOD
        response = await self._forward(ctx, behaviour, fill=False, entry=None)
        self._invalidate(ctx, response)
        return response

    def _invalidate(self, ctx: RequestContext, response: EdgeResponse) -> None:
        """RFC 9111 §4.4: a non-error answer to an unsafe method invalidates the target URI and the
        same-origin Location / Content-Location URIs."""
        if ctx.fwd_status is None:
            return
        request = ctx.request
        targets = invalidation_targets(
            request.method,
            ctx.fwd_status,
            scheme=request.scheme,
            host=request.host,
            target=request.target,
            location=response.headers.get("Location"),
            content_location=response.headers.get("Content-Location"),
        )
        for target in targets:
            behaviour = self.runtime.router.match(target.path)
            base = behaviour.keys.key(target.host, target.path, target.query, request.headers, request.scheme)
            keys = [base + suffix for suffix in KEY_SUFFIXES] if behaviour.config.compress else [base]
            for key in keys:
                self.memory.delete(key)
                if self.shared is not None:
                    self.background.spawn(self.shared.delete(key), name=f"shared delete {key}")

    async def _upgrade(self, ctx: RequestContext, behaviour: BehaviourRuntime) -> EdgeResponse:
        """A WebSocket handshake that passed RECV: never looked up nor stored, never collapsed, sent to the
        behaviour's first available origin on a new connection (no failover). A 101 comes back with its
        switched connection (``EdgeResponse.tunnel``) for the front to pipe; any other answer is passed on."""
        ctx.result = CacheResult.BYPASS
        ctx.fwd = FwdReason.BYPASS
        if not behaviour.config.websocket:
            ctx.blocked = BlockReason.WEBSOCKET_DISABLED
            return self.deliver.synthetic(
                ctx, 400, "Bad Request: WebSocket is not enabled for this path (behaviour websocket: false)\n"
            )
        group = behaviour.group
        member = next(group.candidates(self._monotonic()), None) if group is not None else None
        open_tunnel = getattr(member[0], "open_tunnel", None) if member is not None else None
        if member is None or open_tunnel is None:
            ctx.synth = SynthReason.ORIGIN_UNREACHABLE
            ctx.result = CacheResult.ERROR
            return self.deliver.synthetic(ctx, 502, "Bad Gateway: this origin cannot take a WebSocket\n")
        origin, health = member
        ctx.origin = origin.name
        ctx.tried = [origin.name]
        origin_request = self._origin_request(ctx, False, None, None)
        origin_request.upgrade = ctx.request.upgrade
        for name, value in ctx.request.headers.items():
            # RFC 6455 §4.1: the handshake's own fields are end-to-end and needed whatever ``forward`` says.
            if name.lower().startswith("sec-websocket-") and name not in origin_request.headers:
                origin_request.headers.add(name, value)
        self.stats.origin_requests += 1
        try:
            response: OriginResponse = await open_tunnel(origin_request)
        except OriginError as exc:
            self.stats.origin_errors += 1
            health.record_failure(self._monotonic(), reason=str(exc) or type(exc).__name__)
            return self._origin_failed(ctx, exc)
        health.record_success(self._monotonic())
        ctx.fwd_status = response.status
        if response.upgraded is None:
            return self._pass_through(ctx, response)
        delivered = self.deliver.from_origin(ctx, response, stream=None, body=b"")
        delivered.tunnel = response.upgraded
        release = response.release

        async def finish(completed: bool) -> None:
            await release()  # closes the origin connection unless the tunnel took it

        delivered.finish = finish
        return delivered

    # ---------------------------------------------------------------- HASH + LOOKUP
    def _lookup(self, ctx: RequestContext) -> tuple[CacheEntry | None, FwdReason]:
        """The stored entry for this request (following a Vary marker), and the miss reason if none."""
        request = ctx.request
        key = ctx.key
        assert key is not None
        entry = self.memory.get(key)
        if entry is not None and entry.status == VARY_MARKER_STATUS:
            return lookup_variant(self.memory, key, entry, request.headers), FwdReason.VARY_MISS
        return entry, FwdReason.URI_MISS

    async def _lookup_shared(self, ctx: RequestContext) -> CacheEntry | None:
        """A memory miss looks in the shared tier; a hit there is promoted into memory (with the times
        it was stored with, so its remaining freshness carries over). A slow or failing shared tier is a
        miss, never an error (the store bounds every call and breaks the circuit)."""
        shared = self.shared
        key = ctx.key
        assert shared is not None and key is not None
        entry = await shared.get(key)
        if entry is None:
            return None
        self.memory.set(key, entry)
        if entry.status == VARY_MARKER_STATUS:
            vkey = variant_key(key, entry.vary, ctx.request.headers)
            entry = self.memory.get(vkey) or await shared.get(vkey)
            if entry is None:
                return None
            self.memory.set(vkey, entry)
        ctx.shared_hit = True
        return entry

    async def _cacheable(self, ctx: RequestContext, behaviour: BehaviourRuntime) -> EdgeResponse:
        request = ctx.request
        if behaviour.config.compress:
            # One bucket per coding: the key holds at most one of br, gzip, identity, and the fill asks
            # the origin with exactly that coding.
            ctx.encoding = negotiate(request.headers)
            headers = CIMultiDict(request.headers)
            headers["Accept-Encoding"] = ctx.encoding
            request.headers = headers
            base = behaviour.keys.key(request.host, request.path, request.query, headers, request.scheme)
            ctx.key = base + key_suffix(ctx.encoding)
        else:
            ctx.key = behaviour.keys.key(
                request.host, request.path, request.query, request.headers, request.scheme
            )
        entry, miss_reason = self._lookup(ctx)
        if entry is None and self.shared is not None:
            entry = await self._lookup_shared(ctx)
        if entry is not None and self.bans:
            entry = self._apply_bans(ctx, entry)
            if entry is None:
                miss_reason = FwdReason.MISS
        request_cc = parse_cache_control(request.headers.get("Cache-Control"))
        honour = behaviour.honour_request_cache_control
        if entry is not None:
            decision, reason = reuse_decision(
                entry_age=entry.age(ctx.now),
                ttl=entry.ttl,
                request_cc=request_cc,
                pragma_no_cache=honour
                and "Pragma" in request.headers  # most requests have none: skip the list and the parse
                and pragma_no_cache(
                    request.headers.getall("Pragma", ()),
                    cache_control_present="Cache-Control" in request.headers,
                ),
                no_cache=entry.no_cache,
                must_revalidate=entry.must_revalidate,
                honour_request=honour,
            )
            if decision is ReuseDecision.FRESH:
                ctx.result = CacheResult.HIT
                return self.deliver.from_entry(ctx, entry, hit=True)
            ctx.fwd = reason or FwdReason.STALE
            # RFC 5861 §3: within stale-while-revalidate, serve stale now and refresh in the background.
            if decision is ReuseDecision.STALE and _stale_within(
                entry, entry.stale_while_revalidate, ctx.now
            ):
                self._refresh_in_background(ctx, behaviour, entry)
                ctx.result = CacheResult.STALE
                return self.deliver.from_entry(ctx, entry, hit=False)
        else:
            ctx.fwd = miss_reason
        # RFC 9111 §5.2.1.7: only-if-cached and no stored response usable as is → 504, never the origin.
        if honour and request_cc.only_if_cached:
            ctx.synth = SynthReason.ORIGIN_TIMEOUT
            return self.deliver.synthetic(ctx, 504, "Gateway Timeout (only-if-cached)\n")
        if honour and request_cc.no_store:
            # RFC 9111 §5.2.1.5: a request no-store forbids storing what comes back.
            ctx.not_stored = NotStoredReason.NO_STORE
            return await self._forward(ctx, behaviour, fill=False, entry=None)
        # COLLAPSE: one origin fetch per key; the others wait for its entry.
        if self.collapse and not self.collapser.is_uncacheable(ctx.key, ctx.now):
            collapsed = await self._join_flight(ctx)
            if collapsed is not None:
                return collapsed
            ctx.flight = self.collapser.lead(ctx.key)
            if self.coordinator is not None and self.shared is not None:
                shielded = await self._shield(ctx)
                if shielded is not None:
                    return shielded
        try:
            response = await self._forward(ctx, behaviour, fill=True, entry=entry)
        except BaseException:
            self._settle(ctx)
            raise
        if not ctx.fill_streaming:
            self._settle(ctx)  # a streaming fill settles itself once its body is complete
        return response

    def _apply_bans(self, ctx: RequestContext, entry: CacheEntry) -> CacheEntry | None:
        """Invalidations and purges (bans) are applied lazily, here: an entry stored before a matching
        hard ban is dropped (a miss); a soft ban makes it stale from the ban's time on, so it is revalidated
        but can still be served under stale-if-error."""
        key = ctx.key
        assert key is not None
        ban = self.bans.matches(target_of_key(key), entry.tags, entry.request_time)
        if ban is None:
            return entry
        if ban.soft:
            entry.ttl = min(entry.ttl, entry.age(ban.created))
            return entry
        self.memory.delete(key)
        if self.shared is not None:
            self.background.spawn(self.shared.delete(key), name=f"shared delete {key}")
        return None

    async def _join_flight(self, ctx: RequestContext) -> EdgeResponse | None:
        """Wait for a running fetch of this key and serve its entry; None to fetch on our own."""
        assert ctx.key is not None
        flight = self.collapser.join(ctx.key)
        if flight is None:
            return None
        stored = await self.collapser.wait(flight, COLLAPSE_WAIT)
        if stored is None:
            return None
        # The leader may have stored another Vary variant than ours: look up again, as a fresh request.
        ctx.now = self._clock()
        entry, _ = self._lookup(ctx)
        if entry is None or not entry.is_fresh(ctx.now):
            return None
        self.collapser.collapsed += 1
        ctx.collapsed = True
        ctx.result = CacheResult.HIT
        ctx.fwd_status = entry.status
        return self.deliver.from_entry(ctx, entry, hit=False)

    async def _shield(self, ctx: RequestContext) -> EdgeResponse | None:
        """Origin shield (``cache.shield``): one fetch per key in the whole cluster. Take the cluster lock;
        when another worker or node holds it, wait for its entry in the shared tier (bounded). None means
        fetch on our own (we hold the lock, the holder died, or Redis is unavailable)."""
        coordinator, shared, key = self.coordinator, self.shared, ctx.key
        assert coordinator is not None and shared is not None and key is not None
        got = await coordinator.acquire(key, SHIELD_LOCK_SECONDS)
        if got is None:
            return None
        if got:
            ctx.shield_locked = True
            return None
        deadline = time.monotonic() + COLLAPSE_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(SHIELD_POLL_SECONDS)
            entry = await self._lookup_shared(ctx)
            if entry is not None:
                ctx.now = self._clock()
                if entry.is_fresh(ctx.now):
                    ctx.stored_entry = entry  # for the requests collapsed behind this one
                    self._settle(ctx)
                    ctx.collapsed = True
                    ctx.result = CacheResult.HIT
                    ctx.fwd_status = entry.status
                    return self.deliver.from_entry(ctx, entry, hit=False)
            if not await coordinator.holds(key):
                return None  # the holder finished without a usable entry (or died): fetch ourselves
        return None

    def _settle(self, ctx: RequestContext) -> None:
        """Release the requests collapsed behind this one (once its entry is stored, or not)."""
        if ctx.shield_locked and not ctx.stored:
            self._unlock(ctx)
        flight = ctx.flight
        if flight is None or ctx.key is None:
            return
        ctx.flight = None
        uncacheable = ctx.stored_entry is None and ctx.not_stored in _UNCACHEABLE
        self.collapser.settle(ctx.key, flight, ctx.stored_entry, uncacheable=uncacheable, now=self._clock())

    def _refresh_in_background(
        self, ctx: RequestContext, behaviour: BehaviourRuntime, entry: CacheEntry
    ) -> None:
        """Start the one background refresh of a stale entry (unless a fetch of the key already runs)."""
        assert ctx.key is not None
        flight = self.collapser.lead(ctx.key)
        if flight is None:
            return
        request = ctx.request
        refresh_request = EdgeRequest(
            method="GET",
            path=request.path,
            query=request.query,
            headers=request.headers,
            client_ip=request.client_ip,
            host=request.host,
            scheme=request.scheme,
        )
        refresh = RequestContext(refresh_request, ctx.now, time.perf_counter(), behaviour=behaviour)
        refresh.key = ctx.key
        refresh.flight = flight
        refresh.fwd = FwdReason.STALE
        if not self.background.spawn(self._refresh(refresh, behaviour, entry), name=f"refresh {ctx.key}"):
            self.collapser.settle(ctx.key, flight, None, uncacheable=False, now=ctx.now)

    async def _refresh(self, ctx: RequestContext, behaviour: BehaviourRuntime, entry: CacheEntry) -> None:
        try:
            response = await self._forward(ctx, behaviour, fill=True, entry=entry)
            if response.stream is not None:
                completed = False
                try:
                    async for _ in response.stream:
                        pass
                    completed = True
                except OriginError:
                    pass
                finally:
                    await response.finish(completed)
        finally:
            self._settle(ctx)

    # ---------------------------------------------------------------- FETCH
    def _origin_request(
        self, ctx: RequestContext, fill: bool, entry: CacheEntry | None, body: bytes | None
    ) -> OriginRequest:
        request = ctx.request
        headers: CIMultiDict[str] = CIMultiDict()
        connection_tokens = {t.lower() for t in parse_list_header(request.headers.getall("Connection", ()))}
        for name, value in request.headers.items():
            lowered = name.lower()
            if lowered in _REQUEST_DROPPED or lowered in connection_tokens:
                continue
            headers.add(name, value)
        behaviour = ctx.behaviour
        query = request.query
        if behaviour is not None and not behaviour.forwarding.passes_all:
            # The origin request policy (``forward``, proxy.edge.forwarding): the viewer's fields, cookies
            # and query parameters it does not forward go; the edge's own fields are added below.
            behaviour.forwarding.filter_headers(headers)
            query = behaviour.forwarding.filter_query(query)
        method = request.method
        ctx.fill = fill
        if fill:
            for name in _FILL_DROPPED:
                headers.popall(name, None)
            method = "GET"  # a HEAD miss fills the cache with a GET; the viewer still gets no body
            if entry is not None:
                # RFC 9111 §4.3.1: revalidate a stored response with its validators.
                stored = CIMultiDict(entry.headers)
                etag = stored.get("ETag")
                if etag:
                    headers["If-None-Match"] = etag
                last_modified = stored.get("Last-Modified")
                if last_modified:
                    headers["If-Modified-Since"] = last_modified
        headers["X-Forwarded-For"] = request.client_ip
        headers["X-Forwarded-Proto"] = request.scheme
        if request.host:
            headers["X-Forwarded-Host"] = request.host
        via = request.headers.get("Via")
        hop = (
            self._via if request.version < (2, 0) else f"{request.version[0]} {self.name}"
        )  # RFC 9110 §7.6.3
        headers["Via"] = f"{via}, {hop}" if via else hop
        target = f"{request.path}?{query}" if query else request.path
        policies = ctx.behaviour.policies if ctx.behaviour is not None else None
        if policies is not None:
            policies.origin_headers(headers)
            target = policies.origin_target(request.path, query)
        capability = request.headers.get("Surrogate-Capability")
        mine = surrogate_capability(self.name)[1]
        headers["Surrogate-Capability"] = f"{capability}, {mine}" if capability else mine
        request_body: bytes | AsyncIterator[bytes] | None = None
        if not fill:
            request_body = body if body is not None else request.body
        return OriginRequest(
            method=method,
            target=target,
            headers=headers,
            body=request_body,
            viewer_host=request.host,
            viewer_path=request.path,
            on_interim=request.on_interim,
            content_length=request.content_length if request_body is not None else None,
        )

    async def _replayable_body(self, ctx: RequestContext, failover: bool) -> tuple[bool, bytes | None]:
        """Whether this request may go to a second origin (``failover``: the group has one), and its body
        buffered when it has one of a known length up to ``REPLAYABLE_BODY``: for that, and for the
        client's one retry on a new connection when a reused one was closed under it (any method)."""
        request = ctx.request
        failover = failover and request.method in IDEMPOTENT_METHODS
        if request.body is None:
            return failover, None
        length = request.content_length
        if length is None or length > REPLAYABLE_BODY:
            return False, None
        parts = [chunk async for chunk in request.body]
        return failover, parts[0] if len(parts) == 1 else b"".join(parts)

    async def _forward(
        self, ctx: RequestContext, behaviour: BehaviourRuntime, *, fill: bool, entry: CacheEntry | None
    ) -> EdgeResponse:
        """FETCH: try the behaviour's origins in order (failover), then STORE and DELIVER what came back."""
        group = behaviour.group
        if group is None:
            ctx.synth = SynthReason.ORIGIN_UNREACHABLE
            ctx.result = CacheResult.ERROR
            return self.deliver.synthetic(ctx, 502, "Bad Gateway: no origin for this path\n")
        now = self._monotonic()
        stale_ok = entry is not None and _stale_within(entry, entry.stale_if_error, ctx.now)
        if stale_ok and group.all_down(now):
            # Every origin is known to be down: serve stale at once, without waiting out a timeout.
            assert entry is not None
            return self._serve_stale(ctx, entry, None)
        retryable, body = await self._replayable_body(ctx, len(group.members) > 1)
        ctx.tried = []
        functions = behaviour.functions
        generated = False
        failure: OriginError | None = None
        response: OriginResponse | None = None
        request_time = response_time = ctx.now
        candidates = group.candidates(now)
        member = next(candidates, None)
        while member is not None:
            origin, health = member
            ctx.origin = origin.name
            ctx.tried.append(origin.name)
            origin_request = self._origin_request(ctx, fill, entry, body)
            request_time = self._clock()
            if functions is not None and functions.has(Event.ORIGIN_REQUEST):
                try:
                    sent = await run_origin_request(functions, ctx.request, origin_request)
                except FunctionError:
                    return await self._function_failed(ctx)
                if isinstance(sent, FunctionResponse):
                    # The function answered for the origin: stored by the usual rules, no health record.
                    response, generated = as_origin_response(sent), True
                    response_time = self._clock()
                    break
            stats = self.stats
            stats.origin_requests += 1
            try:
                response = await origin.fetch(origin_request)
            except OriginError as exc:
                stats.origin_errors += 1
                health.record_failure(self._monotonic(), reason=str(exc) or type(exc).__name__)
                failure, response = exc, None
                member = next(candidates, None) if retryable else None
                continue
            response_time = self._clock()
            stats.origin_seconds += response_time - request_time
            if not group.should_fail_over(response.status):
                health.record_success(self._monotonic())
                break
            health.record_failure(self._monotonic(), reason=f"HTTP {response.status}")
            # A failover status: move on when there is another member to try, else keep this answer.
            member = next(candidates, None) if retryable else None
            if member is not None:
                await response.release()
                response = None
        if response is None:
            # No response at all (connect error, connection closed before a response, timeout): the edge is
            # disconnected from the origin, and RFC 9111 §4.2.4 lets it serve stale then, unless the entry
            # forbids stale reuse (must-revalidate, proxy-revalidate, s-maxage, no-cache: §5.2.2).
            if entry is not None and (stale_ok or _may_serve_disconnected(entry)):
                return self._serve_stale(ctx, entry, None)
            assert failure is not None
            return self._origin_failed(ctx, failure)
        ctx.fwd_status = response.status
        if stale_ok and response.status >= 500:
            # RFC 5861 §4: an origin error within stale-if-error serves the stale entry instead.
            assert entry is not None
            await response.release()
            return self._serve_stale(ctx, entry, response.status)
        policies = behaviour.policies
        if (
            policies is not None
            and response.status in policies.error_pages
            and ctx.request.method in CACHEABLE_METHODS
        ):
            assert ctx.tried is not None
            answered_by = next(o for o, _ in group.members if o.name == ctx.tried[-1])
            response = await self._error_page(
                ctx, answered_by, response, policies.error_pages[response.status]
            )
        if (
            functions is not None
            and not generated
            and functions.has(Event.ORIGIN_RESPONSE)
            and not (fill and entry is not None and response.status == 304)
        ):
            # origin_response: before STORE, so what the function changes is what gets cached.
            try:
                response = await run_origin_response(
                    functions, ctx.request, response, max_body=self._object_limit
                )
            except FunctionError:
                return await self._function_failed(ctx)
            except OriginError as exc:
                return self._origin_failed(ctx, exc)
        if fill and entry is not None and response.status == 304:
            await response.release()
            check = freshens_compressed if self._compressed_by_us(ctx, entry) else freshens
            if not check(entry.headers, response.headers.items()):
                # RFC 9111 §4.3.4: a 304 whose strong validator matches no stored response MUST NOT update
                # one. It still answers the conditional request the edge built from this entry's own
                # validators (§4.3.3): serve the entry once, unchanged, without updating or refetching it.
                ctx.result = CacheResult.REFRESH_HIT
                return self.deliver.from_entry(ctx, entry, hit=False)
            return self._refreshed(ctx, behaviour, entry, response, request_time, response_time)
        if not fill:
            return self._pass_through(ctx, response)
        if behaviour.config.compress:
            try:
                response = await self._maybe_compress(ctx, response)
            except OriginError as exc:
                ctx.not_stored = NotStoredReason.INCOMPLETE
                return self._origin_failed(ctx, exc)
        return await self._store_and_deliver(ctx, behaviour, response, request_time, response_time)

    def _compressed_by_us(self, ctx: RequestContext, entry: CacheEntry) -> bool:
        """Whether ``entry`` holds a coding this edge made (its ETag is the weak form of the origin's)."""
        if ctx.encoding == "identity":
            return False
        coding = next((v for k, v in entry.headers if k.lower() == "content-encoding"), None)
        return coding is not None and coding.strip().lower() == ctx.encoding

    async def _maybe_compress(self, ctx: RequestContext, response: OriginResponse) -> OriginResponse:
        """``compress: true``: the variant for this viewer's coding bucket, compressed here when the origin
        did not (gzip or br for compressible types within size bounds). The compressed bytes are what is
        stored, under the key of the bucket; ranges then address them (RFC 9110 §14.1.1)."""
        if not would_compress(
            status=response.status,
            headers=response.headers,
            body_length=response.content_length,
            method=ctx.request.method,
        ):
            return response
        headers = CIMultiDict(response.headers)
        add_vary_accept_encoding(headers)  # the identity variant varies on Accept-Encoding too
        if ctx.encoding == "identity":
            return dataclasses.replace(response, headers=headers)
        try:
            whole = await _read_all(response, COMPRESS_MAX_SIZE)
        finally:
            await response.release()
        if whole is None:
            raise OriginProtocolError("the origin sent more than its Content-Length")
        if len(whole) > 256 * 1024:
            body = await asyncio.to_thread(compress, whole, ctx.encoding)
        else:
            body = compress(whole, ctx.encoding)
        compressed_headers(headers, ctx.encoding, len(body))
        return OriginResponse(
            status=response.status,
            headers=headers,
            body=_replay(body),
            content_length=len(body),
            reason=response.reason,
        )

    async def _error_page(
        self, ctx: RequestContext, origin: Origin, response: OriginResponse, path: str
    ) -> OriginResponse:
        """``error_pages``: the page at ``path`` from the same origin, with the original status (and its
        caching fields, so it is cached per error_ttl like the error itself). The original answer stands
        when the page cannot be had."""
        page = await self._page(ctx, origin, path)
        if page is None:
            return response
        await response.release()
        page_headers = CIMultiDict(page.headers)
        for name in ("ETag", "Last-Modified", *_ERROR_FIELDS):
            page_headers.popall(name, None)
        for name in _ERROR_FIELDS:
            for value in response.headers.getall(name, ()):
                page_headers.add(name, value)
        return OriginResponse(
            status=response.status,
            headers=page_headers,
            body=page.body,
            content_length=page.content_length,
            reason=response.reason,
            release=page.release,
        )

    def _serve_stale(self, ctx: RequestContext, entry: CacheEntry, origin_status: int | None) -> EdgeResponse:
        ctx.result = CacheResult.STALE
        ctx.fwd = FwdReason.STALE
        ctx.fwd_status = origin_status
        return self.deliver.from_entry(ctx, entry, hit=False)

    def _origin_failed(self, ctx: RequestContext, exc: OriginError) -> EdgeResponse:
        ctx.result = CacheResult.ERROR
        if isinstance(exc, OriginTimeoutError):
            ctx.synth = SynthReason.ORIGIN_TIMEOUT
            return self.deliver.synthetic(ctx, 504, "Gateway Timeout: the origin did not answer in time\n")
        ctx.synth = SynthReason.ORIGIN_UNREACHABLE
        return self.deliver.synthetic(ctx, 502, "Bad Gateway: the origin could not be reached\n")

    # ---------------------------------------------------------------- STORE
    def _entry_for(
        self,
        ctx: RequestContext,
        behaviour: BehaviourRuntime,
        response_status: int,
        headers: CIMultiDict[str],
        request_time: float,
        response_time: float,
    ) -> tuple[CacheEntry | None, NotStoredReason | None]:
        """The entry to store for a response head (body filled in later), or why it is not stored."""
        request = ctx.request
        effective = effective_cache_control(headers, device=self.name)
        response_cc = effective.cc
        date = parse_http_date(headers.get("Date"))
        vary = tuple(v.lower() for v in parse_list_header(headers.getall("Vary", ())))
        expires = None if effective.targeted else parse_expires(headers.get("Expires"))
        decision = decide_store(
            method=request.method,
            status=response_status,
            request_cc=parse_cache_control(request.headers.get("Cache-Control"))
            if behaviour.honour_request_cache_control
            else parse_cache_control(None),
            response_cc=response_cc,
            request_has_authorization="Authorization" in request.headers,
            expires=expires,
            date=date if date is not None else response_time,
            last_modified=parse_http_date(headers.get("Last-Modified")),
            has_vary_star="*" in vary,
            has_etag="ETag" in headers,
            policy=behaviour.ttl,
            default_swr=behaviour.config.stale_while_revalidate,
            default_sie=behaviour.config.stale_if_error,
        )
        if response_status >= 400:
            explicit = (
                response_cc.s_maxage is not None or response_cc.max_age is not None or expires is not None
            )
            decision = apply_error_ttl(
                response_status,
                decision,
                explicit=explicit,
                policy_mode=behaviour.ttl is not None,
                error_ttl=behaviour.config.error_ttl,
            )
        if not decision.store:
            return None, decision.reason
        # set_cookie: a stored Set-Cookie would be replayed to every later viewer (docs/security.md).
        cookies = set_cookie_handling(behaviour.config.set_cookie, headers.items(), response_cc)
        if cookies is CookieHandling.REFUSE:
            return None, NotStoredReason.SET_COOKIE
        drop = _STRIPPED_FIELDS if cookies is CookieHandling.STRIP else EDGE_RECOMPUTED
        stored_headers = fields_to_store(headers.items(), response_cc, drop=drop)
        tags = _surrogate_keys(headers)
        entry = CacheEntry(
            status=response_status,
            headers=stored_headers,
            body=b"",
            request_time=request_time,
            response_time=response_time,
            initial_age=corrected_initial_age(headers.getall("Age", ()), date, request_time, response_time),
            ttl=decision.ttl,
            stale_while_revalidate=decision.stale_while_revalidate,
            stale_if_error=decision.stale_if_error,
            must_revalidate=decision.must_revalidate,
            no_cache=decision.no_cache,
            vary=vary,
            tags=tags,
        )
        return entry, None

    def _store(self, ctx: RequestContext, entry: CacheEntry) -> bool:
        """Write a complete entry to the memory tier (plus a Vary marker under the base key)."""
        assert ctx.key is not None
        key = ctx.key
        if entry.vary:
            # RFC 9111 §4.1: the variant is found through the base key's marker, then the varied values.
            self.memory.set(key, vary_marker(entry.vary, entry.response_time))
            key = variant_key(key, entry.vary, ctx.request.headers)
        stored = self.memory.set(key, entry)
        if self.shared is not None:
            # The shared tier has its own size limit: an object too large for the memory tier may still
            # be kept there (the shared store refuses what is above cache.shared.max_object_bytes).
            self._write_through(ctx.key, key, entry, unlock=ctx.shield_locked)
            ctx.shield_locked = False
            stored = True
        if stored:
            ctx.stored_entry = entry
        else:
            ctx.not_stored = NotStoredReason.TOO_LARGE
        ctx.stored = stored
        return stored

    def _unlock(self, ctx: RequestContext) -> None:
        ctx.shield_locked = False
        if self.coordinator is not None and ctx.key is not None:
            self.background.spawn(self.coordinator.release(ctx.key), name=f"shield release {ctx.key}")

    def _write_through(self, base_key: str, key: str, entry: CacheEntry, unlock: bool = False) -> None:
        """Copy a stored entry (and its Vary marker) to the shared tier, in the background: the viewer
        never waits for Redis. The shared copy expires when it is no longer useful to anyone."""
        shared = self.shared
        assert shared is not None
        lifetime = entry.ttl + max(entry.stale_while_revalidate, entry.stale_if_error) - entry.initial_age

        coordinator = self.coordinator

        async def write() -> None:
            if key != base_key:
                await shared.set(base_key, vary_marker(entry.vary, entry.response_time), lifetime)
            await shared.set(key, entry, lifetime)
            if unlock and coordinator is not None:
                # Shield: the lock goes only once the entry is in the shared tier for the waiters.
                await coordinator.release(base_key)

        self.background.spawn(write(), name=f"shared set {key}")

    def _refreshed(
        self,
        ctx: RequestContext,
        behaviour: BehaviourRuntime,
        entry: CacheEntry,
        response: OriginResponse,
        request_time: float,
        response_time: float,
    ) -> EdgeResponse:
        """A 304 answered our revalidation: freshen the stored entry (RFC 9111 §4.3.4) and serve it."""
        merged = CIMultiDict(update_stored_headers(entry.headers, response.headers.items()))
        if "accept-encoding" in entry.vary:
            add_vary_accept_encoding(merged)
        if self._compressed_by_us(ctx, entry):
            compressed_headers(merged, ctx.encoding, len(entry.body))  # the merge put the strong tag back
        fresh, reason = self._entry_for(ctx, behaviour, entry.status, merged, request_time, response_time)
        ctx.result = CacheResult.REFRESH_HIT
        if fresh is None:
            ctx.not_stored = reason
            served = entry
        else:
            fresh.body = entry.body
            self._store(ctx, fresh)
            served = fresh
        delivered = self.deliver.from_entry(ctx, served, hit=False)
        if behaviour.config.set_cookie != "store":
            # The 304's cookies are for the viewer whose request revalidated; _entry_for kept them out
            # of the stored entry (strip) or did not freshen it (pass).
            for name in ("Set-Cookie", "Set-Cookie2"):
                for value in response.headers.getall(name, ()):
                    delivered.headers.add(name, value)
        return delivered

    async def _store_and_deliver(
        self,
        ctx: RequestContext,
        behaviour: BehaviourRuntime,
        response: OriginResponse,
        request_time: float,
        response_time: float,
    ) -> EdgeResponse:
        ctx.result = CacheResult.MISS
        entry, reason = self._entry_for(
            ctx, behaviour, response.status, response.headers, request_time, response_time
        )
        limit = self._object_limit
        length = response.content_length
        if entry is not None and length is not None and length > limit:
            entry, reason = None, NotStoredReason.TOO_LARGE
        ctx.not_stored = reason
        if entry is None:
            if ctx.request.method == "HEAD":
                await response.release()
                return self.deliver.from_origin(ctx, response, stream=None, body=b"")
            if "Range" in ctx.request.headers and length is not None and length <= SMALL_BODY:
                # Small enough to read whole, so the viewer's Range can still be answered at the edge.
                try:
                    body = await _read_all(response, SMALL_BODY)
                except OriginError as exc:
                    return self._origin_failed(ctx, exc)
                finally:
                    await response.release()
                return self.deliver.from_origin(ctx, response, stream=None, body=body or b"")
            return self._pass_through(ctx, response)
        ctx.ttl = entry.ttl
        if ctx.request.method == "HEAD" or (length is not None and length <= SMALL_BODY):
            try:
                whole = await _read_all(response, limit)
            except OriginError as exc:
                ctx.not_stored = NotStoredReason.INCOMPLETE
                return self._origin_failed(ctx, exc)
            finally:
                await response.release()
            if whole is None:
                # Only a HEAD fill with no Content-Length gets here: the head is all the viewer wants.
                ctx.not_stored = NotStoredReason.TOO_LARGE
                return self.deliver.from_origin(ctx, response, stream=None, body=b"")
            entry.body = whole
            if not self._store(ctx, entry):
                return self.deliver.from_origin(ctx, response, stream=None, body=whole)
            return self.deliver.from_origin(ctx, response, stream=None, body=whole, age=entry.initial_age)
        fill = Fill(
            ctx, entry, response, limit, store=self._store, on_done=self._settle, background=self.background
        )
        # The head leaves before the body is complete: it says detail=storing, never stored; the Fill
        # records the outcome in ctx.stored once the body ended, before the access log line is written.
        delivered = self.deliver.from_origin(
            ctx, response, stream=fill.stream(), body=None, age=entry.initial_age, storing=True
        )
        delivered.finish = fill.finish
        ctx.fill_streaming = True
        return delivered

    def _pass_through(self, ctx: RequestContext, response: OriginResponse) -> EdgeResponse:
        """Deliver an origin response that is not stored, streaming its body."""
        return self.deliver.from_origin(ctx, response, stream=_released(response), body=None)

    # ---------------------------------------------------------------- LOG
    def finish(self, ctx: RequestContext, status: int, bytes_sent: int, completed: bool) -> None:
        """Called by the adapter once the response was written (or the viewer went away)."""
        ctx.status = status
        ctx.bytes_sent = bytes_sent
        ctx.completed = completed
        stats = self.stats
        stats.requests[ctx.result.value] += 1
        stats.count_protocol(ctx.request.version)
        stats.bytes_sent += bytes_sent
        if ctx.tried is not None and len(ctx.tried) > 1:
            stats.failovers += 1
        self.access_log.write(ctx)


def _via_names(via: str, name: str) -> bool:
    """Whether ``name`` is one of the received-by names in a Via field value (RFC 9110 §7.6.3)."""
    for hop in via.split(","):
        parts = hop.split()
        if len(parts) >= 2 and parts[1] == name:
            return True
    return False


def _surrogate_keys(headers: CIMultiDict[str]) -> tuple[str, ...]:
    """The purge tags of a response: ``Surrogate-Key`` (space-separated) and ``Cache-Tag`` (commas)."""
    tags: list[str] = []
    for value in headers.getall("Surrogate-Key", ()):
        tags.extend(value.split())
    for value in headers.getall("Cache-Tag", ()):
        tags.extend(t.strip() for t in value.split(",") if t.strip())
    return tuple(dict.fromkeys(tags))


def _stale_within(entry: CacheEntry, window: float, now: float) -> bool:
    """Whether a stale entry is still inside an RFC 5861 window (stale-while-revalidate/-if-error)."""
    return window > 0 and entry.age(now) < entry.ttl + window


def _may_serve_disconnected(entry: CacheEntry) -> bool:
    """Whether a stale entry may be served when the origin gave no response at all (RFC 9111 §4.2.4).

    Called by FETCH when every attempt failed without a response. A disconnected cache may serve stale
    unless an explicit directive forbids it: must-revalidate, proxy-revalidate, s-maxage (all in
    ``must_revalidate``) or no-cache (§5.2.2.2, §5.2.2.4, §5.2.2.8, §5.2.2.10).
    """
    return not (entry.must_revalidate or entry.no_cache)


async def _replay(body: bytes) -> AsyncIterator[bytes]:
    if body:
        yield body


async def _read_all(response: OriginResponse, limit: int) -> bytes | None:
    """The whole body, or None when it grows beyond ``limit``."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.body:
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _released(response: OriginResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.body:
            yield chunk
    finally:
        await response.release()
