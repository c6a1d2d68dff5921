"""A connection that switched protocols (RFC 9110 §7.8, ``101 Switching Protocols``): what the HTTP/1.1
protocols hand over to the tunnel pump (``proxy.server.tunnel``).

Both protocols involved — the viewer's ``H1Connection`` and the origin's ``OriginConnection`` — stop parsing
HTTP once the switch is decided and route their transport events to a ``Hold``: bytes, EOF, loss of the
connection and write pauses are kept until the tunnel ``attach``es, then replayed to it in order and
forwarded as they happen. While nothing is attached, reading pauses once ``HOLD_LIMIT`` bytes are held, so
a peer that talks before the tunnel exists cannot make the edge buffer without bound.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

__all__ = ["HOLD_LIMIT", "Hold", "TunnelSink", "UpgradedOrigin"]

HOLD_LIMIT = 64 * 1024  # bytes held before the tunnel attaches; reading pauses above this


class TunnelSink(Protocol):
    """One side of a tunnel, as the protocol hosting that side's transport sees it."""

    def data(self, data: bytes) -> None:
        """Bytes read from this side."""

    def eof(self) -> bool:
        """This side sent EOF (half-close); True keeps its transport open for the other direction."""

    def lost(self) -> None:
        """This side's connection is gone."""

    def writing(self, paused: bool) -> None:
        """This side's transport paused (True) or resumed (False) writing."""


class Hold:
    """The events of one switched transport, held until a ``TunnelSink`` attaches (then forwarded)."""

    __slots__ = ("_data", "_eof", "_lost", "_sink", "reading_paused", "transport", "writing_paused")

    def __init__(self, transport: asyncio.Transport, *, writing_paused: bool) -> None:
        self.transport = transport
        self.writing_paused = writing_paused
        self.reading_paused = False
        self._data = bytearray()
        self._eof = False
        self._lost = False
        self._sink: TunnelSink | None = None

    def data(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None:
            sink.data(data)
            return
        self._data += data
        if len(self._data) > HOLD_LIMIT and not self.reading_paused and not self._lost:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof(self) -> bool | None:
        """For ``eof_received``: True keeps the transport half-open (never for TLS, which cannot be)."""
        sink = self._sink
        if sink is not None:
            return True if sink.eof() else None
        self._eof = True
        return None if self.transport.get_extra_info("sslcontext") is not None else True

    def lost(self) -> None:
        sink = self._sink
        if sink is not None:
            sink.lost()
            return
        self._lost = True

    def writing(self, paused: bool) -> None:
        self.writing_paused = paused
        if self._sink is not None:
            self._sink.writing(paused)

    @property
    def attached(self) -> bool:
        """Whether a tunnel took these events over."""
        return self._sink is not None

    def attach(self, sink: TunnelSink) -> None:
        """Replay what was held to ``sink``, then forward every later event to it. The sink's owner decides
        whether reading resumes (``reading_paused`` says whether the hold paused it)."""
        self._sink = sink
        held, self._data = bytes(self._data), bytearray()
        if held:
            sink.data(held)
        if self._eof:
            sink.eof()
        if self._lost:
            sink.lost()


@dataclass(slots=True)
class UpgradedOrigin:
    """The origin's side of a connection it switched (its ``101`` head already read): the protocol it
    switched to, its events (``hold``) and the idle timeout of the tunnel (the origin's ``read_timeout``)."""

    protocol: str
    hold: Hold
    idle_timeout: float

    @property
    def transport(self) -> asyncio.Transport:
        return self.hold.transport

    def close(self) -> None:
        """Close the origin connection (the 101 was not relayed: the viewer left, or it was replaced)."""
        self.hold.transport.close()
