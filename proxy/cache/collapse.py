"""Request collapsing (``cache.collapse``): one origin fetch per key at a time, per process.

The first request for a key that must go to the origin becomes the leader (``Collapser.lead``); concurrent
requests for the same key join its flight (``Collapser.join``) and wait, bounded in time and number, for
the entry it stores. When the leader's response turns out not to be storable, waiters are released at once
to fetch on their own, and the key is remembered as uncacheable for a while (Varnish's hit-for-miss) so
later requests do not queue behind each other. A leader that fails releases its waiters the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from proxy.cache.entry import CacheEntry

HIT_FOR_MISS_SECONDS = 30.0
_HIT_FOR_MISS_LIMIT = 10_000


@dataclass(slots=True)
class Flight:
    """One in-progress fetch for a key. ``result`` resolves to the stored entry, or None."""

    result: asyncio.Future[CacheEntry | None]
    waiters: int = 0
    settled: bool = False


class Collapser:
    """The flights of one worker process, keyed by cache key."""

    def __init__(self, max_waiters: int = 1000, hit_for_miss: float = HIT_FOR_MISS_SECONDS) -> None:
        self._flights: dict[str, Flight] = {}
        self._uncacheable: dict[str, float] = {}
        self.max_waiters = max_waiters
        self.hit_for_miss = hit_for_miss
        self.collapsed = 0  # requests served from another request's fetch (a metric)

    def __len__(self) -> int:
        return len(self._flights)

    def is_uncacheable(self, key: str, now: float) -> bool:
        """Whether ``key`` was recently found uncacheable: requests for it skip the queue (hit-for-miss)."""
        until = self._uncacheable.get(key)
        if until is None:
            return False
        if until <= now:
            del self._uncacheable[key]
            return False
        return True

    def join(self, key: str) -> Flight | None:
        """The flight in progress for ``key`` when there is room to wait on it, else None."""
        flight = self._flights.get(key)
        if flight is None or flight.waiters >= self.max_waiters:
            return None
        flight.waiters += 1
        return flight

    def lead(self, key: str) -> Flight | None:
        """Start a flight for ``key`` (the caller is the leader), or None when one is already running."""
        if key in self._flights:
            return None
        flight = Flight(result=asyncio.get_running_loop().create_future())
        self._flights[key] = flight
        return flight

    def settle(
        self, key: str, flight: Flight, entry: CacheEntry | None, *, uncacheable: bool, now: float
    ) -> None:
        """Release the waiters of ``flight`` with ``entry`` (None: fetch on your own). Idempotent."""
        if flight.settled:
            return
        flight.settled = True
        if self._flights.get(key) is flight:
            del self._flights[key]
        if uncacheable:
            if len(self._uncacheable) >= _HIT_FOR_MISS_LIMIT:
                self._uncacheable.clear()
            self._uncacheable[key] = now + self.hit_for_miss
        else:
            self._uncacheable.pop(key, None)
        if not flight.result.done():
            flight.result.set_result(entry)

    async def wait(self, flight: Flight, timeout: float) -> CacheEntry | None:
        """Wait (at most ``timeout`` seconds) for a flight's entry; None on timeout or no entry."""
        try:
            return await asyncio.wait_for(asyncio.shield(flight.result), timeout)
        except TimeoutError:
            return None
