"""FETCH: ask the behaviour's origins, in order, until one answers (failover), then hand over to STORE.

Called for a cache fill (``fill=True``: a miss or a revalidation of ``entry``) and for requests that are not
cached (other methods, request ``no-store``). The origin request is built by the pure
``proxy.edge.origin_request.origin_fields`` plus the behaviour's ``origin_request`` hooks; connect errors,
timeouts and failover statuses move on to the next member when the request may be replayed (RFC 9110
§9.2.2). With no response at all, or an origin error within stale-if-error, a stored entry is served stale
(RFC 9111 §4.2.4, RFC 5861 §4); else 502/504. ``error_pages`` replace an error's body with a page from the
same origin. The ``origin_response`` hooks then run, before STORE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from multidict import CIMultiDict

from proxy.cache.entry import CacheEntry
from proxy.edge.compression import freshens_compressed
from proxy.edge.origin_request import origin_fields
from proxy.http.freshness import may_serve_disconnected, within_stale_window
from proxy.http.reasons import CacheResult, FwdReason, SynthReason
from proxy.http.validation import freshens
from proxy.messages import EdgeResponse
from proxy.observability.stats import counted
from proxy.origin.base import Origin, OriginError, OriginRequest, OriginResponse
from proxy.pipeline.context import RequestContext
from proxy.pipeline.parts import Parts
from proxy.pipeline.runtime import CACHEABLE_METHODS, BehaviourRuntime
from proxy.pipeline.store import compressed_by_us, pass_through, refreshed, released, store_and_deliver

# RFC 9110 §9.2.2: only these may be retried on another origin (and only before any byte reached the viewer).
IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))
REPLAYABLE_BODY = 1024 * 1024  # request bodies up to this size are buffered so a failover can resend them
# Fields of an origin error kept when an error page replaces its body.
_ERROR_FIELDS = ("Cache-Control", "Expires", "Date", "Retry-After", "Vary", "Set-Cookie")


def origin_request(
    parts: Parts, ctx: RequestContext, fill: bool, entry: CacheEntry | None, body: bytes | None
) -> OriginRequest:
    """The request for one origin: the pure fields (``origin_fields``), the target after the ``forward``
    query policy, and the viewer's body when the request is not a fill."""
    request = ctx.request
    behaviour = ctx.behaviour
    forwarding = behaviour.forwarding if behaviour is not None else None
    validators = None
    if fill and entry is not None:
        # RFC 9111 §4.3.1: revalidate a stored response with its validators.
        stored = CIMultiDict(entry.headers)
        validators = (stored.get("ETag"), stored.get("Last-Modified"))
    headers = origin_fields(
        request.headers,
        client_ip=request.client_ip,
        scheme=request.scheme,
        host=request.host,
        # RFC 9110 §7.6.3: the received-protocol is the viewer's ("2", "3"); HTTP/1.x viewers keep "1.1".
        via=parts.via if request.version < (2, 0) else f"{request.version[0]} {parts.name}",
        device=parts.name,
        forwarding=forwarding,
        fill=fill,
        validators=validators,
    )
    query = request.query
    if forwarding is not None and not forwarding.passes_all:
        query = forwarding.filter_query(query)
    ctx.fill = fill
    request_body: bytes | AsyncIterator[bytes] | None = None
    if not fill:
        request_body = body if body is not None else request.body
    return OriginRequest(
        method="GET" if fill else request.method,  # a HEAD miss fills with a GET; the viewer gets no body
        target=f"{request.path}?{query}" if query else request.path,
        headers=headers,
        body=request_body,
        viewer_host=request.host,
        viewer_path=request.path,
        on_interim=request.on_interim,
        content_length=request.content_length if request_body is not None else None,
    )


async def replayable_body(ctx: RequestContext, failover: bool) -> tuple[bool, bytes | None]:
    """Whether this request may go to a second origin (``failover``: the group has one), and its body
    buffered when it has one of a known length up to ``REPLAYABLE_BODY``: for that, and for the client's
    one retry on a new connection when a reused one was closed under it (any method)."""
    request = ctx.request
    failover = failover and request.method in IDEMPOTENT_METHODS
    if request.body is None:
        return failover, None
    length = request.content_length
    if length is None or length > REPLAYABLE_BODY:
        return False, None
    parts = [chunk async for chunk in request.body]
    return failover, parts[0] if len(parts) == 1 else b"".join(parts)


