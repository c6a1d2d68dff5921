"""Choosing HTTP/2 or HTTP/1.1 for a new viewer connection.

``enable_http2(front, server_config, tls=...)`` is called by ``proxy.app.Edge`` for a listener that speaks
HTTP/2: the TLS listener (always; ALPN offers ``h2`` then ``http/1.1``, ``proxy.server.tls``) and, with
``server.h2c: true``, the plain ones. It makes ``front`` (an ``H1Server``) create a dispatch protocol per
connection, which hands the transport to an ``H2ViewerConnection`` or an ``H1Connection``:

- ``AlpnDispatch``: after the TLS handshake, by the protocol the viewer and the edge agreed on (RFC 7301);
  no ALPN (or ``http/1.1``) means HTTP/1.1;
- ``PrefaceDispatch``: by the first bytes, the HTTP/2 connection preface (RFC 9113 §3.3, prior
  knowledge) or anything else (HTTP/1.1). A viewer that sends nothing for ``client_timeout`` is dropped.
"""

from __future__ import annotations

import asyncio
from typing import cast

from proxy.server.http1.connection import H1Connection
from proxy.server.http1.server import H1Server
from proxy.server.http2.connection import H2ViewerConnection
from proxy.settings import LimitsConfig, ServerConfig

__all__ = ["PREFACE", "AlpnDispatch", "PrefaceDispatch", "enable_http2"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def enable_http2(front: H1Server, server: ServerConfig, *, tls: bool) -> None:
    """Make ``front`` speak HTTP/2 as well: by ALPN when ``tls``, else by the prior-knowledge preface."""
    limits = server.limits
    if tls:
        front.dispatch = lambda: AlpnDispatch(front, limits)
    else:
        front.dispatch = lambda: PrefaceDispatch(front, limits)


class AlpnDispatch(asyncio.Protocol):
    """Hands a TLS connection to the protocol ALPN chose, as soon as the handshake is done."""

    def __init__(self, front: H1Server, limits: LimitsConfig) -> None:
        self._front = front
        self._limits = limits

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        protocol: asyncio.Protocol
        if chosen == "h2":
            protocol = H2ViewerConnection(self._front, self._limits)
        else:
            protocol = H1Connection(self._front)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


class PrefaceDispatch(asyncio.Protocol):
    """Reads the first bytes of a plain connection: the HTTP/2 preface → HTTP/2, anything else →
    HTTP/1.1; the bytes read are handed on."""

    def __init__(self, front: H1Server, limits: LimitsConfig) -> None:
        self._front = front
        self._limits = limits
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._front.policy.client_timeout, self._transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        buffer = self._buffer
        if len(buffer) < len(PREFACE) and PREFACE.startswith(buffer):
            return  # could still be the preface
        protocol: asyncio.Protocol
        if buffer.startswith(PREFACE):
            protocol = H2ViewerConnection(self._front, self._limits)
        else:
            protocol = H1Connection(self._front)
        self._hand_over(protocol)

    def eof_received(self) -> bool | None:
        if self._buffer:
            protocol = H1Connection(self._front)  # a partial request line: HTTP/1.1 answers it
            self._hand_over(protocol)
            return protocol.eof_received()
        return None

    def _hand_over(self, protocol: asyncio.Protocol) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self._transport
        assert transport is not None
        buffer, self._buffer = self._buffer, b""
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(buffer)
