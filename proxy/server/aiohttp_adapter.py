"""The aiohttp front: turns aiohttp's low-level requests into ``EdgeRequest``s and writes ``EdgeResponse``s.

Built on ``aiohttp.web.Server`` (no Application, router or middlewares: NOTES measured those as pure cost).
``make_handler(pipeline)`` returns the coroutine aiohttp calls per request. The adapter owns framing:
bodies are never written for HEAD/204/304, a body the origin cut short aborts the viewer connection (the
viewer sees a truncated response, never a short "complete" one), and a viewer that goes away stops the
stream. The LOG phase runs after the last byte was written.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong
from aiohttp.http_parser import HttpRequestParser, RawRequestMessage
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.edge.hardening import Answer, RequestPolicy, Target
from proxy.edge.verdicts import REQUEST_ID_HEADER, new_request_id
from proxy.http.headers import HOP_BY_HOP, parse_list_header
from proxy.origin.base import OriginError
from proxy.pipeline.context import RequestContext
from proxy.pipeline.messages import EdgeRequest, EdgeResponse
from proxy.pipeline.pipeline import Pipeline
from proxy.settings import ServerConfig

log = logging.getLogger("edgeproxy")

Handler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]


# ---- status lines: always HTTP/1.1 ----


async def _write_http11_head(response: web.StreamResponse) -> None:
    """Write the status line and fields of ``response`` with ``HTTP/1.1`` as the version, whatever the
    viewer's request line said: aiohttp echoes the request's version (``HTTP/2.0 505``, ``HTTP/0.9 505``,
    ``HTTP/1.0 400`` for a request its parser refused). RFC 9110 §2.5: a server sends the highest version it
    conforms to whose major version is not above the request's, so a 1.0 viewer gets ``HTTP/1.1`` too; its
    framing stays 1.0 (aiohttp never chunks for it), and ``Connection: close`` is then said explicitly."""
    request = response._req
    writer = response._payload_writer
    assert request is not None and writer is not None
    headers = response._headers
    if not response._keep_alive and "Connection" not in headers:
        headers["Connection"] = "close"
    await writer.write_headers(f"HTTP/1.1 {response.status} {response.reason}", headers)
    if response._send_headers_immediately:
        writer.send_headers()


class Http11StreamResponse(web.StreamResponse):
    """``web.StreamResponse`` whose status line always says ``HTTP/1.1``."""

    async def _write_headers(self) -> None:
        await _write_http11_head(self)


class Http11Response(web.Response):
    """``web.Response`` whose status line always says ``HTTP/1.1``."""

    async def _write_headers(self) -> None:
        await _write_http11_head(self)


# ---- request hardening (proxy.edge.hardening): screening, body limits, parse errors, connections ----
_BODY_TOO_LARGE = Answer(413, "body-too-large")
_BODY_TIMEOUT = Answer(408, "client-timeout")


class ViewerBodyError(Exception):
    """The viewer's request body broke a limit (size or ``client_timeout``) while it was being read."""


class _BodyMeter:
    """Counts one request's body bytes; ``refused`` is the answer owed once a limit was broken."""

    __slots__ = ("refused", "size")

    def __init__(self) -> None:
        self.size = 0
        self.refused: Answer | None = None


async def _request_body(
    request: BaseRequest, policy: RequestPolicy | None = None, meter: _BodyMeter | None = None
) -> AsyncIterator[bytes]:
    content = request.content
    while True:
        if policy is None or meter is None:
            chunk = await content.readany()
        else:
            try:
                async with asyncio.timeout(policy.client_timeout):
                    chunk = await content.readany()
            except TimeoutError:
                meter.refused = _BODY_TIMEOUT
                raise ViewerBodyError("the viewer sent no body data for client_timeout") from None
            meter.size += len(chunk)
            if policy.body_too_large(meter.size):
                meter.refused = _BODY_TOO_LARGE
                raise ViewerBodyError("the request body is larger than max_body_bytes")
        if not chunk:
            return
        yield chunk


def to_edge_request(
    request: BaseRequest,
    scheme: str,
    target: Target | None = None,
    policy: RequestPolicy | None = None,
    meter: _BodyMeter | None = None,
) -> EdgeRequest:
    """The pipeline's view of an aiohttp request (raw path and query, no decoding); ``target`` is what
    ``RequestPolicy.screen`` made of the request target (absolute-form becomes origin-form)."""
    headers = request.headers
    if target is None:
        path, _, query = request.raw_path.partition("?")
        host = headers.get("Host", "")
    else:
        path, query, host = target.path, target.query, target.host
    has_body = request.body_exists
    return EdgeRequest(
        method=request.method,
        path=path,
        query=query,
        headers=headers,
        client_ip=request.remote or "",
        host=host,
        scheme=scheme,
        version=(request.version.major, request.version.minor),
        body=_request_body(request, policy, meter) if has_body else None,
        content_length=request.content_length,
        on_interim=_interim_relay(request) if request.version >= (1, 1) else None,
    )


