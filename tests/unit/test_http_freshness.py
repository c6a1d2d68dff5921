"""Store and reuse decisions (RFC 9111 §3, §4.2, §5.2; RFC 5861; CloudFront-style TTL policies)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from proxy.http.cache_control import DELTA_SECONDS_MAX, EMPTY, parse_cache_control
from proxy.http.freshness import (
    HEURISTIC_MAX,
    ReuseDecision,
    StoreDecision,
    TTLPolicy,
    corrected_initial_age,
    decide_store,
    may_serve_disconnected,
    parse_expires,
    reuse_decision,
    within_stale_window,
)
from proxy.http.reasons import FwdReason, NotStoredReason

NOW = 1_700_000_000.0
POLICY = TTLPolicy(min=0, default=100, max=1000)
POLICY_MIN = TTLPolicy(min=10, default=100, max=1000)
POLICY_NO_DEFAULT = TTLPolicy(min=0, default=0, max=1000)

R = NotStoredReason


def _store(args: dict[str, Any], policy: TTLPolicy | None) -> StoreDecision:
    kwargs: dict[str, Any] = {
        "method": "GET",
        "status": 200,
        "request_cc": EMPTY,
        "response_cc": EMPTY,
        "request_has_authorization": False,
        "expires": None,
        "date": NOW,
        "last_modified": None,
        "has_vary_star": False,
        "policy": policy,
    }
    args = dict(args)
    if "cc" in args:
        kwargs["response_cc"] = parse_cache_control(args.pop("cc"))
    if "req_cc" in args:
        kwargs["request_cc"] = parse_cache_control(args.pop("req_cc"))
    kwargs.update(args)
    return decide_store(**kwargs)


def _check(decision: StoreDecision, expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        assert getattr(decision, name) == value, (name, decision)
    if "store" in expected and not expected["store"]:
        assert decision.ttl == 0 and decision.reason is not None
    if expected.get("store"):
        assert decision.reason is None


def _stored(ttl: float, **extra: Any) -> dict[str, Any]:
    return {"store": True, "ttl": ttl, **extra}


def _refused(reason: NotStoredReason) -> dict[str, Any]:
    return {"store": False, "reason": reason}


# ---------------------------------------------------------------- plain RFC 9111 shared cache (policy None)
RFC_CASES: list[Any] = [
    # preconditions common to both modes
    pytest.param({"method": "POST", "cc": "max-age=60"}, _refused(R.METHOD), id="§3 only GET is stored"),
    pytest.param({"method": "HEAD", "cc": "max-age=60"}, _stored(60), id="§3 HEAD filled with GET is stored"),
    pytest.param(
        {"method": "get", "cc": "max-age=60"}, _refused(R.METHOD), id="RFC 9110 §9.1 case-sensitive"
    ),
    pytest.param({"has_vary_star": True, "cc": "max-age=60"}, _refused(R.VARY_STAR), id="§4.1 Vary: * never"),
    pytest.param({"status": 206, "cc": "max-age=60"}, _refused(R.PARTIAL), id="§3.3 206 not stored as full"),
    pytest.param({"status": 100, "cc": "max-age=60"}, _refused(R.STATUS), id="§3 1xx is not final"),
    pytest.param(
        {"status": 304, "cc": "max-age=60"}, _refused(R.STATUS), id="§4.3.4 304 freshens, not stored"
    ),
    pytest.param(
        {"status": 299, "cc": "max-age=60"}, _stored(60), id="§3 unknown status with max-age stored"
    ),
    pytest.param({"status": 599, "expires": NOW + 60}, _stored(60), id="§3 unknown status with Expires"),
    pytest.param(
        {"status": 599, "last_modified": NOW - 1000}, _refused(R.STATUS), id="§3 unknown status, no heuristic"
    ),
    pytest.param(
        {"status": 599, "cc": "public", "last_modified": NOW - 1000},
        _stored(100),
        id="§4.2.2 public makes an unknown status heuristically fresh",
    ),
    pytest.param(
        {"status": 599, "cc": "max-age=3600, no-store, must-understand"},
        _refused(R.STATUS),
        id="§5.2.2.3 must-understand, status not understood: not stored",
    ),
    pytest.param(
        {"status": 599, "cc": "max-age=3600, must-understand"},
        _refused(R.STATUS),
        id="§3 must-understand needs an understood status even without no-store",
    ),
    pytest.param({"status": 103, "cc": "max-age=60"}, _refused(R.STATUS), id="§3 103 Early Hints not final"),
    pytest.param({"status": 1000, "cc": "max-age=60"}, _refused(R.STATUS), id="RFC 9110 §15 three digits"),
    # lifetime (§4.2.1)
    pytest.param({"cc": "s-maxage=30, max-age=60"}, _stored(30), id="§4.2.1 s-maxage beats max-age"),
    pytest.param({"cc": "max-age=60", "expires": NOW + 500}, _stored(60), id="§5.3 max-age beats Expires"),
    pytest.param({"cc": "s-maxage=30", "expires": NOW + 500}, _stored(30), id="§5.3 s-maxage beats Expires"),
    pytest.param({"expires": NOW + 500}, _stored(500), id="§4.2.1 Expires minus Date"),
    pytest.param({"expires": NOW - 5}, _refused(R.ZERO_TTL), id="§4.2.1 past Expires, no validator"),
    pytest.param(
        {"expires": 0.0, "has_etag": True}, _stored(0), id="§5.3 invalid Expires = expired, kept with ETag"
    ),
    pytest.param({"expires": 0.0}, _refused(R.ZERO_TTL), id="§5.3 invalid Expires = expired, no validator"),
    pytest.param(
        {"cc": "max-age=2147483648"}, _stored(float(DELTA_SECONDS_MAX)), id="§1.2.2 max-age clamped to 2^31"
    ),
    pytest.param({"cc": "max-age=0"}, _refused(R.ZERO_TTL), id="§4.2.1 max-age=0 without validator"),
    pytest.param({"cc": "max-age=0", "has_etag": True}, _stored(0), id="§4.2.1 max-age=0 kept with ETag"),
    pytest.param(
        {"cc": "max-age=0, stale-while-revalidate=30"},
        _stored(0, stale_while_revalidate=30.0),
        id="RFC 5861 max-age=0 kept when origin allows stale",
    ),
    pytest.param(
        {"cc": "max-age=0", "default_swr": 30}, _refused(R.ZERO_TTL), id="RFC 5861 default swr alone: no"
    ),
    pytest.param({"cc": "max-age=oops"}, _refused(R.ZERO_TTL), id="§4.2.1 invalid max-age = stale, dropped"),
    pytest.param(
        {"cc": "max-age=60, max-age=120", "last_modified": NOW - 10},
        _stored(60),
        id="§4.2.1 duplicate max-age: first occurrence used",
    ),
    pytest.param(
        {"cc": "max-age= 60", "last_modified": NOW - 10},
        _stored(0),
        id="§4.2.1 invalid max-age (space after =) = stale, kept with Last-Modified",
    ),
    pytest.param({"cc": "max-age=003600"}, _stored(3600), id="§1.2.2 leading zeros are delta-seconds"),
    pytest.param({"cc": "max-age=-3600"}, _refused(R.ZERO_TTL), id="§1.2.2 negative max-age = stale"),
    # heuristic freshness (§4.2.2)
    pytest.param({"last_modified": NOW - 1000}, _stored(100), id="§4.2.2 heuristic 10% of Last-Modified age"),
    pytest.param(
        {"last_modified": NOW - 10_000_000}, _stored(HEURISTIC_MAX), id="§4.2.2 heuristic capped at a day"
    ),
    pytest.param({"last_modified": NOW}, _stored(0), id="§4.2.2 zero heuristic kept (Last-Modified)"),
    pytest.param({}, _refused(R.NO_FRESHNESS), id="§4.2.2 no Last-Modified: no heuristic"),
    pytest.param({"has_etag": True}, _refused(R.NO_FRESHNESS), id="§4.2.2 ETag alone gives no lifetime"),
    pytest.param(
        {"status": 404, "last_modified": NOW - 1000}, _stored(100), id="RFC 9110 §15.1 404 heuristic"
    ),
    pytest.param(
        {"status": 302, "last_modified": NOW - 1000}, _refused(R.STATUS), id="§3 302 needs explicit freshness"
    ),
    pytest.param({"status": 302, "cc": "max-age=60"}, _stored(60), id="§3 302 with max-age stored"),
    pytest.param({"status": 500, "expires": NOW + 60}, _stored(60), id="§3 500 with Expires stored"),
    pytest.param(
        {"status": 500, "cc": "public", "last_modified": NOW - 1000},
        _stored(100),
        id="§3 public makes any status heuristically storable",
    ),
    pytest.param({"status": 500, "cc": "public"}, _refused(R.NO_FRESHNESS), id="§3 public without lifetime"),
    # no-store / private / no-cache
    pytest.param({"cc": "no-store, max-age=60"}, _refused(R.NO_STORE), id="§5.2.2.5 response no-store"),
    pytest.param(
        {"req_cc": "no-store", "cc": "max-age=60"}, _refused(R.NO_STORE), id="§5.2.1.5 request no-store"
    ),
    pytest.param(
        {"cc": "must-understand, no-store, max-age=60"},
        _stored(60),
        id="§5.2.2.3 must-understand overrides no-store for understood status",
    ),
    pytest.param({"cc": "private, max-age=60"}, _refused(R.PRIVATE), id="§5.2.2.7 private: shared cache"),
    pytest.param(
        {"cc": 'private="Set-Cookie", max-age=60'}, _stored(60), id="§5.2.2.7 qualified private stored"
    ),
    pytest.param(
        {"cc": "no-cache, max-age=60", "has_etag": True},
        _stored(0, no_cache=True),
        id="§5.2.2.4 no-cache stored, revalidated on every reuse",
    ),
    pytest.param(
        {"cc": "no-cache", "last_modified": NOW - 1000, "default_swr": 30, "default_sie": 30},
        _stored(0, no_cache=True, stale_while_revalidate=0.0, stale_if_error=0.0),
        id="§4.2.4 no-cache forbids stale windows",
    ),
    pytest.param(
        {"cc": "no-cache, max-age=60"}, _refused(R.NO_CACHE), id="§5.2.2.4 no-cache without validator"
    ),
    pytest.param(
        {"cc": "no-cache", "has_etag": True},
        _stored(0, no_cache=True, stale_while_revalidate=0.0, stale_if_error=0.0),
        id="§5.2.2.4 no-cache with ETag and no lifetime stored, revalidated on every reuse",
    ),
    pytest.param(
        {"cc": "no-cache, public", "status": 500, "has_etag": True},
        _stored(0, no_cache=True),
        id="§5.2.2.4 no-cache public any status with ETag stored",
    ),
    pytest.param({"cc": "no-cache"}, _refused(R.NO_CACHE), id="§5.2.2.4 no-cache, no lifetime, no validator"),
    pytest.param(
        {"cc": "no-cache", "status": 302, "has_etag": True},
        _refused(R.STATUS),
        id="§3 no-cache does not make a 302 storable without explicit freshness",
    ),
    pytest.param(
        {"cc": 'no-cache="Set-Cookie", max-age=60'},
        _stored(60, no_cache=False),
        id="§5.2.2.4 qualified no-cache stored normally",
    ),
    # Authorization (§3.5)
    pytest.param(
        {"request_has_authorization": True, "cc": "max-age=60"}, _refused(R.AUTHORIZATION), id="§3.5 refused"
    ),
    pytest.param(
        {"request_has_authorization": True, "cc": "public, max-age=60"}, _stored(60), id="§3.5 public allows"
    ),
    pytest.param(
        {"request_has_authorization": True, "cc": "s-maxage=60"}, _stored(60), id="§3.5 s-maxage allows"
    ),
    pytest.param(
        {"request_has_authorization": True, "cc": "must-revalidate, max-age=60"},
        _stored(60, must_revalidate=True),
        id="§3.5 must-revalidate allows",
    ),
    # revalidation flags and RFC 5861 windows
    pytest.param(
        {"cc": "max-age=60, must-revalidate", "default_swr": 30, "default_sie": 30},
        _stored(60, must_revalidate=True, stale_while_revalidate=0.0, stale_if_error=0.0),
        id="§5.2.2.2 must-revalidate: never stale",
    ),
    pytest.param(
        {"cc": "max-age=60, proxy-revalidate"},
        _stored(60, must_revalidate=True),
        id="§5.2.2.8 proxy-revalidate applies to a shared cache",
    ),
    pytest.param(
        {"cc": "s-maxage=60", "default_sie": 30},
        _stored(60, must_revalidate=True, stale_if_error=0.0),
        id="§5.2.2.10 s-maxage implies proxy-revalidate",
    ),
    pytest.param(
        {"cc": "s-maxage=60, stale-while-revalidate=30"},
        _stored(60, must_revalidate=False, stale_while_revalidate=30.0),
        id="RFC 5861 explicit stale-* waives the implied s-maxage revalidation",
    ),
    pytest.param(
        {"cc": "max-age=60, must-revalidate, stale-if-error=30"},
        _stored(60, must_revalidate=True, stale_if_error=0.0),
        id="§4.2.1 explicit must-revalidate beats stale-if-error (most restrictive)",
    ),
    pytest.param(
        {"cc": "max-age=60, stale-while-revalidate=5, stale-if-error=50", "default_swr": 1, "default_sie": 2},
        _stored(60, stale_while_revalidate=5.0, stale_if_error=50.0),
        id="RFC 5861 response windows beat defaults",
    ),
    pytest.param(
        {"cc": "max-age=60", "default_swr": 1, "default_sie": 2},
        _stored(60, stale_while_revalidate=1.0, stale_if_error=2.0, must_revalidate=False, no_cache=False),
        id="RFC 5861 defaults when the origin is silent",
    ),
]


@pytest.mark.parametrize(("args", "expected"), RFC_CASES)
def test_decide_store_rfc(args: dict[str, Any], expected: dict[str, Any]) -> None:
    _check(_store(args, None), expected)


# ---------------------------------------------------------------- TTL policy (CloudFront semantics)
POLICY_CASES: list[Any] = [
    pytest.param({"method": "POST", "cc": "max-age=60"}, POLICY, _refused(R.METHOD), id="policy: only GET"),
    pytest.param({"method": "HEAD"}, POLICY, _stored(100), id="policy: HEAD filled with GET"),
    pytest.param({"has_vary_star": True}, POLICY, _refused(R.VARY_STAR), id="policy: §4.1 Vary: *"),
    pytest.param({"status": 206}, POLICY, _refused(R.PARTIAL), id="policy: 206 not stored as full"),
    pytest.param({"status": 101}, POLICY, _refused(R.STATUS), id="policy: 1xx not final"),
    pytest.param({"status": 299, "cc": "max-age=6"}, POLICY, _refused(R.STATUS), id="policy: not understood"),
    # lifetime source precedence and clamping
    pytest.param({"cc": "s-maxage=30, max-age=60"}, POLICY, _stored(30), id="policy: s-maxage beats max-age"),
    pytest.param(
        {"cc": "max-age=60", "expires": NOW + 500}, POLICY, _stored(60), id="policy: max-age beats Expires"
    ),
    pytest.param({"expires": NOW + 500}, POLICY, _stored(500), id="policy: Expires minus Date"),
    pytest.param(
        {"expires": NOW + 500, "date": NOW + 400},
        POLICY,
        _stored(100),
        id="policy: Expires minus origin Date",
    ),
    pytest.param({"cc": "max-age=5000"}, POLICY, _stored(1000), id="policy: clamped down to max"),
    pytest.param({"cc": "max-age=5"}, POLICY_MIN, _stored(10), id="policy: clamped up to min"),
    pytest.param({"expires": NOW - 50}, POLICY_MIN, _stored(10), id="policy: past Expires clamped to min"),
    pytest.param({}, POLICY, _stored(100), id="policy: default when origin is silent"),
    pytest.param(
        {"last_modified": NOW - 1000}, POLICY, _stored(100), id="policy: default, no heuristic from LM"
    ),
    pytest.param({}, POLICY_NO_DEFAULT, _refused(R.NO_FRESHNESS), id="policy: default 0 → no freshness"),
    pytest.param({"cc": "max-age=0"}, POLICY, _refused(R.ZERO_TTL), id="policy: zero ttl not stored"),
    pytest.param(
        {"cc": "max-age=0", "has_etag": True},
        POLICY,
        _refused(R.ZERO_TTL),
        id="policy: zero ttl even w/ ETag",
    ),
    pytest.param({"expires": 0.0}, POLICY, _refused(R.ZERO_TTL), id="policy: §5.3 invalid Expires, min 0"),
    pytest.param({"expires": 0.0}, POLICY_MIN, _stored(10), id="policy: §5.3 invalid Expires, min 10"),
    pytest.param(
        {"cc": "max-age=x"}, POLICY, _refused(R.ZERO_TTL), id="policy: §4.2.1 invalid max-age, min 0"
    ),
    pytest.param({"cc": "max-age=x"}, POLICY_MIN, _stored(10), id="policy: §4.2.1 invalid max-age, min 10"),
    pytest.param(
        {"cc": "max-age=2147483648"}, POLICY, _stored(1000), id="policy: §1.2.2 2^31 max-age clamped to max"
    ),
    # status codes
    pytest.param({"status": 404}, POLICY, _stored(100), id="policy: RFC 9110 §15.1 404 takes default"),
    pytest.param({"status": 302}, POLICY, _refused(R.STATUS), id="policy: 302 needs explicit freshness"),
    pytest.param({"status": 302, "cc": "max-age=60"}, POLICY, _stored(60), id="policy: 302 with max-age"),
    pytest.param(
        {"status": 500, "cc": "public"}, POLICY, _refused(R.STATUS), id="policy: public ≠ freshness"
    ),
    # no-store / private / no-cache
    pytest.param({"cc": "no-store, max-age=60"}, POLICY, _refused(R.NO_STORE), id="policy: no-store, min 0"),
    pytest.param({"cc": "no-store, max-age=60"}, POLICY_MIN, _stored(10), id="policy: no-store kept for min"),
    pytest.param({"cc": "private"}, POLICY, _refused(R.PRIVATE), id="policy: private, min 0"),
    pytest.param({"cc": "private"}, POLICY_MIN, _stored(10), id="policy: private kept for min"),
    pytest.param({"cc": "no-cache"}, POLICY, _refused(R.NO_CACHE), id="policy: no-cache, min 0"),
    pytest.param(
        {"cc": "no-cache, max-age=600"},
        POLICY_MIN,
        _stored(10, no_cache=False),
        id="policy: no-cache kept for min, served from cache",
    ),
    pytest.param(
        {"cc": "must-understand, no-store, max-age=60"},
        POLICY,
        _stored(60),
        id="policy: §5.2.2.3 must-understand overrides no-store",
    ),
    pytest.param(
        {"req_cc": "no-store, no-cache"}, POLICY, _stored(100), id="policy: request directives ignored"
    ),
    # Authorization (§3.5 kept)
    pytest.param(
        {"request_has_authorization": True}, POLICY, _refused(R.AUTHORIZATION), id="policy: §3.5 refused"
    ),
    pytest.param(
        {"request_has_authorization": True, "cc": "no-store"},
        POLICY_MIN,
        _refused(R.AUTHORIZATION),
        id="policy: §3.5 min ttl does not override Authorization",
    ),
    pytest.param(
        {"request_has_authorization": True, "cc": "public"}, POLICY, _stored(100), id="policy: §3.5 public"
    ),
    pytest.param(
        {"request_has_authorization": True, "cc": "s-maxage=60"},
        POLICY,
        _stored(60, must_revalidate=False),
        id="policy: §3.5 s-maxage (no implied revalidate under a policy)",
    ),
    pytest.param(
        {"request_has_authorization": True, "cc": "must-revalidate"},
        POLICY,
        _stored(100, must_revalidate=True),
        id="policy: §3.5 must-revalidate",
    ),
    # windows
    pytest.param(
        {"cc": "max-age=60, must-revalidate", "default_swr": 5, "default_sie": 5},
        POLICY,
        _stored(60, must_revalidate=True, stale_while_revalidate=0.0, stale_if_error=0.0),
        id="policy: §5.2.2.2 must-revalidate: no stale windows",
    ),
    pytest.param(
        {"cc": "max-age=60, proxy-revalidate"},
        POLICY,
        _stored(60, must_revalidate=True),
        id="policy: §5.2.2.8 proxy-revalidate",
    ),
    pytest.param(
        {"cc": "max-age=60, stale-while-revalidate=7, stale-if-error=8", "default_swr": 1, "default_sie": 2},
        POLICY,
        _stored(60, stale_while_revalidate=7.0, stale_if_error=8.0),
        id="policy: RFC 5861 response windows beat defaults",
    ),
    pytest.param(
        {"default_swr": 1, "default_sie": 2},
        POLICY,
        _stored(100, stale_while_revalidate=1.0, stale_if_error=2.0),
        id="policy: RFC 5861 default windows",
    ),
]


@pytest.mark.parametrize(("args", "policy", "expected"), POLICY_CASES)
def test_decide_store_policy(args: dict[str, Any], policy: TTLPolicy, expected: dict[str, Any]) -> None:
    _check(_store(args, policy), expected)


@pytest.mark.parametrize(
    ("lo", "default", "hi"),
    [
        pytest.param(10, 5, 100, id="min above default"),
        pytest.param(0, 200, 100, id="default above max"),
        pytest.param(-1, 0, 10, id="negative min"),
        pytest.param(0, math.nan, 10, id="NaN default"),
    ],
)
def test_ttl_policy_rejects_inconsistent_bounds(lo: float, default: float, hi: float) -> None:
    with pytest.raises(ValueError):
        TTLPolicy(min=lo, default=default, max=hi)


def test_ttl_policy_accepts_infinite_max() -> None:
    assert _store({"cc": "max-age=99999"}, TTLPolicy(min=0, default=1, max=math.inf)).ttl == 99999


# ---------------------------------------------------------------- age (§4.2.3)
@pytest.mark.parametrize(
    ("age", "date", "request_time", "response_time", "expected"),
    [
        pytest.param(None, NOW, NOW, NOW, 0.0, id="§4.2.3 fresh from origin: age 0"),
        pytest.param(None, NOW - 10, NOW, NOW, 10.0, id="§4.2.3 apparent_age from Date"),
        pytest.param("30", NOW, NOW - 2, NOW, 32.0, id="§4.2.3 Age plus response_delay"),
        pytest.param("5", NOW - 100, NOW, NOW, 100.0, id="§4.2.3 apparent_age wins when larger"),
        pytest.param("abc", NOW, NOW - 1, NOW, 1.0, id="§5.1 invalid Age ignored"),
        pytest.param("-5", NOW, NOW, NOW, 0.0, id="§5.1 negative Age invalid"),
        pytest.param("1, 2", NOW, NOW, NOW, 1.0, id="§5.1 list Age: first member"),
        pytest.param("7200, 0", NOW, NOW, NOW, 7200.0, id="§5.1 list Age suffix: first member wins"),
        pytest.param("0, 7200", NOW, NOW, NOW, 0.0, id="§5.1 list Age prefix: first member wins"),
        pytest.param(" , 30", NOW, NOW, NOW, 30.0, id="RFC 9110 §5.6.1 empty list elements skipped"),
        pytest.param("abc, 30", NOW, NOW, NOW, 0.0, id="§5.1 invalid first member: 0"),
        pytest.param("7200;foo=bar", NOW, NOW, NOW, 0.0, id="§5.1 parameters are not delta-seconds"),
        pytest.param("7", None, NOW, NOW, 7.0, id="§4.2.3 no Date: apparent_age 0"),
        pytest.param(None, NOW + 50, NOW, NOW, 0.0, id="§4.2.3 Date in the future: apparent_age 0"),
        pytest.param("3", NOW, NOW + 5, NOW, 3.0, id="§4.2.3 negative response_delay taken as 0"),
        pytest.param("9" * 50, NOW, NOW, NOW, float(DELTA_SECONDS_MAX), id="§1.2.2 Age clamped to 2^31"),
        pytest.param("7200.0", NOW, NOW, NOW, 0.0, id="§5.1 fractional Age invalid"),
        pytest.param(["7200"], NOW, NOW, NOW, 7200.0, id="§5.1 one field line"),
        pytest.param(["7200", "0"], NOW, NOW, NOW, 7200.0, id="§5.1 two Age lines form a list: first member"),
        pytest.param(["0", "7200"], NOW, NOW, NOW, 0.0, id="§5.1 two Age lines, small first: first member"),
        pytest.param(["", "7200, 1"], NOW, NOW, NOW, 7200.0, id="§5.1 empty first line skipped"),
        pytest.param(["7200", "7200"], NOW, NOW, NOW, 7200.0, id="§5.1 duplicate Age lines"),
        pytest.param([], NOW - 4, NOW, NOW, 4.0, id="§4.2.3 no Age line: 0"),
    ],
)
def test_corrected_initial_age(
    age: str | list[str] | None,
    date: float | None,
    request_time: float,
    response_time: float,
    expected: float,
) -> None:
    assert corrected_initial_age(age, date, request_time, response_time) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent Expires"),
        pytest.param("0", 0.0, id="§5.3 invalid Expires is in the past"),
        pytest.param("Thu, 01 Jan 1970 00:01:40 GMT", 100.0, id="§5.3 valid Expires"),
    ],
)
def test_parse_expires(value: str | None, expected: float | None) -> None:
    assert parse_expires(value) == expected


# ---------------------------------------------------------------- reuse (§4, §5.2.1)
FRESH = (ReuseDecision.FRESH, None)
STALE = (ReuseDecision.STALE, FwdReason.STALE)
MR_STALE = (ReuseDecision.MUST_REVALIDATE, FwdReason.STALE)
MR_REQUEST = (ReuseDecision.MUST_REVALIDATE, FwdReason.REQUEST)

REUSE_CASES: list[Any] = [
    # TTL-policy mode (honour_request False): request directives ignored
    pytest.param({"age": 10}, False, FRESH, id="policy: §4.2 fresh while age < ttl"),
    pytest.param({"age": 100}, False, STALE, id="policy: §4.2 age == ttl is stale"),
    pytest.param({"age": 150}, False, STALE, id="policy: stale, may use RFC 5861 windows"),
    pytest.param({"age": 150, "mr": True}, False, MR_STALE, id="policy: §5.2.2.2 must-revalidate"),
    pytest.param({"age": 10, "mr": True}, False, FRESH, id="policy: must-revalidate irrelevant when fresh"),
    pytest.param({"age": 10, "req": "no-cache"}, False, FRESH, id="policy: request no-cache ignored"),
    pytest.param({"age": 10, "req": "max-age=0"}, False, FRESH, id="policy: request max-age ignored"),
    pytest.param({"age": 150, "req": "max-stale"}, False, STALE, id="policy: request max-stale ignored"),
    pytest.param({"age": 10, "pragma": True}, False, FRESH, id="policy: Pragma no-cache ignored"),
    pytest.param({"age": 0, "ttl": 0, "nc": True}, False, MR_STALE, id="policy: §5.2.2.4 stored no-cache"),
    # plain RFC mode (honour_request True)
    pytest.param({"age": 10}, True, FRESH, id="§4.2 fresh while age < ttl"),
    pytest.param({"age": 100}, True, STALE, id="§4.2 age == ttl is stale"),
    pytest.param({"age": 150, "mr": True}, True, MR_STALE, id="§5.2.2.2 must-revalidate when stale"),
    pytest.param({"age": 0, "ttl": 0, "nc": True}, True, MR_STALE, id="§5.2.2.4 stored no-cache"),
    pytest.param({"age": 10, "req": "no-cache"}, True, MR_REQUEST, id="§5.2.1.4 request no-cache, fresh"),
    pytest.param({"age": 150, "req": "no-cache"}, True, MR_STALE, id="§5.2.1.4 request no-cache, stale"),
    pytest.param({"age": 10, "pragma": True}, True, MR_REQUEST, id="§5.4 Pragma no-cache without CC"),
    pytest.param(
        {"age": 10, "pragma": True, "req": "max-age=600"}, True, FRESH, id="§5.4 Pragma ignored with CC"
    ),
    pytest.param(
        {"age": 10, "pragma": True, "req": "x-ext"},
        True,
        MR_REQUEST,
        id="§5.4 Pragma used: CC not understood",
    ),
    pytest.param({"age": 10, "req": "max-age=0"}, True, MR_REQUEST, id="§5.2.1.1 max-age=0 forces"),
    pytest.param({"age": 10, "req": "max-age=10"}, True, FRESH, id="§5.2.1.1 age equal to max-age ok"),
    pytest.param({"age": 10, "req": "max-age=9"}, True, MR_REQUEST, id="§5.2.1.1 older than max-age"),
    pytest.param({"age": 50, "req": "min-fresh=60"}, True, MR_REQUEST, id="§5.2.1.3 min-fresh not met"),
    pytest.param({"age": 50, "req": "min-fresh=50"}, True, FRESH, id="§5.2.1.3 min-fresh met"),
    pytest.param({"age": 150, "req": "min-fresh=0"}, True, MR_STALE, id="§5.2.1.3 stale can't be min-fresh"),
    pytest.param({"age": 150}, True, STALE, id="§4.2.4 stale: pipeline may use RFC 5861 windows"),
    pytest.param({"age": 150, "req": "max-stale=60"}, True, FRESH, id="§5.2.1.2 within max-stale"),
    pytest.param({"age": 150, "req": "max-stale=10"}, True, STALE, id="§5.2.1.2 beyond max-stale"),
    pytest.param({"age": 1e9, "req": "max-stale"}, True, FRESH, id="§5.2.1.2 max-stale without value"),
    pytest.param(
        {"age": 150, "req": "max-stale", "mr": True},
        True,
        MR_STALE,
        id="§5.2.2.2 must-revalidate beats max-stale",
    ),
    pytest.param(
        {"age": 150, "req": "max-age=200"}, True, MR_STALE, id="§5.2.1.1 max-age alone refuses stale"
    ),
    pytest.param(
        {"age": 150, "req": "max-age=200, max-stale=60"}, True, FRESH, id="§5.2.1.1 max-age with max-stale"
    ),
    pytest.param(
        {"age": 150, "req": "max-age=120, max-stale=60"}, True, MR_STALE, id="§5.2.1.1 max-age caps max-stale"
    ),
]


@pytest.mark.parametrize(("case", "honour", "expected"), REUSE_CASES)
def test_reuse_decision(case: dict[str, Any], honour: bool, expected: tuple[ReuseDecision, Any]) -> None:
    result = reuse_decision(
        entry_age=case["age"],
        ttl=case.get("ttl", 100),
        request_cc=parse_cache_control(case.get("req")),
        pragma_no_cache=case.get("pragma", False),
        no_cache=case.get("nc", False),
        must_revalidate=case.get("mr", False),
        honour_request=honour,
    )
    assert tuple(result) == expected
    assert result.decision is expected[0]


@pytest.mark.parametrize(
    ("age", "ttl", "window", "inside"),
    [(15, 10, 10, True), (20, 10, 10, False), (5, 10, 10, True), (15, 10, 0, False)],
)
def test_within_stale_window(age: float, ttl: float, window: float, inside: bool) -> None:
    assert within_stale_window(age, ttl, window) is inside


@pytest.mark.parametrize(
    ("must_revalidate", "no_cache", "allowed"),
    [(False, False, True), (True, False, False), (False, True, False), (True, True, False)],
)
def test_may_serve_disconnected(must_revalidate: bool, no_cache: bool, allowed: bool) -> None:
    assert may_serve_disconnected(must_revalidate=must_revalidate, no_cache=no_cache) is allowed
