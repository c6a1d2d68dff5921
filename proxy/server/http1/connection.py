"""One viewer connection of the HTTP/1.1 front: an ``asyncio.Protocol`` that reads requests with
``RequestReader``, runs them through the pipeline one at a time, and writes the responses in order.

Created by ``H1Server`` (the protocol factory) for each accepted connection, plain or TLS. Requests may be
pipelined: heads are parsed ahead into a short queue (reading pauses when it is full, or when a request
body is buffered beyond ``BODY_HIGH_WATER``), and answered strictly in order. The connection owns framing
(RFC 9112 §6): ``Content-Length`` when the length is known, chunked for HTTP/1.1 otherwise, close-delimited
for HTTP/1.0; never a body for HEAD, 1xx, 204 and 304. A response stream is written chunk by chunk,
waiting while the transport says its buffer is full (``pause_writing``), so a slow viewer never makes the
edge hold a whole object. An origin failure in the middle of a body aborts the connection (the viewer
sees a truncation, never a short "complete" response). The access log (``Pipeline.finish``) is written
after the last byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Protocol, cast

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.edge.hardening import Answer, RequestPolicy, Target
from proxy.http.headers import parse_list_header, strip_hop_by_hop
from proxy.messages import EdgeRequest, EdgeResponse, nothing_to_finish
from proxy.origin.base import OriginError
from proxy.origin.upgrade import Hold
from proxy.pipeline.context import RequestContext
from proxy.pipeline.pipeline import Pipeline
from proxy.server.framing import NO_BODY_STATUSES, body_of
from proxy.server.http1.body import BODY_MALFORMED, RequestBody, ViewerBodyError
from proxy.server.http1.parse import RequestHead, RequestReader
from proxy.server.http1.wire import (
    CONTINUE,
    CRLF,
    LAST_CHUNK,
    DateCache,
    chunk_prefix,
    encode_head,
    reason_phrase,
    status_line,
)
from proxy.server.tunnel import Tunnel

__all__ = ["BODY_HIGH_WATER", "MAX_QUEUED", "Front", "H1Connection", "ViewerConnection"]


class ViewerConnection(Protocol):
    """What a graceful stop calls on each open viewer connection (HTTP/1.1 or HTTP/2)."""

    def begin_shutdown(self) -> None: ...
    def abort(self) -> None: ...
    def close_lingering(self) -> None: ...
    @property
    def lingering(self) -> bool: ...


class Front(Protocol):
    """What a connection reads and updates of the ``H1Server`` that accepted it (described here rather
    than imported: ``proxy.server.http1.server`` imports this module, and imports never form a cycle)."""

    pipeline: Pipeline
    policy: RequestPolicy
    scheme: str
    max_connections: int
    lingering_time: float
    dates: DateCache
    connections: set[ViewerConnection]
    tunnels: set[Tunnel]
    refused_connections: int
    draining: bool
    alt_svc: str  # an "Alt-Svc: …" CRLF line added to every response (HTTP/3 advertised), or ""


log = logging.getLogger("edgeproxy")

MAX_QUEUED = 8  # parsed requests waiting behind the one being served before reading pauses
BODY_HIGH_WATER = 256 * 1024  # request body bytes buffered before reading pauses


# How long a graceful stop keeps an idle keep-alive connection open for a request already on its way.
SHUTDOWN_IDLE_GRACE = 1.0


# The end of a pre-encoded hit's head (its framing fields and the blank line), by the text of those fields.
_HEAD_ENDS: dict[str, bytes] = {}


class _Pending:
    """A request read and not yet answered: its head, body and screening result, or a parse error."""

    __slots__ = ("body", "error", "head", "screened", "websocket")

    def __init__(
        self,
        head: RequestHead | None,
        body: RequestBody | None,
        screened: Target | Answer | None,
        error: int = 0,
    ) -> None:
        self.head = head
        self.body = body
        self.screened = screened
        self.error = error
        self.websocket = False  # a WebSocket handshake: what the viewer sends after it is held


class H1Connection(asyncio.Protocol):
    """The protocol of one viewer connection (see the module docstring)."""

    def __init__(self, server: Front) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._reader = RequestReader(self, server.policy.max_header_bytes)
        self._transport: asyncio.Transport | None = None
        self._client_ip = ""
        self._queue: deque[_Pending] = deque()
        self._current: _Pending | None = None  # the request whose body is being received
        # The runner answers queued requests one at a time; between requests it waits on ``_next`` rather
        # than ending, so a keep-alive connection creates one task, not one per request.
        self._task: asyncio.Task[None] | None = None
        self._next: asyncio.Future[None] | None = None
        self._busy = False
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._response_started = False
        self._lost = False
        self._closing = False
        self._lingering = False
        self._draining = False
        self._eof = False
        self._tls = False
        # Set when a WebSocket handshake was read: the viewer's later bytes are held for the tunnel.
        self._hold: Hold | None = None

    # ------------------------------------------------------------------ transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        peer = transport.get_extra_info("peername")
        self._client_ip = peer[0] if isinstance(peer, tuple) and peer else ""
        self._tls = transport.get_extra_info("sslcontext") is not None
        server = self._server
        server.connections.add(self)
        if len(server.connections) > server.max_connections:
            server.refused_connections += 1
            self._closing = True
            self._transport.abort()
            return
        if server.draining:
            self._draining = True
        self._touch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._hold is not None:
            self._hold.lost()
        self._server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        waiter = self._next
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # the idle runner ends
        if self._current is not None and self._current.body is not None:
            self._current.body.abort()
        for pending in self._queue:
            if pending.body is not None:
                pending.body.abort()
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        if self._lingering or self._closing:
            return
        hold = self._hold
        if hold is not None:
            hold.data(data)  # after a WebSocket handshake: the new protocol's bytes
            return
        self._reader.feed(data)
        hold = self._hold
        if hold is not None and self._reader.upgrade_rest:
            hold.data(self._reader.upgrade_rest)  # sent in the same packet as the handshake
            self._reader.upgrade_rest = b""

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._hold is not None:
            self._reader.stop()
            return self._hold.eof()
        if self._current is not None and self._current.body is not None:
            self._current.body.abort()
        self._reader.stop()
        if not self._busy and not self._queue:
            self._close()
            return None
        # Half-closed by the viewer: answer what was read (TLS cannot stay half-open).
        return None if self._tls else True

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._hold is not None:
            self._hold.writing(True)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._hold is not None:
            self._hold.writing(False)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _drain(self) -> None:
        """Wait until the transport's buffer went below its low-water mark (or the viewer left)."""
        while self._writing_paused and not self._lost:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        if self._lost:
            raise ConnectionResetError("the viewer closed the connection")

    # ------------------------------------------------------------------ reader events (RequestSink)
    def on_head(self, head: RequestHead) -> bool:
        server = self._server
        policy = server.policy
        screened = policy.screen(
            head.method, head.target, head.version, head.headers, head.raw_headers, head.content_length
        )
        body: RequestBody | None = None
        if head.has_body:
            body = RequestBody(
                max_bytes=policy.max_body_bytes,
                timeout=policy.client_timeout,
                on_read=self._update_reading,
                on_continue=self._send_continue if head.expect_continue else None,
            )
        pending = _Pending(head, body, screened)
        transport = self._transport
        if head.upgrade and isinstance(screened, Target) and _is_websocket(head) and transport is not None:
            pending.websocket = True
            self._hold = Hold(transport, writing_paused=self._writing_paused)
        self._current = pending
        self._queue.append(pending)
        self._start()
        self._update_reading()
        return not (isinstance(screened, Answer) and screened.close)

    def on_body(self, chunk: bytes) -> None:
        current = self._current
        if current is None or current.body is None:
            return
        if not current.body.feed(chunk):
            self._reader.stop()  # over max_body_bytes: the rest is never read as requests
            return
        if current.body.buffered > BODY_HIGH_WATER:
            self._update_reading()

    def on_end(self) -> None:
        current = self._current
        self._current = None
        if current is not None and current.body is not None:
            current.body.end()
        if self._draining:
            self._reader.stop()  # graceful stop: the request being read is answered, no new one is read

    def on_error(self, status: int) -> None:
        current = self._current
        self._current = None
        if current is not None and current.body is not None and not current.body.done:
            # The bytes broke inside this request's body: the request itself is answered 400.
            current.body.refuse(BODY_MALFORMED)
            return
        self._queue.append(_Pending(None, None, None, status))
        self._start()

    # ------------------------------------------------------------------ flow control and timers
    def _update_reading(self) -> None:
        """Pause reading while enough is parsed ahead or buffered; resume once it was taken."""
        transport = self._transport
        if transport is None or self._lost:
            return
        current = self._current
        full = len(self._queue) > MAX_QUEUED or (
            current is not None and current.body is not None and current.body.buffered > BODY_HIGH_WATER
        )
        if self._lingering:
            full = False
        if full and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not full and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _touch(self) -> None:
        """Give the viewer ``client_timeout`` from now to send the next request head."""
        self._deadline = self._loop.time() + self._server.policy.client_timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._lost:
            return
        if self._lingering:
            assert self._transport is not None
            self._transport.close()
            return
        if self._busy or self._queue or self._reader.in_body:
            return  # busy: the runner gives the next head its time once it is idle again
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            return
        self._close()  # an idle keep-alive connection, or a head that never came whole (slowloris)

    def _close(self) -> None:
        """Close after what was written: half-close, then read and drop what the viewer still sends for
        up to ``lingering_time`` so that it sees the answer rather than a reset."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._reader.stop()
        transport = self._transport
        assert transport is not None
        hold = self._hold
        if hold is not None and not hold.attached:
            # A handshake answered without switching: what the viewer sent after it is read and dropped.
            self._hold = None
            if hold.reading_paused:
                transport.resume_reading()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tls or self._eof or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError):
            transport.close()
            return
        self._lingering = True
        self._update_reading()
        self._timer = self._loop.call_later(self._server.lingering_time, self._on_timer)

    def abort(self) -> None:
        """Cut the connection now (the end of a graceful stop's grace period)."""
        self._abort()

    def _abort(self) -> None:
        self._closing = True
        self._reader.stop()
        if self._transport is not None:
            self._transport.abort()

    def begin_shutdown(self) -> None:
        """Graceful stop: answer what was read and close after it. An idle keep-alive connection is given
        ``SHUTDOWN_IDLE_GRACE`` for a request already on its way (closing it at once races with a viewer
        sending its next request, which would then see a reset with no answer): such a request is answered
        with ``Connection: close``; without one, the connection closes when the grace ends."""
        self._draining = True
        if self._lost or self._closing:
            return
        if not self._busy and not self._queue and not self._reader.in_body:
            self._shutdown_grace()
        elif not self._reader.in_body and not self._response_started:
            # The answer being prepared will say Connection: close. One whose head already went out said
            # keep-alive: the viewer may send its next request, which is read and answered (with close).
            self._reader.stop()

    def _shutdown_grace(self) -> None:
        """Close this idle connection ``SHUTDOWN_IDLE_GRACE`` from now, unless a request comes first."""
        deadline = self._loop.time() + SHUTDOWN_IDLE_GRACE
        if deadline < self._deadline or self._timer is None:
            self._deadline = deadline
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)

    @property
    def lingering(self) -> bool:
        """Whether everything was written and the connection only waits for the viewer to close."""
        return self._lingering

    def close_lingering(self) -> None:
        """Close a lingering connection now (its written bytes are still flushed first)."""
        if self._lingering and not self._lost and self._transport is not None:
            self._transport.close()

    @property
    def idle(self) -> bool:
        """No request is being served or waiting."""
        return not self._busy and not self._queue

    # ------------------------------------------------------------------ serving
    def _start(self) -> None:
        if self._busy or self._lost:
            return
        self._busy = True
        waiter = self._next
        if waiter is not None:
            self._next = None
            if not waiter.done():
                waiter.set_result(None)
        elif self._task is None:
            self._task = self._loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            while await self._serve_queue():
                if not self._busy:  # nothing queued: wait for the next request (or the end)
                    self._next = self._loop.create_future()
                    await self._next
        finally:
            self._task = self._next = None
            self._busy = False

    async def _serve_queue(self) -> bool:
        """Answer the queued requests in order; True when the connection stays open for more."""
        try:
            while self._queue and not self._lost:
                pending = self._queue.popleft()
                self._update_reading()
                keep_alive = await self._serve(pending)
                if not keep_alive:
                    self._queue.clear()
                    self._close()
                    return False
        except Exception:
            log.exception("unexpected error on a viewer connection from %s", self._client_ip)
            self._abort()
            return False
        finally:
            self._busy = False
        if self._lost or self._closing:
            return False
        if self._queue:
            self._busy = True
            return True  # a request queued while the last one was written: the runner goes on
        if self._eof:
            if not self._reader.in_body and not self._reader.in_message:
                self._close()
        elif self._draining:
            # The last answer said keep-alive (its head went out before the stop began): the viewer's next
            # request may be on its way.
            self._shutdown_grace()
        else:
            self._touch()
        return not self._closing

    def _keep_alive(self, head: RequestHead, body: RequestBody | None) -> bool:
        """Whether the connection stays open after the response to ``head``."""
        if not head.keep_alive or head.upgrade or self._lost or self._closing:
            return False
        if body is not None and not body.done:
            return False  # the rest of an unread body would be read as the next request
        return not ((self._draining or self._eof or self._reader.stopped) and not self._queue)

    async def _serve(self, pending: _Pending) -> bool:
        """Answer one request; True when the connection stays open for the next one."""
        self._response_started = False
        head = pending.head
        if head is None:
            await self._write_error(pending.error)
            return False
        screened = pending.screened
        body = pending.body
        if isinstance(screened, Target):
            path, query, host = screened.path, screened.query, screened.host
        else:
            path, _, query = head.target.partition("?")
            host = head.headers.get("Host", "")
        request = EdgeRequest(
            method=head.method,
            path=path,
            query=query,
            headers=head.headers,
            client_ip=self._client_ip,
            host=host,
            scheme=self._server.scheme,
            version=head.version,
            body=body.chunks() if body is not None and isinstance(screened, Target) else None,
            content_length=head.content_length,
            on_interim=self._relay_interim if head.version >= (1, 1) else None,
            upgrade="websocket" if pending.websocket else None,
        )
        if isinstance(screened, Answer):
            return await self._answer(head, request, screened, None)
        pipeline = self._server.pipeline
        try:
            ctx, response = await pipeline.handle(request)
        except ViewerBodyError:
            if body is not None and body.refused is not None:
                return await self._answer(head, request, body.refused, None)
            # The viewer went away in the middle of its body (read before the origin was asked, e.g. to
            # buffer it for a retry): nobody is left to answer.
            log.debug("viewer %s left before the end of its request body", self._client_ip)
            return False
        except Exception:
            if body is not None and body.refused is not None:
                return await self._answer(head, request, body.refused, None)
            log.exception("unhandled error in the pipeline for %s %s", head.method, path)
            await self._write_error(500)
            return False
        if body is not None and body.refused is not None:
            # The viewer's body broke a limit while the pipeline forwarded it: answer that, not the
            # origin failure it caused.
            stream = response.stream
            if stream is not None and hasattr(stream, "aclose"):
                await stream.aclose()
            await response.finish(False)
            return await self._answer(head, request, body.refused, ctx)
        return await self._write_response(head, body, ctx, response)

    async def _answer(
        self, head: RequestHead, request: EdgeRequest, answer: Answer, ctx: RequestContext | None
    ) -> bool:
        """Write an ``Answer`` of the screening or of the body limits (400, 408, 413, 421 …), then log it."""
        ctx, response = self._server.pipeline.refuse(request, answer, ctx)
        keep_alive = await self._write_response(head, None, ctx, response, close=answer.close)
        return keep_alive and not answer.close

    async def _write_error(self, status: int) -> None:
        """The answer to bytes that are no request (or to a pipeline crash): a short body naming only the
        status (never the parser's message, which echoes the viewer's bytes), then the connection closes."""
        if status >= 500 and status not in (501, 505):
            log.error("error handling a request from %s", self._client_ip)
        else:
            log.debug("refused a malformed request from %s (%s)", self._client_ip, status)
        transport = self._transport
        if transport is None or self._lost:
            return
        body = f"{status} {reason_phrase(status)}\n".encode()
        head = (
            "Server: edgeproxy\r\nCache-Control: no-store\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            f"Date: {self._server.dates.value(time.time())}\r\n\r\n"
        )
        transport.writelines([status_line(status), head.encode("ascii"), body])

    def _send_continue(self) -> None:
        """``100 Continue`` before the first body read (RFC 9110 §10.1.1), unless the answer has begun."""
        transport = self._transport
        if transport is not None and not self._response_started and not self._lost and not self._closing:
            transport.write(CONTINUE)

    def _relay_interim(self, status: int, headers: CIMultiDictProxy[str]) -> None:
        """Write a 1xx interim response (103 Early Hints) before the final one (RFC 9110 §15.2; only for
        HTTP/1.1 viewers). Hop-by-hop fields are not relayed."""
        transport = self._transport
        if transport is None or self._lost or self._closing or self._response_started:
            return
        relayed = CIMultiDict(headers)
        strip_hop_by_hop(relayed)
        lines = [f"HTTP/1.1 {status} {reason_phrase(status)}\r\n"]
        for name, value in relayed.items():
            if "\n" in value or "\r" in value:
                continue
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        transport.write("".join(lines).encode("utf-8", "surrogateescape"))

    async def _write_response(
        self,
        head: RequestHead,
        body: RequestBody | None,
        ctx: RequestContext,
        response: EdgeResponse,
        *,
        close: bool = False,
    ) -> bool:
        """Write ``response`` to the viewer, then run the LOG phase; True when the connection stays open."""
        if response.tunnel is not None:
            return await self._switch(ctx, response)
        status = response.status
        headers = response.headers
        version = head.version
        no_body, parts, length = body_of(response, head.method, status)
        stream = response.stream
        keep_alive = not close and self._keep_alive(head, body)
        chunked = False
        extra = ""
        if status < 200 or status in NO_BODY_STATUSES:
            pass  # RFC 9110 §8.6: no Content-Length on 1xx and 204 (aiohttp's rule for 304 as well)
        elif no_body:
            if length is not None:
                extra = f"Content-Length: {length}\r\n"
            elif "Content-Length" in headers:
                extra = f"Content-Length: {headers['Content-Length']}\r\n"
        elif length is not None:
            extra = f"Content-Length: {length}\r\n"
            if length and response.head is None and "Content-Type" not in headers:
                extra += "Content-Type: application/octet-stream\r\n"  # RFC 9110 §8.3
        elif version >= (1, 1):
            chunked = True
            extra = "Transfer-Encoding: chunked\r\n"
        else:
            keep_alive = False  # RFC 9112 §6.3: an HTTP/1.0 body of unknown length ends at the close
        if response.head is None and "Date" not in headers:
            extra += f"Date: {self._server.dates.value(ctx.now)}\r\n"
        extra += self._server.alt_svc
        if keep_alive:
            if version == (1, 0):
                extra += "Connection: keep-alive\r\n"
        elif version >= (1, 1):
            extra += "Connection: close\r\n"
        encoded: list[bytes]
        if response.head is not None:  # a pre-encoded hit (proxy.pipeline.encoded): it has Date and Type
            # Its parts go out as they are (one writev with the body): nothing joined per hit, and the
            # framing lines (a few distinct lengths) encoded once.
            end = _HEAD_ENDS.get(extra)
            if end is None:
                if len(_HEAD_ENDS) >= 1024:
                    _HEAD_ENDS.clear()
                end = _HEAD_ENDS[extra] = (extra + "\r\n").encode("ascii")
            encoded = [status_line(status), *response.head, end]
        else:
            encoded = [encode_head(status, headers, extra)]
        self._response_started = True
        ctx.first_byte = time.perf_counter()
        transport = self._transport
        assert transport is not None
        pipeline = self._server.pipeline
        sent = 0
        completed = False
        if stream is None:
            try:
                if self._lost:
                    raise ConnectionResetError("the viewer closed the connection")
                if no_body:
                    transport.writelines(encoded)
                else:
                    transport.writelines([*encoded, *parts])
                    sent = length or 0
                if self._writing_paused:
                    await self._drain()
                completed = not self._lost
            except ConnectionError:
                pass
            finish = response.finish
            if finish is not nothing_to_finish:  # no coroutine to create and await for most answers
                await finish(completed)
            pipeline.finish(ctx, status, sent, completed)
            return keep_alive and completed
        # A body of known length goes out with the head in one writev when its first chunk comes (one
        # syscall fewer per streamed miss); a chunked or close-delimited one gets its head at once.
        unsent: list[bytes] | None = encoded
        try:
            if self._lost:
                raise ConnectionResetError("the viewer closed the connection")
            if no_body or chunked or length is None:
                transport.writelines(encoded)
                unsent = None
            if not no_body:
                async for chunk in stream:
                    if not chunk:
                        continue
                    if self._lost:
                        raise ConnectionResetError("the viewer closed the connection")
                    if chunked:
                        transport.writelines([chunk_prefix(len(chunk)), chunk, CRLF])
                    elif unsent is not None:
                        transport.writelines([*unsent, chunk])
                        unsent = None
                    else:
                        transport.write(chunk)
                    sent += len(chunk)
                    if self._writing_paused:
                        await self._drain()
                if chunked:
                    transport.write(LAST_CHUNK)
            if unsent is not None:  # an empty body
                transport.writelines(unsent)
                unsent = None
            if self._writing_paused:
                await self._drain()
            completed = not self._lost
        except OriginError as exc:
            # The origin failed mid-body: cut the viewer's connection so the truncation is visible.
            log.warning("origin failed mid-body for %s: %s", ctx.request.path, exc)
            self._write_unsent(unsent)
            self._abort()
        except ConnectionError:
            pass  # the viewer went away
        except Exception:
            log.exception("response stream failed for %s", ctx.request.path)
            self._write_unsent(unsent)
            self._abort()
        finally:
            if hasattr(stream, "aclose"):
                with contextlib.suppress(Exception):
                    await stream.aclose()
            await response.finish(completed)
            pipeline.finish(ctx, status, sent, completed)
        return keep_alive and completed

    def _write_unsent(self, head: list[bytes] | None) -> None:
        """A head still held back for its first body chunk, written before a failure cuts the connection
        (the viewer sees the status, then the truncation, as when the head went out at once)."""
        if head is not None and self._transport is not None and not self._lost:
            with contextlib.suppress(Exception):
                self._transport.writelines(head)

    async def _switch(self, ctx: RequestContext, response: EdgeResponse) -> bool:
        """Relay the origin's ``101`` (RFC 9110 §15.2.2), then pipe bytes both ways until both sides are
        closed (``proxy.server.tunnel``); the LOG phase runs after that. The connection never carries
        HTTP again."""
        upgraded = response.tunnel
        assert upgraded is not None
        self._response_started = True
        pipeline = self._server.pipeline
        hold = self._hold
        transport = self._transport
        if hold is None or transport is None or self._lost or self._closing:
            upgraded.close()  # the viewer is gone (or never asked): nobody to switch with
            await response.finish(False)
            pipeline.finish(ctx, response.status, 0, False)
            return False
        extra = f"Connection: Upgrade\r\nUpgrade: {upgraded.protocol}\r\n"
        if "Date" not in response.headers:
            extra += f"Date: {self._server.dates.value(ctx.now)}\r\n"
        transport.write(encode_head(101, response.headers, extra))
        tunnel = Tunnel(hold, upgraded.hold, idle_timeout=upgraded.idle_timeout)
        tunnels = self._server.tunnels
        tunnels.add(tunnel)
        try:
            tunnel.start()
            await asyncio.shield(tunnel.done)
        finally:
            tunnels.discard(tunnel)
            if not tunnel.done.done():
                tunnel.abort()  # this task was cancelled: nothing pipes any more
        self._closing = True
        ctx.tunnel_bytes = (tunnel.bytes_up, tunnel.bytes_down)
        await response.finish(True)
        pipeline.finish(ctx, 101, tunnel.bytes_down, True)
        return False


def _is_websocket(head: RequestHead) -> bool:
    """A WebSocket opening handshake (RFC 6455 §4.1: a GET, HTTP/1.1 or later, ``Upgrade: websocket``)."""
    if head.method != "GET" or head.version < (1, 1):
        return False
    tokens = parse_list_header(head.headers.getall("Upgrade", ()))
    return any(token.lower() == "websocket" for token in tokens)
