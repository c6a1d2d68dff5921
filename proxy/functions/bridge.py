"""Glue between the pipeline's messages and the function API: one call per event.

The pipeline holds a ``FunctionSet`` per behaviour (None when the behaviour has no functions) and, at each
event whose function is configured (``functions.has(event)``), awaits the matching ``run_*`` call here.
Each builds the API object from the pipeline's message, calls the function and applies the result back,
so the pipeline never touches ``ViewerRequest`` or ``Response`` itself:

- RECV: ``run_viewer_request(functions, request)`` returns the request to go on with (the same one or a
  changed copy: the key is built from it) or a ``Response``; ``edge_response(response, method=...)`` turns
  that into the ``EdgeResponse`` to answer with (not stored).
- FETCH: ``run_origin_request(functions, viewer, origin_request)`` before each ``origin.fetch`` returns the
  ``OriginRequest`` (changed in place) or a ``Response``; ``as_origin_response(response)`` turns that into
  an ``OriginResponse`` that stands in for the origin's (stored by the usual rules).
- STORE: ``run_origin_response(functions, viewer, origin_response, max_body=...)`` before the storability
  decision returns the ``OriginResponse`` to store and deliver (the same object, changed in place).
- DELIVER: ``run_viewer_response(functions, viewer, edge_response)`` on the response about to be written
  returns it changed in place (status and headers only).

Each raises ``FunctionError`` when the function fails (already logged): answer 502. The ``run_*`` calls
have then released what they were given (the origin response, the viewer response's stream).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.functions.api import Event, RequestInfo, Response, ViewerRequest
from proxy.functions.loader import FunctionError, FunctionSet
from proxy.messages import EdgeRequest, EdgeResponse
from proxy.origin.base import OriginRequest, OriginResponse

__all__ = [
    "as_origin_response",
    "edge_response",
    "request_info",
    "run_origin_request",
    "run_origin_response",
    "run_viewer_request",
    "run_viewer_response",
]

# Framing and connection fields: the edge sets these itself for the body it sends.
_FRAMING = ("Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Trailer", "Upgrade")
_NO_BODY_STATUSES = frozenset((204, 304))


def request_info(request: EdgeRequest, event: Event) -> RequestInfo:
    """The read-only view of ``request`` handed to the response events (no copy of the headers)."""
    headers = request.headers
    view = headers if isinstance(headers, CIMultiDictProxy) else CIMultiDictProxy(headers)
    return RequestInfo(
        request.method,
        request.path,
        request.query,
        view,
        request.client_ip,
        request.host,
        request.scheme,
        event,
    )


async def run_viewer_request(functions: FunctionSet, request: EdgeRequest) -> EdgeRequest | Response:
    """RECV, after the guards and before HASH. Returns the request to go on with, a copy carrying the
    function's path, query and headers (the viewer's ``request`` is left as it was, for the access log),
    or the ``Response`` to answer with."""
    viewer = ViewerRequest(
        request.method,
        request.path,
        request.query,
        CIMultiDict(request.headers),
        request.client_ip,
        request.host,
        request.scheme,
        Event.VIEWER_REQUEST,
    )
    answer = await functions.viewer_request(viewer)
    if answer is not None:
        return answer
    return dataclasses.replace(request, path=viewer.path, query=viewer.query, headers=viewer.headers)


async def run_origin_request(
    functions: FunctionSet, viewer: EdgeRequest, origin_request: OriginRequest
) -> OriginRequest | Response:
    """FETCH, before each ``origin.fetch`` (again on failover). Returns ``origin_request`` with the
    function's path, query and headers (changed in place), or the ``Response`` that stands in for the
    origin's (see ``as_origin_response``)."""
    path, _, query = origin_request.target.partition("?")
    request = ViewerRequest(
        origin_request.method,
        path,
        query,
        origin_request.headers,
        viewer.client_ip,
        viewer.host,
        viewer.scheme,
        Event.ORIGIN_REQUEST,
    )
    answer = await functions.origin_request(request)
    if answer is not None:
        return answer
    origin_request.target = request.target
    return origin_request


