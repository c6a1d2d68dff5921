"""Background refresh (RFC 5861 §3 stale-while-revalidate; Varnish's grace): LOOKUP serves a stale entry
at once and starts one refresh of its key, owned by the worker's ``Background`` supervisor."""

from __future__ import annotations

import time

from proxy.cache.entry import CacheEntry
from proxy.functions import FunctionError
from proxy.http.reasons import FwdReason
from proxy.messages import EdgeRequest
from proxy.origin.base import OriginError
from proxy.pipeline.collapse import settle
from proxy.pipeline.context import RequestContext
from proxy.pipeline.fetch import fetch
from proxy.pipeline.parts import Parts
from proxy.pipeline.runtime import BehaviourRuntime


def refresh_in_background(
    parts: Parts, ctx: RequestContext, behaviour: BehaviourRuntime, entry: CacheEntry
) -> None:
    """Start the one background refresh of a stale entry (unless a fetch of the key already runs)."""
    assert ctx.key is not None
    lease = parts.locks.lead(ctx.key)
    if lease is None:
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
    refresh.lease = lease
    refresh.fwd = FwdReason.STALE
    if not parts.background.spawn(_refresh(parts, refresh, behaviour, entry), name=f"refresh {ctx.key}"):
        lease.settle(uncacheable=False)


async def _refresh(parts: Parts, ctx: RequestContext, behaviour: BehaviourRuntime, entry: CacheEntry) -> None:
    try:
        response = await fetch(parts, ctx, behaviour, fill=True, entry=entry)
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
    except FunctionError:
        pass  # already logged, naming the function; the stale entry stays until a refresh succeeds
    finally:
        settle(ctx)
