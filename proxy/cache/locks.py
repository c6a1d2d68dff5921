"""Fetch locks: one origin fetch per key, for the process (collapsing) and for the cluster (the shield).

COLLAPSE asks each lock in order (``FetchLocks.enter``): local collapsing first, then, with
``cache.shield``, the cluster-wide lock held in Redis. Each lock answers the same way (``FetchLock``):

* an entry: another request fetched the key meanwhile and this one is served from it (collapsed);
* a token: this request leads the fetch for the key; the lock is left once the outcome is known;
* ``None``: go on without holding this lock (it is held elsewhere and gave nothing usable, or it is
  unavailable: the request fetches on its own);
* ``SKIP``: the key is known to be uncacheable (hit-for-miss): fetch alone and ask no further lock (also
  asked synchronously first, ``bypass``, so that such a request builds and awaits nothing).

What a request holds is one ``Lease``. STORE hands the lease's ``after_write`` to the cache facade, so the
cluster lock is released only once the lower tiers hold the entry its waiters look for; ``settle`` leaves
every lock still held, with the stored entry (or None: waiters then fetch on their own), exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Literal, Protocol

from proxy.cache.collapse import Collapser, Flight
from proxy.cache.entry import CacheEntry

COLLAPSE_WAIT = 30.0  # longest a collapsed request waits for its leader before fetching on its own
SHIELD_LOCK_SECONDS = 30.0  # a shield lock whose holder died expires after this
SHIELD_POLL_SECONDS = 0.02  # how often shield waiters look for the holder's entry

# The usable entry a lock's holder left (fresh, for this request's Vary variant), or None; made by COLLAPSE
# for each lock from the tier the holder stores into first (``FetchLock.where``).
Find = Callable[[], Awaitable[CacheEntry | None]]
Spawn = Callable[[Coroutine[Any, Any, Any], str], bool]


class _Skip:
    """The type of ``SKIP``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIP"


SKIP = _Skip()


class FetchLock(Protocol):
    """One way of making concurrent requests for a key wait for a single fetch."""

    # Where the leader's entry is found once it is stored: "memory" (this process) or "lower" (the tiers
    # shared with other processes and nodes).
    where: Literal["memory", "lower"]
    # Whether ``leave`` must wait until the entry reached the lower tiers (the cluster's waiters read it
    # there): STORE then releases it through ``Lease.after_write``.
    waits_for_write: bool

    def bypass(self, key: str) -> bool:
        """Whether ``key`` skips this lock and the ones after it without waiting (hit-for-miss): the
        synchronous form of ``enter`` answering ``SKIP``, asked first so that such a request pays nothing."""
        ...

    async def enter(self, key: str, find: Find) -> CacheEntry | object | None:
        """Wait for another holder's entry, or lead: see the module docstring for the four answers."""
        ...

    def leave(
        self, key: str, token: object, entry: CacheEntry | None, *, uncacheable: bool, now: float
    ) -> Coroutine[Any, Any, Any] | None:
        """Release the lock taken with ``token``; ``entry`` is what was stored (None: nothing usable,
        ``uncacheable``: the response said so). Returns work to run in the background, if any."""
        ...


class LocalLock:
    """In-process collapsing (``cache.collapse``) over a ``Collapser``: waiters share the leader's entry;
    a key found uncacheable is skipped for a while (Varnish's hit-for-miss)."""

    where: Literal["memory", "lower"] = "memory"
    waits_for_write = False

    def __init__(self, collapser: Collapser, clock: Callable[[], float] = time.time) -> None:
        self.collapser = collapser
        self._clock = clock

    def bypass(self, key: str) -> bool:
        return self.collapser.is_uncacheable(key, self._clock())

    async def enter(self, key: str, find: Find) -> CacheEntry | object | None:
        collapser = self.collapser
        flight = collapser.join(key)
        if flight is not None:
            stored = await collapser.wait(flight, COLLAPSE_WAIT)
            if stored is not None:
                # The leader may have stored another Vary variant than ours: look again, as a fresh request.
                entry = await find()
                if entry is not None:
                    collapser.collapsed += 1
                    return entry
        return collapser.lead(key)

    def lead(self, key: str) -> object | None:
        """Lead a fetch of ``key`` without waiting (a background refresh); None when one already runs."""
        return self.collapser.lead(key)

    def leave(
        self, key: str, token: object, entry: CacheEntry | None, *, uncacheable: bool, now: float
    ) -> Coroutine[Any, Any, Any] | None:
        assert isinstance(token, Flight)
        self.collapser.settle(key, token, entry, uncacheable=uncacheable, now=now)
        return None


class LockService(Protocol):
    """A cluster-wide lock per key (``proxy.cache.coordination.Coordinator`` over Redis)."""

    async def acquire(self, key: str, ttl: float) -> bool | None:
        """True: taken by us; False: someone else holds it; None: the service is unavailable."""
        ...

    async def holds(self, key: str) -> bool | None:
        """Whether anyone still holds the lock (None: unknown)."""
        ...

    async def release(self, key: str) -> None:
        """Release our lock (only if it is still ours)."""
        ...


