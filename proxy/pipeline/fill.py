"""A cache fill that streams: the origin body goes to the viewer while it is collected for the cache.

Created by the STORE phase for a storable response too large to read whole first. ``stream()`` is what the
adapter writes to the viewer; ``finish(completed)`` is awaited by the adapter when it is done. The entry is
stored only when the body ended complete and within ``max_object_bytes``. When the viewer goes away first,
the rest of a storable body is still fetched in the background and stored, so the next viewer gets a hit
(fill on abort); an unstorable one is abandoned and its origin connection released.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from proxy.cache.entry import CacheEntry
from proxy.http.reasons import NotStoredReason
from proxy.origin.base import OriginError, OriginResponse
from proxy.pipeline.context import RequestContext

if TYPE_CHECKING:
    from proxy.pipeline.background import Background


class Fill:
    """One streaming fill. ``store(ctx, entry)`` is called when the body is complete and storable, then
    ``on_done(ctx)`` exactly once, when the fill is over (it settles the fetch locks the fill holds)."""

    def __init__(
        self,
        ctx: RequestContext,
        entry: CacheEntry,
        response: OriginResponse,
        limit: int,
        *,
        store: Callable[[RequestContext, CacheEntry], bool],
        on_done: Callable[[RequestContext], None],
        background: Background,
    ) -> None:
        self.ctx = ctx
        self.entry = entry
        self.response = response
        self.limit = limit
        self._store = store
        self._on_done = on_done
        self._background = background
        self._parts: list[bytes] | None = []
        self._size = 0
        self._ended = False  # the origin body was read to its end
        self._failed = False  # the origin failed mid-body
        self._over = False

    def _collect(self, chunk: bytes) -> None:
        if self._parts is None:
            return
        self._size += len(chunk)
        if self._size > self.limit:
            self._parts = None
            self.ctx.not_stored = NotStoredReason.TOO_LARGE
        else:
            self._parts.append(chunk)

    async def stream(self) -> AsyncIterator[bytes]:
        """The body for the viewer, chunk by chunk as the origin sends it."""
        try:
            async for chunk in self.response.body:
                self._collect(chunk)
                yield chunk
        except OriginError:
            self._failed = True
            self.ctx.not_stored = NotStoredReason.INCOMPLETE
            raise
        self._ended = True

    async def finish(self, completed: bool) -> None:
        """Called once the viewer's response is over (``completed``: the viewer got every byte)."""
        if self._ended or self._failed or self._parts is None:
            await self._end()
            return
        # The viewer left early (or never started reading): finish the fill without it.
        if not self._background.spawn(self._drain(), name=f"fill {self.ctx.key}"):
            self.ctx.not_stored = NotStoredReason.INCOMPLETE
            await self._end()

    async def _drain(self) -> None:
        try:
            async for chunk in self.response.body:
                self._collect(chunk)
                if self._parts is None:
                    break  # grew too large to store: stop fetching
            else:
                self._ended = True
        except OriginError:
            self._failed = True
            self.ctx.not_stored = NotStoredReason.INCOMPLETE
        finally:
            await self._end()

    async def _end(self) -> None:
        if self._over:
            return
        self._over = True
        await self.response.release()
        if self._ended and not self._failed and self._parts is not None:
            parts = self._parts
            self.entry.body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._store(self.ctx, self.entry)
        self._on_done(self.ctx)
