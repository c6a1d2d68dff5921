"""Owned background work: refreshes (stale-while-revalidate) and fills that outlive their viewer.

One ``Background`` per worker process, created with the pipeline and closed at shutdown. Work is never an
orphaned ``create_task``: every task is kept here until it ends, its failure is logged, and ``close``
cancels what is still running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("edgeproxy")


class Background:
    """A supervisor of background tasks, bounded in number."""

    def __init__(self, limit: int = 1000) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._limit = limit
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> bool:
        """Start ``coro`` as an owned task; False (and the coroutine closed) when full or shut down."""
        if self._closed or len(self._tasks) >= self._limit:
            coro.close()
            return False
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task %s failed: %r", task.get_name(), task.exception())

    async def close(self) -> None:
        """Cancel what is still running and wait for it; called once at shutdown."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
