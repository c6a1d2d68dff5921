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

import functools
import math
from collections import OrderedDict

from multidict import CIMultiDict

from proxy.edge.client_address import parse_ip
from proxy.edge.verdicts import refuse
from proxy.pipeline.context import RequestContext
from proxy.pipeline.guards import Verdict
from proxy.settings import RateLimitConfig

__all__ = ["DEFAULT_MAX_CLIENTS", "BucketTable", "RateLimitGuard", "TokenBucket", "client_key"]

DEFAULT_MAX_CLIENTS = 65_536  # about 16 MiB of buckets at most, per worker
_MAX_KEY_CHARS = 256


class TokenBucket:
    """One client's bucket: ``tokens`` left as of ``updated`` (seconds on the caller's clock)."""

    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated

    def take(self, now: float, rate: float, burst: float) -> float:
        """Take one token at ``now``; 0.0 when granted, else the seconds until a token will be there.

        ``rate`` is tokens per second, ``burst`` the capacity. A clock that goes backwards adds nothing.
        """
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(burst, self.tokens + elapsed * rate)
            self.updated = now
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
    """RECV guard for ``firewall.rate_limit``: 429 (reason ``rate-limited``) with ``Retry-After``."""

    def __init__(self, config: RateLimitConfig, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        self.by = config.by
        self._header = config.by.partition(":")[2] if config.by != "ip" else None
        self.table = BucketTable(config.requests, config.per, config.burst, max_clients)
        self.limited = 0

    def check(self, ctx: RequestContext) -> Verdict | None:
        """Take a token for the request's client; 429 when there is none."""
        request = ctx.request
        value = request.headers.get(self._header) if self._header is not None else None
        wait = self.table.take(client_key(self.by, request.client_ip, value), ctx.started)
        if wait <= 0.0:
            return None
        self.limited += 1
        retry_after = max(1, math.ceil(wait))
        return refuse(ctx, 429, "rate-limited", CIMultiDict({"Retry-After": str(retry_after)}))

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters: requests limited, clients tracked now, buckets forgotten to stay within bounds."""
        return {
            "blocked": {"rate-limited": self.limited},
            "rate_limit": {"clients": len(self.table), "evicted": self.table.evicted},
        }
