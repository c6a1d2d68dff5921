"""The byte pump of a switched connection (WebSocket): viewer ↔ origin, once the origin's ``101`` was relayed.

Created by the viewer front (``H1Connection``) after it wrote the ``101 Switching Protocols`` head; ``start``
attaches to the ``Hold`` of each side (``proxy.origin.upgrade``), which first replays what arrived after the
handshake, and from then on every byte read on one side is written to the other. ``done`` resolves once
both connections are gone; ``bytes_up`` (viewer → origin) and ``bytes_down`` (origin → viewer) are then
final, for the access log.

Rules:
- Backpressure: when one side's transport pauses writing (its buffer is above the high-water mark), the
  other side stops reading until it resumes; so a slow reader never makes the edge buffer more than a
  transport's buffer plus one read.
- Idle timeout (``origins.NAME.read_timeout``): when no byte moved either way for that long (a write buffer
  draining counts as movement), both connections are closed; connections that still have not gone one
  timeout later are cut.
- Close: EOF from one side is passed on as a half-close (``write_eof``) where the other transport supports
  it, and both close once both directions ended; otherwise (TLS) both close. A connection lost on one side
  closes the other (after what was written to it is flushed).
"""

from __future__ import annotations

import asyncio
import contextlib

from proxy.origin.upgrade import Hold

__all__ = ["Tunnel"]


class _End:
    """One side of the tunnel: receives its transport's events (through its ``Hold``) and writes to the
    peer's transport."""

    __slots__ = (
        "_tunnel",
        "eof_seen",
        "gone",
        "max_peer_buffer",
        "name",
        "peer",
        "reading_paused",
        "transport",
        "writing_paused",
    )

    def __init__(self, tunnel: Tunnel, hold: Hold, name: str) -> None:
        self._tunnel = tunnel
        self.name = name
        self.transport = hold.transport
        self.writing_paused = hold.writing_paused
        self.reading_paused = hold.reading_paused
        self.eof_seen = False  # this side sent EOF: nothing more comes from it
        self.gone = False  # this side's connection is lost
        self.max_peer_buffer = 0  # the largest write buffer seen on the peer after writing this side's bytes
        self.peer: _End = self

    # ---- TunnelSink
    def data(self, data: bytes) -> None:
        tunnel = self._tunnel
        tunnel.touch()
        if self.name == "viewer":
            tunnel.bytes_up += len(data)
        else:
            tunnel.bytes_down += len(data)
        peer = self.peer
        if peer.gone or tunnel.closing:
            return  # the other side is gone: what is still read is dropped
        peer.transport.write(data)
        size = peer.transport.get_write_buffer_size()
        if size > self.max_peer_buffer:
            self.max_peer_buffer = size
        if peer.writing_paused:
            self.pause_reading()

    def eof(self) -> bool:
        self.eof_seen = True
        peer = self.peer
        tls = self.transport.get_extra_info("sslcontext") is not None
        if peer.eof_seen or peer.gone or tls or not peer.transport.can_write_eof():
            self._tunnel.close()
            return False
        try:
            peer.transport.write_eof()  # half-close: the other direction keeps flowing
        except (OSError, RuntimeError):
            self._tunnel.close()
            return False
        return True

    def lost(self) -> None:
        self.gone = True
        tunnel = self._tunnel
        if not self.peer.gone:
            tunnel.close()  # flushes what was written to the peer, then closes it
        tunnel.check_done()

    def writing(self, paused: bool) -> None:
        self.writing_paused = paused
        peer = self.peer
        if paused:
            peer.pause_reading()
        else:
            self._tunnel.touch()  # the buffer drained: the reader is alive
            peer.resume_reading()

    # ---- flow control
    def pause_reading(self) -> None:
        if not self.reading_paused and not self.gone:
            self.reading_paused = True
            self._tunnel.read_pauses += 1
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.gone and not self._tunnel.closing:
            self.reading_paused = False
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()


class Tunnel:
    """Pipes bytes between ``viewer`` and ``origin`` (each a ``Hold``) until both are gone."""

    def __init__(self, viewer: Hold, origin: Hold, *, idle_timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._viewer_hold = viewer
        self._origin_hold = origin
        self.viewer = _End(self, viewer, "viewer")
        self.origin = _End(self, origin, "origin")
        self.viewer.peer = self.origin
        self.origin.peer = self.viewer
        self.idle_timeout = idle_timeout
        self.bytes_up = 0  # viewer → origin
        self.bytes_down = 0  # origin → viewer
        self.read_pauses = 0  # how often a side stopped reading because the other could not keep up
        self.closing = False
        self.idle_closed = False  # closed by the idle timeout
        self.done: asyncio.Future[None] = self._loop.create_future()
        self._last = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Take both sides over: replay what each sent after the handshake, then pump."""
        self._timer = self._loop.call_at(self._last + self.idle_timeout, self._on_timer)
        self._viewer_hold.attach(self.viewer)
        self._origin_hold.attach(self.origin)
        for end in (self.viewer, self.origin):
            if end.reading_paused and not end.peer.writing_paused:
                end.resume_reading()  # paused by its hold while nobody was attached
        self.check_done()

    def touch(self) -> None:
        """Bytes moved: the idle timeout starts again."""
        self._last = self._loop.time()

    def close(self) -> None:
        """Close both connections (each flushes what was written to it first)."""
        if not self.closing:
            self._last = self._loop.time()  # from now on, the flush has one idle timeout to finish
        self.closing = True
        for end in (self.viewer, self.origin):
            if not end.gone:
                end.transport.close()

    def abort(self) -> None:
        """Cut both connections now."""
        self.closing = True
        for end in (self.viewer, self.origin):
            if not end.gone:
                end.transport.abort()

    def check_done(self) -> None:
        if self.viewer.gone and self.origin.gone and not self.done.done():
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.done.set_result(None)

    def _on_timer(self) -> None:
        self._timer = None
        if self.done.done():
            return
        now = self._loop.time()
        if self.closing:
            # Closed a timeout ago and still not gone (a peer that reads nothing holds the flush): cut.
            if now - self._last >= self.idle_timeout:
                self.abort()
                return
        elif now - self._last >= self.idle_timeout:
            self.idle_closed = True
            self.close()
            self._last = now
        self._timer = self._loop.call_at(self._last + self.idle_timeout, self._on_timer)

    @property
    def max_viewer_buffer(self) -> int:
        """The largest write buffer the viewer's transport held after the edge wrote origin bytes to it."""
        return self.origin.max_peer_buffer
