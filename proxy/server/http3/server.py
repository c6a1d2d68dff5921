"""The HTTP/3 front's UDP listener (``server.http3: true``): aioquic's QUIC server for our pipeline.

``H3Server`` is created by ``proxy.app.Edge`` next to the HTTPS listener when ``server.http3`` is on, with
the same certificate (``TlsContext``: a certificate the TLS listener reloads is loaded here too, for new
QUIC connections). ``listen`` binds UDP on the TLS listener's port; ``shutdown`` stops gracefully: every
connection gets GOAWAY (RFC 9114 §5.2), the streams being answered finish (bounded by ``timeout``), then
each connection closes with H3_NO_ERROR and the socket closes.

Workers (``server.workers`` > 1): each worker binds the UDP port with SO_REUSEPORT, like the TCP listeners.
The kernel picks the socket by hashing the viewer's address and port, so the datagrams of one QUIC
connection reach the worker that holds it as long as the set of sockets does not change (connection
migration is off: a viewer whose address changes starts a new connection). While workers are replaced (a
reload, a crashed worker), the hash moves some viewers to a worker that does not know their connection:
those connections stall and the viewers reconnect (browsers fall back to the HTTP/1.1 or HTTP/2 listener
meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection

from proxy.edge.hardening import RequestPolicy
from proxy.pipeline.pipeline import Pipeline
from proxy.server.http1.wire import DateCache
from proxy.server.http3.connection import H3Protocol
from proxy.server.tls import TlsContext
from proxy.settings import ServerConfig

__all__ = ["H3Server", "make_h3_server"]

log = logging.getLogger("edgeproxy")

MAX_DATAGRAM_SIZE = 1350  # QUIC packets sized to pass common tunnels without fragmentation


class _Listener(QuicServer):
    """aioquic's server socket protocol, which never lets a datagram crash the edge and picks up a
    reloaded certificate before accepting a new connection."""

    def __init__(self, front: H3Server, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._front = front

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        self._front.refresh_certificate()
        try:
            super().datagram_received(data, addr)
        except Exception:  # garbage is dropped by aioquic; this is a last line, never a crash
            self._front.bad_datagrams += 1
            log.debug("dropped a datagram from %s that aioquic could not handle", addr, exc_info=True)

    def error_received(self, exc: Exception) -> None:
        log.debug("HTTP/3 socket error: %s", exc)


class H3Server:
    """The HTTP/3 front: QUIC configuration, UDP sockets and open connections."""

    def __init__(
        self, pipeline: Pipeline, policy: RequestPolicy, tls: TlsContext, *, max_streams: int
    ) -> None:
        self.pipeline = pipeline
        self.policy = policy
        self.tls = tls
        self.max_streams = max_streams
        self.dates = DateCache()
        self.connections: set[H3Protocol] = set()
        self.draining = False
        self.bad_datagrams = 0
        self.addresses: list[tuple[str, int]] = []
        self._transports: list[asyncio.DatagramTransport] = []
        self._listeners: list[_Listener] = []
        self.configuration = self._configuration()
        self._reloads = tls.reloads

    def _configuration(self) -> QuicConfiguration:
        configuration = QuicConfiguration(
            is_client=False,
            alpn_protocols=list(H3_ALPN),
            idle_timeout=self.policy.client_timeout,
            max_datagram_size=MAX_DATAGRAM_SIZE,
        )
        configuration.load_cert_chain(self.tls.cert, self.tls.key)
        return configuration

    def refresh_certificate(self) -> None:
        """Load the certificate again when the TLS listener reloaded it (new connections use it)."""
        if self.tls.reloads == self._reloads:
            return
        self._reloads = self.tls.reloads
        try:
            self.configuration.load_cert_chain(self.tls.cert, self.tls.key)
        except (OSError, ValueError) as exc:
            log.warning(
                "HTTP/3 could not load the renewed certificate %s (%s); keeping the old one",
                self.tls.cert,
                exc,
            )

    def _protocol(self, quic: QuicConnection, stream_handler: Any = None) -> H3Protocol:
        return H3Protocol(quic, stream_handler, front=self)

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> list[tuple[str, int]]:
        """Bind UDP ``host:port`` and accept QUIC connections; returns the bound (host, port) pairs."""
        loop = asyncio.get_running_loop()
        transport, listener = await loop.create_datagram_endpoint(
            lambda: _Listener(self, configuration=self.configuration, create_protocol=self._protocol),
            local_addr=(host, port),
            reuse_port=reuse_port or None,
        )
        self._transports.append(transport)
        self._listeners.append(listener)
        sock = transport.get_extra_info("socket")
        bound: list[tuple[str, int]] = []
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            name = sock.getsockname()
            bound.append((name[0], name[1]))
        self.addresses.extend(bound)
        return bound

    async def shutdown(self, timeout: float) -> None:
        """GOAWAY to every connection, let the streams being answered finish (at most ``timeout``
        seconds), close every connection, then the sockets."""
        self.draining = True
        for connection in list(self.connections):
            connection.begin_shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and any(not c.idle for c in self.connections):
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.abort()
        # Let the CONNECTION_CLOSE frames leave before the sockets close.
        await asyncio.sleep(0)
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        self._listeners.clear()


def make_h3_server(pipeline: Pipeline, server: ServerConfig, tls: TlsContext) -> H3Server:
    """The HTTP/3 front for ``pipeline`` with ``server.hosts`` and ``server.limits`` applied."""
    return H3Server(
        pipeline,
        RequestPolicy.from_config(server),
        tls,
        max_streams=server.limits.max_concurrent_streams,
    )
