"""RECV: route the request to its behaviour and decide whether the edge answers it at once.

Called first for every request. Sets ``ctx.behaviour``; returns the response when the request ends here
(loop detected, a guard's or a hook's verdict, an edge function's answer, a method the behaviour does not
allow), or None to go on to the cache (or straight to the origin for other methods).
"""

from __future__ import annotations

from multidict import CIMultiDict, istr

from proxy.edge.verdicts import REQUEST_ID_HEADER
from proxy.functions import DEVICE_HEADER, classify_device
from proxy.http.headers import via_names
from proxy.http.reasons import BlockReason, SynthReason
from proxy.http.status import reason_phrase
from proxy.messages import EdgeResponse, Verdict
from proxy.pipeline.context import RequestContext
from proxy.pipeline.parts import Parts

_VIA = istr("Via")  # as multidict istr: a lookup with one skips lower-casing the name, on every request


async def recv(parts: Parts, ctx: RequestContext) -> EdgeResponse | None:
    """Run RECV for ``ctx``; the answer when the request goes no further, else None."""
    request = ctx.request
    behaviour = parts.runtime.router.match(request.path)
    ctx.behaviour = behaviour
    if parts.runtime.needs_device:
        # Edge-Viewer-Device: computed once, replacing whatever the viewer sent.
        headers = CIMultiDict(request.headers)
        headers[DEVICE_HEADER] = classify_device(headers.get("User-Agent"))
        request.headers = headers
    via = request.headers.get(_VIA)
    if via is not None and via_names(via, parts.name):
        # This request already went through this edge: answering beats forwarding it in a loop.
        ctx.synth = SynthReason.LOOP
        return parts.deliver.synthetic(ctx, 508, "Loop Detected\n")
    for guard in parts.guards:
        verdict = guard.check(ctx)
        if verdict is not None:
            return _refused(parts, ctx, verdict)
    hooks = behaviour.hooks
    for hook in hooks.recv:
        verdict = hook.recv(ctx)
        if verdict is not None:
            return _refused(parts, ctx, verdict)
    for hook in hooks.viewer_request:
        answer = await hook.viewer_request(ctx)
        if answer is not None:
            ctx.blocked = BlockReason.EDGE_FUNCTION
            return parts.deliver.generated(ctx, answer)
    if ctx.request.method in behaviour.methods:
        return None
    # RFC 9110 §15.5.6: 405 with the methods the behaviour allows.
    ctx.synth = SynthReason.METHOD_NOT_ALLOWED
    return parts.deliver.synthetic(ctx, 405, "Method Not Allowed\n", CIMultiDict({"Allow": behaviour.allow}))


def _refused(parts: Parts, ctx: RequestContext, verdict: Verdict) -> EdgeResponse:
    """The SYNTH answer for a verdict: its body, or the status line's text when it has none and the status
    may carry content (RFC 9110 §15.3.5, §15.4.5: a 204 or 304 never does)."""
    ctx.blocked = verdict.reason
    ctx.request_id = verdict.headers.get(REQUEST_ID_HEADER) if verdict.headers else None
    body = verdict.body
    if not body and verdict.status not in (204, 304):
        body = f"{verdict.status} {reason_phrase(verdict.status)}\n"
    return parts.deliver.synthetic(ctx, verdict.status, body, verdict.headers)
