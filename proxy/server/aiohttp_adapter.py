"""The aiohttp front: turns aiohttp's low-level requests into ``EdgeRequest``s and writes ``EdgeResponse``s.

Built on ``aiohttp.web.Server`` (no Application, router or middlewares: NOTES measured those as pure cost).
``make_handler(pipeline)`` returns the coroutine aiohttp calls per request. The adapter owns framing:
bodies are never written for HEAD/204/304, a body the origin cut short aborts the viewer connection (the
viewer sees a truncated response, never a short "complete" one), and a viewer that goes away stops the
stream. The LOG phase runs after the last byte was written.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.web_request import BaseRequest

from proxy.origin.base import OriginError
from proxy.pipeline.context import RequestContext
from proxy.pipeline.messages import EdgeRequest, EdgeResponse
from proxy.pipeline.pipeline import Pipeline

log = logging.getLogger("edgeproxy")

Handler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]


async def _request_body(request: BaseRequest) -> AsyncIterator[bytes]:
    content = request.content
    while True:
        chunk = await content.readany()
        if not chunk:
            return
        yield chunk


def to_edge_request(request: BaseRequest, scheme: str) -> EdgeRequest:
    """The pipeline's view of an aiohttp request (raw path and query, no decoding)."""
    path, _, query = request.raw_path.partition("?")
    headers = request.headers
    has_body = request.body_exists
    return EdgeRequest(
        method=request.method,
        path=path,
        query=query,
        headers=headers,
        client_ip=request.remote or "",
        host=headers.get("Host", ""),
        scheme=scheme,
        version=(request.version.major, request.version.minor),
        body=_request_body(request) if has_body else None,
        content_length=request.content_length,
    )


def make_handler(pipeline: Pipeline, scheme: str = "http") -> Handler:
    """The per-request coroutine for ``web.Server``."""

    async def handle(request: BaseRequest) -> web.StreamResponse:
        edge_request = to_edge_request(request, scheme)
        try:
            ctx, response = await pipeline.handle(edge_request)
        except Exception:
            log.exception("unhandled error in the pipeline for %s %s", request.method, request.path)
            return web.Response(status=500, text="Internal Server Error\n", headers={"Server": "edgeproxy"})
        return await write_response(request, pipeline, ctx, response)

    return handle


async def write_response(
    request: BaseRequest, pipeline: Pipeline, ctx: RequestContext, response: EdgeResponse
) -> web.StreamResponse:
    """Write ``response`` to the viewer, then run the LOG phase."""
    status = response.status
    if response.stream is None and not isinstance(response.body, list):
        out = web.Response(status=status, headers=response.headers)
        sent = 0
        if response.no_body:
            if response.content_length is not None:
                out.headers["Content-Length"] = str(response.content_length)
        else:
            body = response.body
            assert isinstance(body, bytes | memoryview)
            out.body = body
            sent = len(body)
        completed = True
        try:
            await out.prepare(request)
            await out.write_eof()
        except ConnectionError:
            completed = False
        pipeline.finish(ctx, status, sent, completed)
        return out
    return await _write_stream(request, pipeline, ctx, response)


async def _write_stream(
    request: BaseRequest, pipeline: Pipeline, ctx: RequestContext, response: EdgeResponse
) -> web.StreamResponse:
    out = web.StreamResponse(status=response.status, headers=response.headers)
    if response.content_length is not None:
        out.content_length = response.content_length
    sent = 0
    completed = False
    stream = response.stream
    try:
        await out.prepare(request)
        if not response.no_body:
            if stream is not None:
                async for chunk in stream:
                    await out.write(chunk)
                    sent += len(chunk)
            else:
                for part in response.body:
                    assert isinstance(part, bytes | memoryview)
                    await out.write(part)
                    sent += len(part)
        await out.write_eof()
        completed = True
    except OriginError as exc:
        # The origin failed mid-body: cut the viewer's connection so the truncation is visible.
        log.warning("origin failed mid-body for %s: %s", request.path, exc)
        if request.transport is not None:
            request.transport.abort()
    except ConnectionError:
        pass  # the viewer went away
    finally:
        if stream is not None and hasattr(stream, "aclose"):
            await stream.aclose()
        await response.finish(completed)
        pipeline.finish(ctx, response.status, sent, completed)
    return out
