"""The origin request policy (``forward``): resolution against the key and ttl, and its filters."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from proxy.edge.forwarding import ALL, NONE, Forwarding, NameSet, resolve_forwarding
from proxy.settings.model import CacheKeyConfig, ForwardConfig


def forward(**settings: Any) -> ForwardConfig:
    return ForwardConfig.model_validate(settings)


def key(**settings: Any) -> CacheKeyConfig:
    return CacheKeyConfig.model_validate(settings)


RESOLVE: list[Any] = [
    pytest.param({}, {}, True, "headers all, cookies none, query all", id="ttl default: no cookies"),
    pytest.param({}, {}, False, "headers all, cookies all, query all", id="RFC default: everything"),
    pytest.param(
        {}, {"cookies": ["session"]}, True, "headers all, cookies [session], query all", id="ttl: key cookies"
    ),
    pytest.param(
        {"headers": "none", "cookies": "none", "query": "none"},
        {"headers": ["Accept-Language"], "cookies": ["session"], "query": ["q"]},
        False,
        "headers [accept-language], cookies [session], query [q]",
        id="none: key items still forwarded",
    ),
    pytest.param(
        {"headers": ["X-A"], "cookies": ["a"], "query": ["p"]},
        {"headers": ["X-B"], "cookies": ["b"], "query": ["q"]},
        True,
        "headers [x-a,x-b], cookies [a,b], query [p,q]",
        id="lists: union with the key",
    ),
    pytest.param(
        {"query": ["utm"]},
        {"query": {"except": ["utm", "ref"]}},
        True,
        "headers all, cookies none, query all-except[ref]",
        id="query except in the key",
    ),
    pytest.param(
        {"query": "none"}, {"query": "all"}, True, "headers all, cookies none, query all", id="key query all"
    ),
    pytest.param(
        {"cookies": "none"},
        {"headers": ["Cookie"]},
        True,
        "headers all, cookies all, query all",
        id="Cookie keyed",
    ),
]


@pytest.mark.parametrize(("settings", "key_settings", "has_ttl", "expected"), RESOLVE)
def test_resolve(
    settings: dict[str, Any], key_settings: dict[str, Any], has_ttl: bool, expected: str
) -> None:
    policy = resolve_forwarding(forward(**settings), key(**key_settings), has_ttl=has_ttl)
    assert policy.describe() == expected


def test_rfc_default_passes_all() -> None:
    assert resolve_forwarding(forward(), key(), has_ttl=False).passes_all
    assert not resolve_forwarding(forward(), key(), has_ttl=True).passes_all


@pytest.mark.parametrize(
    ("a", "b", "union"),
    [
        (ALL, NONE, ALL),
        (NONE, NONE, NONE),
        (NameSet(frozenset("a"), True), NameSet(frozenset("b"), True), NameSet(frozenset("ab"), True)),
        (NameSet(frozenset("a"), True), NameSet(frozenset("ab"), False), NameSet(frozenset("b"), False)),
        (NameSet(frozenset("ab"), False), NameSet(frozenset("bc"), False), NameSet(frozenset("b"), False)),
    ],
)
def test_name_set_union(a: NameSet, b: NameSet, union: NameSet) -> None:
    assert a.union(b) == union == b.union(a)


def policy(headers: NameSet = ALL, cookies: NameSet = ALL, query: NameSet = ALL, **kw: bool) -> Forwarding:
    return Forwarding(headers=headers, cookies=cookies, query=query, **kw)


HEADERS: list[Any] = [
    pytest.param(
        policy(),
        [("X-A", "1"), ("Cookie", "a=1")],
        [("X-A", "1"), ("Cookie", "a=1")],
        id="all: unchanged",
    ),
    pytest.param(
        policy(headers=NONE, cookies=NONE),
        [("X-A", "1"), ("Authorization", "Basic x"), ("Cookie", "a=1"), ("Content-Type", "text/plain")],
        [("Content-Type", "text/plain")],
        id="none: only what describes the body",
    ),
    pytest.param(
        policy(headers=NameSet(frozenset({"x-a"}), True)),
        [("x-a", "1"), ("X-B", "2"), ("X-A", "3"), ("Edge-Viewer-Device", "mobile")],
        [("x-a", "1"), ("X-A", "3"), ("Edge-Viewer-Device", "mobile")],
        id="list: case-insensitive, repeated lines kept, edge's own kept",
    ),
    pytest.param(
        policy(headers=NONE, keep_accept_encoding=True),
        [("Accept-Encoding", "gzip"), ("Accept", "*/*")],
        [("Accept-Encoding", "gzip")],
        id="compress: the coding bucket is kept",
    ),
    pytest.param(
        policy(headers=NONE),
        [("Accept-Encoding", "gzip")],
        [],
        id="no compress: Accept-Encoding follows the policy",
    ),
    pytest.param(
        policy(cookies=NameSet(frozenset({"b", "d"}), True)),
        [("Cookie", "a=1; b=2"), ("X", "y"), ("Cookie", " d = 4 ;c=3")],
        [("X", "y"), ("Cookie", "b=2; d=4")],
        id="cookie list: pairs kept in order, one header",
    ),
    pytest.param(
        policy(cookies=NameSet(frozenset({"b"}), True)),
        [("Cookie", "a=1; =junk; nameless")],
        [],
        id="cookie list: none left, header dropped",
    ),
]


@pytest.mark.parametrize(("rule", "given", "expected"), HEADERS)
def test_filter_headers(
    rule: Forwarding, given: list[tuple[str, str]], expected: list[tuple[str, str]]
) -> None:
    headers: CIMultiDict[str] = CIMultiDict(given)
    rule.filter_headers(headers)
    assert list(headers.items()) == expected


QUERY: list[Any] = [
    pytest.param(ALL, "b=2&a=1&&c", "b=2&a=1&&c", id="all: untouched, raw"),
    pytest.param(NONE, "a=1&b=2", "", id="none"),
    pytest.param(
        NameSet(frozenset({"a", "c d"}), True),
        "b=2&a=1&c%20d=x&c+d&a=%2F&",
        "a=1&c%20d=x&c+d&a=%2F",
        id="list",
    ),
    pytest.param(NameSet(frozenset({"utm"}), False), "utm=1&&x=2", "x=2", id="except"),
    pytest.param(NameSet(frozenset({"a"}), True), "", "", id="empty"),
]


@pytest.mark.parametrize(("names", "query", "expected"), QUERY)
def test_filter_query(names: NameSet, query: str, expected: str) -> None:
    assert policy(query=names).filter_query(query) == expected


def test_cookie_is_not_a_forward_header() -> None:
    with pytest.raises(ValueError, match="Cookie is forwarded per 'cookies'"):
        forward(headers=["X-A", "cookie"])
