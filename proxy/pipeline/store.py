"""STORE: turn an origin response into a cache entry (or say why not), store it, and hand it to DELIVER.

Called by FETCH once the origin's answer to a cache fill is final (after the ``origin_response`` hooks).
Admission (what is stored, for how long) is the pure ``proxy.cache.admission.admit``; the tiers are behind
the ``TieredCache`` facade. Small bodies (≤ ``SMALL_BODY`` with a known length) are read whole, stored, then
written once; larger ones stream to the viewer while a ``Fill`` collects them for the cache. A 304 to the
edge's revalidation freshens the stored entry (RFC 9111 §4.3.4).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from multidict import CIMultiDict

from proxy.cache.admission import admit
from proxy.cache.entry import CacheEntry
from proxy.cache.locks import Lease
from proxy.edge.compression import add_vary_accept_encoding, compressed_headers
from proxy.http.reasons import CacheResult, NotStoredReason
from proxy.http.validation import update_stored_headers
from proxy.messages import EdgeResponse
from proxy.origin.base import OriginError, OriginResponse
from proxy.pipeline.collapse import release
from proxy.pipeline.context import RequestContext
from proxy.pipeline.fill import Fill
from proxy.pipeline.hooks import read_all
from proxy.pipeline.parts import Parts
from proxy.pipeline.runtime import BehaviourRuntime

SMALL_BODY = 256 * 1024  # bodies up to this size (with a known length) are read whole, then written once


def entry_for(
    parts: Parts,
    ctx: RequestContext,
    behaviour: BehaviourRuntime,
    status: int,
    headers: CIMultiDict[str],
    request_time: float,
    response_time: float,
) -> tuple[CacheEntry | None, NotStoredReason | None]:
    """The entry to store for a response head (body filled in later), or why it is not stored."""
    return admit(
        behaviour.admission,
        method=ctx.request.method,
        request_headers=ctx.request.headers,
        status=status,
        headers=headers,
        request_time=request_time,
        response_time=response_time,
        device=parts.name,
    )


def store_entry(parts: Parts, ctx: RequestContext, entry: CacheEntry, lease: Lease | None) -> bool:
    """Write a complete entry through the cache tiers; the cluster lock of ``lease`` (if held) is released
    once the lower tiers have it. Records the outcome in ``ctx.stored`` / ``ctx.not_stored``, and on the
    lease for the requests collapsed behind this one."""
    assert ctx.key is not None
    after_write = lease.after_write() if lease is not None else None
    stored = parts.cache.store(ctx.key, ctx.request.headers, entry, after_write=after_write)
    if stored:
        if lease is not None:
            lease.entry = entry
    else:
        ctx.not_stored = NotStoredReason.TOO_LARGE
    ctx.stored = stored
    return stored


def compressed_by_us(ctx: RequestContext, entry: CacheEntry) -> bool:
    """Whether ``entry`` holds a coding this edge made (its ETag is the weak form of the origin's)."""
    if ctx.encoding == "identity":
        return False
    coding = next((v for k, v in entry.headers if k.lower() == "content-encoding"), None)
    return coding is not None and coding.strip().lower() == ctx.encoding


def refreshed(
    parts: Parts,
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
    if compressed_by_us(ctx, entry):
        compressed_headers(merged, ctx.encoding, len(entry.body))  # the merge put the strong tag back
    fresh, reason = entry_for(parts, ctx, behaviour, entry.status, merged, request_time, response_time)
    ctx.result = CacheResult.REFRESH_HIT
    if fresh is None:
        ctx.not_stored = reason
        served = entry
    else:
        fresh.body = entry.body
        store_entry(parts, ctx, fresh, ctx.lease)
        served = fresh
    delivered = parts.deliver.from_entry(ctx, served, hit=False)
    if behaviour.admission.set_cookie != "store":
        # The 304's cookies are for the viewer whose request revalidated; admission kept them out of the
        # stored entry (strip) or did not freshen it (pass).
        for name in ("Set-Cookie", "Set-Cookie2"):
            for value in response.headers.getall(name, ()):
                delivered.headers.add(name, value)
    return delivered


async def store_and_deliver(
    parts: Parts,
    ctx: RequestContext,
    behaviour: BehaviourRuntime,
    response: OriginResponse,
    request_time: float,
    response_time: float,
) -> EdgeResponse:
    """STORE then DELIVER for a fill's final response (not a 304 to a revalidation)."""
    ctx.result = CacheResult.MISS
    entry, reason = entry_for(
        parts, ctx, behaviour, response.status, response.headers, request_time, response_time
    )
    limit = parts.cache.object_limit
    length = response.content_length
    if entry is not None and length is not None and length > limit:
        entry, reason = None, NotStoredReason.TOO_LARGE
    ctx.not_stored = reason
    deliver = parts.deliver
    if entry is None:
        if ctx.request.method == "HEAD":
            await response.release()
            return deliver.from_origin(ctx, response, stream=None, body=b"")
        if "Range" in ctx.request.headers and length is not None and length <= SMALL_BODY:
            # Small enough to read whole, so the viewer's Range can still be answered at the edge.
            try:
                body = await read_all(response, SMALL_BODY)
            except OriginError as exc:
                return deliver.origin_failed(ctx, exc)
            finally:
                await response.release()
            return deliver.from_origin(ctx, response, stream=None, body=body or b"")
        return pass_through(parts, ctx, response)
    ctx.ttl = entry.ttl
    if ctx.request.method == "HEAD" or (length is not None and length <= SMALL_BODY):
        try:
            whole = await read_all(response, limit)
        except OriginError as exc:
            ctx.not_stored = NotStoredReason.INCOMPLETE
            return deliver.origin_failed(ctx, exc)
        finally:
            await response.release()
        if whole is None:
            # Only a HEAD fill with no Content-Length gets here: the head is all the viewer wants.
            ctx.not_stored = NotStoredReason.TOO_LARGE
            return deliver.from_origin(ctx, response, stream=None, body=b"")
        entry.body = whole
        if not store_entry(parts, ctx, entry, ctx.lease):
            return deliver.from_origin(ctx, response, stream=None, body=whole)
        return deliver.from_origin(ctx, response, stream=None, body=whole, age=entry.initial_age)
    # The fill owns the lease from now on: it stores and settles once the body is complete.
    lease, ctx.lease = ctx.lease, None
    fill = Fill(
        ctx,
        entry,
        response,
        limit,
        store=lambda c, e: store_entry(parts, c, e, lease),
        on_done=lambda c: release(lease, c),
        background=parts.background,
    )
    # The head leaves before the body is complete: it says detail=storing, never stored; the Fill records
    # the outcome in ctx.stored once the body ended, before the access log line is written.
    delivered = deliver.from_origin(
        ctx, response, stream=fill.stream(), body=None, age=entry.initial_age, storing=True
    )
    delivered.finish = fill.finish
    return delivered


def pass_through(parts: Parts, ctx: RequestContext, response: OriginResponse) -> EdgeResponse:
    """Deliver an origin response that is not stored, streaming its body."""
    return parts.deliver.from_origin(ctx, response, stream=released(response), body=None)


async def released(response: OriginResponse) -> AsyncIterator[bytes]:
    """An origin body as a stream that releases the origin connection when it ends or is abandoned."""
    try:
        async for chunk in response.body:
            yield chunk
    finally:
        await response.release()
