"""Token buckets and the rate-limit guard (proxy.edge.ratelimit), with the clock injected."""

from __future__ import annotations

from multidict import CIMultiDict

from proxy.edge.ratelimit import BucketTable, RateLimitGuard, RateLimitSync, TokenBucket, client_key
from proxy.messages import EdgeRequest
from proxy.pipeline.context import RequestContext
from proxy.settings import RateLimitConfig


def test_bucket_grants_burst_then_refills_at_rate() -> None:
    bucket = TokenBucket(3.0, 0.0)
    assert [bucket.take(0.0, rate=1.0, burst=3.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0, rate=1.0, burst=3.0) == 1.0
    assert bucket.take(0.5, rate=1.0, burst=3.0) == 0.5
    assert bucket.take(1.0, rate=1.0, burst=3.0) == 0.0
    # A long pause refills to the burst, never beyond.
    assert [bucket.take(100.0, rate=1.0, burst=3.0) for _ in range(4)][-1] > 0


def test_bucket_ignores_a_clock_going_backwards() -> None:
    bucket = TokenBucket(0.0, 10.0)
    assert bucket.take(5.0, rate=1.0, burst=1.0) == 1.0
    assert bucket.take(11.0, rate=1.0, burst=1.0) == 0.0


def test_table_counts_each_client_separately() -> None:
    table = BucketTable(requests=2, per=60.0, burst=2)
    outcomes = [table.take("a", 0.0) for _ in range(5)]
    assert sum(1 for wait in outcomes if wait == 0.0) == 2
    assert table.take("b", 0.0) == 0.0
    assert outcomes[-1] == 30.0  # one token per 30 s


def test_table_memory_is_bounded() -> None:
    table = BucketTable(requests=1, per=60.0, burst=1, max_clients=100)
    for index in range(10_000):
        table.take(f"client-{index}", float(index))
    assert len(table) == 100
    assert table.evicted == 9_900


def test_charging_unknown_clients_keeps_the_bound() -> None:
    table = BucketTable(requests=1, per=60.0, burst=1, max_clients=100)
    for index in range(1_000):
        table.charge(f"client-{index}", 1.0, float(index))
    assert len(table) == 100
    assert table.evicted == 900


def test_debts_of_other_workers_are_bounded() -> None:
    guard = RateLimitGuard(RateLimitConfig(requests=1, per=10.0, burst=1), max_clients=50)
    for index in range(1_000):
        guard.owe(f"ip:192.0.2.{index}", 1.0)
    assert len(guard.debts) == 50
    guard.owe("ip:192.0.2.0", 2.0)  # a client already owing keeps adding up
    assert guard.debts["ip:192.0.2.0"] == 3.0


def test_sync_window_and_expiry_stay_valid_for_the_largest_config() -> None:
    # requests 1, burst 10^9, per 10y (the config maxima): the window is capped at 10 years, so the Redis
    # expiry of two windows in milliseconds fits a signed 64-bit integer.
    guard = RateLimitGuard(RateLimitConfig(requests=1, per="10y", burst=10**9))
    sync = RateLimitSync(guard, client=None)
    assert sync.window == 10 * 365 * 86400.0
    assert 0 < sync._expiry_ms < 2**63


def test_recently_seen_clients_are_kept() -> None:
    table = BucketTable(requests=1, per=60.0, burst=1, max_clients=2)
    table.take("a", 0.0)
    table.take("b", 0.0)
    table.take("a", 0.0)  # refused, but "a" is now the most recent
    table.take("c", 0.0)  # evicts "b"
    assert table.take("a", 0.0) > 0.0


def test_client_keys() -> None:
    assert client_key("ip", "192.0.2.1", None) == "ip:192.0.2.1"
    assert client_key("ip", "2001:db8:1:2:3:4:5:6", None) == client_key("ip", "2001:db8:1:2::9", None)
    assert client_key("ip", "2001:db8:1:2::9", None) != client_key("ip", "2001:db8:1:3::9", None)
    assert client_key("header:X-Api-Key", "192.0.2.1", "k1") == "h:k1"
    assert client_key("header:X-Api-Key", "192.0.2.1", None) == "ip:192.0.2.1"
    assert len(client_key("header:X-Api-Key", "192.0.2.1", "k" * 10_000)) <= 260


def _ctx(client: str, started: float, **headers: str) -> RequestContext:
    return RequestContext(EdgeRequest("GET", "/", "", CIMultiDict(headers), client, "h"), 0.0, started)


def test_guard_answers_429_with_retry_after() -> None:
    guard = RateLimitGuard(RateLimitConfig(requests=1, per=10.0, burst=1))
    assert guard.check(_ctx("192.0.2.1", 0.0)) is None
    verdict = guard.check(_ctx("192.0.2.1", 0.5))
    assert verdict is not None and verdict.status == 429 and verdict.reason == "rate-limited"
    assert verdict.headers["Retry-After"] == "10"
    assert "X-Request-Id" in verdict.headers
    assert guard.check(_ctx("192.0.2.2", 0.5)) is None
    assert guard.check(_ctx("192.0.2.1", 10.0)) is None
    assert guard.stats() == {"blocked": {"rate-limited": 1}, "rate_limit": {"clients": 2, "evicted": 0}}


def test_guard_by_header() -> None:
    guard = RateLimitGuard(RateLimitConfig(requests=1, per=60.0, burst=1, by="header:X-Api-Key"))
    assert guard.check(_ctx("192.0.2.1", 0.0, **{"X-Api-Key": "a"})) is None
    assert guard.check(_ctx("192.0.2.2", 0.0, **{"X-Api-Key": "a"})) is not None
    assert guard.check(_ctx("192.0.2.1", 0.0, **{"X-Api-Key": "b"})) is None


def test_burst_defaults_to_requests() -> None:
    assert RateLimitConfig.model_validate({"requests": 7}).burst == 7