def _interim_relay(request: BaseRequest) -> Callable[[int, CIMultiDictProxy[str]], None]:
    """A callback that writes a 1xx interim response (103 Early Hints) to the viewer at once, before the
    final response (RFC 9110 §15.2: HTTP/1.0 viewers never get one). Hop-by-hop fields are not relayed."""

    def relay(status: int, headers: CIMultiDictProxy[str]) -> None:
        transport = request.transport
        if transport is None or transport.is_closing() or request.writer.output_size > 0:
            return  # the final response has started (or the viewer left): too late for a hint
        connection_tokens = {token.lower() for token in parse_list_header(headers.getall("Connection", ()))}
        lines = [f"HTTP/1.1 {status} {_phrase(status)}\r\n"]
        for name, value in headers.items():
            lowered = name.lower()
            if lowered in HOP_BY_HOP or lowered in connection_tokens:
                continue
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        transport.write("".join(lines).encode("utf-8", "surrogateescape"))

    return relay


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Informational"


def make_handler(pipeline: Pipeline, scheme: str = "http", policy: RequestPolicy | None = None) -> Handler:
    """The per-request coroutine for ``web.Server``; ``policy`` (default: the default limits, no host
    list) screens every request before the pipeline sees it."""
    active = policy or RequestPolicy()
    screen = active.screen

    async def handle(request: BaseRequest) -> web.StreamResponse:
        version = request.version
        screened = screen(
            request.method,
            request.raw_path,
            (version.major, version.minor),
            request.headers,
            request.raw_headers,
            request.content_length,
        )
        if isinstance(screened, Answer):
            return await _answer(request, pipeline, to_edge_request(request, scheme), screened)
        meter = _BodyMeter() if request.body_exists else None
        edge_request = to_edge_request(request, scheme, screened, active, meter)
        try:
            ctx, response = await pipeline.handle(edge_request)
        except Exception:
            if meter is not None and meter.refused is not None:
                return await _answer(request, pipeline, edge_request, meter.refused)
            log.exception("unhandled error in the pipeline for %s %s", request.method, request.path)
            return Http11Response(status=500, text="Internal Server Error\n", headers={"Server": "edgeproxy"})
        if meter is not None and meter.refused is not None:
            # The viewer's body broke a limit while the pipeline forwarded it: answer that, not the
            # origin failure it caused.
            if response.stream is not None and hasattr(response.stream, "aclose"):
                await response.stream.aclose()
            await response.finish(False)
            return await _answer(request, pipeline, edge_request, meter.refused, ctx)
        return await write_response(request, pipeline, ctx, response)

    return handle


async def _answer(
    request: BaseRequest,
    pipeline: Pipeline,
    edge_request: EdgeRequest,
    answer: Answer,
    ctx: RequestContext | None = None,
) -> web.StreamResponse:
    """Write an ``Answer`` of the request screening (400, 405, 413, 421, 431 …), then log it."""
    if ctx is None:
        ctx = RequestContext(edge_request, time.time(), time.perf_counter())
    ctx.blocked = answer.reason
    extra: CIMultiDict[str] = CIMultiDict(answer.headers)
    text = ""
    if answer.status >= 400:
        request_id = new_request_id()
        extra[REQUEST_ID_HEADER] = request_id
        text = f"{answer.status} {HTTPStatus(answer.status).phrase}\nrequest id: {request_id}\n"
    response = pipeline.deliver.synthetic(ctx, answer.status, text, extra)
    out = Http11Response(status=answer.status, headers=response.headers)
    sent = 0
    if not response.no_body:
        out.body = text.encode()
        sent = len(out.body)
    if answer.close:
        out.force_close()
    completed = True
    try:
        await out.prepare(request)
        await out.write_eof()
    except ConnectionError:
        completed = False
    pipeline.finish(ctx, answer.status, sent, completed)
    return out


def _parse_error_status(status: int, exc: BaseException | None) -> int:
    """431 for request heads over aiohttp's line, field or header-count limits; 505 for a well-formed
    request line naming a version aiohttp's C parser does not take (``HTTP/3.1``, ``HTTP/1.2``: the same
    answer ``RequestPolicy.screen`` gives the versions the parser lets through); else ``status``."""
    if isinstance(exc, LineTooLong) or (
        isinstance(exc, BadHttpMessage) and exc.message.startswith("Too many headers")
    ):
        return 431
    if isinstance(exc, BadStatusLine) and "Invalid HTTP version" in exc.message:
        return 505
    return status


