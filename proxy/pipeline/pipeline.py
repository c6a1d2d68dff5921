"""The request pipeline: RECV → HASH → LOOKUP → FETCH → STORE → DELIVER (→ LOG), plus SYNTH.

``Pipeline.handle`` is called by a server adapter for every viewer request and returns the context and the
response to write; the adapter calls ``Pipeline.finish`` once the response is written (LOG). Caching
decisions are delegated to the pure functions of ``proxy.http``; this module only sequences them and does
the I/O (memory tier, origins).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from multidict import CIMultiDict

from proxy.cache.entry import CacheEntry
from proxy.cache.keys import variant_key
from proxy.cache.memory import MemoryStore
from proxy.http.cache_control import parse_cache_control
from proxy.http.dates import parse_http_date
from proxy.http.freshness import (
    ReuseDecision,
    corrected_initial_age,
    decide_store,
    parse_expires,
    reuse_decision,
)
from proxy.http.headers import HOP_BY_HOP, parse_list_header
from proxy.http.reasons import CacheResult, FwdReason, NotStoredReason, SynthReason
from proxy.observability.access_log import AccessLog
from proxy.origin.base import (
    OriginError,
    OriginRequest,
    OriginResponse,
    OriginTimeoutError,
)
from proxy.pipeline.context import RequestContext
from proxy.pipeline.deliver import Deliverer
from proxy.pipeline.messages import EdgeRequest, EdgeResponse
from proxy.pipeline.runtime import CACHEABLE_METHODS, BehaviourRuntime, Runtime
from proxy.pipeline.variants import VARY_MARKER_STATUS, lookup_variant, vary_marker

# Request fields never sent on a cache fill: the edge evaluates them itself against the full response.
_FILL_DROPPED = ("Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since")
# Request fields the edge rewrites itself rather than passing on from the viewer.
_REQUEST_DROPPED = frozenset(
    h.lower() for h in (*HOP_BY_HOP, "Host", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto")
)
# Response fields not kept in a stored entry: framing is redone per delivery, Age is recomputed (§4.2.3),
# X-Cache is ours.
_NOT_STORED_FIELDS = frozenset(("content-length", "age", "x-cache", "transfer-encoding"))
SMALL_BODY = 256 * 1024  # bodies up to this size (with a known length) are read whole, then written once


class Pipeline:
    """Sequences one request. One instance per worker process, shared by every connection."""

    def __init__(
        self,
        runtime: Runtime,
        memory: MemoryStore,
        *,
        name: str,
        access_log: AccessLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runtime = runtime
        self.memory = memory
        self.name = name
        self.access_log = access_log
        self._clock = clock
        self._via = f"1.1 {name}"
        self.deliver = Deliverer(name)

    # ---------------------------------------------------------------- RECV
    async def handle(self, request: EdgeRequest) -> tuple[RequestContext, EdgeResponse]:
        """Run the phases for one request; the response's body may still be streaming when this returns."""
        ctx = RequestContext(request, self._clock(), time.perf_counter())
        behaviour = self.runtime.router.match(request.path)
        ctx.behaviour = behaviour
        method = request.method
        if method not in behaviour.methods:
            ctx.synth = SynthReason.METHOD_NOT_ALLOWED
            extra = CIMultiDict({"Allow": behaviour.allow})
            return ctx, self.deliver.synthetic(ctx, 405, "Method Not Allowed\n", extra)
        if method in CACHEABLE_METHODS:
            return ctx, await self._cacheable(ctx, behaviour)
        ctx.result = CacheResult.BYPASS
        ctx.fwd = FwdReason.METHOD
        return ctx, await self._forward(ctx, behaviour, fill=False, entry=None)

    # ---------------------------------------------------------------- HASH + LOOKUP
    async def _cacheable(self, ctx: RequestContext, behaviour: BehaviourRuntime) -> EdgeResponse:
        request = ctx.request
        key = behaviour.keys.key(request.host, request.path, request.query, request.headers)
        entry = self.memory.get(key)
        fwd = FwdReason.URI_MISS
        ctx.key = key
        if entry is not None and entry.status == VARY_MARKER_STATUS:
            entry = lookup_variant(self.memory, key, entry, request.headers)
            fwd = FwdReason.VARY_MISS
        request_cc = parse_cache_control(request.headers.get("Cache-Control"))
        honour = behaviour.honour_request_cache_control
        if entry is not None:
            decision, reason = reuse_decision(
                entry_age=entry.age(ctx.now),
                ttl=entry.ttl,
                request_cc=request_cc,
                pragma_no_cache=honour and "no-cache" in request.headers.get("Pragma", ""),
                no_cache=entry.no_cache,
                must_revalidate=entry.must_revalidate,
                honour_request=honour,
            )
            if decision is ReuseDecision.FRESH:
                ctx.result = CacheResult.HIT
                return self.deliver.from_entry(ctx, entry, hit=True)
            ctx.fwd = reason or FwdReason.STALE
        else:
            ctx.fwd = fwd
            # RFC 9111 §5.2.1.7: only-if-cached with nothing stored → 504.
            if honour and request_cc.only_if_cached:
                ctx.synth = SynthReason.ORIGIN_TIMEOUT
                return self.deliver.synthetic(ctx, 504, "Gateway Timeout (only-if-cached)\n")
        if honour and request_cc.no_store:
            # RFC 9111 §5.2.1.5: a request no-store forbids storing what comes back.
            ctx.not_stored = NotStoredReason.NO_STORE
            return await self._forward(ctx, behaviour, fill=False, entry=None)
        return await self._forward(ctx, behaviour, fill=True, entry=entry)

    # ---------------------------------------------------------------- FETCH
    def _origin_request(
        self, ctx: RequestContext, behaviour: BehaviourRuntime, fill: bool, entry: CacheEntry | None
    ) -> OriginRequest:
        request = ctx.request
        headers: CIMultiDict[str] = CIMultiDict()
        connection_tokens = {t.lower() for t in parse_list_header(request.headers.getall("Connection", ()))}
        for name, value in request.headers.items():
            lowered = name.lower()
            if lowered in _REQUEST_DROPPED or lowered in connection_tokens:
                continue
            headers.add(name, value)
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
        headers["Via"] = f"{via}, {self._via}" if via else self._via
        return OriginRequest(
            method=method,
            target=request.target,
            headers=headers,
            body=None if fill else request.body,
            viewer_host=request.host,
        )

    async def _forward(
        self, ctx: RequestContext, behaviour: BehaviourRuntime, *, fill: bool, entry: CacheEntry | None
    ) -> EdgeResponse:
        origin = behaviour.origin
        if origin is None:
            ctx.synth = SynthReason.ORIGIN_UNREACHABLE
            return self.deliver.synthetic(ctx, 502, "Bad Gateway: no origin for this path\n")
        ctx.origin = origin.name
        origin_request = self._origin_request(ctx, behaviour, fill, entry)
        request_time = self._clock()
        try:
            response = await origin.fetch(origin_request)
        except OriginError as exc:
            return self._origin_failed(ctx, exc)
        response_time = self._clock()
        ctx.fwd_status = response.status
        if fill and entry is not None and response.status == 304:
            await response.release()
            return self._refreshed(ctx, behaviour, entry, response, request_time, response_time)
        if not fill:
            return await self._pass_through(ctx, response)
        return await self._store_and_deliver(ctx, behaviour, response, request_time, response_time)

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
        response_cc = parse_cache_control(headers.getall("Cache-Control", ()))
        date = parse_http_date(headers.get("Date"))
        vary = tuple(v.lower() for v in parse_list_header(headers.getall("Vary", ())))
        decision = decide_store(
            method=request.method,
            status=response_status,
            request_cc=parse_cache_control(request.headers.get("Cache-Control"))
            if behaviour.honour_request_cache_control
            else parse_cache_control(None),
            response_cc=response_cc,
            request_has_authorization="Authorization" in request.headers,
            expires=parse_expires(headers.get("Expires")),
            has_etag="ETag" in headers,
            date=date if date is not None else response_time,
            last_modified=parse_http_date(headers.get("Last-Modified")),
            has_vary_star="*" in vary,
            policy=behaviour.ttl,
            default_swr=behaviour.config.stale_while_revalidate,
            default_sie=behaviour.config.stale_if_error,
        )
        if not decision.store:
            return None, decision.reason
        stored_headers = tuple((k, v) for k, v in headers.items() if k.lower() not in _NOT_STORED_FIELDS)
        entry = CacheEntry(
            status=response_status,
            headers=stored_headers,
            body=b"",
            request_time=request_time,
            response_time=response_time,
            initial_age=corrected_initial_age(headers.get("Age"), date, request_time, response_time),
            ttl=decision.ttl,
            stale_while_revalidate=decision.stale_while_revalidate,
            stale_if_error=decision.stale_if_error,
            must_revalidate=decision.must_revalidate,
            no_cache=decision.no_cache,
            vary=vary,
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
        if not stored:
            ctx.not_stored = NotStoredReason.TOO_LARGE
        ctx.stored = stored
        return stored

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
        merged: CIMultiDict[str] = CIMultiDict(entry.headers)
        for name in {k.lower() for k in response.headers}:
            if name in _NOT_STORED_FIELDS or name in ("content-type", "content-encoding", "content-range"):
                continue
            merged.popall(name, None)
            for value in response.headers.getall(name):
                merged.add(name, value)
        fresh, reason = self._entry_for(ctx, behaviour, entry.status, merged, request_time, response_time)
        ctx.result = CacheResult.REFRESH_HIT
        if fresh is None:
            ctx.not_stored = reason
            served = entry
        else:
            fresh.body = entry.body
            self._store(ctx, fresh)
            served = fresh
        return self.deliver.from_entry(ctx, served, hit=False)

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
        limit = self.memory.max_object_bytes
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
            return await self._pass_through(ctx, response)
        ctx.ttl = entry.ttl
        if ctx.request.method == "HEAD" or (length is not None and length <= SMALL_BODY):
            try:
                body = await _read_all(response, limit)
            except OriginError as exc:
                await response.release()
                return self._origin_failed(ctx, exc)
            await response.release()
            if body is None:
                # Only a HEAD fill with no Content-Length gets here: the head is all the viewer wants.
                ctx.not_stored = NotStoredReason.TOO_LARGE
                return self.deliver.from_origin(ctx, response, stream=None, body=b"")
            entry.body = body
            if not self._store(ctx, entry):
                return self.deliver.from_origin(ctx, response, stream=None, body=body)
            return self.deliver.from_entry(ctx, entry, hit=False)
        ctx.stored = True  # the intent, announced in Cache-Status; _tee records the outcome
        stream = self._tee(ctx, entry, response, limit)
        return self.deliver.from_origin(ctx, response, stream=stream, body=None, age=entry.initial_age)

    async def _tee(
        self, ctx: RequestContext, entry: CacheEntry, response: OriginResponse, limit: int
    ) -> AsyncIterator[bytes]:
        """Stream the origin body to the viewer while collecting it; store it once complete."""
        ctx.stored = False  # Cache-Status announced the intent; the log says what happened
        parts: list[bytes] | None = []
        size = 0
        try:
            async for chunk in response.body:
                if parts is not None:
                    size += len(chunk)
                    if size > limit:
                        parts = None
                        ctx.not_stored = NotStoredReason.TOO_LARGE
                        ctx.stored = False
                    else:
                        parts.append(chunk)
                yield chunk
        except OriginError:
            ctx.not_stored = NotStoredReason.INCOMPLETE
            ctx.stored = False
            raise
        finally:
            await response.release()
        if parts is not None:
            entry.body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._store(ctx, entry)

    async def _pass_through(self, ctx: RequestContext, response: OriginResponse) -> EdgeResponse:
        """Deliver an origin response that is not stored, streaming its body."""
        return self.deliver.from_origin(ctx, response, stream=_released(response), body=None)

    # ---------------------------------------------------------------- LOG
    def finish(self, ctx: RequestContext, status: int, bytes_sent: int, completed: bool) -> None:
        """Called by the adapter once the response was written (or the viewer went away)."""
        ctx.status = status
        ctx.bytes_sent = bytes_sent
        ctx.completed = completed
        self.access_log.write(ctx)


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
