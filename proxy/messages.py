"""The messages every layer exchanges: requests, responses, guard verdicts and what a guard reads.

The viewer front (``proxy.server.http1``, the edge's own HTTP/1.1 server) turns what it received into an
``EdgeRequest``, calls ``Pipeline.handle``, and writes the ``EdgeResponse`` it gets back. Guards
(``proxy.edge``) read a ``GuardInput`` and answer with a ``Verdict``; edge functions
(``proxy.functions.bridge``) convert to and from these types.

This module sits at the bottom of the import graph: it imports only leaf modules (``proxy.http.reasons``
and ``proxy.origin.upgrade``, which import nothing in the project), so any layer may import it without the
arrow pointing up (checked by tests/unit/test_import_layers.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.http.reasons import BlockReason
from proxy.origin.upgrade import UpgradedOrigin

__all__ = [
    "BodyPart",
    "EdgeRequest",
    "EdgeResponse",
    "Guard",
    "GuardInput",
    "Headers",
    "RoutedTo",
    "Verdict",
    "nothing_to_finish",
]

Headers = CIMultiDict[str] | CIMultiDictProxy[str]
BodyPart = bytes | memoryview


@dataclass(slots=True)
class EdgeRequest:
    """A viewer request. ``path`` is the raw (still percent-encoded) path, ``query`` the raw query string
    without the ``?`` (empty when there is none)."""

    method: str
    path: str
    query: str
    headers: Headers
    client_ip: str
    host: str
    scheme: str = "http"
    version: tuple[int, int] = (1, 1)
    body: AsyncIterator[bytes] | None = None
    content_length: int | None = None
    # Set by the front: relays a 1xx interim response (103 Early Hints) to the viewer before the final one.
    on_interim: Callable[[int, CIMultiDictProxy[str]], None] | None = None
    # Set by the front to "websocket" for a WebSocket handshake (``Upgrade: websocket`` with ``Connection:
    # upgrade``): the pipeline tunnels it rather than caching (other upgrades are served without switching).
    upgrade: str | None = None

    @property
    def target(self) -> str:
        """The origin-form request target: path plus ``?query`` when there is one."""
        return f"{self.path}?{self.query}" if self.query else self.path


async def nothing_to_finish(completed: bool) -> None:
    """``EdgeResponse.finish`` when there is nothing to release (a front may skip awaiting it)."""
    return None


@dataclass(slots=True)
class EdgeResponse:
    """A response to write to the viewer.

    Exactly one body form is used: ``body`` (bytes or a list of parts written in order, never copied) or
    ``stream`` (an async iterator whose chunks are written as they come). ``content_length`` is the length
    the front announces; None means the front frames the body itself (chunked). ``no_body`` is set for
    HEAD, 204 and 304 answers: the head is written, no body ever is, even when ``content_length`` is set.
    ``finish`` is awaited once the front is done with the stream, with ``completed`` telling whether the
    whole body reached the viewer.
    """

    status: int
    headers: CIMultiDict[str]
    body: BodyPart | Sequence[BodyPart] = b""
    stream: AsyncIterator[bytes] | None = None
    content_length: int | None = None
    no_body: bool = False
    finish: Callable[[bool], Awaitable[None]] = field(default=nothing_to_finish)
    # A 101 answer to a WebSocket handshake: the origin's switched connection, which the front pipes to the
    # viewer's once the head is written (``proxy.server.tunnel``).
    tunnel: UpgradedOrigin | None = None
    # The hit fast path (``proxy.pipeline.encoded``): every header line of the response, pre-encoded
    # (``Name: value`` CRLF each) in parts written in order and never joined, with ``headers`` left empty;
    # the front adds only its status line and framing fields.
    head: tuple[bytes, ...] | None = None


# ------------------------------------------------------------------------------------------------- guards
# Guards: checks that run in RECV, before any cache work (firewall, rate limits, geo, signed URLs …).
#
# Built once per runtime by ``proxy.edge.build_guards(config)`` and handed to the pipeline. For each request,
# after the behaviour is matched, every guard's ``check`` is called in order; the first ``Verdict`` stops the
# request with a synthetic response (403, 429 …). A guard may also adjust the request (e.g. the client
# address when the peer is a trusted proxy) and return None to let it pass. Guards are synchronous: they run
# on every request, cache hits included, so they must be cheap and never wait on I/O.


@dataclass(slots=True)
class Verdict:
    """Stop the request: answer ``status`` with ``body``; ``reason`` goes to Cache-Status detail= and the
    access log (``firewall-deny``, ``rate-limited`` …)."""

    status: int
    reason: BlockReason
    body: str = ""
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)


class RoutedTo(Protocol):
    """The behaviour a request was routed to, as a guard sees it."""

    @property
    def path(self) -> str:
        """The behaviour's path pattern (its key in per-behaviour guard tables)."""
        ...


class GuardInput(Protocol):
    """What a guard reads of a request in RECV (the pipeline's ``RequestContext`` is one)."""

    @property
    def request(self) -> EdgeRequest:
        """The viewer request; a guard may adjust it (client address, query without signature)."""
        ...

    @property
    def behaviour(self) -> RoutedTo | None:
        """The matched behaviour (None before routing)."""
        ...

    @property
    def now(self) -> float:
        """Wall clock (epoch seconds) when the request arrived."""
        ...

    @property
    def started(self) -> float:
        """Monotonic clock when the request arrived."""
        ...


class Guard(Protocol):
    """One RECV check."""

    def check(self, ctx: GuardInput) -> Verdict | None:
        """None lets the request go on; a Verdict answers it at once."""
        ...
