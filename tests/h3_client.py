"""A small HTTP/3 client for the tests, on aioquic's own client (QUIC, TLS 1.3, QPACK), talking to 127.0.0.1.

``async with h3_connect(port, cafile) as client`` opens one QUIC connection; ``await client.get(path)``
(or ``request``) sends one request on a new stream and returns its ``H3Response`` once the stream ended
(or was reset: ``reset`` is then set). Several requests may run at once on the one connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream


@dataclass
class H3Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    interim: list[int] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    reset: int | None = None  # the error code when the edge reset the stream
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key == wanted:
                return value.decode()
        return None

    def header_names(self) -> list[str]:
        return [key.decode() for key, _ in self.headers]


class _HoldingQuic(QuicConnection):
    """A client QUIC connection that can stop raising its receive windows (a viewer that reads nothing)."""

    holding = False

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        if not self.holding:
            super()._write_stream_limits(builder, space, stream)


class H3Client(QuicConnectionProtocol):
    """One QUIC connection speaking HTTP/3 as a client."""

    def __init__(self, quic: QuicConnection, *args: Any, **kwargs: Any) -> None:
        quic.__class__ = _HoldingQuic
        super().__init__(quic, *args, **kwargs)
        self.http = H3Connection(self._quic)
        self.responses: dict[int, H3Response] = {}
        self.terminated: ConnectionTerminated | None = None
        self.goaway = asyncio.Event()

    def hold(self, holding: bool) -> None:
        """Stop (True) or resume (False) granting the edge more flow-control credit on every stream."""
        quic = self._quic
        assert isinstance(quic, _HoldingQuic)
        quic.holding = holding
        self.transmit()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            for response in self.responses.values():
                response.done.set()
        if isinstance(event, StreamReset) and event.stream_id in self.responses:
            response = self.responses[event.stream_id]
            response.reset = event.error_code
            response.done.set()
        for h3_event in self.http.handle_event(event):
            self._http_event(h3_event)

    def _http_event(self, event: H3Event) -> None:
        response = self.responses.get(getattr(event, "stream_id", -1))
        if response is None:
            return
        if isinstance(event, HeadersReceived):
            status = int(dict(event.headers)[b":status"])
            if 100 <= status < 200:
                response.interim.append(status)
            else:
                response.status = status
                response.headers = [(k, v) for k, v in event.headers if not k.startswith(b":")]
        elif isinstance(event, DataReceived):
            response.body += event.data
        if getattr(event, "stream_ended", False):
            response.done.set()

    def start(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        authority: str = "localhost",
        end: bool = True,
    ) -> tuple[int, H3Response]:
        """Send a request's head (and body) on a new stream; the response fills in as it comes."""
        stream_id = self._quic.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            *[(k.lower().encode(), v.encode()) for k, v in headers],
        ]
        response = self.responses[stream_id] = H3Response()
        self.http.send_headers(stream_id, fields, end_stream=end and not body)
        if body:
            self.http.send_data(stream_id, body, end_stream=end)
        self.transmit()
        return stream_id, response

    async def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        authority: str = "localhost",
    ) -> H3Response:
        _, response = self.start(method, path, headers, body, authority)
        await asyncio.wait_for(response.done.wait(), 30)
        return response

    async def get(self, path: str, headers: Sequence[tuple[str, str]] = ()) -> H3Response:
        return await self.request("GET", path, headers)


def client_configuration(cafile: Path, **options: Any) -> QuicConfiguration:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN), server_name="localhost")
    configuration.load_verify_locations(str(cafile))
    for name, value in options.items():
        setattr(configuration, name, value)
    return configuration


@asynccontextmanager
async def h3_connect(port: int, cafile: Path, **options: Any) -> AsyncIterator[H3Client]:
    """An HTTP/3 connection to 127.0.0.1:``port`` trusting ``cafile``."""
    configuration = client_configuration(cafile, **options)
    async with connect(
        "127.0.0.1", port, configuration=configuration, create_protocol=H3Client, wait_connected=True
    ) as client:
        assert isinstance(client, H3Client)
        yield client
