"""A raw HTTP/2 client for the tests: the ``h2`` library (client side) on an asyncio socket, plain (prior
knowledge) or TLS with ALPN ``h2``. It can behave well (``request``) or badly (``send_raw``, frames built
by hand, windows never opened) to play the hostile viewers of the protection tests."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass
class Reply:
    """What came back on one stream."""

    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class H2Client:
    """One HTTP/2 connection to the edge. ``auto_ack=False`` never opens the flow-control windows."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, auto_ack: bool) -> None:
        self.reader = reader
        self.writer = writer
        self.auto_ack = auto_ack
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.replies: dict[int, Reply] = {}
        self.goaway: ConnectionTerminated | None = None
        self.closed = False
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        auto_ack: bool = True,
        settings: dict[int, int] | None = None,
        preface: bool = True,
    ) -> H2Client:
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
        )
        client = cls(reader, writer, auto_ack)
        if preface:
            client.conn.initiate_connection()
            if settings:
                client.conn.update_settings(settings)
            client.flush()
        client._task = asyncio.get_running_loop().create_task(client._read())
        return client

    @staticmethod
    def tls_context() -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def send_raw(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def _read(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                try:
                    events = self.conn.receive_data(data)
                except Exception:
                    break
                for event in events:
                    self._on(event)
                self.flush()
                self.changed.set()
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            self.changed.set()

    def _on(self, event: object) -> None:
        if isinstance(event, ResponseReceived):
            reply = self.replies.setdefault(event.stream_id, Reply())
            headers = [(str(k), str(v)) for k, v in event.headers or ()]
            reply.status = int(dict(headers)[":status"])
            reply.headers = headers
        elif isinstance(event, DataReceived):
            reply = self.replies.setdefault(event.stream_id, Reply())
            reply.body += event.data or b""
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
        elif isinstance(event, StreamEnded):
            self.replies.setdefault(event.stream_id, Reply()).ended = True
        elif isinstance(event, StreamReset):
            self.replies.setdefault(event.stream_id, Reply()).reset = event.error_code
        elif isinstance(event, ConnectionTerminated):
            self.goaway = event

    async def wait(self, condition: object, timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds (or the connection closed), failing after ``timeout``."""
        assert callable(condition)
        async with asyncio.timeout(timeout):
            while not condition():
                if self.closed:
                    return
                self.changed.clear()
                await self.changed.wait()

    def start(
        self,
        path: str,
        *,
        method: str = "GET",
        authority: str = "127.0.0.1",
        scheme: str = "https",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> int:
        """Send a request; returns its stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)]
        fields += headers or []
        self.conn.send_headers(stream_id, fields, end_stream=body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.replies[stream_id] = Reply()
        self.flush()
        return stream_id

    def open(self, path: str, *, method: str = "POST", headers: list[tuple[str, str]] | None = None) -> int:
        """Send a request head whose body follows (``send_body``); returns its stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "https"), (":authority", "127.0.0.1"), (":path", path)]
        self.conn.send_headers(stream_id, fields + (headers or []), end_stream=False)
        self.replies[stream_id] = Reply()
        self.flush()
        return stream_id

    async def send_body(self, stream_id: int, body: bytes, timeout: float = 20.0) -> None:
        """Send ``body`` within the edge's flow-control windows (waiting for its WINDOW_UPDATEs)."""
        view = memoryview(body)
        async with asyncio.timeout(timeout):
            while view:
                window = min(
                    self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
                )
                if window <= 0:
                    self.changed.clear()
                    await self.changed.wait()
                    continue
                self.conn.send_data(stream_id, bytes(view[:window]))
                view = view[window:]
                self.flush()
                await self.writer.drain()
        self.conn.end_stream(stream_id)
        self.flush()

    async def request(self, path: str, timeout: float = 10.0, **kwargs: object) -> Reply:
        stream_id = self.start(path, **kwargs)  # type: ignore[arg-type]
        reply = self.replies[stream_id]
        await self.wait(lambda: reply.ended or reply.reset is not None, timeout)
        return reply

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


TINY_WINDOW = {SettingCodes.INITIAL_WINDOW_SIZE: 0}


class RawClient:
    """A hostile viewer: writes frames it builds itself (hyperframe, its own HPACK encoder) and only
    records what the edge sends back: GOAWAY, RST_STREAM per stream, streams answered, the close."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.encoder = Encoder()
        self.goaway: GoAwayFrame | None = None
        self.resets: dict[int, int] = {}
        self.answered: set[int] = set()
        self.bodies: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.settings: dict[int, int] = {}
        self.closed = False
        self.changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, port: int, tls: ssl.SSLContext) -> RawClient:
        tls.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls, server_hostname="localhost"
        )
        client = cls(reader, writer)
        client.send(PREFACE + SettingsFrame(0).serialize())
        return client

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def headers(
        self, stream_id: int, path: str = "/page", *, end_stream: bool = True, extra: bytes = b""
    ) -> bytes:
        """A HEADERS frame for GET ``path`` (``extra``: HPACK bytes appended to the block)."""
        block = self.encoder.encode(
            [(":method", "GET"), (":scheme", "https"), (":authority", "127.0.0.1"), (":path", path)]
        )
        frame = HeadersFrame(stream_id, block + extra)
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    async def _read(self) -> None:
        buffer = b""
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                buffer += data
                while len(buffer) >= 9:
                    frame, length = Frame.parse_frame_header(memoryview(buffer[:9]))
                    if len(buffer) < 9 + length:
                        break
                    frame.parse_body(memoryview(buffer[9 : 9 + length]))
                    buffer = buffer[9 + length :]
                    if isinstance(frame, GoAwayFrame):
                        self.goaway = frame
                    elif isinstance(frame, RstStreamFrame):
                        self.resets[frame.stream_id] = frame.error_code
                    elif isinstance(frame, HeadersFrame | DataFrame):
                        self.answered.add(frame.stream_id)
                        if isinstance(frame, DataFrame):
                            self.bodies.setdefault(frame.stream_id, bytearray()).extend(frame.data)
                        if "END_STREAM" in frame.flags:
                            self.ended.add(frame.stream_id)
                    elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                        self.settings.update(frame.settings)
                self.changed.set()
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            self.changed.set()

    async def wait(self, condition: object, timeout: float = 10.0) -> None:
        assert callable(condition)
        async with asyncio.timeout(timeout):
            while not condition():
                if self.closed:
                    return
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
