"""A viewer's request body as the pipeline reads it: an async iterator fed by the connection.

``RequestBody`` is created by the connection for a request head that announces a body; the connection
``feed``s it as llhttp delivers the bytes and calls ``end`` when the message is complete. The pipeline
iterates ``chunks()`` (the ``EdgeRequest.body``). Backpressure: the connection pauses reading from the
socket while ``buffered`` is above its high-water mark and resumes it as the pipeline takes chunks.
A body over ``max_body_bytes`` (counted as it arrives) or one that stalls for ``client_timeout`` stops the
iteration with ``ViewerBodyError`` and leaves the answer owed to the viewer in ``refused`` (413 or 408).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from proxy.edge.hardening import Answer
from proxy.http.reasons import BlockReason

__all__ = ["BODY_MALFORMED", "BODY_TIMEOUT", "BODY_TOO_LARGE", "RequestBody", "ViewerBodyError"]

BODY_TOO_LARGE = Answer(413, BlockReason.BODY_TOO_LARGE)
BODY_TIMEOUT = Answer(408, BlockReason.CLIENT_TIMEOUT)
BODY_MALFORMED = Answer(400, BlockReason.BAD_BODY)


class ViewerBodyError(Exception):
    """The viewer's request body broke a limit, or the viewer left, while the body was being read."""


class RequestBody:
    """One request's body: chunks received and not yet read, and what became of the rest."""

    __slots__ = (
        "_chunks",
        "_on_continue",
        "_on_read",
        "_timeout",
        "_waiter",
        "buffered",
        "done",
        "lost",
        "max_bytes",
        "refused",
        "size",
    )

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout: float,
        on_read: Callable[[], None],
        on_continue: Callable[[], None] | None,
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._on_read = on_read  # the connection re-checks whether to resume reading
        self._on_continue = on_continue  # writes "100 Continue" before the first read (Expect)
        self._timeout = timeout
        self._waiter: asyncio.Future[None] | None = None
        self.max_bytes = max_bytes  # 0: no limit
        self.buffered = 0
        self.size = 0
        self.done = False
        self.lost = False
        self.refused: Answer | None = None

    def feed(self, chunk: bytes) -> bool:
        """Add received bytes; False when they take the body over ``max_bytes`` (stop reading then)."""
        self.size += len(chunk)
        if 0 < self.max_bytes < self.size:
            self.refused = BODY_TOO_LARGE
            self._wake()
            return False
        self._chunks.append(chunk)
        self.buffered += len(chunk)
        self._wake()
        return True

    def end(self) -> None:
        """The whole body was received."""
        self.done = True
        self._wake()

    def refuse(self, answer: Answer) -> None:
        """The body turned out malformed: the request gets ``answer`` instead of a response."""
        if not self.done and self.refused is None:
            self.refused = answer
            self._wake()

    def abort(self) -> None:
        """The viewer left (or the connection closed) before the body was complete."""
        if not self.done:
            self.lost = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's chunks in order, as they arrive (the ``EdgeRequest.body`` iterator)."""
        if self._on_continue is not None:
            self._on_continue()  # RFC 9110 §10.1.1: the viewer may wait for it before sending the body
            self._on_continue = None
        while True:
            if self.refused is not None:
                raise ViewerBodyError(f"request body refused ({self.refused.reason})")
            if self._chunks:
                chunk = self._chunks.popleft()
                self.buffered -= len(chunk)
                self._on_read()
                yield chunk
                continue
            if self.done:
                return
            if self.lost:
                raise ViewerBodyError("the viewer closed the connection before the end of the body")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self._timeout):
                    await self._waiter
            except TimeoutError:
                self.refused = BODY_TIMEOUT
                raise ViewerBodyError("the viewer sent no body data for client_timeout") from None
            finally:
                self._waiter = None