class ClusterLock:
    """The origin shield (``cache.shield``): one fetch per key in the whole cluster, through a Redis lock
    (``SET NX PX``; a holder that dies releases by expiry). Waiters poll the lower tiers for the holder's
    entry, bounded in time; Redis unavailable means every request fetches on its own."""

    where: Literal["memory", "lower"] = "lower"
    waits_for_write = True
    _HELD = object()

    def __init__(
        self,
        coordinator: LockService,
        poll: float = SHIELD_POLL_SECONDS,
        on_lead: Callable[[], None] | None = None,
    ) -> None:
        """``on_lead`` is called each time this worker takes the lock to fetch for the cluster (a metric)."""
        self.coordinator = coordinator
        self._poll = poll
        self._on_lead = on_lead

    def bypass(self, key: str) -> bool:
        return False

    async def enter(self, key: str, find: Find) -> CacheEntry | object | None:
        got = await self.coordinator.acquire(key, SHIELD_LOCK_SECONDS)
        if got is None:
            return None
        if got:
            if self._on_lead is not None:
                self._on_lead()
            return self._HELD
        deadline = time.monotonic() + COLLAPSE_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(self._poll)
            entry = await find()
            if entry is not None:
                return entry
            if not await self.coordinator.holds(key):
                return None  # the holder finished without a usable entry (or died): fetch ourselves
        return None

    def leave(
        self, key: str, token: object, entry: CacheEntry | None, *, uncacheable: bool, now: float
    ) -> Coroutine[Any, Any, Any] | None:
        return self.coordinator.release(key)


class Lease:
    """The locks one request holds for its key while it fetches. Made by ``FetchLocks.enter``."""

    __slots__ = ("_clock", "_holds", "_spawn", "entry", "key")

    def __init__(self, key: str, spawn: Spawn, clock: Callable[[], float]) -> None:
        self.key = key
        self.entry: CacheEntry | None = None  # what STORE stored for the waiters (set by STORE)
        self._holds: list[tuple[FetchLock, object]] = []
        self._spawn = spawn
        self._clock = clock

    def __bool__(self) -> bool:
        return bool(self._holds)

    def hold(self, lock: FetchLock, token: object) -> None:
        self._holds.append((lock, token))

    def after_write(self) -> Callable[[], Coroutine[Any, Any, Any]] | None:
        """Called by STORE: the release of the locks that wait for the lower tiers to have the entry, to
        run once they do (None when none is held). Those locks are no longer held by this lease."""
        late = [(lock, token) for lock, token in self._holds if lock.waits_for_write]
        if not late:
            return None
        self._holds = [hold for hold in self._holds if not hold[0].waits_for_write]
        key = self.key

        async def release() -> None:
            for lock, token in late:
                work = lock.leave(key, token, None, uncacheable=False, now=self._clock())
                if work is not None:
                    await work

        return release

    def settle(self, *, uncacheable: bool) -> None:
        """Leave every lock still held, with ``entry``; called once the fetch's outcome is known (after
        STORE, or when the fetch failed). Idempotent."""
        holds, self._holds = self._holds, []
        now = self._clock()
        for lock, token in holds:
            work = lock.leave(self.key, token, self.entry, uncacheable=uncacheable, now=now)
            if work is not None:
                self._spawn(work, f"release {self.key}")


class FetchLocks:
    """The locks COLLAPSE asks, in order (none when ``cache.collapse`` is off), and the local lock that
    background refreshes take (always: one refresh per key at a time, collapsing or not)."""

    __slots__ = ("_clock", "_spawn", "local", "locks")

    def __init__(
        self,
        locks: Sequence[FetchLock],
        *,
        local: LocalLock,
        spawn: Spawn,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.locks = tuple(locks)
        self.local = local
        self._spawn = spawn
        self._clock = clock

    def __bool__(self) -> bool:
        return bool(self.locks)

    async def enter(
        self, key: str, find: Callable[[FetchLock], Find]
    ) -> tuple[CacheEntry | None, Lease | None]:
        """Ask each lock in turn. Returns the entry another request fetched (serve it; locks taken on the
        way are left with it), or the lease this request holds while it fetches (None: it holds none)."""
        lease: Lease | None = None  # made when a lock is taken: most requests hold none for long
        for lock in self.locks:
            if lock.bypass(key):
                break
            outcome = await lock.enter(key, find(lock))
            if outcome is SKIP:
                break
            if isinstance(outcome, CacheEntry):
                if lease is not None:
                    lease.entry = outcome  # for the requests collapsed behind this one
                    lease.settle(uncacheable=False)
                return outcome, None
            if outcome is not None:
                if lease is None:
                    lease = Lease(key, self._spawn, self._clock)
                lease.hold(lock, outcome)
        return None, lease

    def bypassed(self, key: str) -> bool:
        """Whether the first lock lets ``key`` through at once (hit-for-miss): then COLLAPSE is skipped
        without building anything. Synchronous, for the miss path."""
        return not self.locks or self.locks[0].bypass(key)

    def lead(self, key: str) -> Lease | None:
        """A lease on the local lock only, without waiting: for a background refresh (None: a fetch of the
        key already runs)."""
        token = self.local.lead(key)
        if token is None:
            return None
        lease = Lease(key, self._spawn, self._clock)
        lease.hold(self.local, token)
        return lease
