"""The hook surface: every extension of a behaviour is a ``Hook``, called once per phase in one loop.

A hook has one method per step of a request's trip, each with a do-nothing default (Pingora's filters,
mitmproxy's addons). The built-in extensions are hooks like any other: header policies, redirects and CORS
(``PolicyHook``), edge functions (``FunctionHook``, whose public API in docs/edge-functions.md is unchanged)
and compression (``CompressionHook``). Firewall guards (``proxy.messages.Guard``) are the RECV step of the
hooks every behaviour shares: the same ``recv`` signature.

``BehaviourHooks`` holds, per step, only the hooks that act on it (a method left at its default, or a step a
hook declares it does not take, costs a request nothing): a behaviour without extensions runs empty loops.
The steps, in the order of the trip:

==================  ======  =====================================================================
step                phase   what a hook may do
==================  ======  =====================================================================
``recv``            RECV    answer at once (a ``Verdict``: redirect, CORS preflight, 403 …)
``viewer_request``  RECV    change the request (the key is built from it) or answer it
``hash``            HASH    add to the cache key (compression: one entry per coding bucket)
``origin_request``  FETCH   change the origin request, or answer for the origin (stored as usual)
``origin_response`` FETCH   change the origin's response before STORE (what is changed is cached)
``deliver``         DELIVER change the viewer's response fields (per viewer, never stored)
``viewer_response`` DELIVER change the viewer's response (status, fields), after the cache
==================  ======  =====================================================================

An edge function that fails raises ``FunctionError`` out of its step; ``Pipeline.handle`` answers every
such failure in one place (502, or the behaviour's error page for 502).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Protocol

from multidict import CIMultiDict

from proxy.edge.compression import MAX_SIZE as COMPRESS_MAX_SIZE
from proxy.edge.compression import (
    add_vary_accept_encoding,
    compress,
    compressed_headers,
    key_suffix,
    negotiate,
    would_compress,
)
from proxy.edge.policies import BehaviourPolicies
from proxy.functions import Event, FunctionSet
from proxy.functions import Response as FunctionResponse
from proxy.functions.bridge import (
    as_origin_response,
    edge_response,
    run_origin_request,
    run_origin_response,
    run_viewer_request,
    run_viewer_response,
)
from proxy.http.reasons import NotStoredReason
from proxy.messages import EdgeRequest, EdgeResponse, GuardInput, Verdict
from proxy.origin.base import OriginError, OriginProtocolError, OriginRequest, OriginResponse

STEPS = (
    "recv",
    "viewer_request",
    "hash",
    "origin_request",
    "origin_response",
    "deliver",
    "viewer_response",
)
_COMPRESS_IN_THREAD = 256 * 1024  # bodies above this are compressed off the event loop


class HookInput(Protocol):
    """What a hook reads and writes of a request (the pipeline's ``RequestContext`` is one)."""

    request: EdgeRequest  # the viewer request; ``viewer_request`` may replace it
    fill: bool  # the origin request fills the cache
    encoding: str  # the coding bucket (set by compression's ``hash``)
    not_stored: NotStoredReason | None  # why the response will not be stored


class Hook:
    """One extension of a behaviour. Override the steps it acts on; the others do nothing."""

    def takes(self, step: str) -> bool:
        """Whether this hook acts on ``step``: by default, when it overrides the step's method. Asked once
        per behaviour, when the runtime is built."""
        return getattr(type(self), step) is not getattr(Hook, step)

    def recv(self, ctx: GuardInput) -> Verdict | None:
        """RECV, before the cache: a Verdict answers the request at once (not stored)."""
        return None

    async def viewer_request(self, ctx: HookInput) -> EdgeResponse | None:
        """RECV, after ``recv``: may replace ``ctx.request``; a response answers the request (not stored)."""
        return None

    def hash(self, ctx: HookInput) -> str:
        """HASH: text appended to the behaviour's cache key ("" adds nothing)."""
        return ""

    async def origin_request(self, ctx: HookInput, request: OriginRequest) -> OriginResponse | None:
        """FETCH, before each origin is tried: may change ``request`` in place; a response stands in for the
        origin's (no origin is contacted; it is stored by the usual rules)."""
        return None

    async def origin_response(
        self, ctx: HookInput, response: OriginResponse, *, revalidation: bool, generated: bool
    ) -> OriginResponse:
        """FETCH, after the origin answered, before STORE: the response to store and deliver.
        ``revalidation``: a 304 to the edge's own conditional request; ``generated``: made by an
        ``origin_request`` step, not by an origin. Raising ``OriginError`` answers 502/504."""
        return response

    def deliver(self, request: EdgeRequest, headers: CIMultiDict[str]) -> None:
        """DELIVER: change the fields of the response about to be written (per viewer, never stored)."""

    async def viewer_response(self, ctx: HookInput, response: EdgeResponse) -> EdgeResponse:
        """DELIVER, last: the response the viewer gets (status and fields; never stored)."""
        return response


class PolicyHook(Hook):
    """The declarative policies of a behaviour (``proxy.edge.policies``): the HTTPS rule, redirects and
    CORS preflights in RECV, rewrite and ``request_headers`` in FETCH, ``response_headers`` and CORS fields
    in DELIVER."""

    def __init__(self, policies: BehaviourPolicies) -> None:
        self.policies = policies

    def takes(self, step: str) -> bool:
        policies = self.policies
        if step == "origin_request":
            return bool(policies.rewrite or policies.request_set or policies.request_remove)
        if step == "deliver":
            return policies.touches_response
        return step == "recv"

    def recv(self, ctx: GuardInput) -> Verdict | None:
        return self.policies.on_recv(ctx.request)

    async def origin_request(self, ctx: HookInput, request: OriginRequest) -> OriginResponse | None:
        self.policies.origin_headers(request.headers)
        path, _, query = request.target.partition("?")
        request.target = self.policies.origin_target(path, query)
        return None

    def deliver(self, request: EdgeRequest, headers: CIMultiDict[str]) -> None:
        self.policies.on_deliver(request, headers)


class FunctionHook(Hook):
    """A behaviour's edge functions (``proxy.functions``) at their four events."""

    _EVENTS = {
        "viewer_request": Event.VIEWER_REQUEST,
        "origin_request": Event.ORIGIN_REQUEST,
        "origin_response": Event.ORIGIN_RESPONSE,
        "viewer_response": Event.VIEWER_RESPONSE,
    }

    def __init__(self, functions: FunctionSet, *, max_body: int) -> None:
        self.functions = functions
        self.max_body = max_body  # the largest origin body an origin_response function may read

    def takes(self, step: str) -> bool:
        event = self._EVENTS.get(step)
        return event is not None and self.functions.has(event)

    async def viewer_request(self, ctx: HookInput) -> EdgeResponse | None:
        step = await run_viewer_request(self.functions, ctx.request)
        if isinstance(step, FunctionResponse):
            return edge_response(step, method=ctx.request.method)
        ctx.request = step
        return None

    async def origin_request(self, ctx: HookInput, request: OriginRequest) -> OriginResponse | None:
        sent = await run_origin_request(self.functions, ctx.request, request)
        if isinstance(sent, FunctionResponse):
            return as_origin_response(sent)
        return None

    async def origin_response(
        self, ctx: HookInput, response: OriginResponse, *, revalidation: bool, generated: bool
    ) -> OriginResponse:
        if generated or revalidation:
            return response
        return await run_origin_response(self.functions, ctx.request, response, max_body=self.max_body)

    async def viewer_response(self, ctx: HookInput, response: EdgeResponse) -> EdgeResponse:
        if response.tunnel is not None:
            return response  # a switched connection is relayed as the origin sent it
        return await run_viewer_response(self.functions, ctx.request, response)


class CompressionHook(Hook):
    """``compress: true``: one cache entry per coding bucket (br, gzip, identity), and the bucket's variant
    compressed here when the origin did not (gzip or br for compressible types within size bounds). The
    compressed bytes are what is stored; ranges then address them (RFC 9110 §14.1.1)."""

    def hash(self, ctx: HookInput) -> str:
        # One bucket per coding: the key holds at most one of br, gzip, identity, and the fill asks the
        # origin with exactly that coding.
        request = ctx.request
        ctx.encoding = negotiate(request.headers)
        headers = CIMultiDict(request.headers)
        headers["Accept-Encoding"] = ctx.encoding
        request.headers = headers
        return key_suffix(ctx.encoding)

    async def origin_response(
        self, ctx: HookInput, response: OriginResponse, *, revalidation: bool, generated: bool
    ) -> OriginResponse:
        if not ctx.fill or revalidation:
            return response  # passed through unchanged; a 304 freshens the entry already compressed
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
            whole = await read_all(response, COMPRESS_MAX_SIZE)
        except OriginError:
            ctx.not_stored = NotStoredReason.INCOMPLETE
            raise
        finally:
            await response.release()
        if whole is None:
            ctx.not_stored = NotStoredReason.INCOMPLETE
            raise OriginProtocolError("the origin sent more than its Content-Length")
        if len(whole) > _COMPRESS_IN_THREAD:
            body = await asyncio.to_thread(compress, whole, ctx.encoding)
        else:
            body = compress(whole, ctx.encoding)
        compressed_headers(headers, ctx.encoding, len(body))
        return OriginResponse(
            status=response.status,
            headers=headers,
            body=replay(body),
            content_length=len(body),
            reason=response.reason,
        )


class BehaviourHooks:
    """A behaviour's hooks, per step, in order (policies, then functions, then compression). Built once
    per behaviour with the runtime."""

    __slots__ = (*STEPS, "hooks", "shapes_response")

    shapes_response: bool
    recv: tuple[Hook, ...]
    viewer_request: tuple[Hook, ...]
    hash: tuple[Hook, ...]
    origin_request: tuple[Hook, ...]
    origin_response: tuple[Hook, ...]
    deliver: tuple[Hook, ...]
    viewer_response: tuple[Hook, ...]

    def __init__(self, hooks: tuple[Hook, ...]) -> None:
        self.hooks = hooks
        for step in STEPS:
            setattr(self, step, tuple(hook for hook in hooks if hook.takes(step)))
        # Whether a step changes the viewer's response after the cache (the hit fast path then steps aside:
        # the response's fields must exist as a multidict for the hooks to change).
        self.shapes_response = bool(self.deliver or self.viewer_response)

    @classmethod
    def of(
        cls,
        policies: BehaviourPolicies | None,
        functions: FunctionSet | None,
        *,
        compress: bool,
        max_body: int,
    ) -> BehaviourHooks:
        """The hooks of one behaviour from its compiled policies, functions and ``compress`` key."""
        hooks: list[Hook] = []
        if policies is not None:
            hooks.append(PolicyHook(policies))
        if functions is not None:
            hooks.append(FunctionHook(functions, max_body=max_body))
        if compress:
            hooks.append(CompressionHook())
        return cls(tuple(hooks))


async def replay(body: bytes) -> AsyncIterator[bytes]:
    """A body already in memory as the one-chunk stream an ``OriginResponse`` carries."""
    if body:
        yield body


async def read_all(response: OriginResponse, limit: int) -> bytes | None:
    """The whole body of an origin response, or None when it grows beyond ``limit``."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.body:
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