async def fetch(
    parts: Parts, ctx: RequestContext, behaviour: BehaviourRuntime, *, fill: bool, entry: CacheEntry | None
) -> EdgeResponse:
    """FETCH (failover loop), then the ``origin_response`` hooks, then STORE and DELIVER."""
    deliver = parts.deliver
    group = behaviour.group
    if group is None:
        ctx.synth = SynthReason.ORIGIN_UNREACHABLE
        ctx.result = CacheResult.ERROR
        return deliver.synthetic(ctx, 502, "Bad Gateway: no origin for this path\n")
    now = parts.monotonic()
    stale_ok = entry is not None and within_stale_window(entry.age(ctx.now), entry.ttl, entry.stale_if_error)
    if stale_ok and group.all_down(now):
        # Every origin is known to be down: serve stale at once, without waiting out a timeout.
        assert entry is not None
        return serve_stale(parts, ctx, entry, None)
    retryable, body = await replayable_body(ctx, len(group.members) > 1)
    ctx.tried = []
    hooks = behaviour.hooks
    stats = parts.stats
    generated = False
    failure: OriginError | None = None
    response: OriginResponse | None = None
    request_time = response_time = ctx.now
    # balance: hash picks members by the cache key (the target for a request that has none)
    candidates = group.candidates(now, ctx.key if ctx.key is not None else ctx.request.target)
    member = next(candidates, None)
    while member is not None:
        origin, health = member
        ctx.origin = origin.name
        ctx.tried.append(origin.name)
        sent = origin_request(parts, ctx, fill, entry, body)
        request_time = parts.clock()
        for hook in hooks.origin_request:
            response = await hook.origin_request(ctx, sent)
            if response is not None:
                break
        if response is not None:
            # A hook answered for the origin: stored by the usual rules, no health record.
            generated = True
            response_time = parts.clock()
            break
        stats.origin_requests += 1
        try:
            response = await origin.fetch(sent)
        except OriginError as exc:
            stats.origin_errors += 1
            health.record_failure(parts.monotonic(), reason=str(exc) or type(exc).__name__)
            failure, response = exc, None
            member = next(candidates, None) if retryable else None
            continue
        response_time = parts.clock()
        stats.origin_seconds += response_time - request_time
        ctx.origin_seconds = response_time - request_time
        response.body = counted(response.body, ctx)
        if not group.should_fail_over(response.status):
            health.record_success(parts.monotonic())
            break
        health.record_failure(parts.monotonic(), reason=f"HTTP {response.status}")
        # A failover status: move on when there is another member to try, else keep this answer.
        member = next(candidates, None) if retryable else None
        if member is not None:
            await response.release()
            response = None
    if response is None:
        # No response at all (connect error, connection closed before a response, timeout): the edge is
        # disconnected from the origin, and RFC 9111 §4.2.4 lets it serve stale then, unless the entry
        # forbids stale reuse (must-revalidate, proxy-revalidate, s-maxage, no-cache: §5.2.2).
        if entry is not None and (
            stale_ok or may_serve_disconnected(must_revalidate=entry.must_revalidate, no_cache=entry.no_cache)
        ):
            return serve_stale(parts, ctx, entry, None)
        assert failure is not None
        return deliver.origin_failed(ctx, failure)
    ctx.fwd_status = response.status
    if stale_ok and response.status >= 500:
        # RFC 5861 §4: an origin error within stale-if-error serves the stale entry instead.
        assert entry is not None
        await response.release()
        return serve_stale(parts, ctx, entry, response.status)
    policies = behaviour.policies
    if (
        policies is not None
        and response.status in policies.error_pages
        and ctx.request.method in CACHEABLE_METHODS
    ):
        assert ctx.tried is not None
        answered_by = next(o for o, _ in group.members if o.name == ctx.tried[-1])
        response = await error_page(parts, ctx, answered_by, response, policies.error_pages[response.status])
    revalidation = fill and entry is not None and response.status == 304
    try:
        for hook in hooks.origin_response:
            response = await hook.origin_response(
                ctx, response, revalidation=revalidation, generated=generated
            )
    except OriginError as exc:
        return deliver.origin_failed(ctx, exc)
    if revalidation:
        assert entry is not None
        await response.release()
        check = freshens_compressed if compressed_by_us(ctx, entry) else freshens
        if not check(entry.headers, response.headers.items()):
            # RFC 9111 §4.3.4: a 304 whose strong validator matches no stored response MUST NOT update one.
            # It still answers the conditional request the edge built from this entry's own validators
            # (§4.3.3): serve the entry once, unchanged, without updating or refetching it.
            ctx.result = CacheResult.REFRESH_HIT
            return deliver.from_entry(ctx, entry, hit=False)
        return refreshed(parts, ctx, behaviour, entry, response, request_time, response_time)
    if not fill:
        return pass_through(parts, ctx, response)
    return await store_and_deliver(parts, ctx, behaviour, response, request_time, response_time)


def serve_stale(
    parts: Parts, ctx: RequestContext, entry: CacheEntry, origin_status: int | None
) -> EdgeResponse:
    """Serve a stale entry in place of the origin's answer (none, or an error: ``origin_status``)."""
    ctx.result = CacheResult.STALE
    ctx.fwd = FwdReason.STALE
    ctx.fwd_status = origin_status
    return parts.deliver.from_entry(ctx, entry, hit=False)


async def fetch_page(parts: Parts, ctx: RequestContext, origin: Origin, path: str) -> OriginResponse | None:
    """GET ``path`` from ``origin`` for an error page; None unless it answered 200."""
    headers: CIMultiDict[str] = CIMultiDict({"Via": parts.via, "X-Forwarded-For": ctx.request.client_ip})
    try:
        page = await origin.fetch(OriginRequest("GET", path, headers, viewer_host=ctx.request.host))
    except OriginError:
        return None
    if page.status != 200:
        await page.release()
        return None
    return page


async def error_page(
    parts: Parts, ctx: RequestContext, origin: Origin, response: OriginResponse, path: str
) -> OriginResponse:
    """``error_pages``: the page at ``path`` from the same origin, with the original status (and its
    caching fields, so it is cached per error_ttl like the error itself). The original answer stands when
    the page cannot be had."""
    page = await fetch_page(parts, ctx, origin, path)
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


async def function_failed(parts: Parts, ctx: RequestContext) -> EdgeResponse:
    """An edge function raised or timed out (already logged, naming it): 502, or the behaviour's configured
    error page for 502 (served from its origin, status kept)."""
    ctx.synth = SynthReason.FUNCTION_ERROR
    ctx.result = CacheResult.ERROR
    behaviour = ctx.behaviour
    policies = behaviour.policies if behaviour is not None else None
    if behaviour is not None and behaviour.group is not None and policies is not None:
        path = policies.error_pages.get(502)
        if path is not None:
            page = await fetch_page(parts, ctx, behaviour.group.primary[0], path)
            if page is not None:
                page.status = 502
                return parts.deliver.from_origin(ctx, page, stream=released(page), body=None)
    return parts.deliver.synthetic(ctx, 502, "Bad Gateway: an edge function failed\n")
