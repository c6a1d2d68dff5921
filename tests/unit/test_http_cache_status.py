"""Cache-Status (RFC 9211) serialised as RFC 8941 structured fields."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.http.cache_status import append_cache_status, format_cache_status, sf_string
from proxy.http.reasons import FwdReason


@pytest.mark.parametrize(
    ("cache", "kwargs", "expected"),
    [
        pytest.param("edge", {"hit": True}, "edge; hit", id="RFC 9211 §2.1 hit"),
        pytest.param(
            "edge",
            {"hit": False, "fwd": FwdReason.URI_MISS, "fwd_status": 200, "stored": True},
            "edge; fwd=uri-miss; fwd-status=200; stored",
            id="RFC 9211 §2.2 §2.3 §2.5 miss stored",
        ),
        pytest.param(
            "edge", {"hit": True, "ttl": 123.9}, "edge; hit; ttl=123", id="RFC 9211 §2.4 ttl floored"
        ),
        pytest.param(
            "edge", {"hit": True, "ttl": -0.2}, "edge; hit; ttl=-1", id="RFC 9211 §2.4 negative stale"
        ),
        pytest.param(
            "edge", {"hit": True, "ttl": float("nan")}, "edge; hit", id="RFC 9211 §2.4 NaN ttl omitted"
        ),
        pytest.param(
            "edge",
            {"hit": True, "ttl": 1e20},
            "edge; hit; ttl=999999999999999",
            id="RFC 8941 §3.3.1 int clamp",
        ),
        pytest.param(
            "edge",
            {"hit": False, "fwd": FwdReason.STALE, "collapsed": True},
            "edge; fwd=stale; collapsed",
            id="RFC 9211 §2.6 collapsed",
        ),
        pytest.param(
            "edge",
            {"hit": True, "key": 'GET /a"b\\c'},
            'edge; hit; key="GET /a\\"b\\\\c"',
            id="RFC 9211 §2.7 key sf-string escaping",
        ),
        pytest.param(
            "edge",
            {"hit": False, "fwd": FwdReason.URI_MISS, "detail": "no-store"},
            "edge; fwd=uri-miss; detail=no-store",
            id="RFC 9211 §2.8 detail as token",
        ),
        pytest.param(
            "edge",
            {"hit": False, "detail": "too large"},
            'edge; detail="too large"',
            id="RFC 9211 §2.8 detail as string when not a token",
        ),
        pytest.param(
            "Edge Node 1", {"hit": True}, '"Edge Node 1"; hit', id="RFC 9211 §2 cache name as string"
        ),
        pytest.param(
            "cdn.example:1/x", {"hit": True}, "cdn.example:1/x; hit", id="RFC 8941 token with : and /"
        ),
        pytest.param("1edge", {"hit": True}, '"1edge"; hit', id="RFC 8941 token must start with ALPHA or *"),
        pytest.param(
            "edge",
            {
                "hit": True,
                "fwd": FwdReason.STALE,
                "fwd_status": 304,
                "ttl": 5,
                "stored": True,
                "collapsed": True,
                "key": "k",
                "detail": "d",
            },
            'edge; hit; fwd=stale; fwd-status=304; ttl=5; stored; collapsed; key="k"; detail=d',
            id="RFC 9211 §2 parameter order",
        ),
    ],
)
def test_format_cache_status(cache: str, kwargs: dict[str, Any], expected: str) -> None:
    assert format_cache_status(cache, **kwargs) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("plain", '"plain"', id="RFC 8941 §4.1.6 plain"),
        pytest.param("/café", '"/caf%C3%A9"', id="RFC 8941 §3.3.3 non-ASCII percent-encoded"),
        pytest.param("a\tb\x00", '"a%09b%00"', id="RFC 8941 §3.3.3 controls percent-encoded"),
    ],
)
def test_sf_string(value: str, expected: str) -> None:
    assert sf_string(value) == expected


@pytest.mark.parametrize(
    ("existing", "member", "expected"),
    [
        pytest.param(None, "edge; hit", "edge; hit", id="RFC 9211 §2 first cache"),
        pytest.param("  ", "edge; hit", "edge; hit", id="RFC 9211 §2 blank upstream value"),
        pytest.param(
            "origin-cache; fwd=uri-miss",
            "edge; hit",
            "origin-cache; fwd=uri-miss, edge; hit",
            id="RFC 9211 §2 appended after the cache closest to the origin",
        ),
        pytest.param("a; hit, ", "edge; hit", "a; hit, edge; hit", id="RFC 9211 §2 trailing comma dropped"),
    ],
)
def test_append_cache_status(existing: str | None, member: str, expected: str) -> None:
    assert append_cache_status(existing, member) == expected
