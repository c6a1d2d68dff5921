"""One viewer's QUIC connection of the HTTP/3 front: aioquic's protocol, our streams through the pipeline.

Created by ``proxy.server.http3.server`` (aioquic's ``QuicServer`` calls the factory) for each new QUIC
connection. aioquic owns QUIC (packets, TLS 1.3, loss recovery, flow control) and HTTP/3 framing with QPACK;
this module turns each request stream into an ``EdgeRequest`` (``proxy.http.h3_fields``), screens it with
the same ``RequestPolicy`` as the HTTP/1.1 front, runs it through ``Pipeline.handle`` in a task of its own,
and sends the ``EdgeResponse``:

- the response body goes out chunk by chunk; after each chunk the task waits while more than
  ``SEND_HIGH_WATER`` bytes of the stream are unacknowledged (written but blocked by the viewer's flow
  control windows, or in flight), so a slow or stalled viewer never makes the edge hold a whole object;
  a stream that stays blocked for ``client_timeout`` is reset (slow reader);
- a request body is handed to the pipeline as it arrives (``RequestBody``); while more than
  ``BODY_HIGH_WATER`` bytes wait to be read, the stream's receive window is not raised
  (``_EdgeQuicConnection``), so the viewer's sending stalls instead of the edge buffering;
- trailers a viewer sends are dropped; the pipeline never sees them;
- connection-specific fields are never sent (RFC 9114 §4.2);
- the access log (``Pipeline.finish``) is written after the last byte was handed to QUIC.

Limits: at most ``max_concurrent_streams`` request streams at once (QUIC ``initial_max_streams_bidi``; aioquic
lets the viewer open one more each time one finishes), a request's HEADERS frame at most
``max_header_bytes`` before decoding (the stream is reset, H3_EXCESSIVE_LOAD) and the decoded head under the
same limit (431), the QPACK dynamic table off for what viewers send (a decoded head is at most a few dozen
times its encoded size: no QPACK bomb), ``client_timeout`` as the QUIC idle timeout. 0-RTT is never
accepted: the server keeps no session tickets, so no resumption and no early data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

import pylsqpack
from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, ErrorCode, FrameType, H3Connection, encode_frame
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    ProtocolNegotiated,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream
from multidict import CIMultiDictProxy

from proxy.edge.hardening import Answer, RequestPolicy, Target
from proxy.http.h3_fields import H3RequestHead, request_head, response_fields
from proxy.http.reasons import BlockReason
from proxy.messages import EdgeRequest, EdgeResponse
from proxy.origin.base import OriginError
from proxy.pipeline.context import RequestContext
from proxy.pipeline.pipeline import Pipeline
from proxy.server.framing import NO_BODY_STATUSES, body_of
from proxy.server.http1.body import RequestBody, ViewerBodyError
from proxy.server.http1.wire import DateCache

__all__ = ["BODY_HIGH_WATER", "SEND_HIGH_WATER", "H3Front", "H3Protocol"]

log = logging.getLogger("edgeproxy")

SEND_HIGH_WATER = 256 * 1024  # unacknowledged response bytes of one stream before its task waits
SEND_PIECE = 64 * 1024  # the largest DATA frame written before checking the mark again
BODY_HIGH_WATER = 256 * 1024  # request body bytes waiting for the pipeline before the window stops growing
_BAD_REQUEST = Answer(400, BlockReason.BAD_TARGET)


class H3Front(Protocol):
    """What a connection reads and updates of the ``H3Server`` that accepted it."""

    pipeline: Pipeline
    policy: RequestPolicy
    dates: DateCache
    max_streams: int
    connections: set[H3Protocol]
    draining: bool


class _EdgeQuicConnection(QuicConnection):
    """aioquic's QUIC connection, except that a stream whose request body waits unread keeps its receive
    window (RFC 9000 §4.1: the receiver decides when to raise MAX_STREAM_DATA). aioquic raises it as data
    arrives, whoever reads it."""

    held: set[int]

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        if stream.stream_id in self.held:
            return
        super()._write_stream_limits(builder, space, stream)


class _EdgeH3(H3Connection):
    """aioquic's HTTP/3 connection with the QPACK dynamic table off for what the viewer sends (capacity 0,
    no blocked streams; RFC 9204 §3.2.3): every field is a literal or a static table entry, so a small
    HEADERS frame can never decode into a huge head."""

    def _init_connection(self) -> None:
        self._max_table_capacity = 0
        self._blocked_streams = 0
        self._decoder = pylsqpack.Decoder(0, 0)
        super()._init_connection()

    def send_goaway(self, stream_id: int) -> None:
        """GOAWAY on the control stream (RFC 9114 §5.2): requests on streams below ``stream_id`` are
        answered, later ones are not processed."""
        control = self._local_control_stream_id
        if control is not None:
            self._quic.send_stream_data(control, encode_frame(FrameType.GOAWAY, encode_uint_var(stream_id)))


class _Stream:
    """One request stream: its request body (if it announced one) and its sending state."""

    __slots__ = ("body", "headers_seen", "received", "reset", "task", "waiter")

    def __init__(self) -> None:
        self.body: RequestBody | None = None
        self.headers_seen = False
        self.received = 0  # bytes received before the request head was decoded
        self.reset = False  # the viewer cancelled it (or the edge reset it)
        self.task: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None


class H3Protocol(QuicConnectionProtocol):
    """The protocol of one viewer QUIC connection (see the module docstring)."""

    def __init__(
        self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None, *, front: H3Front
    ):
        super().__init__(quic, stream_handler)
        # The QuicServer built a plain QuicConnection: give it the held-window behaviour (same layout).
        quic.__class__ = _EdgeQuicConnection
        assert isinstance(quic, _EdgeQuicConnection)
        quic.held = set()
        self._edge_quic = quic
        # RFC 9000 §4.6 / §18.2 initial_max_streams_bidi: aioquic sends this value in the handshake and
        # raises it by one each time a request stream finishes, so it bounds the streams open at once.
        limit = quic._local_max_streams_bidi
        limit.value = limit.sent = front.max_streams
        self._front = front
        self._http: _EdgeH3 | None = None
        self._streams: dict[int, _Stream] = {}
        self._client_ip = ""
        self._lost = False
        self._goaway_at: int | None = None  # first stream id refused after GOAWAY
        self._highest_stream = -4
        self._refused_ids: set[int] = set()  # streams reset without an answer (their late data is dropped)
        front.connections.add(self)

    # ------------------------------------------------------------------ datagrams and events
    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        if not self._client_ip and isinstance(addr, tuple):
            self._client_ip = str(addr[0])
        try:
            super().datagram_received(data, addr)
        except Exception:  # aioquic turns protocol errors into connection errors; anything else is a bug
            log.exception("unexpected error on an HTTP/3 connection from %s", self._client_ip)
            self.close(ErrorCode.H3_INTERNAL_ERROR)
        self._wake_senders()  # acknowledgements may have made room in send buffers

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            if event.alpn_protocol in H3_ALPN:
                self._http = _EdgeH3(self._quic)
            return
        if isinstance(event, ConnectionTerminated):
            self._terminated()
            return
        http = self._http
        if http is None:
            return
        if isinstance(event, StreamDataReceived) and event.stream_id % 4 == 0:
            if not self._admit(event):
                return
        elif isinstance(event, StreamReset):
            self._cancelled(event.stream_id)
        for h3_event in http.handle_event(event):
            self._http_event(h3_event)

    def _admit(self, event: StreamDataReceived) -> bool:
        """Whether this data on a request stream goes on to HTTP/3 decoding (the head limit, GOAWAY)."""
        stream_id = event.stream_id
        state = self._streams.get(stream_id)
        if state is None:
            if stream_id in self._refused_ids:
                return False
            if self._goaway_at is not None and stream_id >= self._goaway_at:
                self._refuse_stream(stream_id, ErrorCode.H3_REQUEST_REJECTED)
                return False
            state = self._streams[stream_id] = _Stream()
            self._highest_stream = max(self._highest_stream, stream_id)
        if not state.headers_seen:
            state.received += len(event.data)
            if state.received > self._front.policy.max_header_bytes + 64:
                # The HEADERS frame alone is over the limit: not buffered until it is whole.
                self._streams.pop(stream_id, None)
                self._refuse_stream(stream_id, ErrorCode.H3_EXCESSIVE_LOAD)
                return False
        return True

    def _refuse_stream(self, stream_id: int, code: int) -> None:
        """Reset a request stream and stop its sending (RFC 9114 §4.1.1), without answering it."""
        if len(self._refused_ids) > 4096:
            self._refused_ids.clear()
        self._refused_ids.add(stream_id)
        with contextlib.suppress(Exception):
            self._quic.stop_stream(stream_id, code)
        with contextlib.suppress(Exception):
            self._quic.reset_stream(stream_id, code)
        self.transmit()

    def _http_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            state = self._streams.get(event.stream_id)
            if state is None:
                return
            if state.headers_seen:  # trailers (RFC 9114 §4.1): dropped, the pipeline never sees them
                if event.stream_ended and state.body is not None:
                    state.body.end()
                return
            state.headers_seen = True
            self._start(event.stream_id, state, request_head(event.headers), event.stream_ended)
        elif isinstance(event, DataReceived):
            state = self._streams.get(event.stream_id)
            if state is None or state.body is None:
                return
            body = state.body
            if event.data and not body.feed(event.data):
                # Over max_body_bytes: the answer is 413; nothing more of this body is read.
                self._edge_quic.held.discard(event.stream_id)
                with contextlib.suppress(Exception):
                    self._quic.stop_stream(event.stream_id, ErrorCode.H3_NO_ERROR)
            elif body.buffered > BODY_HIGH_WATER:
                self._edge_quic.held.add(event.stream_id)
            if event.stream_ended:
                body.end()

    def _cancelled(self, stream_id: int) -> None:
        """The viewer reset a request stream: its body ends, its response stops."""
        state = self._streams.get(stream_id)
        if state is None:
            return
        state.reset = True
        if state.body is not None:
            state.body.abort()
        self._wake(state)

    def _terminated(self) -> None:
        """The QUIC connection closed (either side, or the idle timeout): every stream stops."""
        self._lost = True
        self._front.connections.discard(self)
        for state in self._streams.values():
            state.reset = True
            if state.body is not None:
                state.body.abort()
            self._wake(state)

    # ------------------------------------------------------------------ flow control
    def _unacked(self, stream_id: int) -> int:
        """Bytes of a stream's response handed to QUIC and not yet acknowledged by the viewer."""
        stream = self._quic._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return sender._buffer_stop - sender._buffer_start

    def _wake(self, state: _Stream) -> None:
        waiter = state.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_senders(self) -> None:
        for stream_id, state in self._streams.items():
            if state.waiter is not None and self._unacked(stream_id) <= SEND_HIGH_WATER:
                self._wake(state)

    async def _drain(self, stream_id: int, state: _Stream) -> None:
        """Wait while the stream has more than ``SEND_HIGH_WATER`` bytes unacknowledged; a viewer that
        takes nothing for ``client_timeout`` gets its stream reset (ConnectionError)."""
        timeout = self._front.policy.client_timeout
        while not state.reset and not self._lost and self._unacked(stream_id) > SEND_HIGH_WATER:
            state.waiter = self._loop.create_future()
            try:
                async with asyncio.timeout(timeout):
                    await state.waiter
            except TimeoutError:
                log.debug("HTTP/3 viewer %s read nothing for %ss: stream reset", self._client_ip, timeout)
                self._refuse_stream(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
                state.reset = True
            finally:
                state.waiter = None
        if state.reset or self._lost:
            raise ConnectionResetError("the viewer cancelled the stream")

    def _body_read(self, stream_id: int, state: _Stream) -> None:
        """The pipeline took request body chunks: the stream's window may grow again."""
        body = state.body
        quic = self._edge_quic
        if body is not None and stream_id in quic.held and body.buffered <= BODY_HIGH_WATER // 2:
            quic.held.discard(stream_id)
            self._transmit_soon()

    # ------------------------------------------------------------------ serving
    def _start(self, stream_id: int, state: _Stream, head: H3RequestHead, ended: bool) -> None:
        policy = self._front.policy
        screened: Target | Answer
        if head.bad:
            screened = _BAD_REQUEST
        else:
            screened = policy.screen(
                head.method, head.target, (1, 1), head.headers, head.raw, head.content_length
            )
        if not ended and isinstance(screened, Target):
            state.body = RequestBody(
                max_bytes=policy.max_body_bytes,
                timeout=policy.client_timeout,
                on_read=lambda: self._body_read(stream_id, state),
                on_continue=None,  # HTTP/3 has no 100 Continue need: flow control paces the body
            )
        state.task = self._loop.create_task(self._serve(stream_id, state, head, screened))

    async def _serve(
        self, stream_id: int, state: _Stream, head: H3RequestHead, screened: Target | Answer
    ) -> None:
        try:
            await self._answer_request(stream_id, state, head, screened)
        except Exception:
            log.exception("unexpected error on HTTP/3 stream %d from %s", stream_id, self._client_ip)
            if not self._lost:
                self._refuse_stream(stream_id, ErrorCode.H3_INTERNAL_ERROR)
        finally:
            self._streams.pop(stream_id, None)
            self._edge_quic.held.discard(stream_id)
            self._finished(stream_id, state)
            self._maybe_close_drained()

    def _finished(self, stream_id: int, state: _Stream) -> None:
        """The answer is sent: what the viewer still sends on the stream is dropped; a body not read to its
        end is refused with STOP_SENDING (RFC 9114 §4.1: a response may complete before the request)."""
        if len(self._refused_ids) > 4096:
            self._refused_ids.clear()
        self._refused_ids.add(stream_id)
        body = state.body
        if body is not None and not body.done and not self._lost and not state.reset:
            with contextlib.suppress(Exception):
                self._quic.stop_stream(stream_id, ErrorCode.H3_NO_ERROR)
                self.transmit()

    async def _answer_request(
        self, stream_id: int, state: _Stream, head: H3RequestHead, screened: Target | Answer
    ) -> None:
        if isinstance(screened, Target):
            path, query, host = screened.path, screened.query, screened.host
        else:
            path, _, query = head.target.partition("?")
            host = head.headers.get("Host", "")
        body = state.body
        request = EdgeRequest(
            method=head.method,
            path=path,
            query=query,
            headers=head.headers,
            client_ip=self._client_ip,
            host=host,
            scheme="https",
            version=(3, 0),
            body=body.chunks() if body is not None else None,
            content_length=head.content_length,
            on_interim=lambda status, headers: self._relay_interim(stream_id, state, status, headers),
        )
        pipeline = self._front.pipeline
        if isinstance(screened, Answer):
            ctx, response = pipeline.refuse(request, screened, None)
            await self._send_response(stream_id, state, head, ctx, response)
            return
        try:
            ctx, response = await pipeline.handle(request)
        except ViewerBodyError:
            if body is not None and body.refused is not None:
                ctx, response = pipeline.refuse(request, body.refused, None)
                await self._send_response(stream_id, state, head, ctx, response)
            return  # otherwise the viewer cancelled the stream in the middle of its body
        if body is not None and body.refused is not None:
            stream = response.stream
            if stream is not None and hasattr(stream, "aclose"):
                await stream.aclose()
            await response.finish(False)
            ctx, response = pipeline.refuse(request, body.refused, ctx)
        await self._send_response(stream_id, state, head, ctx, response)

    def _relay_interim(
        self, stream_id: int, state: _Stream, status: int, headers: CIMultiDictProxy[str]
    ) -> None:
        """A 1xx interim response (103 Early Hints) before the final one (RFC 9114 §4.1)."""
        http = self._http
        if http is None or self._lost or state.reset or not 100 < status < 200:
            return
        with contextlib.suppress(Exception):
            http.send_headers(stream_id, response_fields(status, headers, None, ()))
            self.transmit()

    async def _send_response(
        self, stream_id: int, state: _Stream, head: H3RequestHead, ctx: RequestContext, response: EdgeResponse
    ) -> None:
        """Send ``response`` on the stream, then run the LOG phase."""
        http = self._http
        assert http is not None
        status = response.status
        no_body, parts, length = body_of(response, head.method, status)
        stream = response.stream
        extra: list[tuple[str, str]] = []
        if status >= 200 and status not in NO_BODY_STATUSES:
            if length is not None:
                extra.append(("content-length", str(length)))
            elif no_body and "Content-Length" in response.headers:
                extra.append(("content-length", response.headers["Content-Length"].strip()))
            if length and not no_body and response.head is None and "Content-Type" not in response.headers:
                extra.append(("content-type", "application/octet-stream"))  # RFC 9110 §8.3
        if response.head is None and "Date" not in response.headers:
            extra.append(("date", self._front.dates.value(ctx.now)))
        fields = response_fields(status, response.headers, response.head, extra)
        pipeline = self._front.pipeline
        sent = 0
        completed = False
        try:
            if self._lost or state.reset:
                raise ConnectionResetError("the viewer cancelled the stream")
            ctx.first_byte = time.perf_counter()  # the access log's ttfb_ms
            if stream is None:
                data = b"".join(parts) if not no_body else b""
                http.send_headers(stream_id, fields, end_stream=not data)
                if data:
                    http.send_data(stream_id, data, end_stream=True)
                    sent = len(data)
                self.transmit()
                await self._drain(stream_id, state)
            else:
                http.send_headers(stream_id, fields)
                self.transmit()
                if not no_body:
                    async for chunk in stream:
                        if not chunk:
                            continue
                        if self._lost or state.reset:
                            raise ConnectionResetError("the viewer cancelled the stream")
                        view = memoryview(chunk)
                        for start in range(0, len(view), SEND_PIECE):
                            # Piece by piece: what waits in QUIC stays near SEND_HIGH_WATER.
                            piece = bytes(view[start : start + SEND_PIECE])
                            http.send_data(stream_id, piece, end_stream=False)
                            sent += len(piece)
                            self.transmit()
                            await self._drain(stream_id, state)
                http.send_data(stream_id, b"", end_stream=True)
                self.transmit()
            completed = not self._lost and not state.reset
        except OriginError as exc:
            # The origin failed mid-body: reset the stream so the truncation is visible (RFC 9114 §4.1.1).
            log.warning("origin failed mid-body for %s: %s", ctx.request.path, exc)
            self._refuse_stream(stream_id, ErrorCode.H3_INTERNAL_ERROR)
        except ConnectionError:
            pass  # the viewer cancelled the stream or left
        except Exception:
            log.exception("response stream failed for %s", ctx.request.path)
            self._refuse_stream(stream_id, ErrorCode.H3_INTERNAL_ERROR)
        finally:
            if stream is not None and hasattr(stream, "aclose"):
                with contextlib.suppress(Exception):
                    await stream.aclose()
            await response.finish(completed)
            pipeline.finish(ctx, status, sent, completed)

    # ------------------------------------------------------------------ graceful stop
    def begin_shutdown(self) -> None:
        """Graceful stop: GOAWAY (RFC 9114 §5.2) naming the first stream not yet seen; the streams being
        answered finish, then the connection closes with H3_NO_ERROR."""
        http = self._http
        if self._lost:
            return
        if http is None:
            self.close(ErrorCode.H3_NO_ERROR)
            return
        self._goaway_at = self._highest_stream + 4
        http.send_goaway(self._goaway_at)
        self.transmit()
        self._maybe_close_drained()

    def _maybe_close_drained(self) -> None:
        if self._goaway_at is not None and not self._streams and not self._lost:
            self.close(ErrorCode.H3_NO_ERROR, "shutting down")

    @property
    def idle(self) -> bool:
        """No request stream is being answered."""
        return not self._streams

    def abort(self) -> None:
        """Close now (the end of a graceful stop's grace period): streams still open are cut."""
        if not self._lost:
            self.close(ErrorCode.H3_NO_ERROR, "shutting down")
        for state in list(self._streams.values()):
            state.reset = True
            if state.body is not None:
                state.body.abort()
            self._wake(state)