class EdgeRequestHandler(RequestHandler):
    """aiohttp's connection handler with the edge's own error answers: a request aiohttp's parser refused
    gets a short body naming only the status (never the parser's message, which echoes the viewer's
    bytes, and never a traceback), ``Server: edgeproxy`` (no versions), and the connection closed.

    Pipelined requests are parsed one at a time, and parsing stops after a request that ends the
    connection (HTTP/1.0 without keep-alive, ``Connection: close``; RFC 9112 §9.6: nothing after it is
    processed). aiohttp's C parser otherwise refuses the whole write ("Data after Connection: close") and
    the request that came before it is lost, answered with a 400 instead of its response."""

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        # The same parser aiohttp builds, except that it pauses after every request (queue of one):
        # ``data_received`` then decides whether to parse on.
        self._parser = HttpRequestParser(
            self,
            loop,
            self._read_bufsize,
            max_line_size=self.max_line_size,
            max_field_size=self.max_field_size,
            max_headers=self.max_headers,
            payload_exception=RequestPayloadError,
            auto_decompress=kwargs.get("auto_decompress", True),
            max_msg_queue_size=1,
        )
        self._parsing_done = False  # a request that ends the connection (or a parse error) was parsed

    def data_received(self, data: bytes) -> None:
        messages = self._messages
        before = len(messages)
        super().data_received(data)
        # The parser paused after a request and kept the bytes after it: parse on, one request at a time,
        # until a request ends the connection (or is a parse error), nothing is left, or aiohttp's own
        # queue bound is reached (it resumes reading, and so parsing, as the queue drains).
        while not self._parsing_done:
            if len(messages) > before:
                last = messages[-1][0]
                if not isinstance(last, RawRequestMessage) or last.should_close:
                    self._parsing_done = True
                    return
            elif not data:
                return  # a feed of no new bytes gave no request: nothing is left to parse
            parser = self._parser
            if (
                parser is None
                or len(messages) >= self._max_msg_queue_size
                or self._payload_parser is not None
                or self._upgraded
                or self._close
                or self._force_close
            ):
                return
            # One more feed even when new bytes gave no request: they may have ended a body, pausing the
            # parser in front of the next request.
            before, data = len(messages), b""
            parser.message_consumed()
            super().data_received(b"")

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        status = _parse_error_status(status, exc)
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            log.debug("refused a malformed request from %s: %s", request.remote, exc)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started: cannot send an error response")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        response = Http11Response(
            status=status,
            text=f"{status} {phrase}\n",
            headers={"Server": "edgeproxy", "Cache-Control": "no-store"},
        )
        response.force_close()
        return response


def default_max_connections() -> int:
    """Viewer connections one worker accepts at once: half the open-file limit (origins and the shared
    tier need descriptors too), between 64 and 10,000."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(64, min(10_000, soft // 2))


class EdgeServer(web.Server):
    """``web.Server`` with ``EdgeRequestHandler`` connections and at most ``max_connections`` of them:
    beyond that a new connection is closed at once (nginx's ``worker_connections``)."""

    def __init__(self, handler: Handler, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.max_connections = max_connections
        self.refused_connections = 0

    def __call__(self) -> RequestHandler:
        return EdgeRequestHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if len(self._connections) > self.max_connections:
            self.refused_connections += 1
            transport.abort()


def make_server(
    pipeline: Pipeline,
    server: ServerConfig,
    *,
    scheme: str = "http",
    max_connections: int | None = None,
    lingering_time: float = 10.0,
) -> EdgeServer:
    """The viewer-facing server for ``pipeline`` with ``server.hosts`` and ``server.limits`` applied:
    request screening, body limits, ``client_timeout`` (idle keep-alive, slow heads and stalled bodies),
    the edge's parse-error answers and bounded connections. ``lingering_time`` bounds how long the unread
    rest of a refused request body is read and dropped before the connection closes (so the viewer sees
    the answer rather than a reset)."""
    limits = server.limits
    return EdgeServer(
        make_handler(pipeline, scheme, RequestPolicy.from_config(server)),
        max_connections=max_connections or default_max_connections(),
        access_log=None,
        max_line_size=limits.max_header_bytes,
        max_field_size=limits.max_header_bytes,
        keepalive_timeout=limits.client_timeout,
        lingering_time=lingering_time,
    )


# ---- end of request hardening ----


async def write_response(
    request: BaseRequest, pipeline: Pipeline, ctx: RequestContext, response: EdgeResponse
) -> web.StreamResponse:
    """Write ``response`` to the viewer, then run the LOG phase."""
    status = response.status
    if response.stream is None and not isinstance(response.body, list):
        out = Http11Response(status=status, headers=response.headers)
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
    out = Http11StreamResponse(status=response.status, headers=response.headers)
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
