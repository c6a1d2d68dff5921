"""HASH and LOOKUP: the request's cache key, the stored entry for it, and whether it may be reused.

Called for cacheable methods (GET, HEAD) after RECV. ``hash_key`` sets ``ctx.key``; the pipeline then asks
the cache facade's tiers (memory without awaiting, the lower tiers only on a memory miss) and ``reuse``
applies the bans and the pure reuse rules (RFC 9111 §4, RFC 5861). Its ``Found`` says what comes next: a
response to deliver now (fresh hit, or stale within stale-while-revalidate with a refresh started), or
the entry to revalidate (or None) for COLLAPSE and FETCH.
"""

from __future__ import annotations

from multidict import istr

from proxy.cache.entry import CacheEntry
from proxy.http.cache_control import EMPTY, CacheControl, parse_cache_control, pragma_no_cache
from proxy.http.freshness import ReuseDecision, reuse_decision, within_stale_window
from proxy.http.reasons import CacheResult, FwdReason
from proxy.messages import EdgeResponse
from proxy.pipeline.context import RequestContext
from proxy.pipeline.parts import Parts
from proxy.pipeline.refresh import refresh_in_background
from proxy.pipeline.runtime import BehaviourRuntime

# Field names as multidict ``istr``: a lookup with one skips lower-casing the name, on every hit.
_CACHE_CONTROL, _PRAGMA = istr("Cache-Control"), istr("Pragma")

# LOOKUP's outcome: a response to deliver at once, else the stored entry to revalidate (or None), and the
# request's parsed Cache-Control (read again by the pipeline for only-if-cached and no-store).
Found = tuple[EdgeResponse | None, CacheEntry | None, CacheControl]


def hash_key(ctx: RequestContext, behaviour: BehaviourRuntime) -> str:
    """HASH: the behaviour's key for this request plus what its ``hash`` hooks add (compression's coding
    bucket, whose hook also normalises ``Accept-Encoding`` first, so it runs before the key is built)."""
    suffix = "".join([hook.hash(ctx) for hook in behaviour.hooks.hash]) if behaviour.hooks.hash else ""
    request = ctx.request
    key = behaviour.keys.key(request.host, request.path, request.query, request.headers, request.scheme)
    ctx.key = key + suffix if suffix else key
    return ctx.key


def reuse(
    parts: Parts,
    ctx: RequestContext,
    behaviour: BehaviourRuntime,
    entry: CacheEntry | None,
    miss_reason: FwdReason,
) -> Found:
    """LOOKUP's decision, once the tiers gave ``entry`` (or None, with the reason of the miss): the bans,
    then the pure reuse rules (RFC 9111 §4.2, §5.2; RFC 5861 §3). Synchronous: a memory hit never awaits."""
    request = ctx.request
    cache = parts.cache
    # Only bans created after the entry was stored can touch it (most hits: no ban at all, nothing called).
    if entry is not None and entry.request_time < cache.bans.newest:
        entry = cache.admit_bans(ctx.key or "", entry)
        if entry is None:
            miss_reason = FwdReason.MISS
    headers = request.headers
    cache_control = headers.get(_CACHE_CONTROL)
    request_cc = parse_cache_control(cache_control) if cache_control is not None else EMPTY
    if entry is None:
        ctx.fwd = miss_reason
        return None, None, request_cc
    honour = behaviour.honour_request_cache_control
    age = entry.age(ctx.now)
    decision, reason = reuse_decision(
        entry_age=age,
        ttl=entry.ttl,
        request_cc=request_cc,
        pragma_no_cache=honour
        and _PRAGMA in headers  # most requests have none: skip the list and the parse
        and pragma_no_cache(headers.getall(_PRAGMA, ()), cache_control_present=cache_control is not None),
        no_cache=entry.no_cache,
        must_revalidate=entry.must_revalidate,
        honour_request=honour,
    )
    if decision is ReuseDecision.FRESH:
        ctx.result = CacheResult.HIT
        return parts.deliver.from_entry(ctx, entry, hit=True, age=age), entry, request_cc
    ctx.fwd = reason or FwdReason.STALE
    # RFC 5861 §3: within stale-while-revalidate, serve stale now and refresh in the background.
    if decision is ReuseDecision.STALE and within_stale_window(age, entry.ttl, entry.stale_while_revalidate):
        refresh_in_background(parts, ctx, behaviour, entry)
        ctx.result = CacheResult.STALE
        return parts.deliver.from_entry(ctx, entry, hit=False), entry, request_cc
    return None, entry, request_cc
