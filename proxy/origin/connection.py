"""One HTTP/1.1 connection to an origin: an ``asyncio.Protocol`` that writes requests and parses responses
with ``httptools`` (llhttp).

The pool (``proxy.origin.pool``) opens it and hands it to one exchange at a time; ``HttpOrigin`` drives an
exchange: ``begin`` → ``send`` → ``response_head`` → ``read`` until ``b""`` → back to the pool. Flow control
both ways: ``send`` waits while the transport's write buffer is full (``pause_writing``), and at most
``HIGH_WATER`` body bytes are buffered before reading from the origin pauses until the consumer catches up.

Framing rules (RFC 9112 §6.3): a body longer than its ``Content-Length`` is cut at the declared length and the
connection is never reused; a connection closed before the declared length (or the last chunk) is a
truncation (``OriginProtocolError``); a body without ``Content-Length`` or chunked coding ends at EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.origin.base import OriginError, OriginProtocolError, OriginTimeoutError
from proxy.origin.upgrade import Hold

__all__ = ["EarlyCloseError", "InterimHook", "OriginConnection"]

MAX_HEAD_BYTES = 64 * 1024  # a response head larger than this is refused (interim heads included)
HIGH_WATER = 256 * 1024  # body bytes buffered before reading from the origin pauses
LOW_WATER = 64 * 1024  # ... and resumes once the consumer brought the buffer down to this

InterimHook = Callable[[int, CIMultiDictProxy[str]], None]
_NO_BODY_STATUSES = frozenset((204, 304))


class EarlyCloseError(OriginProtocolError):
    """The origin closed the connection before sending any byte of a response.

    On a reused keep-alive connection this usually means the origin closed it while idle, just as the
    request was sent: ``HttpOrigin`` then retries once on a new connection when the body is replayable."""


def _text(raw: bytes) -> str:
    # The same decoding as aiohttp's parser, so bytes that are not UTF-8 survive a round trip.
    return raw.decode("utf-8", "surrogateescape")


class OriginConnection(asyncio.Protocol):
    """A client connection; ``on_lost`` is called once when the transport is gone (the pool drops it)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read_timeout: float,
        on_lost: Callable[[OriginConnection], None],
    ) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.reusable = True  # False once anything makes a further exchange unsafe
        self.uses = 0  # exchanges begun on this connection (> 1: it was reused)
        self.idle_since = 0.0
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        # The exchange in progress (``_parser`` is None while idle).
        self._parser: httptools.HttpResponseParser | None = None
        self._head_only = False
        self._on_interim: InterimHook | None = None
        self._head_future: asyncio.Future[None] | None = None
        self.status = 0
        self.reason = ""
        self._reason = b""
        self.headers: list[tuple[str, str]] = []
        self.keep_alive = False
        self.content_length: int | None = None
        self.received_any = False
        self.head_done = False
        self.complete = False
        self._eof_framed = False  # body delimited by the connection closing (RFC 9112 §6.3 rule 8)
        self._head_bytes = 0
        self._field_bytes = 0
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._read_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: OriginError | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._upgrade = False  # the request asked to switch protocols: a 101 is its final answer
        self.hold: Hold | None = None  # set once the origin switched: HTTP is no longer parsed

    # ------------------------------------------------------------------ transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reusable = False
        if self.hold is not None:
            self.hold.lost()
        if self._parser is not None:
            self._eof()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(EarlyCloseError("the origin closed the connection"))
        self._cancel_timer()
        self._on_lost(self)

    def eof_received(self) -> bool | None:
        self.reusable = False
        if self.hold is not None:
            return self.hold.eof()
        if self._parser is not None:
            self._eof()
        return None  # close the transport

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.hold is not None:
            self.hold.writing(True)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.hold is not None:
            self.hold.writing(False)
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.hold is not None:
            self.hold.data(data)  # the switched protocol's bytes, for the tunnel
            return
        parser = self._parser
        if parser is None or self.complete:
            # Bytes nobody asked for (after a complete response, or while idle): the origin sent more than
            # it framed (RFC 9112 §6.3); this connection is never reused.
            self.reusable = False
            if parser is None and self.transport is not None:
                self.transport.close()
            return
        self.received_any = True
        if self.head_done:
            self._last_read = self._loop.time()
        else:
            self._head_bytes += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self.hold is not None:
                # RFC 9110 §15.2.2: the new protocol starts right after the 101 head's blank line.
                self._parser = None
                rest = data[exc.args[0] :] if exc.args else b""
                if rest:
                    self.hold.data(rest)
            elif not self.complete:
                self._fail(OriginProtocolError("the origin switched protocols unasked"))
        except httptools.HttpParserError as exc:
            # After the response is complete, what follows is extra data (a body longer than its
            # Content-Length): dropped, and the connection is closed rather than reused.
            if self.complete:
                self.reusable = False
            else:
                self._fail(OriginProtocolError(f"invalid response from the origin: {exc}"))
        if not self.head_done and self._head_bytes > MAX_HEAD_BYTES:
            self._fail(OriginProtocolError("the origin's response head is too large"))

    def _eof(self) -> None:
        """The origin closed its side: the end of a close-delimited body, else a failure."""
        if self.complete or self._error is not None:
            return
        if self.head_done and self._eof_framed:
            self._message_done()
        elif not self.received_any:
            self._fail(EarlyCloseError("the origin closed the connection before answering"))
        elif self.head_done:
            self._fail(OriginProtocolError("the origin closed the connection before the end of the body"))
        else:
            self._fail(OriginProtocolError("the origin closed the connection in the response head"))

    # ------------------------------------------------------------------ parser callbacks
    def on_message_begin(self) -> None:
        if self.complete:
            self.reusable = False  # a second response nobody asked for

    def on_status(self, status: bytes) -> None:
        if not self.head_done:  # may come in pieces, split across reads
            self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # fields after the head are trailers: not forwarded
            self.headers.append((_text(name), _text(value)))
            self._field_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        if self.head_done:
            return
        parser = self._parser
        assert parser is not None
        if self._field_bytes > MAX_HEAD_BYTES:
            self._fail(OriginProtocolError("the origin's response head is too large"))
            return
        status = parser.get_status_code()
        if status < 200 and not (status == 101 and self._upgrade):
            self._interim(status)
            return
        self.status = status
        self.reason = _text(self._reason)
        self.head_done = True
        self.keep_alive = parser.should_keep_alive()
        framed = False
        codings: list[str] = []
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == "content-length":
                with contextlib.suppress(ValueError):
                    self.content_length = int(value)
                framed = True
            elif lowered == "transfer-encoding":
                codings.extend(c.strip().lower() for c in value.split(",") if c.strip())
        if codings:
            # RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; unless chunked is the final
            # coding, a response's body ends when the origin closes the connection.
            self.content_length = None
            framed = codings[-1] == "chunked"
        if status == 101:
            # The switch asked for (``open_tunnel``): from the blank line on, the bytes are the new
            # protocol's; they are held for the tunnel, and the exchange (and its read_timeout) is over.
            assert self.transport is not None
            self.hold = Hold(self.transport, writing_paused=self._write_paused)
            self.reusable = False
            self._message_done()
            head = self._head_future
            if head is not None and not head.done():
                head.set_result(None)
            return
        no_body = self._head_only or status in _NO_BODY_STATUSES
        if not no_body and not framed:
            self._eof_framed = True  # RFC 9112 §6.3 rule 8: the body ends when the connection closes
        self._last_read = self._loop.time()
        if self._timer is None:
            self._arm(self._read_timeout)
        head = self._head_future
        if head is not None and not head.done():
            head.set_result(None)
        if self._head_only:
            # RFC 9110 §9.3.2: a response to HEAD has no body whatever its Content-Length says; llhttp
            # cannot be told, so the exchange ends here and this parser is dropped.
            self._message_done()

    def _interim(self, status: int) -> None:
        """A 1xx before the final response (RFC 9110 §15.2): 100 is for this hop, 101 was never asked for
        (the request carries no Upgrade), 102-199 (103 Early Hints) go to the request's hook."""
        if status == 101:
            self._fail(OriginProtocolError("the origin switched protocols unasked"))
            return
        hook = self._on_interim
        if status != 100 and hook is not None:
            with contextlib.suppress(Exception):  # a viewer gone away must not break the exchange
                hook(status, CIMultiDictProxy(CIMultiDict(self.headers)))
        self.headers = []
        self._reason = b""

    def on_body(self, body: bytes) -> None:
        if self._error is not None:
            return
        if self.complete:
            self.reusable = False  # e.g. a body after a response to HEAD
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.head_done and not self.complete:
            self._message_done()

    # ------------------------------------------------------------------ exchange
    def begin(self, head_only: bool, on_interim: InterimHook | None, *, upgrade: bool = False) -> None:
        """Start an exchange on this (idle) connection; ``head_only`` when the request is HEAD, ``upgrade``
        when it asks to switch protocols (a 101 then ends the exchange and sets ``hold``)."""
        self.uses += 1
        self._upgrade = upgrade
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only
        self._on_interim = on_interim
        self._head_future = None
        self.status = 0
        self.reason = ""
        self._reason = b""
        self.headers = []
        self.keep_alive = False
        self.content_length = None
        self.received_any = self.head_done = self.complete = self._eof_framed = False
        self._head_bytes = self._field_bytes = self._buffered = 0
        self._chunks.clear()
        self._error = None

    def end(self) -> bool:
        """Finish the exchange; True when the connection may carry another one (the pool keeps it)."""
        self._cancel_timer()
        self._parser = None
        self._on_interim = None
        if self._read_paused and self.transport is not None and not self.lost:
            self._read_paused = False
            self.transport.resume_reading()
        return (
            self.complete
            and self.reusable
            and self.keep_alive
            and not self._eof_framed
            and not self._chunks
            and not self.lost
        )

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    async def send(self, head: bytes, body: bytes | AsyncIterator[bytes] | None, chunked: bool) -> None:
        """Write the request: ``head`` (framing fields included), then ``body`` as given, in chunked coding
        when ``chunked``. A stream's own exceptions (the viewer's upload failing) propagate unchanged."""
        transport = self.transport
        if transport is None or self.lost:
            raise EarlyCloseError("the connection to the origin is closed")
        if body is None:
            transport.write(head)
        elif isinstance(body, bytes):
            transport.writelines((head, body)) if body else transport.write(head)
        else:
            transport.write(head)
            async for chunk in body:
                if self.lost:
                    raise EarlyCloseError("the origin closed the connection during the request")
                if not chunk:
                    continue
                if chunked:
                    transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    transport.write(chunk)
                if self._write_paused:
                    await self._drained()
            if chunked and not self.lost:
                transport.write(b"0\r\n\r\n")
        if self._write_paused:
            await self._drained()
        if self._timer is None and self._error is None and not self.complete:
            self._arm(self._read_timeout)  # the response head is due within read_timeout from now

    async def _drained(self) -> None:
        """Wait until the origin took our bytes (bounded by read_timeout: it may have stopped reading)."""
        while self._write_paused and not self.lost:
            self._drain = self._loop.create_future()
            try:
                async with asyncio.timeout(self._read_timeout):
                    await self._drain
            except TimeoutError:
                raise OriginTimeoutError("the origin stopped reading the request") from None
            finally:
                self._drain = None

    async def response_head(self) -> None:
        """Wait for the final response head (``status``, ``reason``, ``headers`` are then set)."""
        if self._error is not None:
            raise self._error
        if self.head_done:
            return
        self._head_future = self._loop.create_future()
        await self._head_future

    async def read(self) -> bytes:
        """The next body chunk; ``b""`` once the body is complete. Raises ``OriginError`` on a failure."""
        while True:
            chunks = self._chunks
            if chunks:
                chunk = chunks.popleft()
                self._buffered -= len(chunk)
                if self._read_paused and self._buffered <= LOW_WATER and self.transport is not None:
                    self._read_paused = False
                    self._last_read = self._loop.time()
                    self.transport.resume_reading()
                return chunk
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    # ------------------------------------------------------------------ internals
    def _message_done(self) -> None:
        self.complete = True
        self._cancel_timer()
        self._wake()

    def _fail(self, error: OriginError) -> None:
        if self._error is not None or self.complete:
            return
        self._error = error
        self.reusable = False
        self._cancel_timer()
        head = self._head_future
        if head is not None and not head.done():
            head.set_exception(error)
        self._wake()
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _arm(self, delay: float) -> None:
        self._timer = self._loop.call_at(self._loop.time() + delay, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        """read_timeout: the head is due within it once the request is sent (one deadline, however the
        origin drips its bytes); then no silence between body bytes may last longer."""
        self._timer = None
        if self._parser is None or self.complete or self._error is not None:
            return
        if not self.head_done:
            self._fail(OriginTimeoutError("the origin sent no response within read_timeout"))
            return
        if self._read_paused:  # the consumer is slow, not the origin
            self._arm(self._read_timeout)
            return
        silent = self._loop.time() - self._last_read
        if silent >= self._read_timeout:
            self._fail(OriginTimeoutError("the origin stopped sending the body for read_timeout"))
        else:
            self._arm(self._read_timeout - silent)
