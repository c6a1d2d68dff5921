"""Targeted cache control: CDN-Cache-Control (RFC 9213, RFC 8941 Dictionary) and Surrogate-Control."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from proxy.http.cache_control import DELTA_SECONDS_MAX, CacheControl
from proxy.http.targeted import (
    device_token,
    effective_cache_control,
    parse_cdn_cache_control,
    parse_sf_dictionary,
    parse_surrogate_control,
    surrogate_capability,
)

SF_CASES: list[Any] = [
    pytest.param("max-age=60", {"max-age": 60}, id="RFC 8941 §3.2 integer member"),
    pytest.param("no-store", {"no-store": True}, id="RFC 8941 §3.2 bare key is true"),
    pytest.param("a=?0, b=?1", {"a": False, "b": True}, id="RFC 8941 §3.3.6 booleans"),
    pytest.param('a="x \\" y"', {"a": 'x " y'}, id="RFC 8941 §3.3.3 string with escape"),
    pytest.param("a=tok/en:1", {"a": "tok/en:1"}, id="RFC 8941 §3.3.4 token"),
    pytest.param("a=1.5", {"a": 1.5}, id="RFC 8941 §3.3.2 decimal"),
    pytest.param("a=-3", {"a": -3}, id="RFC 8941 §3.3.1 negative integer"),
    pytest.param("a=:aGk=:", {"a": b"aGk="}, id="RFC 8941 §3.3.5 byte sequence"),
    pytest.param("a=(1 2);p", {"a": (1, 2)}, id="RFC 8941 §3.1.1 inner list with parameters"),
    pytest.param("a=1;p=2;q, b", {"a": 1, "b": True}, id="RFC 8941 §3.1.2 parameters dropped"),
    pytest.param("a=1, a=2", {"a": 2}, id="RFC 8941 §4.2.2 repeated key overwrites"),
    pytest.param(["a=1", "b=2"], {"a": 1, "b": 2}, id="RFC 8941 §4.2 field lines combined"),
    pytest.param("  a=1 ,\tb  ", {"a": 1, "b": True}, id="RFC 8941 §4.2 SP/OWS tolerated"),
    pytest.param("", {}, id="empty field: empty dictionary"),
    pytest.param("a=1,", None, id="RFC 8941 §4.2.2 trailing comma fails"),
    pytest.param("A=1", None, id="RFC 8941 §3.1.2 keys are lower-case"),
    pytest.param("a =1", None, id="RFC 8941 no space before '='"),
    pytest.param("a= 1", None, id="RFC 8941 no space after '='"),
    pytest.param("a=1 b=2", None, id="RFC 8941 members need commas"),
    pytest.param("a=&&", None, id="RFC 8941 unknown item type fails"),
    pytest.param('a="unterminated', None, id="RFC 8941 unterminated string fails"),
    pytest.param("a=1234567890123456", None, id="RFC 8941 §3.3.1 integer over 15 digits fails"),
    pytest.param("a=1.2345", None, id="RFC 8941 §3.3.2 decimal over 3 fraction digits fails"),
    pytest.param("a=?2", None, id="RFC 8941 §3.3.6 bad boolean fails"),
    pytest.param(None, None, id="absent"),
    pytest.param([], None, id="no field line"),
]


@pytest.mark.parametrize(("value", "expected"), SF_CASES)
def test_parse_sf_dictionary(value: Any, expected: dict[str, Any] | None) -> None:
    assert parse_sf_dictionary(value) == expected


CDN_CASES: list[Any] = [
    pytest.param("max-age=3600", {"max_age": 3600}, id="RFC 9213 §2.1 max-age"),
    pytest.param("foobar, max-age=3600", {"max_age": 3600}, id="RFC 9213 §2.1 unknown directive ignored"),
    pytest.param("max-age=99999999999", {"max_age": DELTA_SECONDS_MAX}, id="RFC 9111 §1.2.2 clamped to 2^31"),
    pytest.param("max-age=0", {"max_age": 0}, id="RFC 9213 max-age=0"),
    pytest.param('max-age="10000"', {}, id="RFC 9213 §2.1 string max-age not consumed"),
    pytest.param("max-age=3600.0", {}, id="RFC 9213 §2.1 decimal max-age not consumed"),
    pytest.param("max-age=-1", {}, id="RFC 9111 §1.2.2 negative max-age not consumed"),
    pytest.param("max-age=60;foo", {"max_age": 60}, id="RFC 8941 parameters ignored"),
    pytest.param("s-maxage=5, max-age=9", {"s_maxage": 5, "max_age": 9}, id="RFC 9213 s-maxage"),
    pytest.param("private", {"private": True}, id="RFC 9213 §2.1 private"),
    pytest.param("no-cache", {"no_cache": True}, id="RFC 9213 §2.1 no-cache"),
    pytest.param("no-store", {"no_store": True}, id="RFC 9213 §2.1 no-store"),
    pytest.param("must-revalidate", {"must_revalidate": True}, id="RFC 9213 §2.1 must-revalidate"),
    pytest.param("no-store=?0", {}, id="RFC 8941 false flag is absent"),
    pytest.param(
        'private="Set-Cookie, X-A"', {"private_fields": ("set-cookie", "x-a")}, id="qualified private"
    ),
    pytest.param("no-cache=set-cookie", {"no_cache_fields": ("set-cookie",)}, id="qualified no-cache token"),
    pytest.param("no-cache=5", {}, id="no-cache with an integer not consumed"),
    pytest.param(
        "stale-while-revalidate=30, stale-if-error=60",
        {"stale_while_revalidate": 30, "stale_if_error": 60},
        id="RFC 5861 directives",
    ),
    pytest.param("none", {}, id="RFC 9213 §3.1 'none' still a valid non-empty field"),
]


@pytest.mark.parametrize(("value", "expected"), CDN_CASES)
def test_parse_cdn_cache_control(value: str, expected: dict[str, Any]) -> None:
    assert parse_cdn_cache_control(value) == CacheControl(**expected)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("max-age=10000, &&&&&", id="RFC 9213 §2.2 invalid Dictionary ignored"),
        pytest.param("MaX-aGe=3600", id="RFC 9213 §2.2 upper-case key fails the Dictionary"),
        pytest.param("max-age =100", id="RFC 9213 §2.2 space before '=' fails"),
        pytest.param("", id="RFC 9213 §2.1 empty field ignored"),
        pytest.param(None, id="absent"),
    ],
)
def test_cdn_cache_control_ignored(value: str | None) -> None:
    assert parse_cdn_cache_control(value) is None


SURROGATE_CASES: list[Any] = [
    pytest.param("max-age=3600", "edge-1", {"max_age": 3600}, id="untargeted max-age"),
    pytest.param("max-age=3600;edge-1", "edge-1", {"max_age": 3600}, id="targeted at this edge"),
    pytest.param("max-age=3600;EDGE-1", "edge-1", {"max_age": 3600}, id="device token case-insensitive"),
    pytest.param("max-age=3600;other", "edge-1", None, id="targeted at another device: ignored"),
    pytest.param("max-age=3600;edge-1", None, None, id="no device token: targeted directives ignored"),
    pytest.param(
        "max-age=60, max-age=3600;edge-1", "edge-1", {"max_age": 3600}, id="targeted beats untargeted"
    ),
    pytest.param("max-age=3600;other, no-store", "edge-1", {"no_store": True}, id="mixed targets"),
    pytest.param("max-age=600+60", None, {"max_age": 600}, id="max-age=N+M keeps N"),
    pytest.param("no-store-remote", None, {"no_store": True}, id="no-store-remote: an edge is remote"),
    pytest.param('content="ESI/1.0"', None, None, id="nothing understood: fall back"),
    pytest.param("max-age =100", None, None, id="space before '=': not a directive"),
    pytest.param(None, None, None, id="absent"),
]


@pytest.mark.parametrize(("value", "device", "expected"), SURROGATE_CASES)
def test_parse_surrogate_control(
    value: str | None, device: str | None, expected: dict[str, Any] | None
) -> None:
    result = parse_surrogate_control(value, device)
    assert result == (None if expected is None else CacheControl(**expected))


def _h(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


EFFECTIVE_CASES: list[Any] = [
    pytest.param(
        _h(("Cache-Control", "max-age=60")), ("Cache-Control", False, {"max_age": 60}), id="no targeted field"
    ),
    pytest.param(
        _h(("Cache-Control", "max-age=3600"), ("CDN-Cache-Control", "max-age=1")),
        ("CDN-Cache-Control", True, {"max_age": 1}),
        id="RFC 9213 §2.1 CDN-Cache-Control beats Cache-Control",
    ),
    pytest.param(
        _h(("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=10000")),
        ("CDN-Cache-Control", True, {"max_age": 10000}),
        id="RFC 9213 §2.1 Cache-Control no-store ignored",
    ),
    pytest.param(
        _h(("Cache-Control", "max-age=10000"), ("CDN-Cache-Control", "private")),
        ("CDN-Cache-Control", True, {"private": True}),
        id="RFC 9213 §2.1 CDN-Cache-Control private",
    ),
    pytest.param(
        _h(("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=10000, &&&&&")),
        ("Cache-Control", False, {"no_store": True}),
        id="RFC 9213 §2.2 invalid field: fall back",
    ),
    pytest.param(
        _h(("CDN-Cache-Control", "max-age=5"), ("Surrogate-Control", "max-age=9")),
        ("CDN-Cache-Control", True, {"max_age": 5}),
        id="precedence CDN-Cache-Control > Surrogate-Control",
    ),
    pytest.param(
        _h(("Cache-Control", "max-age=9"), ("Surrogate-Control", "max-age=5")),
        ("Surrogate-Control", True, {"max_age": 5}),
        id="precedence Surrogate-Control > Cache-Control",
    ),
    pytest.param(
        _h(("Cache-Control", "no-store"), ("Surrogate-Control", "max-age=10000;edge-1")),
        ("Surrogate-Control", True, {"max_age": 10000}),
        id="Surrogate-Control targeted at this edge",
    ),
    pytest.param(
        _h(("Cache-Control", "max-age=1"), ("Surrogate-Control", "max-age=3600;not-for-you")),
        ("Cache-Control", False, {"max_age": 1}),
        id="Surrogate-Control for another device: fall back",
    ),
    pytest.param(
        _h(("Cache-Control", "max-age=1"), ("Cache-Control", "public")),
        ("Cache-Control", False, {"max_age": 1, "public": True}),
        id="Cache-Control field lines combined",
    ),
]


@pytest.mark.parametrize(("headers", "expected"), EFFECTIVE_CASES)
def test_effective_cache_control(
    headers: CIMultiDict[str], expected: tuple[str, bool, dict[str, Any]]
) -> None:
    source, targeted, directives = expected
    result = effective_cache_control(headers, device="edge-1")
    assert (result.source, result.targeted, result.cc) == (source, targeted, CacheControl(**directives))


def test_effective_cache_control_target_list_is_configurable() -> None:
    headers = _h(("Cache-Control", "max-age=9"), ("CDN-Cache-Control", "max-age=5"))
    result = effective_cache_control(headers, targets=())
    assert (result.source, result.cc.max_age) == ("Cache-Control", 9)


def test_effective_cache_control_accepts_a_plain_mapping() -> None:
    result = effective_cache_control({"CDN-Cache-Control": "no-store"})
    assert result.targeted and result.cc.no_store


@pytest.mark.parametrize(
    ("device", "value"),
    [
        pytest.param("edge-1", 'edge-1="Surrogate/1.0"', id="a token as is"),
        pytest.param("edge 1/a", 'edge-1-a="Surrogate/1.0"', id="non-token characters replaced"),
        pytest.param("", 'edge="Surrogate/1.0"', id="empty name"),
    ],
)
def test_surrogate_capability(device: str, value: str) -> None:
    assert surrogate_capability(device) == ("Surrogate-Capability", value)
    token = value.partition("=")[0]
    assert device_token(device) == token
    # what the origin reads back (as the cache-tests harness does: the part before "=") targets this edge
    headers = _h(("Surrogate-Control", f"max-age=7;{token}"))
    assert effective_cache_control(headers, device=device).cc.max_age == 7
