"""The one Cookie parser (proxy.http.cookies): a table of edge cases, and a property test that the cache key,
the edge function API and the signed-cookie check all see the same value for a cookie name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.cache.keys import KeyBuilder
from proxy.functions.api import ViewerRequest
from proxy.http.cookies import cookie_map, cookie_pairs, cookie_values, raw_cookie_pairs

COOKIE_CASES: list[tuple[str, list[tuple[str, str]]]] = [
    ("a=1; b=2", [("a", "1"), ("b", "2")]),
    ("a=1;b=2", [("a", "1"), ("b", "2")]),  # the space after ";" may be missing
    ("  a = 1 ;\tb=2\t", [("a", "1"), ("b", "2")]),
    ("", []),
    (";;; ;", []),
    ("=", []),
    ("a=", [("a", "")]),
    ("=v", [("", "v")]),
    ("flag", [("", "flag")]),  # RFC 6265bis: no "=" means a nameless value
    ("a=1=2", [("a", "1=2")]),
    ('a="quoted value"', [("a", "quoted value")]),  # RFC 6265 §4.2.1: DQUOTEs wrap the value
    ('a=""', [("a", "")]),
    ('""', []),  # a nameless value that is empty once unquoted is an empty piece
    ('=""; b=1', [("b", "1")]),
    ('a="', [("a", '"')]),  # one DQUOTE alone is a value, not a wrapping
    ('a=""x""', [("a", '"x"')]),  # one pair removed, never more
    ('a=x"', [("a", 'x"')]),
    ('a= "x" ', [("a", "x")]),
    ("a=1; a=2", [("a", "1"), ("a", "2")]),  # duplicates kept, in order
    ("a=1, b=2", [("a", "1, b=2")]),  # "," is not a separator
    ("ü=✓", [("ü", "✓")]),
]


@pytest.mark.parametrize(("header", "expected"), COOKIE_CASES)
def test_cookie_pairs(header: str, expected: list[tuple[str, str]]) -> None:
    assert cookie_pairs(header) == expected


def test_raw_pairs_keep_the_quotes_for_forwarding() -> None:
    assert raw_cookie_pairs('a="x y"; b=2') == [("a", '"x y"'), ("b", "2")]


def test_lookup_by_name_takes_the_first_and_skips_nameless_pieces() -> None:
    fields = ['a="1"; flag; b=2', "a=3; =x"]
    assert cookie_map(fields) == {"a": "1", "b": "2"}
    assert cookie_values(fields, "a") == ["1", "3"]
    assert cookie_values(fields, "") == []


# ---- one value for everybody ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    query: Literal["all", "none"] | tuple[str, ...] = "all"
    headers: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()
    sort_query: bool = False


NAMES = ["a", "b", "session", "Edge-Signed"]
pieces = st.one_of(
    st.builds(
        lambda name, eq, value, quote, ws: f"{ws}{name}{ws}{eq}{ws}{quote}{value}{quote}{ws}",
        st.sampled_from([*NAMES, "", "x y", "ü"]),
        st.sampled_from(["=", "=", ""]),
        st.text(st.characters(exclude_characters=";\r\n\x00", codec="utf-8"), max_size=8),
        st.sampled_from(["", '"', ""]),
        st.sampled_from(["", " ", "\t"]),
    ),
    st.text(st.characters(exclude_characters="\r\n\x00", codec="utf-8"), max_size=10),
)
cookie_fields = st.lists(st.lists(pieces, max_size=5).map(lambda ps: ";".join(ps)), min_size=1, max_size=3)


def _key_values(fields: list[str], name: str) -> list[str]:
    """The values the cache key keys on for cookie ``name`` (its ``\\nc:name=value`` lines)."""
    headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict([("Cookie", f) for f in fields]))
    key = KeyBuilder(Policy(cookies=(name,))).key("example.com", "/", "", headers)
    prefix = f"c:{name}="
    return [line[len(prefix) :] for line in key.split("\n") if line.startswith(prefix)]


@given(cookie_fields, st.sampled_from(NAMES))
def test_key_functions_and_signer_see_the_same_value(fields: list[str], name: str) -> None:
    keyed = _key_values(fields, name)
    signer = cookie_values(fields, name)
    function = ViewerRequest("GET", "/", headers=[("Cookie", f) for f in fields]).cookies.get(name)
    assert keyed == signer
    assert function == (keyed[0] if keyed else None)
