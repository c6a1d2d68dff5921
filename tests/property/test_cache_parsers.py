"""Properties of the cache's parsers: the entry codec, cookie parsing and cache keys, on generated input."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.cache.entry import CacheEntry, EntryFormatError, decode_entry, encode_entry
from proxy.cache.keys import KeyBuilder, QueryExcept, normalise_accept_language, normalise_host, variant_key
from proxy.http.cookies import cookie_pairs as parse_cookie_header

# ---- strategies --------------------------------------------------------------------------------------------

# Any code point, lone surrogates included (aiohttp decodes non-UTF-8 header bytes to surrogates).
any_char = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
any_text = st.text(any_char, max_size=30)
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
token = st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=20)
header_value = st.text(any_char.filter(lambda c: c not in "\r\n\x00"), max_size=40)
finite = st.floats(allow_nan=False, allow_infinity=False)
lifetime = st.one_of(finite, st.just(math.inf))

entries = st.builds(
    CacheEntry,
    status=st.one_of(st.just(0), st.integers(100, 999)),
    headers=st.lists(st.tuples(token, header_value), max_size=8).map(tuple),
    body=st.binary(max_size=2_000),
    request_time=finite,
    response_time=finite,
    initial_age=finite,
    ttl=lifetime,
    stale_while_revalidate=lifetime,
    stale_if_error=lifetime,
    must_revalidate=st.booleans(),
    no_cache=st.booleans(),
    vary=st.lists(any_text, max_size=4).map(tuple),
    tags=st.lists(any_text, max_size=4).map(tuple),
    extra=st.dictionaries(any_text, any_text, max_size=4),
)


def decodes_or_refuses(data: bytes | bytearray | memoryview) -> None:
    try:
        entry = decode_entry(data)
    except EntryFormatError:
        return
    # Whatever decodes is a valid entry: it encodes again, to the same bytes.
    assert encode_entry(entry) == bytes(data)


# ---- entry codec -------------------------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_decode_arbitrary_bytes_raises_only_entry_format_error(data: bytes) -> None:
    decodes_or_refuses(data)


@given(st.binary(max_size=300))
def test_decode_arbitrary_bytes_after_a_valid_prelude(rest: bytes) -> None:
    decodes_or_refuses(b"EPC\x01" + rest)


@given(entries, st.data())
def test_decode_mutated_valid_entries_raises_only_entry_format_error(
    entry: CacheEntry, data: st.DataObject
) -> None:
    encoded = bytearray(encode_entry(entry))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, len(encoded)))
        if action == "flip" and at < len(encoded):
            encoded[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del encoded[at:]
        elif action == "insert":
            encoded[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del encoded[at : at + data.draw(st.integers(1, 8))]
    decodes_or_refuses(bytes(encoded))


@given(entries)
def test_encode_decode_round_trip(entry: CacheEntry) -> None:
    data = encode_entry(entry)
    assert decode_entry(data) == entry
    assert decode_entry(memoryview(data)) == entry


# ---- parse_cookie_header -----------------------------------------------------------------------------------

cookie_headers = st.one_of(
    any_text,
    st.lists(st.tuples(any_text, st.sampled_from(["=", "", "=="]), any_text), max_size=6).map(
        lambda parts: "; ".join(n + eq + v for n, eq, v in parts)
    ),
)


@given(cookie_headers)
def test_parse_cookie_header_never_raises(header: str) -> None:
    pairs = parse_cookie_header(header)
    for name, value in pairs:
        assert ";" not in name
        assert ";" not in value
        assert "=" not in name
        assert name == name.strip(" \t")
        assert value == value.strip(" \t")
        assert name or value


@given(st.lists(st.tuples(token, st.text(st.characters(exclude_characters=";"), max_size=10)), max_size=6))
def test_parse_cookie_header_reads_what_was_written(pairs: list[tuple[str, str]]) -> None:
    pairs = [(n, v.strip(" \t")) for n, v in pairs]
    assert parse_cookie_header("; ".join(f"{n}={v}" for n, v in pairs)) == pairs


# ---- cache keys --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Except:
    except_: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    query: Literal["all", "none"] | tuple[str, ...] | QueryExcept
    headers: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()
    sort_query: bool = True


param_name = st.sampled_from(["a", "b", "c", "a%62", "a+b", "%61", "utm_source", ""])
param = st.one_of(
    st.builds(lambda n, v: f"{n}={v}", param_name, st.text("xyz0=%", max_size=3)),
    param_name,
)
query_policies = st.one_of(
    st.just("all"),
    st.just("none"),
    st.lists(st.sampled_from(["a", "b", "ab", "a b"]), max_size=3).map(tuple),
    st.lists(st.sampled_from(["a", "b", "utm_source"]), max_size=3).map(lambda names: Except(tuple(names))),
)


@given(
    query_policies,
    st.lists(param, max_size=8).flatmap(lambda ps: st.tuples(st.just(ps), st.permutations(ps))),
)
def test_sorted_query_key_ignores_parameter_order(
    query: Literal["all", "none"] | tuple[str, ...] | QueryExcept, params: tuple[list[str], list[str]]
) -> None:
    builder = KeyBuilder(Policy(query=query, sort_query=True))
    original, permuted = params
    no_headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
    assert builder.key("e.com", "/p", "&".join(original), no_headers) == builder.key(
        "e.com", "/p", "&".join(permuted), no_headers
    )


@given(
    st.sampled_from(["all", "none", ("a",), Except(("a",))]),
    st.booleans(),
    any_text,
    any_text,
    any_text,
    st.lists(st.tuples(st.sampled_from(["x-a", "cookie", "accept"]), any_text), max_size=5),
)
def test_key_never_raises(
    query: Literal["all", "none"] | tuple[str, ...] | QueryExcept,
    sort_query: bool,
    host: str,
    path: str,
    raw_query: str,
    fields: list[tuple[str, str]],
) -> None:
    builder = KeyBuilder(Policy(query=query, headers=("x-a",), cookies=("s",), sort_query=sort_query))
    headers = CIMultiDictProxy(CIMultiDict(fields))
    key = builder.key(host, path, raw_query, headers)
    assert isinstance(key, str)
    assert isinstance(variant_key(key, ("accept", "x-a"), headers), str)


ascii_host = st.text(st.sampled_from("abcXYZ019.-"), max_size=20)


@given(ascii_host, st.sampled_from(["", ":80", ":8080", ":443"]))
def test_host_case_and_default_port_do_not_matter(host: str, port: str) -> None:
    builder = KeyBuilder(Policy(query="all"))
    no_headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
    key = builder.key(host + port, "/p", "", no_headers)
    assert key == builder.key((host + port).upper(), "/p", "", no_headers)
    assert key == builder.key((host + port).lower(), "/p", "", no_headers)
    assert (key == builder.key(host, "/p", "", no_headers)) == (port in ("", ":80"))


@given(any_text)
def test_no_host_can_pose_as_a_path(host: str) -> None:
    # Whatever the Host, the path starts right after the normalised host: nothing in the host reads as "/".
    builder = KeyBuilder(Policy(query="all"))
    key = builder.key(host, "/p", "", CIMultiDictProxy(CIMultiDict()))
    assert key.endswith("/p")
    assert "/" not in key[: -len("/p")]
    assert "\n" not in key


dns_name = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,3}", fullmatch=True
)


@given(
    dns_name,
    st.sampled_from(["http", "https"]),
    st.sampled_from(["", ":80", ":443", ":8080", ":"]),
    st.booleans(),
    st.booleans(),
)
def test_normalised_host_ignores_case_trailing_dot_and_default_port(
    name: str, scheme: str, port: str, upper: bool, dot: bool
) -> None:
    """Any spelling of a host (case, a trailing dot, the scheme's default or an empty port) normalises to
    the same text as the plain lower-case name; another port stays, and normalising twice changes nothing."""
    spelled = (name.upper() if upper else name) + ("." if dot else "") + port
    normal = normalise_host(spelled, scheme)
    default = port in ("", ":") or port == (":443" if scheme == "https" else ":80")
    assert normal == (name if default else name + port)
    assert normalise_host(normal, scheme) == normal


@given(any_text, st.sampled_from(["http", "https"]))
def test_normalise_host_never_raises_nor_lets_a_path_through(host: str, scheme: str) -> None:
    normal = normalise_host(host, scheme)
    assert "/" not in normal and "?" not in normal and "\n" not in normal


# ---- Accept-Language normalisation (RFC 9110 §12.5.4, RFC 9111 §4.1) ---------------------------------------

language_range = st.one_of(
    st.just("*"),
    st.from_regex(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8}){0,2}", fullmatch=True),
)
qvalue = st.one_of(
    st.just(None),
    st.from_regex(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?", fullmatch=True),
)
language_members = st.lists(st.tuples(language_range, qvalue), max_size=8)
ows = st.sampled_from(["", " ", "\t", "  "])
# Mostly the characters of real values, so that both the parsed and the fallback paths are reached.
language_chars = st.one_of(st.sampled_from("enDE-*;q=0.15, \t_"), any_char)


def render_languages(members: list[tuple[str, str | None]], space: str) -> str:
    return ",".join(f"{space}{tag}{'' if q is None else f';q={q}'}{space}" for tag, q in members)


@given(st.text(language_chars, max_size=60))
def test_normalise_accept_language_is_idempotent(value: str) -> None:
    once = normalise_accept_language(value)
    assert normalise_accept_language(once) == once


@given(language_members, st.randoms(use_true_random=False), ows, ows)
def test_normalise_accept_language_ignores_order_case_and_whitespace(
    members: list[tuple[str, str | None]], rnd: random.Random, space1: str, space2: str
) -> None:
    shuffled = members[:]
    rnd.shuffle(shuffled)
    recased = [("".join(c.upper() if rnd.random() < 0.5 else c.lower() for c in t), q) for t, q in shuffled]
    one = normalise_accept_language(render_languages(members, space1))
    assert one == normalise_accept_language(render_languages(recased, space2))
    assert one == one.lower()  # every member was understood: nothing kept verbatim


@given(language_members, language_members)
def test_normalise_accept_language_keeps_different_preferences_apart(
    a: list[tuple[str, str | None]], b: list[tuple[str, str | None]]
) -> None:
    def meaning(members: list[tuple[str, str | None]]) -> list[tuple[str, float]]:
        return sorted((tag.lower(), 1.0 if q is None else float(q)) for tag, q in members)

    same = normalise_accept_language(render_languages(a, "")) == normalise_accept_language(
        render_languages(b, "")
    )
    assert same == (meaning(a) == meaning(b))