async def run_origin_response(
    functions: FunctionSet, viewer: EdgeRequest, response: OriginResponse, *, max_body: int
) -> OriginResponse:
    """STORE, on an origin response (not on a 304 that freshens a stored entry), before the storability
    decision. Reads the body whole when it is at most ``max_body`` bytes, so the function sees it; a larger
    one streams on untouched unless the function replaces it. Returns ``response`` changed in place: status,
    headers, and a body that replays what was read (or the function's body, ``content_length`` set).

    Raises ``OriginError`` when the origin fails while the body is read, ``FunctionError`` when the
    function fails; ``response`` is released in both cases.
    """
    parts: list[bytes] = []
    complete = False
    chunks = aiter(response.body)
    try:
        if response.content_length is None or response.content_length <= max_body:
            size = 0
            while size <= max_body:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    complete = True
                    break
                parts.append(chunk)
                size += len(chunk)
        body = b"".join(parts) if complete else None
        answer = Response.for_event(Event.ORIGIN_RESPONSE, response.status, response.headers, body)
        await functions.origin_response(request_info(viewer, Event.ORIGIN_RESPONSE), answer)
    except BaseException:
        await response.release()
        raise
    response.status = answer.status
    if answer.body_replaced or complete:
        new_body = answer.body or b""
        if not complete:
            await response.release()  # the rest of the origin's body is not wanted
            response.release = _nothing
        _drop_framing(response.headers)
        response.body = _replay(new_body)
        response.content_length = len(new_body)
    elif parts:
        response.body = _chain(parts, chunks)
    return response


async def run_viewer_response(
    functions: FunctionSet, viewer: EdgeRequest, response: EdgeResponse
) -> EdgeResponse:
    """DELIVER, on the response about to be written (hits, misses, the edge's own answers). Returns
    ``response`` with the function's status and headers (changed in place; the body is not changed). A
    new status of 204 or 304 sends no body. On ``FunctionError`` the response's stream was closed and
    its ``finish(False)`` awaited."""
    body: bytes | memoryview | Sequence[bytes | memoryview] | None
    if response.no_body:
        body = b""
    elif response.stream is not None:
        body = None
    else:
        body = response.body
    answer = Response.for_event(Event.VIEWER_RESPONSE, response.status, response.headers, body)
    try:
        await functions.viewer_response(request_info(viewer, Event.VIEWER_RESPONSE), answer)
    except FunctionError:
        stream = response.stream
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
        await response.finish(False)
        raise
    if answer.status != response.status:
        response.status = answer.status
        if answer.status in _NO_BODY_STATUSES:
            response.no_body = True
    return response


def edge_response(response: Response, *, method: str) -> EdgeResponse:
    """The ``EdgeResponse`` for a ``Response`` a ``viewer_request`` function returned (framing fields
    dropped; no body for HEAD, 204 and 304). The pipeline adds its own fields (Via, Cache-Status, …)
    as for any answer of the edge, and never stores it."""
    headers = CIMultiDict(response.headers)
    _drop_framing(headers)
    body = response.body or b""
    no_body = method == "HEAD" or response.status in _NO_BODY_STATUSES
    return EdgeResponse(
        status=response.status, headers=headers, body=body, content_length=len(body), no_body=no_body
    )


def as_origin_response(response: Response) -> OriginResponse:
    """An ``OriginResponse`` for a ``Response`` an ``origin_request`` function returned: it stands in for
    the origin's (stored by the usual rules; ``origin_response`` is not called on it)."""
    headers = CIMultiDict(response.headers)
    _drop_framing(headers)
    body = response.body or b""
    return OriginResponse(
        status=response.status, headers=headers, body=_replay(body), content_length=len(body)
    )


def _drop_framing(headers: CIMultiDict[str]) -> None:
    for name in _FRAMING:
        headers.popall(name, None)


async def _nothing() -> None:
    return None


async def _replay(body: bytes) -> AsyncIterator[bytes]:
    if body:
        yield body


async def _chain(parts: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    async for chunk in rest:
        yield chunk
