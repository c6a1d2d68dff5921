"""Cache keys: every query policy, sorting, decoded names, listed headers and cookies, host normalisation.

GET/HEAD sharing and scheme are the caller's business and are not tested here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.cache.keys import (
    KeyBuilder,
    KeyPolicy,
    QueryExcept,
    normalise_accept_language,
    normalise_host,
    variant_key,
)


@dataclass(frozen=True)
class Except:
    except_: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    query: Literal["all", "none"] | tuple[str, ...] | QueryExcept = "all"
    headers: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()
    sort_query: bool = False


def build(**policy: object) -> KeyBuilder:
    p: KeyPolicy = Policy(**policy)  # type: ignore[arg-type]
    return KeyBuilder(p)


def hdrs(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


NO_HEADERS = hdrs()

# (policy, host, path, query, expected key)
QUERY_CASES: list[tuple[dict[str, object], str, str, str, str]] = [
    # query: all (raw, unsorted)
    ({}, "example.com", "/a", "", "example.com/a"),
    ({}, "example.com", "/a", "b=2&a=1", "example.com/a?b=2&a=1"),
    ({}, "example.com", "/a", "a=1&&b=2&", "example.com/a?a=1&&b=2&"),  # raw: kept byte for byte
    ({}, "example.com", "/a%20b/%2F", "x=%41", "example.com/a%20b/%2F?x=%41"),  # path and query not decoded
    ({}, "example.com", "/", "", "example.com/"),
    # query: all, sorted by name then value
    ({"sort_query": True}, "example.com", "/a", "b=2&a=1", "example.com/a?a=1&b=2"),
    ({"sort_query": True}, "example.com", "/a", "a=2&a=1&a", "example.com/a?a&a=1&a=2"),
    ({"sort_query": True}, "example.com", "/a", "a-b=1&a=2", "example.com/a?a=2&a-b=1"),  # name, not raw text
    ({"sort_query": True}, "example.com", "/a", "b=1&&a=2&", "example.com/a?a=2&b=1"),  # empty pieces dropped
    ({"sort_query": True}, "example.com", "/a", "z=1", "example.com/a?z=1"),
    ({"sort_query": True}, "example.com", "/a", "&", "example.com/a"),
    # query: none
    ({"query": "none"}, "example.com", "/a", "b=2&a=1", "example.com/a"),
    ({"query": "none", "sort_query": True}, "example.com", "/a", "b=2", "example.com/a"),
    # query: [names]
    ({"query": ("a", "c")}, "example.com", "/a", "c=3&b=2&a=1", "example.com/a?c=3&a=1"),
    ({"query": ("a", "c"), "sort_query": True}, "example.com", "/a", "c=3&b=2&a=1", "example.com/a?a=1&c=3"),
    ({"query": ("a",)}, "example.com", "/a", "b=2", "example.com/a"),  # nothing kept: no "?"
    ({"query": ("a",)}, "example.com", "/a", "a", "example.com/a?a"),  # bare name
    ({"query": ("a",)}, "example.com", "/a", "a=", "example.com/a?a="),
    ({"query": ("a",)}, "example.com", "/a", "a=1&a=2", "example.com/a?a=1&a=2"),  # repeated: all kept
    ({"query": ("a",)}, "example.com", "/a", "aa=1&a=x=y", "example.com/a?a=x=y"),  # name ends at first "="
    ({"query": ()}, "example.com", "/a", "a=1", "example.com/a"),
    # names compared percent-decoded (and "+" as space), kept raw
    ({"query": ("ab",)}, "example.com", "/a", "a%62=1&b=2", "example.com/a?a%62=1"),
    ({"query": ("a b",)}, "example.com", "/a", "a+b=1&a%20b=2&ab=3", "example.com/a?a+b=1&a%20b=2"),
    ({"query": ("é",)}, "example.com", "/a", "%C3%A9=1&e=2", "example.com/a?%C3%A9=1"),
    ({"query": ("a",)}, "example.com", "/a", "%zz=1&%=2&a=3", "example.com/a?a=3"),  # bad escapes tolerated
    # query: {except: [names]}
    ({"query": Except(("utm_source", "fbclid"))}, "e.com", "/", "a=1&utm_source=x&b=2", "e.com/?a=1&b=2"),
    ({"query": Except(("utm_source",))}, "e.com", "/", "utm%5Fsource=x&b=2", "e.com/?b=2"),
    ({"query": Except(("b",)), "sort_query": True}, "e.com", "/", "c=3&b=2&a=1", "e.com/?a=1&c=3"),
    ({"query": Except(("a",))}, "e.com", "/", "a=1", "e.com/"),
    ({"query": Except(())}, "e.com", "/", "b=2&a=1", "e.com/?b=2&a=1"),
    # host: lower-cased, default port dropped, other ports kept
    ({}, "Example.COM", "/a", "", "example.com/a"),
    ({}, "example.com:80", "/a", "", "example.com/a"),
    ({}, "EXAMPLE.com:80", "/a", "", "example.com/a"),
    ({}, "example.com:8080", "/a", "", "example.com:8080/a"),
    ({}, "example.com:443", "/a", "", "example.com:443/a"),
    ({}, "[::1]:80", "/a", "", "[::1]/a"),
    ({}, "[::1]:8080", "/a", "", "[::1]:8080/a"),
    ({}, "127.0.0.1", "/a", "", "127.0.0.1/a"),
    # a Host that is not a host cannot pose as another host's path
    ({}, "example.com/admin", "/x", "", "example.com%2Fadmin/x"),
    ({}, "example.com%2Fadmin", "/x", "", "example.com%252fadmin/x"),
    ({}, "a.com?x", "/", "", "a.com%3Fx/"),
    ({}, "a b", "/", "", "a%20b/"),
    ({}, "", "/", "", "/"),
]


@pytest.mark.parametrize(("policy", "host", "path", "query", "expected"), QUERY_CASES)
def test_query_and_host(policy: dict[str, object], host: str, path: str, query: str, expected: str) -> None:
    builder = build(**policy)
    assert builder.key(host, path, query, NO_HEADERS) == expected
    # The second call hits the host memo and must give the same answer.
    assert builder.key(host, path, query, NO_HEADERS) == expected


# (Host value, scheme, normalised): case, trailing dot, default port of the scheme (RFC 3986 §6.2.2.1, §6.2.3)
HOST_CASES: list[tuple[str, str, str]] = [
    ("example.com", "http", "example.com"),
    ("Example.COM", "http", "example.com"),
    ("example.com.", "http", "example.com"),
    ("Example.COM.", "https", "example.com"),
    ("example.com:80", "http", "example.com"),
    ("example.com.:80", "http", "example.com"),
    ("example.com:443", "https", "example.com"),
    ("EXAMPLE.com.:443", "https", "example.com"),
    ("example.com:", "http", "example.com"),  # an empty port is the default one
    ("example.com:443", "http", "example.com:443"),  # not the default port of http
    ("example.com:80", "https", "example.com:80"),
    ("example.com.:8080", "http", "example.com:8080"),
    ("example.com:8080", "https", "example.com:8080"),
    ("[::1]", "http", "[::1]"),
    ("[::1]:80", "http", "[::1]"),
    ("[::1]:443", "https", "[::1]"),
    ("[::1]:8443", "https", "[::1]:8443"),
    ("[::ABCD]:80", "http", "[::abcd]"),
    ("127.0.0.1:80", "http", "127.0.0.1"),
    ("127.0.0.1.", "http", "127.0.0.1"),
    ("", "http", ""),
    (".", "http", ""),
    ("a.com/x", "http", "a.com%2Fx"),  # escaped: never a path
    ("a.com/x.:80", "http", "a.com%2Fx"),
]


@pytest.mark.parametrize(("host", "scheme", "expected"), HOST_CASES)
def test_normalise_host(host: str, scheme: str, expected: str) -> None:
    assert normalise_host(host, scheme) == expected
    if "%" not in expected:
        assert normalise_host(expected, scheme) == expected  # idempotent (escaping aside: "%" → "%25")


def test_host_variants_share_one_key() -> None:
    builder = build()
    keys = {
        builder.key(host, "/a", "", NO_HEADERS) for host in ("Example.COM.", "example.com:80", "example.com")
    }
    assert keys == {"example.com/a"}
    tls = {
        builder.key(host, "/a", "", NO_HEADERS, "https")
        for host in ("Example.COM.", "example.com:443", "example.com", "EXAMPLE.COM.:443")
    }
    assert tls == {"example.com/a"}
    # The memos are per scheme: the same Host text normalises by its own scheme's default port.
    assert builder.key("example.com:443", "/a", "", NO_HEADERS) == "example.com:443/a"
    assert builder.key("example.com:80", "/a", "", NO_HEADERS, "https") == "example.com:80/a"


def test_empty_query_and_no_query_share_a_key() -> None:
    for policy in ({}, {"sort_query": True}, {"query": ("a",)}, {"query": Except(("a",))}):
        builder = build(**policy)
        assert builder.key("e.com", "/a", "", NO_HEADERS) == "e.com/a"


def test_sorted_query_shares_one_key_across_orders() -> None:
    builder = build(sort_query=True)
    assert builder.key("e.com", "/", "a=1&b=2", NO_HEADERS) == builder.key(
        "e.com", "/", "b=2&a=1", NO_HEADERS
    )
    unsorted = build()
    assert unsorted.key("e.com", "/", "a=1&b=2", NO_HEADERS) != unsorted.key(
        "e.com", "/", "b=2&a=1", NO_HEADERS
    )


# (policy, request headers, expected key)
FIELD_CASES: list[tuple[dict[str, object], tuple[tuple[str, str], ...], str]] = [
    # headers: names lower-cased and sorted, all values joined with ","
    ({"headers": ("Accept-Language",)}, (("accept-language", "en"),), "e.com/p\nh:accept-language=en"),
    ({"headers": ("accept-language",)}, (("ACCEPT-LANGUAGE", "en"),), "e.com/p\nh:accept-language=en"),
    ({"headers": ("x-a",)}, (("X-A", "1"), ("x-a", "2, 3")), "e.com/p\nh:x-a=1,2, 3"),
    ({"headers": ("x-a",)}, (), "e.com/p\nh:x-a"),  # missing
    ({"headers": ("x-a",)}, (("x-a", ""),), "e.com/p\nh:x-a="),  # empty
    ({"headers": ("x-b", "X-A", "x-a")}, (("x-b", "2"), ("x-a", "1")), "e.com/p\nh:x-a=1\nh:x-b=2"),
    # cookies: parsed from every Cookie header, names case-sensitive and sorted
    ({"cookies": ("session",)}, (("cookie", "a=1; session=abc; b=2"),), "e.com/p\nc:session=abc"),
    ({"cookies": ("session",)}, (("cookie", "a=1"), ("Cookie", "session=abc")), "e.com/p\nc:session=abc"),
    ({"cookies": ("session",)}, (("cookie", "a=1"),), "e.com/p\nc:session"),  # missing
    ({"cookies": ("session",)}, (), "e.com/p\nc:session"),  # no Cookie header
    ({"cookies": ("session",)}, (("cookie", "session="),), "e.com/p\nc:session="),  # empty
    ({"cookies": ("session",)}, (("cookie", "Session=abc"),), "e.com/p\nc:session"),  # case-sensitive
    ({"cookies": ("s",)}, (("cookie", "s=1; s=2"),), "e.com/p\nc:s=1\nc:s=2"),  # every value, in order
    ({"cookies": ("s",)}, (("cookie", "s=1"), ("cookie", "s=2")), "e.com/p\nc:s=1\nc:s=2"),
    ({"cookies": ("b", "a")}, (("cookie", "b=2;a=1"),), "e.com/p\nc:a=1\nc:b=2"),
    ({"cookies": ("s",)}, (("cookie", ";;  s = x y ;garbage;=;"),), "e.com/p\nc:s=x y"),
    # headers before cookies
    (
        {"headers": ("accept",), "cookies": ("s",)},
        (("accept", "text/html"), ("cookie", "s=1")),
        "e.com/p\nh:accept=text/html\nc:s=1",
    ),
]


@pytest.mark.parametrize(("policy", "headers", "expected"), FIELD_CASES)
def test_headers_and_cookies(
    policy: dict[str, object], headers: tuple[tuple[str, str], ...], expected: str
) -> None:
    assert build(**policy).key("e.com", "/p", "", hdrs(*headers)) == expected


def test_fields_follow_the_query() -> None:
    builder = build(query=("a",), headers=("x",), cookies=("c",))
    key = builder.key("e.com", "/p", "b=1&a=2", hdrs(("x", "1"), ("cookie", "c=3")))
    assert key == "e.com/p?a=2\nh:x=1\nc:c=3"


def test_missing_and_empty_differ() -> None:
    for policy in ({"headers": ("x",)}, {"cookies": ("x",)}):
        builder = build(**policy)
        missing = builder.key("e.com", "/", "", NO_HEADERS)
        empty = builder.key("e.com", "/", "", hdrs(("x", ""), ("cookie", "x=")))
        assert missing != empty


def test_headers_ignored_unless_listed() -> None:
    builder = build()
    assert builder.key("e.com", "/", "", hdrs(("accept", "x"), ("cookie", "s=1"))) == "e.com/"


def test_plain_multidict_headers_are_accepted() -> None:
    builder = build(headers=("x-a",))
    assert builder.key("e.com", "/", "", CIMultiDict([("X-A", "1")])) == "e.com/\nh:x-a=1"


@pytest.mark.parametrize(
    "policy",
    [
        {"query": "some"},
        {"headers": ("bad name",)},
        {"headers": ("a=b",)},
        {"headers": ("",)},
        {"headers": ("x\nh:y",)},
        {"cookies": ("a=b",)},
        {"cookies": ("a;b",)},
    ],
)
def test_policies_that_would_make_ambiguous_keys_are_refused(policy: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build(**policy)


# ---- variant_key (RFC 9111 §4.1) ---------------------------------------------------------------------------

VARIANT_CASES: list[tuple[tuple[str, ...], tuple[tuple[str, str], ...], str]] = [
    ((), (("accept-encoding", "gzip"),), "K"),
    (("accept-encoding",), (("accept-encoding", "gzip"),), "K\nv:accept-encoding=gzip"),
    (("accept-encoding",), (), "K\nv:accept-encoding"),  # missing
    (("accept-encoding",), (("accept-encoding", ""),), "K\nv:accept-encoding="),  # empty
    (
        ("accept-encoding",),
        (("Accept-Encoding", "gzip"), ("accept-encoding", "br")),
        "K\nv:accept-encoding=gzip, br",
    ),
    (("accept-encoding",), (("accept-encoding", "gzip ,br"),), "K\nv:accept-encoding=gzip, br"),
    (("accept-encoding",), (("accept-encoding", "gzip,  \tbr"),), "K\nv:accept-encoding=gzip, br"),
    (("accept-encoding",), (("accept-encoding", "  gzip  "),), "K\nv:accept-encoding=gzip"),
    (("b", "a"), (("a", "1"), ("b", "2")), "K\nv:a=1\nv:b=2"),  # sorted
    (("a", "a"), (("a", "1"),), "K\nv:a=1"),  # duplicates once
]


@pytest.mark.parametrize(("vary", "headers", "expected"), VARIANT_CASES)
def test_variant_key(vary: tuple[str, ...], headers: tuple[tuple[str, str], ...], expected: str) -> None:
    assert variant_key("K", vary, hdrs(*headers)) == expected


def test_variant_key_equivalent_values_share_a_key() -> None:
    vary = ("accept-encoding",)
    one = variant_key("K", vary, hdrs(("accept-encoding", "gzip, br")))
    assert one == variant_key("K", vary, hdrs(("accept-encoding", "gzip,br")))
    assert one == variant_key("K", vary, hdrs(("accept-encoding", "gzip"), ("accept-encoding", "br")))
    assert one != variant_key("K", vary, hdrs(("accept-encoding", "br, gzip")))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("en, de", "de, en", id="§12.5.4 equal weights sorted by range"),
        pytest.param("de, en", "de, en", id="§12.5.4 order among equal weights ignored"),
        pytest.param("eN, De", "de, en", id="RFC 4647 §2.1 ranges case-insensitive"),
        pytest.param(" en ,   de", "de, en", id="§5.6.1 whitespace folded"),
        pytest.param("en-US,en;q=0.9,de;q=0.8", "en-us, en;q=0.9, de;q=0.8", id="browser value"),
        pytest.param("de;q=0.8, en;q=0.9, en-US", "en-us, en;q=0.9, de;q=0.8", id="sorted by weight"),
        pytest.param("fr;q=0.5, de;q=1.0", "de, fr;q=0.5", id="§12.4.2 q=1.0 is no weight"),
        pytest.param("en;q=1.000, de;Q=0.50", "en, de;q=0.5", id="§12.4.2 weight in shortest form"),
        pytest.param("en ; q=0.5", "en;q=0.5", id="§12.4.2 OWS around the semicolon"),
        pytest.param("*;q=0, en", "en, *;q=0", id="star and q=0 kept"),
        pytest.param("en;q=0., de;q=0.000", "de;q=0, en;q=0", id="§12.4.2 zero weights"),
        pytest.param("en,, ,de", "de, en", id="§5.6.1 empty members skipped"),
        pytest.param("", "", id="empty"),
        pytest.param("zh-Hant-TW", "zh-hant-tw", id="RFC 4647 subtags"),
        # anything not understood: whitespace-normalised only, never reordered or lower-cased
        pytest.param("EN;level=1, de", "EN;level=1, de", id="other parameter"),
        pytest.param("En;q=1.5,de", "En;q=1.5, de", id="§12.4.2 invalid qvalue"),
        pytest.param("En;q=0.1234", "En;q=0.1234", id="§12.4.2 four decimals"),
        pytest.param("en;q= 0.5", "en;q= 0.5", id="§12.4.2 no OWS after q="),
        pytest.param("Abcdefghi, en", "Abcdefghi, en", id="RFC 4647 subtag longer than 8"),
        pytest.param("en_US, de", "en_US, de", id="RFC 4647 underscore"),
        pytest.param(",".join(["De"] * 40), ", ".join(["De"] * 40), id="more than 32 members"),
    ],
)
def test_normalise_accept_language(value: str, expected: str) -> None:
    assert normalise_accept_language(value) == expected


def test_variant_key_normalises_accept_language() -> None:
    """RFC 9111 §4.1: Accept-Language values differing only in order, case, whitespace or field lines
    select the same variant; different preferences do not."""
    vary = ("accept-language",)
    one = variant_key("K", vary, hdrs(("accept-language", "en, de")))
    assert one == "K\nv:accept-language=de, en"
    assert one == variant_key("K", vary, hdrs(("Accept-Language", "De ,eN")))
    assert one == variant_key("K", vary, hdrs(("accept-language", "de"), ("accept-language", "en;q=1")))
    assert one != variant_key("K", vary, hdrs(("accept-language", "en, de;q=0.9")))
    assert variant_key("K", ("accept",), hdrs(("accept", "B, a"))) == "K\nv:accept=B, a"


def test_variant_lines_cannot_be_confused_with_listed_headers() -> None:
    builder = build(headers=("accept",))
    request = hdrs(("accept", "x"))
    base_only = build()
    assert builder.key("e.com", "/", "", request) != variant_key(
        base_only.key("e.com", "/", "", request), ("accept",), request
    )
