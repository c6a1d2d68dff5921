"""WebSocket pass-through (behaviour key ``websocket``): a handshake that passed RECV goes to the origin.

Called by the pipeline for a request the front marked ``EdgeRequest.upgrade``. Never looked up nor stored,
never collapsed, sent to the behaviour's first available origin on a new connection (no failover). A 101
comes back with its switched connection (``EdgeResponse.tunnel``) for the front to pipe; any other answer is
passed on.
"""

from __future__ import annotations

from proxy.http.reasons import BlockReason, CacheResult, FwdReason, SynthReason
from proxy.messages import EdgeResponse
from proxy.origin.base import OriginError, OriginResponse
from proxy.pipeline.context import RequestContext
from proxy.pipeline.fetch import origin_request
from proxy.pipeline.parts import Parts
from proxy.pipeline.runtime import BehaviourRuntime
from proxy.pipeline.store import pass_through


async def upgrade(parts: Parts, ctx: RequestContext, behaviour: BehaviourRuntime) -> EdgeResponse:
    """Forward the handshake; the 101 (with its tunnel), the origin's other answer, or a 400/502."""
    ctx.result = CacheResult.BYPASS
    ctx.fwd = FwdReason.BYPASS
    deliver = parts.deliver
    if not behaviour.config.websocket:
        ctx.blocked = BlockReason.WEBSOCKET_DISABLED
        return deliver.synthetic(
            ctx, 400, "Bad Request: WebSocket is not enabled for this path (behaviour websocket: false)\n"
        )
    group = behaviour.group
    member = next(group.candidates(parts.monotonic()), None) if group is not None else None
    open_tunnel = getattr(member[0], "open_tunnel", None) if member is not None else None
    if member is None or open_tunnel is None:
        ctx.synth = SynthReason.ORIGIN_UNREACHABLE
        ctx.result = CacheResult.ERROR
        return deliver.synthetic(ctx, 502, "Bad Gateway: this origin cannot take a WebSocket\n")
    origin, health = member
    ctx.origin = origin.name
    ctx.tried = [origin.name]
    sent = origin_request(parts, ctx, False, None, None)
    sent.upgrade = ctx.request.upgrade
    policies = behaviour.policies
    if policies is not None:
        # rewrite and request_headers apply to the handshake as to any request (edge functions do not:
        # their origin_request event is for requests whose answer can be stored or passed on).
        policies.origin_headers(sent.headers)
        path, _, query = sent.target.partition("?")
        sent.target = policies.origin_target(path, query)
    for name, value in ctx.request.headers.items():
        # RFC 6455 §4.1: the handshake's own fields are end-to-end and needed whatever ``forward`` says.
        if name.lower().startswith("sec-websocket-") and name not in sent.headers:
            sent.headers.add(name, value)
    parts.stats.origin_requests += 1
    try:
        response: OriginResponse = await open_tunnel(sent)
    except OriginError as exc:
        parts.stats.origin_errors += 1
        health.record_failure(parts.monotonic(), reason=str(exc) or type(exc).__name__)
        return deliver.origin_failed(ctx, exc)
    health.record_success(parts.monotonic())
    ctx.fwd_status = response.status
    if response.upgraded is None:
        return pass_through(parts, ctx, response)
    delivered = deliver.from_origin(ctx, response, stream=None, body=b"")
    delivered.tunnel = response.upgraded
    release = response.release

    async def finish(completed: bool) -> None:
        await release()  # closes the origin connection unless the tunnel took it

    delivered.finish = finish
    return delivered
