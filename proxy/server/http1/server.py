"""The HTTP/1.1 viewer front's listeners: ``H1Server`` accepts connections (plain or TLS) for a pipeline.

``make_server(pipeline, server_config)`` is called by ``proxy.app.Edge`` once per listener kind (``http``
and, with ``server.tls``, ``https``); ``listen`` binds an address (port 0: a free port) and ``shutdown``
stops gracefully: no new connections, idle keep-alive connections closed at once, busy ones answer what
they have read (the last response says ``Connection: close``) and close; whatever is left after the
grace period is cut.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
from collections.abc import Callable

from proxy.edge.hardening import RequestPolicy
from proxy.pipeline.pipeline import Pipeline
from proxy.server.http1.connection import H1Connection, ViewerConnection
from proxy.server.http1.wire import DateCache
from proxy.server.tunnel import Tunnel
from proxy.settings import ServerConfig

__all__ = ["H1Server", "default_max_connections", "make_server"]


def default_max_connections() -> int:
    """Viewer connections one worker accepts at once: half the open-file limit (origins and the shared
    tier need descriptors too), between 64 and 10,000."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(64, min(10_000, soft // 2))


class H1Server:
    """The protocol factory and listeners of one front; ``connections`` are the open viewer connections
    (beyond ``max_connections`` a new one is closed at once, as nginx's ``worker_connections``)."""

    def __init__(
        self,
        pipeline: Pipeline,
        policy: RequestPolicy,
        *,
        scheme: str = "http",
        max_connections: int | None = None,
        lingering_time: float = 10.0,
    ) -> None:
        self.pipeline = pipeline
        self.policy = policy
        self.scheme = scheme
        self.max_connections = max_connections or default_max_connections()
        self.lingering_time = lingering_time
        self.dates = DateCache()
        self.connections: set[ViewerConnection] = set()  # HTTP/1.1 and HTTP/2 ones
        self.tunnels: set[Tunnel] = set()  # WebSocket tunnels open on these connections
        self.refused_connections = 0
        self.draining = False
        self.alt_svc = ""  # set by proxy.app when HTTP/3 is on: "Alt-Svc: h3=…" CRLF on every response
        self.addresses: list[tuple[str, int]] = []
        # Set by proxy.server.http2.enable_http2: makes the protocol that picks HTTP/2 or HTTP/1.1.
        self.dispatch: Callable[[], asyncio.Protocol] | None = None
        self._servers: list[asyncio.Server] = []

    def __call__(self) -> asyncio.Protocol:
        if self.dispatch is not None:
            return self.dispatch()  # HTTP/2 is on (proxy.server.http2.dispatch)
        return H1Connection(self)

    async def listen(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        backlog: int = 1024,
    ) -> list[tuple[str, int]]:
        """Bind ``host:port`` and accept connections; returns the bound (host, port) pairs."""
        server = await asyncio.get_running_loop().create_server(
            self,
            host,
            port,
            ssl=ssl_context,
            backlog=backlog,
            reuse_port=reuse_port or None,
            reuse_address=True,
        )
        self._servers.append(server)
        bound: list[tuple[str, int]] = []
        for sock in server.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                name = sock.getsockname()
                bound.append((name[0], name[1]))
        self.addresses.extend(bound)
        return bound

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, let busy connections answer what they read (bounded by ``timeout`` seconds),
        close idle ones, then cut whatever is left."""
        self.draining = True
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            connection.begin_shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and any(not c.lingering for c in self.connections):
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            if connection.lingering:
                connection.close_lingering()  # answered: no need to wait for the viewer's close
            else:
                connection.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


def make_server(
    pipeline: Pipeline,
    server: ServerConfig,
    *,
    scheme: str = "http",
    max_connections: int | None = None,
    lingering_time: float = 10.0,
) -> H1Server:
    """The viewer-facing front for ``pipeline`` with ``server.hosts`` and ``server.limits`` applied:
    request screening, head and body limits, ``client_timeout`` (idle keep-alive, slow heads and stalled
    bodies) and bounded connections. ``lingering_time`` bounds how long what a viewer still sends after a
    refusal is read and dropped before the connection closes (so the viewer sees the answer rather than
    a reset)."""
    return H1Server(
        pipeline,
        RequestPolicy.from_config(server),
        scheme=scheme,
        max_connections=max_connections,
        lingering_time=lingering_time,
    )
