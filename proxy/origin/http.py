"""HTTP origins: one pooled aiohttp client per origin per worker process.

Created at start-up from ``origins.NAME`` (with ``url``); ``fetch`` is called by the FETCH phase. The client
never follows redirects, keeps no cookie jar and never decompresses: bytes pass through as the origin sent
them (NOTES: aiohttp as proxy client). Failures are translated into the ``OriginError`` family so the
pipeline can answer 502/504 (and, later, fail over).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp.connector import Connection
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from proxy.http.headers import strip_hop_by_hop
from proxy.origin.base import (
    OriginConnectError,
    OriginError,
    OriginProtocolError,
    OriginRequest,
    OriginResponse,
    OriginTimeoutError,
)

READ_CHUNK = 64 * 1024

InterimHook = Callable[[int, CIMultiDictProxy[str]], None]
# The hook of the request being fetched in this task: aiohttp creates the response object itself, so the
# per-request callback travels in a context variable rather than an argument.
_interim_hook: contextvars.ContextVar[InterimHook | None] = contextvars.ContextVar(
    "interim_hook", default=None
)


class InterimAwareResponse(aiohttp.ClientResponse):
    """aiohttp's response, but 1xx interim responses the origin sends before the final one (103 Early
    Hints) are handed to the request's hook as they arrive, instead of being dropped (RFC 9110 §15.2: a
    proxy forwards them). 100 Continue belongs to this hop and 101 is an upgrade: neither is relayed."""

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        hook = _interim_hook.get()
        protocol = connection.protocol
        if hook is None or protocol is None:
            return await super().start(connection)
        original = protocol.read

        async def read() -> Any:
            message, payload = await original()
            if 101 < message.code < 200:
                with contextlib.suppress(Exception):  # a viewer gone away must not break the exchange
                    hook(message.code, message.headers)
            return message, payload

        protocol.read = read  # type: ignore[method-assign]
        try:
            return await super().start(connection)
        finally:
            del protocol.read


# aiohttp adds these unless told not to; the viewer's own values (if any) are forwarded instead.
_SKIP_AUTO_HEADERS = ("Accept-Encoding", "User-Agent", "Content-Type")


def translate_client_error(exc: BaseException) -> OriginError:
    """Map an aiohttp/asyncio exception raised while talking to an origin onto our error family."""
    if isinstance(exc, OriginError):
        return exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.SocketTimeoutError | asyncio.TimeoutError):
        return OriginTimeoutError(str(exc) or "origin timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return OriginConnectError(str(exc))
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return OriginTimeoutError(str(exc) or "origin timed out")
    return OriginProtocolError(str(exc) or type(exc).__name__)


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
    ) -> None:
        self.name = name
        self._tls_verify = tls_verify
        parsed = URL(url)
        self._base = str(parsed.with_path("").with_query(None).with_fragment(None)).rstrip("/")
        self._prefix = parsed.raw_path.rstrip("/")
        self._origin_host = parsed.raw_authority
        self._host_header = host_header
        self._extra_headers = tuple((headers or {}).items())
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout, connect=None
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return self._base + self._prefix

    def _client(self) -> aiohttp.ClientSession:
        # Created lazily inside the running loop (aiohttp sessions bind to the loop they are made in).
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._max_connections,
                ttl_dns_cache=60,
                ssl=self._tls_verify,  # https origins are verified unless the origin opted out
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                response_class=InterimAwareResponse,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
            )
        return self._session

    def host_for(self, viewer_host: str) -> str:
        """The Host header sent to this origin (``host_header``: origin | viewer | a literal name)."""
        if self._host_header == "origin":
            return self._origin_host
        if self._host_header == "viewer":
            return viewer_host or self._origin_host
        return self._host_header

    async def fetch(self, request: OriginRequest) -> OriginResponse:
        """Send the request and return once the response head arrived; the body streams afterwards."""
        headers = request.headers
        headers["Host"] = self.host_for(request.viewer_host)
        for name, value in self._extra_headers:
            headers[name] = value
        url = URL(self._base + self._prefix + request.target, encoded=True)
        token = _interim_hook.set(request.on_interim)
        try:
            response = await self._client().request(
                request.method,
                url,
                headers=headers,
                data=request.body,
                allow_redirects=False,
                compress=False,
            )
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise translate_client_error(exc) from exc
        finally:
            _interim_hook.reset(token)
        out_headers = CIMultiDict(response.headers)
        strip_hop_by_hop(out_headers)
        # The adapter frames the body itself; the origin's Content-Length stays valid since bytes are
        # passed through undecoded (auto_decompress=False).
        length = response.content_length

        async def release() -> None:
            response.release()

        return OriginResponse(
            status=response.status,
            headers=out_headers,
            body=_iterate(response),
            content_length=length,
            reason=response.reason or "",
            release=release,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _iterate(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Yield body chunks as they arrive; a failure mid-body becomes an ``OriginError``."""
    content = response.content
    try:
        while True:
            chunk = await content.readany()
            if not chunk:
                break
            yield chunk
    except (TimeoutError, aiohttp.ClientError) as exc:
        response.close()
        raise translate_client_error(exc) from exc
