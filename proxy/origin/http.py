"""HTTP origins: our own HTTP/1.1 client, one connection pool per origin per worker process.

Created at start-up from ``origins.NAME`` (with ``url``); ``fetch`` is called by the FETCH phase. The client
never follows redirects, keeps no cookies and never decodes content: bytes pass through as the origin sent
them. Framing is always ours (RFC 9112 §6): the caller's ``Content-Length``, ``Transfer-Encoding``,
``Connection``, ``Keep-Alive`` and ``Expect`` fields are dropped and the body decides — none, a
``Content-Length`` for bytes or a stream of known length, chunked coding otherwise. ``Expect: 100-continue``
is never sent: an origin that never answers 100 (Python's ``http.server``) must not wedge a connection.
Failures are translated into the ``OriginError`` family so the pipeline can answer 502/504 or fail over.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

from multidict import CIMultiDict

from proxy.http.headers import CONNECTION_FIELDS, parse_list_header, strip_hop_by_hop
from proxy.origin.base import (
    OriginConnectError,
    OriginError,
    OriginProtocolError,
    OriginRequest,
    OriginResponse,
    OriginTimeoutError,
)
from proxy.origin.connection import EarlyCloseError, OriginConnection
from proxy.origin.pool import ConnectionPool
from proxy.origin.upgrade import UpgradedOrigin

__all__ = ["HttpOrigin"]

# Fields the client sets itself (framing, connection management, Host), dropped from the given headers.
_OWN_FIELDS = CONNECTION_FIELDS | {"host", "content-length", "expect"}
# RFC 9110 §8.6: a request whose method defines a body says Content-Length: 0 when it has none.
_EMPTY_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))


class HttpOrigin:
    """An origin reached over HTTP(S). ``url`` may carry a path prefix that is put before every path."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        host_header: str = "origin",
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        max_connections: int = 100,
        headers: dict[str, str] | None = None,
        tls_verify: bool = True,
        keepalive_timeout: float = 4.0,
    ) -> None:
        self.name = name
        parts = urlsplit(url)
        self._tls = parts.scheme == "https"
        self._tls_verify = tls_verify
        self._ssl: ssl.SSLContext | None = None
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        self._origin_host = parts.netloc.rpartition("@")[2]
        self._prefix = parts.path.rstrip("/")
        self._base = f"{parts.scheme}://{self._origin_host}"
        self._host_header = host_header
        self._extra = tuple((headers or {}).items())
        self._extra_names = frozenset(name.lower() for name, _ in self._extra)
        self._extra_lines = "".join(f"{k}: {v}\r\n" for k, v in self._extra)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool = ConnectionPool(
            self._connect,
            max_connections=max_connections,
            keepalive_timeout=keepalive_timeout,
            wait_timeout=connect_timeout,
        )

    @property
    def url(self) -> str:
        return self._base + self._prefix

    @property
    def pool(self) -> ConnectionPool:
        return self._pool

    def host_for(self, viewer_host: str) -> str:
        """The Host header sent to this origin (``host_header``: origin | viewer | a literal name)."""
        if self._host_header == "origin":
            return self._origin_host
        if self._host_header == "viewer":
            return viewer_host or self._origin_host
        return self._host_header

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            context = ssl.create_default_context()
            if not self._tls_verify:  # the origin opted out (self-signed certificates)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl = context
        return self._ssl

    async def _connect(self) -> OriginConnection:
        """Open a new connection (TLS with SNI = the origin's host name for https origins)."""
        loop = asyncio.get_running_loop()
        conn = OriginConnection(loop, self._read_timeout, self._pool.lost)
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._tls:
                    await loop.create_connection(
                        lambda: conn, self._host, self._port, ssl=self._context(), server_hostname=self._host
                    )
                else:
                    await loop.create_connection(lambda: conn, self._host, self._port)
        except TimeoutError:
            raise OriginTimeoutError(f"connecting to {self.url} timed out") from None
        except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
            raise OriginConnectError(f"cannot connect to {self.url}: {exc}") from exc
        return conn

    def _head(self, request: OriginRequest) -> tuple[bytes, bool]:
        """The request head, encoded once, and whether the body goes chunked."""
        lines = [request.method, " ", self._prefix, request.target, " HTTP/1.1\r\nHost: "]
        lines.append(self.host_for(request.viewer_host))
        lines.append("\r\n")
        count = 2
        own, extra = _OWN_FIELDS, self._extra_names
        for name, value in request.headers.items():
            lowered = name.lower()
            if lowered in own or lowered in extra:
                continue
            lines += (name, ": ", value, "\r\n")
            count += 1
        if self._extra_lines:
            lines.append(self._extra_lines)
            count += len(self._extra)
        if request.upgrade is not None:
            # RFC 9110 §7.8: Upgrade is hop-by-hop, so it is listed in Connection (open_tunnel only).
            lines += ("Upgrade: ", request.upgrade, "\r\nConnection: Upgrade\r\n")
            count += 2
        body = request.body
        chunked = False
        if body is None:
            if request.method in _EMPTY_BODY_METHODS:
                lines.append("Content-Length: 0\r\n")
                count += 1
        elif isinstance(body, bytes):
            lines += ("Content-Length: ", str(len(body)), "\r\n")
            count += 1
        elif request.content_length is not None:
            lines += ("Content-Length: ", str(request.content_length), "\r\n")
            count += 1
        else:
            lines.append("Transfer-Encoding: chunked\r\n")
            chunked = True
            count += 1
        lines.append("\r\n")
        text = "".join(lines)
        # Each line ends with exactly one CR LF: any other CR or LF came from a value (header injection).
        if text.count("\n") != count + 1 or text.count("\r") != count + 1:
            raise OriginProtocolError("a request field contains a line break")
        return text.encode("utf-8", "surrogateescape"), chunked

    async def fetch(self, request: OriginRequest) -> OriginResponse:
        """Send the request and return once the response head arrived; the body streams afterwards.

        A request that fails on a reused connection before any response byte (the origin closed it while
        idle) is sent once more on a new connection when its body can be replayed (none, or bytes)."""
        try:
            head, chunked = self._head(request)
        except UnicodeEncodeError as exc:
            raise OriginProtocolError(f"a request field cannot be encoded: {exc}") from None
        body = request.body
        if body is not None and not isinstance(body, bytes):
            # Wait for the viewer's first body bytes before taking a connection: an upload that fails at
            # once (bad chunk framing, a limit, a viewer gone) never reaches the origin, and a slow uploader
            # does not hold a pooled connection while it has sent nothing.
            first = await anext(body, b"")
            request.body = _prepended(first, body)
        conn = await self._pool.acquire()
        try:
            return await self._exchange(conn, request, head, chunked)
        except EarlyCloseError:
            body = request.body
            if conn.uses < 2 or not (body is None or isinstance(body, bytes)):
                raise
        conn = await self._pool.acquire(fresh=True)
        return await self._exchange(conn, request, head, chunked)

    async def open_tunnel(self, request: OriginRequest) -> OriginResponse:
        """Send a request asking to switch to ``request.upgrade`` (a WebSocket handshake) on a new
        connection that never joins the pool, and return once the response head arrived.

        A ``101`` carrying the asked protocol in its ``Upgrade`` field comes back with ``upgraded`` set
        (the connection, its bytes held for the tunnel, idle timeout ``read_timeout``); any other answer
        is a normal response whose connection is closed once its body was read. No retry: a failure
        raises the ``OriginError`` the pipeline turns into 502/504."""
        protocol = request.upgrade
        assert protocol is not None and request.body is None
        try:
            head, _ = self._head(request)
        except UnicodeEncodeError as exc:
            raise OriginProtocolError(f"a request field cannot be encoded: {exc}") from None
        conn = await self._connect()
        conn.begin(False, request.on_interim, upgrade=True)
        try:
            await conn.send(head, None, False)
            await conn.response_head()
        except BaseException:
            conn.end()
            conn.close()
            raise
        conn.reusable = False  # never pooled, whatever the answer
        headers: CIMultiDict[str] = CIMultiDict(conn.headers)
        hold = conn.hold
        if hold is not None:
            offered = {t.lower() for t in parse_list_header(headers.getall("Upgrade", ()))}
            if protocol.lower() not in offered:
                conn.close()
                raise OriginProtocolError(f"the origin switched to {offered or 'nothing'}, not {protocol}")
        strip_hop_by_hop(headers)
        if hold is not None:
            return OriginResponse(
                status=101,
                headers=headers,
                body=_nothing(),
                content_length=None,
                reason=conn.reason,
                release=_closer(conn),
                upgraded=UpgradedOrigin(protocol, hold, self._read_timeout),
            )
        return self._response(conn, headers)  # released as not reusable: closed, never pooled

    async def _exchange(
        self, conn: OriginConnection, request: OriginRequest, head: bytes, chunked: bool
    ) -> OriginResponse:
        conn.begin(request.method == "HEAD", request.on_interim)
        try:
            try:
                await conn.send(head, request.body, chunked)
            except OriginError:
                if not conn.head_done:  # an early answer (say 413) stands even if the upload failed
                    raise
                conn.reusable = False
            await conn.response_head()
        except BaseException:
            conn.end()
            self._pool.release(conn, False)
            raise
        headers: CIMultiDict[str] = CIMultiDict(conn.headers)
        strip_hop_by_hop(headers)
        return self._response(conn, headers)

    def _response(self, conn: OriginConnection, headers: CIMultiDict[str]) -> OriginResponse:
        """The response whose head ``conn`` read; its body streams from ``conn``, which goes back to the
        pool once the body is complete (or is closed by ``release`` before that)."""
        body = ResponseBody(conn, self._pool)
        return OriginResponse(
            status=conn.status,
            headers=headers,
            body=body,
            content_length=conn.content_length,
            reason=conn.reason,
            release=body.release,
        )

    async def close(self) -> None:
        await self._pool.close()


class ResponseBody:
    """The body of one response, read from its connection; the connection goes back to the pool as soon
    as the body is complete, or is closed by ``release`` when the body was not read to the end."""

    __slots__ = ("_conn", "_pool")

    def __init__(self, conn: OriginConnection, pool: ConnectionPool) -> None:
        self._conn: OriginConnection | None = conn
        self._pool = pool

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        try:
            chunk = await conn.read()
        except BaseException:
            self._finish()
            raise
        if not chunk:
            self._finish()
            raise StopAsyncIteration
        return chunk

    def _finish(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._pool.release(conn, conn.end())

    async def release(self) -> None:
        self._finish()


async def _prepended(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``first`` (already read from ``rest``), then the rest of the stream."""
    if first:
        yield first
    async for chunk in rest:
        yield chunk


async def _nothing() -> AsyncIterator[bytes]:
    """The (empty) body of a 101 answer."""
    return
    yield b""  # pragma: no cover - makes this an async generator


def _closer(conn: OriginConnection) -> Callable[[], Awaitable[None]]:
    """``release`` of a 101 answer: closes the switched connection unless the tunnel took it."""

    async def release() -> None:
        if conn.hold is None or not conn.hold.attached:
            conn.close()

    return release
