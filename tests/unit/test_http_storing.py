"""Which response header fields a shared cache stores (RFC 9111 §3.1, §5.2.2.4, §5.2.2.7)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.http.cache_control import parse_cache_control
from proxy.http.storing import (
    EDGE_RECOMPUTED,
    SET_COOKIE_FIELDS,
    CookieHandling,
    SetCookieMode,
    excluded_fields,
    fields_to_store,
    set_cookie_handling,
    surrogate_keys,
)

CASES: list[Any] = [
    pytest.param(
        [("Content-Type", "text/plain"), ("X-A", "1")],
        "",
        [("Content-Type", "text/plain"), ("X-A", "1")],
        id="§3.1 unrecognised fields are stored too",
    ),
    pytest.param(
        [("Connection", "a, b"), ("a", "1"), ("b", "2"), ("c", "3")],
        "",
        [("c", "3")],
        id="§3.1 Connection and the fields it lists are not stored",
    ),
    pytest.param(
        [("Keep-Alive", "5"), ("Upgrade", "h2c"), ("Trailer", "x"), ("X", "1")],
        "",
        [("X", "1")],
        id="§3.1 hop-by-hop fields are not stored",
    ),
    pytest.param(
        [("Proxy-Authenticate", "Basic"), ("Proxy-Authentication-Info", "a=b"), ("X", "1")],
        "",
        [("X", "1")],
        id="§3.1 proxy-specific fields are not stored",
    ),
    pytest.param(
        [("Set-Cookie", "a=b"), ("X", "1")],
        'private="Set-Cookie"',
        [("X", "1")],
        id="§5.2.2.7 qualified private: the named field is not stored",
    ),
    pytest.param(
        [("a", "1"), ("b", "2"), ("c", "3")],
        'no-cache="a, b", max-age=60',
        [("c", "3")],
        id="§5.2.2.4 qualified no-cache: the named fields are not stored",
    ),
    pytest.param(
        [("Content-Length", "5"), ("Age", "3"), ("X-Cache", "Hit"), ("Transfer-Encoding", "chunked")],
        "",
        [],
        id="fields the edge recomputes are not stored",
    ),
    pytest.param(
        [("Set-Cookie", "a=1"), ("Vary", "A"), ("Set-Cookie", "b=2")],
        "max-age=60",
        [("Set-Cookie", "a=1"), ("Vary", "A"), ("Set-Cookie", "b=2")],
        id="§3.1 order and repeated lines kept (Set-Cookie stored)",
    ),
]


@pytest.mark.parametrize(("headers", "cc", "expected"), CASES)
def test_fields_to_store(headers: list[tuple[str, str]], cc: str, expected: list[tuple[str, str]]) -> None:
    assert fields_to_store(headers, parse_cache_control(cc)) == tuple(expected)


def test_drop_can_be_narrowed() -> None:
    headers = [("Age", "3"), ("X", "1")]
    assert fields_to_store(headers, parse_cache_control(None), drop=frozenset()) == (("Age", "3"), ("X", "1"))


def test_excluded_fields_lists_names_lower_cased() -> None:
    names = excluded_fields([("Connection", "X-Hop")], parse_cache_control('private="Set-Cookie"'))
    assert {"x-hop", "set-cookie", "connection", "proxy-authentication-info"} <= names
    assert not names & {"content-type", "etag"}
    assert "content-length" in EDGE_RECOMPUTED


COOKIE = [("Set-Cookie", "session=alice; Path=/"), ("X", "1")]
COOKIE2 = [("set-cookie2", "a=1"), ("X", "1")]
NO_COOKIE = [("Cache-Control", "max-age=60"), ("X", "1")]

SET_COOKIE_CASES: list[Any] = [
    pytest.param("pass", NO_COOKIE, "", CookieHandling.KEEP, id="pass: no cookie, stored as is"),
    pytest.param("pass", COOKIE, "", CookieHandling.REFUSE, id="pass: Set-Cookie, not stored"),
    pytest.param("pass", COOKIE2, "", CookieHandling.REFUSE, id="pass: Set-Cookie2 (any case), not stored"),
    pytest.param(
        "pass", COOKIE, 'private="Set-Cookie"', CookieHandling.KEEP, id="pass: origin keeps it private"
    ),
    pytest.param(
        "pass", COOKIE, 'no-cache="set-cookie"', CookieHandling.KEEP, id="pass: origin no-cache names it"
    ),
    pytest.param(
        "pass", COOKIE2, 'private="Set-Cookie"', CookieHandling.REFUSE, id="pass: private names the other"
    ),
    pytest.param("strip", NO_COOKIE, "", CookieHandling.KEEP, id="strip: no cookie, stored as is"),
    pytest.param("strip", COOKIE, "", CookieHandling.STRIP, id="strip: Set-Cookie, stored without"),
    pytest.param("strip", COOKIE2, "", CookieHandling.STRIP, id="strip: Set-Cookie2, stored without"),
    pytest.param("store", COOKIE, "", CookieHandling.KEEP, id="store: RFC 9111 literal"),
    pytest.param("store", NO_COOKIE, "", CookieHandling.KEEP, id="store: no cookie"),
]


@pytest.mark.parametrize(("mode", "headers", "cc", "expected"), SET_COOKIE_CASES)
def test_set_cookie_handling(
    mode: SetCookieMode, headers: list[tuple[str, str]], cc: str, expected: CookieHandling
) -> None:
    assert set_cookie_handling(mode, headers, parse_cache_control(cc)) is expected


def test_strip_drops_every_cookie_field() -> None:
    headers = [("Set-Cookie", "a=1"), ("X", "1"), ("SET-COOKIE2", "b=2"), ("Set-Cookie", "c=3")]
    stored = fields_to_store(headers, parse_cache_control(None), drop=EDGE_RECOMPUTED | SET_COOKIE_FIELDS)
    assert stored == (("X", "1"),)


@pytest.mark.parametrize(
    ("fields", "tags"),
    [
        ([("Surrogate-Key", "a  b"), ("Cache-Tag", "c, a,")], ("a", "b", "c")),
        ([("Cache-Tag", "x"), ("Surrogate-Key", "y")], ("y", "x")),  # Surrogate-Key first, as read
        ([("surrogate-key", "a"), ("SURROGATE-KEY", "b a")], ("a", "b")),
        ([("Content-Type", "text/plain")], ()),
    ],
)
def test_surrogate_keys_are_the_purge_tags_each_once(
    fields: list[tuple[str, str]], tags: tuple[str, ...]
) -> None:
    assert surrogate_keys(fields) == tags
