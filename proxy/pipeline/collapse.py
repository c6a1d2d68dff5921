"""COLLAPSE: one origin fetch per key; concurrent requests for it wait for that fetch's entry.

Called for a cacheable request that must go to the origin (a miss, or a stale entry to revalidate). The
worker's ``FetchLocks`` are asked in order (``proxy.cache.locks``: in-process collapsing, then the cluster
shield): the answer is either an entry another request fetched meanwhile, served as a collapsed hit, or
the lease this request holds while it fetches. ``settle`` releases the lease once STORE is done.
"""

from __future__ import annotations

from proxy.cache.entry import CacheEntry
from proxy.cache.locks import FetchLock, Find, Lease
from proxy.http.reasons import CacheResult, NotStoredReason
from proxy.messages import EdgeResponse
from proxy.pipeline.context import RequestContext
from proxy.pipeline.parts import Parts

# Not-stored reasons that say the response itself is uncacheable: later requests skip the collapse queue.
UNCACHEABLE = frozenset(
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


async def collapse(parts: Parts, ctx: RequestContext) -> EdgeResponse | None:
    """Wait for another request's fetch of this key and serve its entry, or take the lease to fetch
    (``ctx.lease``); None means: fetch now."""
    key = ctx.key
    assert key is not None
    if parts.locks.bypassed(key):
        return None  # collapsing off, or a key known to be uncacheable (hit-for-miss)

    def find(lock: FetchLock) -> Find:
        async def usable() -> CacheEntry | None:
            # The holder's entry, looked up again as a fresh request (it may be another Vary variant).
            ctx.now = parts.clock()
            cache = parts.cache
            if lock.where == "memory":
                entry, _ = cache.lookup_memory(key, ctx.request.headers)
            else:
                entry, ctx.tier = await cache.lookup_lower(key, ctx.request.headers)
            return entry if entry is not None and entry.is_fresh(ctx.now) else None

        return usable

    entry, ctx.lease = await parts.locks.enter(key, find)
    if entry is None:
        return None
    ctx.collapsed = True
    ctx.result = CacheResult.HIT
    ctx.fwd_status = entry.status
    return parts.deliver.from_entry(ctx, entry, hit=False)


def settle(ctx: RequestContext) -> None:
    """Release the requests collapsed behind this one, with the entry STORE stored (or none: they fetch
    on their own, and the key is remembered as uncacheable when the response said so). Called when the
    fetch is over: by the pipeline, or by a streaming fill once its body is complete."""
    lease, ctx.lease = ctx.lease, None
    release(lease, ctx)


def release(lease: Lease | None, ctx: RequestContext) -> None:
    """``settle`` for a lease held apart from its context (a streaming fill owns its request's lease)."""
    if lease is not None:
        lease.settle(uncacheable=lease.entry is None and ctx.not_stored in UNCACHEABLE)
