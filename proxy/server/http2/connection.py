"""One viewer connection speaking HTTP/2 (RFC 9113): an ``asyncio.Protocol`` driving the sans-IO ``h2``
library, each stream run through the same pipeline as an HTTP/1.1 request.

Created by the dispatch protocols of ``proxy.server.http2.dispatch`` once a connection chose ``h2`` (ALPN
on the TLS listener, or the prior-knowledge preface on a plain one with ``server.h2c``), and registered in
the front's ``connections`` like an HTTP/1.1 connection (bounded by ``max_connections``, stopped gracefully
with it). For each request stream:

- the decoded fields are checked (``proxy.http.h2_fields.check_request``; malformed → RST_STREAM
  PROTOCOL_ERROR), then screened by the front's ``RequestPolicy`` exactly as an HTTP/1.1 head would be
  (``:authority`` standing for Host), so hosts, limits and CONNECT behave the same;
- the ``EdgeRequest`` (version (2, 0)) runs ``pipeline.handle``; its request body streams to the origin,
  the viewer's flow-control window reopened only as the pipeline reads it (never a whole body buffered);
- the response goes out as HEADERS (connection-specific fields dropped) and DATA frames sized by the
  stream's and the connection's send windows: a stream whose window is at zero waits for WINDOW_UPDATE
  alone, the others go on; after ``send_timeout`` at zero it is reset (or, for the connection window, the
  connection closed). No body for HEAD, 1xx, 204, 304; trailers are dropped both ways;
- the access log line (``Pipeline.finish``) is written after the last byte.

Protections (``server.limits``): SETTINGS announce ``max_concurrent_streams``, ``max_header_list_size`` and
``hpack_table_size``. A stream beyond ``max_concurrent_streams`` is refused with RST_STREAM REFUSED_STREAM
and the connection goes on (RFC 9113 §5.1.2); each refusal is charged to the rapid-reset budget, so a viewer
that keeps opening streams is cut (``_StreamCeiling``). ``h2`` enforces the header list size (a larger
decoded list is a connection error);
``proxy.edge.h2_floods.FrameScanner`` watches every frame header for rapid reset, control-frame floods and
CONTINUATION floods (→ GOAWAY ENHANCE_YOUR_CALM and close); a connection with no open stream for
``idle_timeout`` gets GOAWAY and closes. A graceful stop sends GOAWAY with the last stream accepted: open
streams finish, newer ones are refused, the connection closes when the last stream ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError, TooManyStreamsError
from h2.settings import SettingCodes, Settings
from hpack import HPACKError
from hyperframe.frame import GoAwayFrame
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.edge.h2_floods import FrameScanner
from proxy.edge.hardening import Answer, Target
from proxy.http.h2_fields import H2Request, Malformed, check_request, head_fields, response_fields
from proxy.http.hpack_literal import LiteralEncoder
from proxy.messages import EdgeRequest, EdgeResponse
from proxy.origin.base import OriginError
from proxy.pipeline.context import RequestContext
from proxy.server.framing import NO_BODY_STATUSES, body_of
from proxy.server.http1.body import RequestBody, ViewerBodyError

if TYPE_CHECKING:
    from proxy.server.http1.connection import Front
    from proxy.settings import LimitsConfig

__all__ = ["H2ViewerConnection"]

log = logging.getLogger("edgeproxy")

_FLUSH_BYTES = 64 * 1024  # response bytes queued in h2 before they are written without waiting
# The connection-level receive window: request bodies of all streams buffered at most this much.
CONNECTION_WINDOW = 1024 * 1024


class _Stream:
    """One request stream: its body (None when the HEADERS ended the stream), whether the viewer reset
    it, and the waiter of a response blocked on a send window."""

    __slots__ = ("acked", "body", "id", "reset", "waiter")

    def __init__(self, stream_id: int, body: RequestBody | None) -> None:
        self.id = stream_id
        self.body = body
        self.acked = 0  # request body bytes whose window was given back
        self.reset = False
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _StreamCeiling(Settings):
    """The edge's local SETTINGS: they announce ``max_concurrent_streams`` but tell ``h2`` a higher ceiling.

    ``h2`` treats a HEADERS frame beyond its local MAX_CONCURRENT_STREAMS as a connection error
    (``TooManyStreamsError``), raised before it decodes the frame's header block: catching it would leave
    the HPACK decoder out of step with the viewer's encoder (RFC 9113 §4.3) and lose the other frames of the
    same read. So ``h2`` enforces only ``ceiling`` (the limit plus the rapid-reset budget: more streams than
    that in one read is a flood) and ``H2ViewerConnection._on_request`` refuses the streams between the
    limit and the ceiling itself, as the stream error RFC 9113 §5.1.2 asks for."""

    def __init__(self, ceiling: int, initial_values: dict[SettingCodes, int]) -> None:
        super().__init__(client=False, initial_values=initial_values)
        self._ceiling = ceiling

    @property
    def max_concurrent_streams(self) -> int:
        """What ``h2`` enforces (the SETTINGS frame still carries the announced value)."""
        return self._ceiling

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[SettingCodes.MAX_CONCURRENT_STREAMS] = value


class _StreamGone(Exception):
    """The stream was reset (by the viewer or by the edge) or the connection went away."""


class H2ViewerConnection(asyncio.Protocol):
    """The protocol of one HTTP/2 viewer connection (see the module docstring)."""

    def __init__(self, server: Front, limits: LimitsConfig) -> None:
        self._server = server
        self._limits = limits
        self._loop = asyncio.get_running_loop()
        config = H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,  # check_request does it, as a stream error (RFC 9113 §8.1.1)
            normalize_inbound_headers=False,
            validate_outbound_headers=False,  # response_fields writes only valid fields
            normalize_outbound_headers=False,
        )
        self._h2 = H2Connection(config=config)
        self._h2.encoder = LiteralEncoder()  # type: ignore[assignment]  # hpack's encoder: most of a hit's CPU
        self._transport: asyncio.Transport | None = None
        self._client_ip = ""
        self._scanner = FrameScanner(
            max_stream_resets=limits.max_stream_resets,
            max_control_frames=limits.max_control_frames,
            max_header_block=limits.max_header_list_size,
            window=limits.flood_window,
            now=self._loop.time(),
        )
        self._streams: dict[int, _Stream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._queued = 0  # response bytes handed to h2 since the last write
        self._flush_handle: asyncio.Handle | None = None
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle_since = self._loop.time()
        self._last_stream = -1  # after a graceful GOAWAY: streams above it are refused
        self._lost = False
        self._closed = False

    # ------------------------------------------------------------------ transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        peer = transport.get_extra_info("peername")
        self._client_ip = peer[0] if isinstance(peer, tuple) and peer else ""
        server = self._server
        server.connections.add(self)
        if len(server.connections) > server.max_connections:
            server.refused_connections += 1
            self._closed = True
            self._transport.abort()
            return
        limits = self._limits
        h2 = self._h2
        # RFC 9113 §6.5.2. Announced in the first SETTINGS frame and applied at once (a viewer that opens
        # more streams before it read them is refused the same way).
        h2.local_settings = _StreamCeiling(
            ceiling=limits.max_concurrent_streams + limits.max_stream_resets,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
                SettingCodes.HEADER_TABLE_SIZE: limits.hpack_table_size,
                SettingCodes.ENABLE_PUSH: 0,
            },
        )
        h2.decoder.max_header_list_size = limits.max_header_list_size
        h2.initiate_connection()
        h2.increment_flow_control_window(CONNECTION_WINDOW - 65_535)
        self._write_now()
        if server.draining:
            self.begin_shutdown()
        else:
            self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._closed = True
        self._server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        for stream in self._streams.values():
            stream.reset = True
            if stream.body is not None:
                stream.body.abort()
            stream.wake()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        verdict = self._scanner.feed(data, self._loop.time())
        if verdict is not None:
            log.warning("HTTP/2 %s from %s: closing the connection", verdict, self._client_ip)
            code = (
                ErrorCodes.FRAME_SIZE_ERROR if verdict == "frame-too-large" else ErrorCodes.ENHANCE_YOUR_CALM
            )
            self._fail(code, verdict)
            return
        try:
            events = self._h2.receive_data(data)
        except TooManyStreamsError:
            # More streams in one read than the limit and the reset budget together (_StreamCeiling).
            log.warning("HTTP/2 stream flood from %s: closing the connection", self._client_ip)
            self._fail(ErrorCodes.ENHANCE_YOUR_CALM, "too-many-streams")
            return
        except ProtocolError as exc:
            log.debug("HTTP/2 protocol error from %s: %s", self._client_ip, exc)
            self._fail(exc.error_code, "protocol-error")
            return
        except (H2Error, HPACKError, ValueError) as exc:
            # Any other frame or HPACK error: a connection error (RFC 9113 §5.4.1), never a crash.
            log.debug("HTTP/2 frame error from %s: %r", self._client_ip, exc)
            self._fail(ErrorCodes.PROTOCOL_ERROR, "protocol-error")
            return
        for event in events:
            if isinstance(event, DataReceived):
                self._on_data(event)
            elif isinstance(event, RequestReceived):
                self._on_request(event)
            elif isinstance(event, StreamEnded):
                stream = self._streams.get(event.stream_id)
                if stream is not None and stream.body is not None:
                    stream.body.end()
            elif isinstance(event, WindowUpdated):
                if event.stream_id == 0:
                    for stream in self._streams.values():
                        stream.wake()
                else:
                    stream = self._streams.get(event.stream_id)
                    if stream is not None:
                        stream.wake()
            elif isinstance(event, StreamReset):
                self._on_reset(event.stream_id)
            elif isinstance(event, RemoteSettingsChanged):
                for stream in self._streams.values():
                    stream.wake()  # INITIAL_WINDOW_SIZE changes every stream's window (§6.9.2)
            elif isinstance(event, ConnectionTerminated):
                # The viewer's GOAWAY: it sends nothing more; h2 allows no more frames either.
                self._closed = True
                self._abort_streams()
                self._close_transport()
                return
            # TrailersReceived (dropped), PingReceived (h2 answered), settings acks, priority: nothing.
        self._write_now()

    def eof_received(self) -> bool | None:
        self._abort_streams()
        return None  # close

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ writing
    def _write_now(self) -> None:
        """Write whatever h2 has queued."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._queued = 0
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._lost:
            self._transport.write(data)

    def _flush_soon(self) -> None:
        """Write what h2 queued at the end of this loop iteration (streams answering together share one
        write), or now when much is queued."""
        if self._queued >= _FLUSH_BYTES:
            self._write_now()
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush_callback)

    def _flush_callback(self) -> None:
        self._flush_handle = None
        self._write_now()

    async def _drain(self) -> None:
        """Wait while the transport's buffer is full; cut the connection after ``send_timeout``."""
        while self._writing_paused and not self._lost:
            self._drain_waiter = self._loop.create_future()
            try:
                await asyncio.wait_for(self._drain_waiter, self._limits.send_timeout)
            except TimeoutError:
                log.info("HTTP/2 viewer %s read nothing for send_timeout: closing", self._client_ip)
                self.abort()
            finally:
                self._drain_waiter = None

    def _fail(self, code: int, reason: str) -> None:
        """A connection error (RFC 9113 §5.4.1): GOAWAY with ``code``, then close."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(H2Error):
            self._h2.close_connection(error_code=code, additional_data=reason.encode("ascii"))
        self._write_now()
        self._abort_streams()
        self._close_transport()

    def _close_transport(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None and not self._lost:
            self._transport.close()

    def _abort_streams(self) -> None:
        for stream in self._streams.values():
            stream.reset = True
            if stream.body is not None:
                stream.body.abort()
            stream.wake()

    # ------------------------------------------------------------------ graceful stop, timers
    def begin_shutdown(self) -> None:
        """Graceful stop (RFC 9113 §6.8): GOAWAY naming the last stream accepted; open streams finish,
        the connection closes after the last one (``Front.shutdown`` cuts it at the end of its grace)."""
        if self._closed or self._last_stream >= 0:
            return
        self._last_stream = self._h2.highest_inbound_stream_id
        self._write_now()
        frame = GoAwayFrame(stream_id=0, last_stream_id=self._last_stream, error_code=ErrorCodes.NO_ERROR)
        # Written beside h2 (whose close_connection forbids any frame after it): the open streams go on.
        if self._transport is not None and not self._lost:
            self._transport.write(frame.serialize())
        if not self._streams:
            self._closed = True
            self._close_transport()

    def abort(self) -> None:
        """Cut the connection now (the end of a graceful stop's grace period, or a stuck viewer)."""
        self._closed = True
        self._abort_streams()
        if self._transport is not None:
            self._transport.abort()

    @property
    def lingering(self) -> bool:
        """HTTP/2 connections never linger: done means closed."""
        return False

    def close_lingering(self) -> None:
        """Nothing lingers (see ``lingering``)."""

    def _arm_idle(self) -> None:
        self._idle_since = self._loop.time()
        if self._timer is None and not self._closed:
            self._timer = self._loop.call_at(self._idle_since + self._limits.idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        self._timer = None
        if self._closed or self._streams:
            return
        deadline = self._idle_since + self._limits.idle_timeout
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._on_idle)
            return
        log.debug("HTTP/2 connection from %s idle for idle_timeout: GOAWAY", self._client_ip)
        self._fail(ErrorCodes.NO_ERROR, "idle")

    # ------------------------------------------------------------------ streams
    def _on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        if self._last_stream >= 0 and stream_id > self._last_stream:
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM, charge=False)  # after our GOAWAY
            return
        if self._over_stream_limit(stream_id):
            # RFC 9113 §5.1.2: a stream error, the connection goes on; charged like a reset (the viewer
            # ignored the announced limit), so a viewer that keeps doing it gets GOAWAY.
            log.debug("HTTP/2 viewer %s opened more than max_concurrent_streams", self._client_ip)
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM, charge=True)
            return
        checked = check_request(event.headers or ())
        if isinstance(checked, Malformed):
            log.debug("malformed HTTP/2 request from %s: %s", self._client_ip, checked.reason)
            self._reset(stream_id, ErrorCodes.PROTOCOL_ERROR, charge=True)
            return
        body: RequestBody | None = None
        if event.stream_ended is None:
            policy = self._server.policy
            body = RequestBody(
                max_bytes=policy.max_body_bytes,
                timeout=policy.client_timeout,
                on_read=lambda: self._give_window(stream),
                on_continue=None,
            )
        stream = _Stream(stream_id, body)
        self._streams[stream_id] = stream
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        block = [(bytes(name), bytes(value)) for name, value in event.headers or ()]
        task = self._loop.create_task(self._serve(stream, checked, block))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _over_stream_limit(self, stream_id: int) -> bool:
        """Whether ``max_concurrent_streams`` streams were already open when the viewer opened ``stream_id``.

        Counted from ``h2``'s streams (an answered stream whose request is still open counts, RFC 9113
        §5.1.2), only those below ``stream_id``: the later streams of the same read are not open yet for
        this one, and the streams refused before it are closed."""
        limit = self._limits.max_concurrent_streams
        streams = self._h2.streams
        if len(streams) <= limit:  # this one included: fewer than the limit before it
            return False
        return sum(1 for sid, s in streams.items() if sid < stream_id and not s.closed) >= limit

    def _on_data(self, event: DataReceived) -> None:
        stream = self._streams.get(event.stream_id)
        data = event.data or b""
        flow = event.flow_controlled_length or 0
        h2 = self._h2
        if stream is None or stream.body is None or stream.body.done or stream.reset:
            with contextlib.suppress(H2Error):
                h2.acknowledge_received_data(flow, event.stream_id)  # dropped: the window reopens at once
            return
        if flow > len(data):
            with contextlib.suppress(H2Error):
                h2.acknowledge_received_data(flow - len(data), event.stream_id)  # padding
        if data and not stream.body.feed(data):
            # Over max_body_bytes: the request is answered 413; what follows is acknowledged and dropped.
            stream.acked = stream.body.size
            with contextlib.suppress(H2Error):
                h2.acknowledge_received_data(len(data), event.stream_id)

    def _give_window(self, stream: _Stream) -> None:
        """The pipeline read request body bytes: reopen that much of the viewer's send window."""
        body = stream.body
        if body is None or self._closed:
            return
        consumed = body.size - body.buffered
        delta = consumed - stream.acked
        if delta <= 0:
            return
        stream.acked = consumed
        with contextlib.suppress(H2Error):
            self._h2.acknowledge_received_data(delta, stream.id)
            self._flush_soon()

    def _on_reset(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.reset = True
        if stream.body is not None:
            stream.body.abort()
        stream.wake()

    def _reset(self, stream_id: int, code: int, *, charge: bool) -> None:
        """RST_STREAM ``code`` on ``stream_id``. ``charge``: the viewer caused it (a malformed request),
        so it counts against the reset budget (MadeYouReset)."""
        with contextlib.suppress(H2Error):
            self._h2.reset_stream(stream_id, code)
        self._flush_soon()
        if charge and not self._scanner.resets.take(self._loop.time()):
            log.warning("HTTP/2 rapid-reset from %s (streams the edge had to reset)", self._client_ip)
            self._fail(ErrorCodes.ENHANCE_YOUR_CALM, "rapid-reset")

    def _stream_done(self, stream: _Stream) -> None:
        self._streams.pop(stream.id, None)
        if self._streams:
            return
        if self._last_stream >= 0:
            self._closed = True
            self._write_now()
            self._close_transport()  # graceful stop: the last stream ended
        else:
            self._arm_idle()

    async def _serve(self, stream: _Stream, checked: H2Request, block: list[tuple[bytes, bytes]]) -> None:
        """Run one stream through the pipeline and send its response."""
        try:
            await self._serve_stream(stream, checked, block)
        except Exception:
            log.exception("unexpected error on an HTTP/2 stream from %s", self._client_ip)
            if not stream.reset:
                stream.reset = True
                self._reset(stream.id, ErrorCodes.INTERNAL_ERROR, charge=False)
        finally:
            self._stream_done(stream)

    async def _serve_stream(
        self, stream: _Stream, checked: H2Request, block: list[tuple[bytes, bytes]]
    ) -> None:
        server = self._server
        headers: CIMultiDict[str] = CIMultiDict(checked.fields)
        if checked.authority and "Host" not in headers:
            headers["Host"] = checked.authority
        # The front's screening, as for an HTTP/1.1 head: the fields were checked to carry HTTP/1.1
        # semantics (no framing fields but Content-Length, :authority as Host).
        screened = server.policy.screen(
            checked.method, checked.path, (1, 1), headers, block, checked.content_length
        )
        body = stream.body
        if isinstance(screened, Target):
            path, query, host = screened.path, screened.query, screened.host
        else:
            path, _, query = checked.path.partition("?")
            host = checked.authority
        request = EdgeRequest(
            method=checked.method,
            path=path,
            query=query,
            headers=CIMultiDictProxy(headers),
            client_ip=self._client_ip,
            host=host,
            scheme=server.scheme,
            version=(2, 0),
            body=body.chunks() if body is not None and isinstance(screened, Target) else None,
            content_length=checked.content_length,
        )
        pipeline = server.pipeline
        if isinstance(screened, Answer):
            await self._answer(stream, request, screened, None)
            return
        try:
            ctx, response = await pipeline.handle(request)
        except ViewerBodyError:
            if body is not None and body.refused is not None:
                await self._answer(stream, request, body.refused, None)
            return  # otherwise the viewer reset the stream: nobody is left to answer
        except Exception:
            if body is not None and body.refused is not None:
                await self._answer(stream, request, body.refused, None)
                return
            log.exception("unhandled error in the pipeline for %s %s", checked.method, path)
            stream.reset = True
            self._reset(stream.id, ErrorCodes.INTERNAL_ERROR, charge=False)
            return
        if body is not None and body.refused is not None:
            if response.stream is not None and hasattr(response.stream, "aclose"):
                await response.stream.aclose()
            await response.finish(False)
            await self._answer(stream, request, body.refused, ctx)
            return
        await self._respond(stream, request, ctx, response)

    async def _answer(
        self, stream: _Stream, request: EdgeRequest, answer: Answer, ctx: RequestContext | None
    ) -> None:
        ctx, response = self._server.pipeline.refuse(request, answer, ctx)
        await self._respond(stream, request, ctx, response)

    async def _respond(
        self, stream: _Stream, request: EdgeRequest, ctx: RequestContext, response: EdgeResponse
    ) -> None:
        """Send ``response`` on ``stream`` (HEADERS then DATA within the send windows), then log it."""
        status = response.status
        if response.tunnel is not None:
            response.tunnel.close()  # no WebSocket over HTTP/2 (RFC 8441 is not offered)
            status = 501
        no_body, parts, length = body_of(response, request.method, status)
        stream_body = response.stream
        extra: list[tuple[str, str]] = []
        if status < 200 or status in NO_BODY_STATUSES:
            pass  # RFC 9110 §8.6
        elif length is not None:
            extra.append(("content-length", str(length)))
        elif no_body and "Content-Length" in response.headers:
            extra.append(("content-length", response.headers["Content-Length"]))
        alt_svc = self._server.alt_svc  # "Alt-Svc: h3=…" CRLF when HTTP/3 is on (RFC 7838), else ""
        if alt_svc:
            extra.append(("alt-svc", alt_svc.partition(":")[2].strip()))
        if response.head is not None:
            fields = response_fields(status, head_fields(response.head), extra)
        else:
            if "Date" not in response.headers:
                extra.append(("date", self._server.dates.value(ctx.now)))
            if not no_body and length and "Content-Type" not in response.headers:
                extra.append(("content-type", "application/octet-stream"))  # RFC 9110 §8.3
            fields = response_fields(status, response.headers.items(), extra)
        pipeline = self._server.pipeline
        sent = 0
        completed = False
        try:
            if stream.reset or self._closed:
                raise _StreamGone
            end_now = no_body or (stream_body is None and length == 0)
            ctx.first_byte = time.perf_counter()  # the access log's ttfb_ms
            self._h2.send_headers(stream.id, fields, end_stream=end_now)
            self._flush_soon()
            if not end_now:
                if stream_body is None:
                    for part in parts:
                        await self._send(stream, part)
                        sent += len(part)
                else:
                    async for chunk in stream_body:
                        if chunk:
                            await self._send(stream, chunk)
                            sent += len(chunk)
                if stream.reset or self._closed:
                    raise _StreamGone
                self._h2.end_stream(stream.id)
                self._flush_soon()
            completed = True
        except (_StreamGone, ConnectionError):
            pass  # the viewer reset the stream or went away
        except H2Error as exc:
            log.debug("HTTP/2 stream %s of %s closed under the response: %r", stream.id, self._client_ip, exc)
        except OriginError as exc:
            # The origin failed mid-body: reset the stream so the truncation is visible (RFC 9113 §8.1).
            log.warning("origin failed mid-body for %s: %s", request.path, exc)
            self._reset(stream.id, ErrorCodes.INTERNAL_ERROR, charge=False)
        finally:
            if stream_body is not None and hasattr(stream_body, "aclose"):
                with contextlib.suppress(Exception):
                    await stream_body.aclose()
            await response.finish(completed)
            pipeline.finish(ctx, status, sent, completed)

    async def _send(self, stream: _Stream, data: bytes | memoryview) -> None:
        """Send ``data`` on ``stream`` in DATA frames as large as both send windows and the frame size
        allow; wait for WINDOW_UPDATE while either window is at zero (RFC 9113 §5.2, §6.9)."""
        h2 = self._h2
        view = memoryview(data)
        while view.nbytes:
            if stream.reset or self._closed:
                raise _StreamGone
            window = h2.local_flow_control_window(stream.id)
            if window <= 0:
                await self._wait_window(stream)
                continue
            size = min(window, view.nbytes, h2.max_outbound_frame_size)
            h2.send_data(stream.id, view[:size] if size < view.nbytes else view)
            self._scanner.data_sent()
            self._queued += size
            view = view[size:]
            self._flush_soon()
            if self._writing_paused or self._queued >= _FLUSH_BYTES:
                self._write_now()
                if self._writing_paused:
                    await self._drain()

    async def _wait_window(self, stream: _Stream) -> None:
        """Wait until the viewer opens a window for ``stream``; after ``send_timeout`` reset the stream
        (its window stuck) or close the connection (the connection window stuck)."""
        self._write_now()
        stream.waiter = self._loop.create_future()
        try:
            await asyncio.wait_for(stream.waiter, self._limits.send_timeout)
        except TimeoutError:
            if self._h2.outbound_flow_control_window <= 0:
                log.info("HTTP/2 viewer %s kept the connection window shut: closing", self._client_ip)
                self._fail(ErrorCodes.FLOW_CONTROL_ERROR, "send-timeout")
            else:
                log.info("HTTP/2 viewer %s kept stream %s's window shut: reset", self._client_ip, stream.id)
                stream.reset = True
                self._reset(stream.id, ErrorCodes.CANCEL, charge=False)
            raise _StreamGone from None
        finally:
            stream.waiter = None
