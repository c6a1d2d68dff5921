"""Rate limiting (``firewall.rate_limit``): a token bucket per client, in a bounded LRU table.

``TokenBucket.take(now)`` is the pure rule: the bucket holds up to ``burst`` tokens and gains
``requests / per`` tokens per second; a request takes one token, or is refused with the number of seconds
until one is there. ``BucketTable`` keeps one bucket per client key and forgets the least recently seen
clients beyond ``max_clients``, so memory stays bounded however many addresses a flood comes from.
``RateLimitGuard`` answers 429 with ``Retry-After``.

Buckets live in each worker process: with N workers a client may get up to N times the budget (a shared
limit across workers and nodes is a follow-up, see docs/security.md). The clock is the monotonic clock
read when the request arrived (``ctx.started``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import OrderedDict
from typing import Any

from multidict import CIMultiDict

from proxy.edge.client_address import parse_ip
from proxy.edge.verdicts import refuse
from proxy.http.reasons import BlockReason
from proxy.messages import GuardInput, Verdict
from proxy.settings import RateLimitConfig

__all__ = ["DEFAULT_MAX_CLIENTS", "BucketTable", "RateLimitGuard", "TokenBucket", "client_key"]

log = logging.getLogger("edgeproxy")

DEFAULT_MAX_CLIENTS = 65_536  # about 16 MiB of buckets at most, per worker
_MAX_KEY_CHARS = 256


class TokenBucket:
    """One client's bucket: ``tokens`` left as of ``updated`` (seconds on the caller's clock)."""

    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated

    def refill(self, now: float, rate: float, burst: float) -> None:
        """Add the tokens earned since ``updated`` (at most ``burst``)."""
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(burst, self.tokens + elapsed * rate)
            self.updated = now

    def take(self, now: float, rate: float, burst: float) -> float:
        """Take one token at ``now``; 0.0 when granted, else the seconds until a token will be there.

        ``rate`` is tokens per second, ``burst`` the capacity. A clock that goes backwards adds nothing.
        """
        self.refill(now, rate, burst)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class BucketTable:
    """Buckets by client key, at most ``max_clients`` of them (least recently used forgotten first).

    A forgotten client comes back with a full bucket, which is what a client idle that long would have
    anyway unless it was being limited; ``evicted`` counts how often that happened.
    """

    def __init__(self, requests: int, per: float, burst: int, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        self.rate = requests / per
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> float:
        """Take a token for ``key`` at ``now``: 0.0 when granted, else seconds to wait (pure but for the
        table itself)."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.burst, now)
            buckets[key] = bucket
            if len(buckets) > self.max_clients:
                buckets.popitem(last=False)
                self.evicted += 1
        else:
            buckets.move_to_end(key)
        return bucket.take(now, self.rate, self.burst)

    def charge(self, key: str, tokens: float, now: float) -> None:
        """Remove ``tokens`` that other workers granted ``key`` from its bucket here (it may go negative:
        the client then waits until the cluster-wide budget refills)."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.burst, now)
            buckets[key] = bucket
            if len(buckets) > self.max_clients:  # the same bound as take(): oldest client forgotten
                buckets.popitem(last=False)
                self.evicted += 1
        bucket.refill(now, self.rate, self.burst)
        bucket.tokens -= tokens


def client_key(by: str, client_ip: str, headers_value: str | None) -> str:
    """The bucket key for a request: ``ip:<address>`` (IPv6 clients by their /64, since one host usually
    holds a whole /64) or, for ``by: header:<Name>``, ``h:<value>`` (at most 256 characters; a request
    without the header falls back to its address)."""
    if by != "ip" and headers_value is not None:
        return "h:" + headers_value[:_MAX_KEY_CHARS]
    if len(client_ip) > 64:  # not an address; and only short texts are memoised
        return "ip:" + client_ip[:_MAX_KEY_CHARS]
    return _address_key(client_ip)


@functools.lru_cache(maxsize=16_384)
def _address_key(client_ip: str) -> str:
    address = parse_ip(client_ip)
    if address is None:
        return "ip:" + client_ip[:_MAX_KEY_CHARS]
    if address.version == 6:
        return "ip:" + format(int(address) >> 64, "x") + "::/64"
    return "ip:" + str(address)


class RateLimitGuard:
    """RECV guard for ``firewall.rate_limit``: 429 (reason ``rate-limited``) with ``Retry-After``.

    With a shared tier the budget is shared by every worker and node (``RateLimitSync``): each worker
    decides locally (no I/O per request), reports the tokens it granted and is charged for those the others
    granted, every ``SYNC_INTERVAL``. So a client's budget holds across the cluster within one sync period;
    a worker that has not seen a client before may grant it up to one burst before it learns of the others.
    """

    def __init__(self, config: RateLimitConfig, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        self.by = config.by
        self._header = config.by.partition(":")[2] if config.by != "ip" else None
        self.table = BucketTable(config.requests, config.per, config.burst, max_clients)
        self.limited = 0
        self.shared = False  # set by RateLimitSync: then granted tokens are reported and debts charged
        self.granted: dict[str, int] = {}  # tokens granted per client since the last sync
        self.debts: dict[str, float] = {}  # tokens other workers granted, not yet charged here

    def check(self, ctx: GuardInput) -> Verdict | None:
        """Take a token for the request's client; 429 when there is none."""
        request = ctx.request
        value = request.headers.get(self._header) if self._header is not None else None
        key = client_key(self.by, request.client_ip, value)
        if self.shared:
            debt = self.debts.pop(key, None)
            if debt:
                self.table.charge(key, debt, ctx.started)
        wait = self.table.take(key, ctx.started)
        if self.shared:
            if wait <= 0.0:
                self.granted[key] = self.granted.get(key, 0) + 1
            elif key not in self.granted and len(self.granted) < self.table.max_clients:
                self.granted[key] = 0  # known here: keep learning what the others grant it
        if wait <= 0.0:
            return None
        self.limited += 1
        retry_after = max(1, math.ceil(wait))
        return refuse(ctx, 429, BlockReason.RATE_LIMITED, CIMultiDict({"Retry-After": str(retry_after)}))

    def owe(self, key: str, tokens: float) -> None:
        """Record ``tokens`` that other workers granted ``key``, charged on its next request here; called by
        ``RateLimitSync``. At most ``max_clients`` clients owe at once: a debt of a client beyond that is
        dropped (it gets at most one sync period of extra budget), so clients that never come back cannot
        grow the table without bound."""
        debts = self.debts
        if key in debts:
            debts[key] += tokens
        elif len(debts) < self.table.max_clients:
            debts[key] = tokens

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters: requests limited, clients tracked now, buckets forgotten to stay within bounds."""
        return {
            "blocked": {"rate-limited": self.limited},
            "rate_limit": {"clients": len(self.table), "evicted": self.table.evicted},
        }


SYNC_INTERVAL = 0.1  # seconds between two exchanges of granted tokens through the shared tier
_MAX_WINDOW = 10 * 365 * 86400.0
_PREFIX = "edgeproxy:v1:rl:"


class RateLimitSync:
    """Shares a ``RateLimitGuard``'s budget through Redis: an owned task that, every ``interval``, adds the
    tokens this worker granted to a per-client counter of the current window and charges the guard with
    what the other workers and nodes granted in that window. A window is the time a full burst takes to
    refill (older grants no longer matter: the bucket would have refilled); counters expire after two
    windows. Redis being unavailable only makes the limit per worker until it returns.
    """

    def __init__(
        self, guard: RateLimitGuard, client: Any, *, interval: float = SYNC_INTERVAL, clock: Any = time.time
    ) -> None:
        self.guard = guard
        self.client = client
        self.interval = interval
        self._clock = clock
        table = guard.table
        # At most 10 years however large burst x per is, so the Redis expiry (2 windows, in ms) stays a
        # valid 64-bit expiry.
        self.window = min(max(1.0, table.burst / table.rate), _MAX_WINDOW)
        self._expiry_ms = int(self.window * 2000)
        self._state: dict[str, tuple[int, int, int]] = {}  # key -> (window, granted here, charged here)
        self.exchanges = 0
        guard.shared = True

    async def run(self) -> None:
        """Exchange every ``interval`` until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.exchange()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down or slow: the limit stays local meanwhile
                log.debug("rate-limit sync failed: %s", exc)

    async def exchange(self) -> None:
        """One exchange: report what was granted here, learn what was granted elsewhere."""
        guard = self.guard
        granted, guard.granted = guard.granted, {}
        if not granted:
            return
        window = int(self._clock() // self.window)
        suffix = f":{window}"
        async with asyncio.timeout(1.0):
            pipe = self.client.pipeline(transaction=False)
            for key, count in granted.items():
                pipe.incrby(_PREFIX + key + suffix, count)
                pipe.pexpire(_PREFIX + key + suffix, self._expiry_ms)
            replies = await pipe.execute()
        state = self._state
        for index, (key, count) in enumerate(granted.items()):
            total = int(replies[2 * index])
            seen_window, own, charged = state.get(key, (window, 0, 0))
            if seen_window != window:
                own, charged = 0, 0
            own += count
            others = total - own  # what the rest of the cluster granted this client in this window
            if others > charged:
                guard.owe(key, others - charged)
                charged = others
            state[key] = (window, own, charged)
            if count > 0 or others > 0:
                guard.granted.setdefault(key, 0)  # still active somewhere: keep exchanging
        if len(state) > 4 * guard.table.max_clients:
            state.clear()
        self.exchanges += 1
