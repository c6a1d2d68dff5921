"""What every origin (HTTP server, local folder, later another edge) looks like to the FETCH phase.

The FETCH phase builds an ``OriginRequest`` and calls ``Origin.fetch``; the result's body is an async
iterator of chunks that the pipeline streams to the viewer (and tees into the store). ``release()`` must be
called once the body is no longer wanted, whether it was read to the end or not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.origin.upgrade import UpgradedOrigin


class OriginError(Exception):
    """Base for origin failures the pipeline turns into failover, stale content or a 502/504."""


class OriginConnectError(OriginError):
    """The origin could not be reached (refused, DNS, TLS); answered with 502."""


class OriginTimeoutError(OriginError):
    """The origin did not connect or answer in time; answered with 504."""


class OriginProtocolError(OriginError):
    """The origin sent something that is not valid HTTP; answered with 502."""


@dataclass(slots=True)
class OriginRequest:
    """A request as it leaves the edge: path already rewritten and prefixed, headers already filtered."""

    method: str
    target: str  # origin-form request target: raw path plus "?query" when there is one
    headers: CIMultiDict[str]
    # None: no body; bytes: a buffered body (sent with its Content-Length, replayable on a retry); a stream:
    # sent with ``content_length`` when known, else chunked. The client frames it: framing fields in
    # ``headers`` are ignored.
    body: bytes | AsyncIterator[bytes] | None = None
    viewer_host: str = ""  # the viewer's Host, for host_header: viewer
    # The viewer's raw path before ``rewrite`` ("" when it is ``target``'s path): a folder origin redirects
    # a directory to it plus "/", the URL the viewer knows, never to the rewritten path.
    viewer_path: str = ""
    # Called with each 1xx interim response (103 Early Hints) the origin sends before the final one.
    on_interim: Callable[[int, CIMultiDictProxy[str]], None] | None = None
    content_length: int | None = None  # the length of a streamed ``body``, when the viewer announced it
    # The protocol the viewer asks to switch to ("websocket"): sent with ``Upgrade`` and ``Connection:
    # upgrade`` by ``HttpOrigin.open_tunnel`` (never by ``fetch``, which strips both).
    upgrade: str | None = None


async def _no_release() -> None:
    return None


@dataclass(slots=True)
class OriginResponse:
    """A response head plus a body stream. ``content_length`` is None when the origin did not say."""

    status: int
    headers: CIMultiDict[str]
    body: AsyncIterator[bytes]
    content_length: int | None
    reason: str = ""
    release: Callable[[], Awaitable[None]] = _no_release
    # Set on a 101 answer to ``HttpOrigin.open_tunnel``: the switched connection, for the tunnel pump.
    upgraded: UpgradedOrigin | None = None


class Origin(Protocol):
    """An origin the edge pulls from. ``name`` is the key under ``origins:`` in the config."""

    name: str

    async def fetch(self, request: OriginRequest) -> OriginResponse:
        """Send ``request``; raise an ``OriginError`` subclass when no response head could be had."""
        ...

    async def close(self) -> None:
        """Release pooled connections; called once at shutdown."""
        ...
