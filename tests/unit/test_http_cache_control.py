"""Cache-Control parsing (RFC 9111 §5.2, §1.2.2, §4.2.1; RFC 5861)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.http.cache_control import (
    DELTA_SECONDS_MAX,
    EMPTY,
    CacheControl,
    parse_cache_control,
    parse_delta_seconds,
    pragma_no_cache,
)

CASES: list[Any] = [
    pytest.param(None, {}, id="absent field → EMPTY"),
    pytest.param("", {}, id="empty value → EMPTY"),
    pytest.param("max-age=60", {"max_age": 60}, id="§5.2.2.1 max-age"),
    pytest.param("s-maxage=30", {"s_maxage": 30}, id="§5.2.2.10 s-maxage"),
    pytest.param("MAX-AGE=60, Public", {"max_age": 60, "public": True}, id="§5.2 names are case-insensitive"),
    pytest.param(" max-age=60 ,  no-transform ", {"max_age": 60, "no_transform": True}, id="§5.6.1 OWS"),
    pytest.param(",, max-age=5,,", {"max_age": 5}, id="§5.6.1 empty list members ignored"),
    pytest.param('max-age="120"', {"max_age": 120}, id="§5.2 quoted-string argument accepted"),
    pytest.param("max-age=abc", {"invalid": True}, id="§4.2.1 non-integer max-age is invalid"),
    pytest.param("max-age=-1", {"invalid": True}, id="§1.2.2 negative delta-seconds is invalid"),
    pytest.param("max-age", {"invalid": True}, id="§4.2.1 max-age without value is invalid"),
    pytest.param("max-age=+5", {"invalid": True}, id="§1.2.2 sign is not a DIGIT"),
    pytest.param("max-age=1.5", {"invalid": True}, id="§1.2.2 fraction is invalid"),
    pytest.param("max-age=10, max-age=20", {"max_age": 10}, id="§4.2.1 duplicate: first occurrence used"),
    pytest.param("max-age=1, max-age=1800", {"max_age": 1}, id="§4.2.1 first occurrence even if shorter"),
    pytest.param("max-age=10, max-age=10", {"max_age": 10}, id="§4.2.1 identical duplicate is fine"),
    pytest.param("s-maxage=1, s-maxage=2", {"s_maxage": 1}, id="§4.2.1 duplicate s-maxage: first used"),
    pytest.param("max-age=x, max-age=20", {"invalid": True}, id="§4.2.1 invalid first occurrence decides"),
    pytest.param("max-age=20, max-age=x", {"max_age": 20}, id="§4.2.1 invalid later occurrence ignored"),
    pytest.param("max-age =3600", {}, id="§5.2 space before '=': not a directive, ignored"),
    pytest.param("max-age= 3600", {"invalid": True}, id="§5.2 space after '=': invalid value"),
    pytest.param('max-age= "3600"', {"invalid": True}, id="§5.2 space after '=' before quoted-string"),
    pytest.param('foo ="a,b", max-age=3', {"max_age": 3}, id="§5.2 malformed member skipped whole"),
    pytest.param("max-age=3600 , public", {"max_age": 3600, "public": True}, id="§5.6.1 OWS before comma"),
    pytest.param("max-age='3600'", {"invalid": True}, id="§5.2 single quotes are not quoting"),
    pytest.param("max-age=3600a", {"invalid": True}, id="§1.2.2 trailing garbage invalid"),
    pytest.param(
        'extension="max-age=3600", max-age=1', {"max_age": 1}, id="§5.2 max-age inside quoted-string ignored"
    ),
    pytest.param(
        'max-age=1, extension="max-age=3600"', {"max_age": 1}, id="§5.2 quoted max-age after the real one"
    ),
    pytest.param("stale-if-error= 60", {}, id="RFC 5861 space after '=' ignored"),
    pytest.param("max-age=99999999999", {"max_age": DELTA_SECONDS_MAX}, id="§1.2.2 clamp above 2^31"),
    pytest.param("max-age=" + "9" * 5000, {"max_age": DELTA_SECONDS_MAX}, id="§1.2.2 clamp huge digit run"),
    pytest.param("max-age=0000000000000007", {"max_age": 7}, id="§1.2.2 leading zeros"),
    pytest.param("no-store", {"no_store": True}, id="§5.2.2.5 no-store"),
    pytest.param("no-cache", {"no_cache": True}, id="§5.2.2.4 unqualified no-cache"),
    pytest.param(
        'no-cache="Set-Cookie, X-Foo"',
        {"no_cache_fields": ("set-cookie", "x-foo")},
        id="§5.2.2.4 qualified no-cache, comma inside quotes",
    ),
    pytest.param("no-cache=Set-Cookie", {"no_cache_fields": ("set-cookie",)}, id="§5.2 token-form no-cache"),
    pytest.param('no-cache=""', {"no_cache": True}, id="§4.2.1 empty qualified no-cache = most restrictive"),
    pytest.param("private", {"private": True}, id="§5.2.2.7 unqualified private"),
    pytest.param(
        'private="Set-Cookie", max-age=3',
        {"private_fields": ("set-cookie",), "max_age": 3},
        id="§5.2.2.7 qualified private then more directives",
    ),
    pytest.param(
        'private="a", private="b, A"',
        {"private_fields": ("a", "b")},
        id="§5.2.2.7 qualified private merged and de-duplicated",
    ),
    pytest.param("must-revalidate", {"must_revalidate": True}, id="§5.2.2.2 must-revalidate"),
    pytest.param("proxy-revalidate", {"proxy_revalidate": True}, id="§5.2.2.8 proxy-revalidate"),
    pytest.param(
        "must-understand, no-store",
        {"must_understand": True, "no_store": True},
        id="§5.2.2.3 must-understand",
    ),
    pytest.param("immutable", {"immutable": True}, id="RFC 8246 immutable"),
    pytest.param("only-if-cached", {"only_if_cached": True}, id="§5.2.1.7 only-if-cached"),
    pytest.param("max-stale", {"max_stale_any": True}, id="§5.2.1.2 max-stale without value"),
    pytest.param("max-stale=30", {"max_stale": 30}, id="§5.2.1.2 max-stale with value"),
    pytest.param("min-fresh=10", {"min_fresh": 10}, id="§5.2.1.3 min-fresh"),
    pytest.param(
        "stale-while-revalidate=30, stale-if-error=600",
        {"stale_while_revalidate": 30, "stale_if_error": 600},
        id="RFC 5861 stale-while-revalidate / stale-if-error",
    ),
    pytest.param("stale-if-error=oops", {}, id="RFC 5861 invalid stale-if-error ignored, not invalid"),
    pytest.param(
        'foo="a,b,max-age=5", max-age=7',
        {"max_age": 7},
        id="§5.2.3 unknown extension with comma in quotes ignored",
    ),
    pytest.param('community="UCI"', {}, id="§5.2.3 unknown directive only → EMPTY"),
    pytest.param(
        'no-cache="a\\"b", public', {"no_cache_fields": ('a"b',), "public": True}, id="§5.6.4 quoted-pair"
    ),
    pytest.param(
        'private="unterminated, max-age=5',
        {"private_fields": ("unterminated", "max-age=5")},
        id="§5.6.4 unterminated quoted-string runs to the end",
    ),
    pytest.param(["max-age=5", "public"], {"max_age": 5, "public": True}, id="§5.3 several field lines"),
    pytest.param(["", "no-store"], {"no_store": True}, id="§5.3 empty field line ignored"),
    pytest.param(["max-age=5", "max-age=6"], {"max_age": 5}, id="§4.2.1 first occurrence across lines"),
]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_parse_cache_control(value: Any, expected: dict[str, Any]) -> None:
    assert parse_cache_control(value) == CacheControl(**expected)


def test_empty_results_are_the_shared_instance() -> None:
    assert parse_cache_control(None) is EMPTY
    assert parse_cache_control("x-unknown") is EMPTY
    assert parse_cache_control([]) is EMPTY


def test_memoised_results_are_shared() -> None:
    assert parse_cache_control("max-age=42, public") is parse_cache_control("max-age=42, public")


def test_long_values_are_parsed_without_memo() -> None:
    value = "max-age=5, " + "x" * 2000
    assert parse_cache_control(value).max_age == 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("0", 0, id="§1.2.2 zero"),
        pytest.param(" 42 ", 42, id="§1.2.2 surrounding whitespace tolerated"),
        pytest.param("2147483648", DELTA_SECONDS_MAX, id="§1.2.2 2^31 itself"),
        pytest.param("2147483649", DELTA_SECONDS_MAX, id="§1.2.2 above 2^31 clamps"),
        pytest.param("", None, id="§1.2.2 empty is not 1*DIGIT"),
        pytest.param("4 2", None, id="§1.2.2 inner space invalid"),
        pytest.param("\u0663", None, id="§1.2.2 non-ASCII digit invalid"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_parse_delta_seconds(value: str | None, expected: int | None) -> None:
    assert parse_delta_seconds(value) == expected


@pytest.mark.parametrize(
    ("pragma", "cc_present", "expected"),
    [
        pytest.param("no-cache", False, True, id="§5.4 Pragma: no-cache without Cache-Control"),
        pytest.param("NO-CACHE", False, True, id="§5.4 case-insensitive"),
        pytest.param("foo, no-cache", False, True, id="§5.4 list member"),
        pytest.param(["foo", "no-cache"], False, True, id="§5.4 any field line"),
        pytest.param("no-cache", True, False, id="§5.4 any Cache-Control field takes over"),
        pytest.param("no-cache-please", False, False, id="§5.4 whole member only"),
        pytest.param("foo", False, False, id="§5.4 extension pragma ignored"),
        pytest.param(None, False, False, id="absent"),
    ],
)
def test_pragma_no_cache(pragma: Any, cc_present: bool, expected: bool) -> None:
    assert pragma_no_cache(pragma, cache_control_present=cc_present) is expected
