"""Invalidation by unsafe methods (RFC 9111 §4.4): a non-error answer to POST, PUT, DELETE … removes the
stored responses for the target URI and for same-origin ``Location`` / ``Content-Location`` URIs.

Called by the pipeline after FETCH for every request that is not a cacheable method.
"""

from __future__ import annotations

from proxy.edge.compression import KEY_SUFFIXES
from proxy.http.invalidation import invalidation_targets
from proxy.messages import EdgeResponse
from proxy.pipeline.context import RequestContext
from proxy.pipeline.parts import Parts


def invalidate(parts: Parts, ctx: RequestContext, response: EdgeResponse) -> None:
    """Delete, from every tier, the keys the origin's answer to an unsafe method invalidates."""
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
        behaviour = parts.runtime.router.match(target.path)
        base = behaviour.keys.key(target.host, target.path, target.query, request.headers, request.scheme)
        # A compressing behaviour keeps one entry per coding bucket under suffixed keys.
        for key in [base + suffix for suffix in KEY_SUFFIXES] if behaviour.config.compress else [base]:
            parts.cache.delete(key)
