"""Property tests for the HTTP parsers: hostile input never raises, results stay within their contracts."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.http.cache_control import CacheControl, parse_cache_control
from proxy.http.cache_status import format_cache_status
from proxy.http.conditional import evaluate_preconditions, parse_etag_list, strong_match, weak_match
from proxy.http.dates import format_http_date, parse_http_date
from proxy.http.freshness import TTLPolicy, corrected_initial_age, decide_store, first_age_member
from proxy.http.headers import parse_list_header
from proxy.http.ranges import MAX_RANGES, if_range_allows, multipart_byteranges, parse_range

# Text biased towards the characters the parsers care about, plus anything else.
_SYNTAX = st.sampled_from(list(',;="\\-*/ \t0123456789WbytesGMTmax-agenoprivatecacheNovSun:'))
# aiohttp decodes undecodable header bytes to lone surrogates, so those are part of "arbitrary text".
_ANY_CHAR = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
hostile_text = st.one_of(
    st.text(),
    st.text(alphabet=_ANY_CHAR, max_size=40),
    st.text(alphabet=_SYNTAX, max_size=80),
    st.lists(st.text(alphabet=_SYNTAX, max_size=20), max_size=8).map(",".join),
)

_DIRECTIVES = st.sampled_from(
    [
        "max-age",
        "s-maxage",
        "no-cache",
        "no-store",
        "private",
        "public",
        "must-revalidate",
        "max-stale",
        "min-fresh",
        "stale-while-revalidate",
        "stale-if-error",
        "immutable",
        "x-ext",
    ]
)
_ARGS = st.one_of(
    st.none(),
    st.integers(min_value=-5, max_value=2**40).map(str),
    st.text(max_size=10),
    st.text(max_size=10).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
)
cache_control_values = st.lists(
    st.tuples(_DIRECTIVES, _ARGS).map(lambda t: t[0] if t[1] is None else f"{t[0]}={t[1]}"), max_size=8
).map(", ".join)

# IMF-fixdate years are 4DIGIT: 0001-01-01 .. 9999-12-31.
_TS_MIN = -62135596800
_TS_MAX = 253402300799


@given(st.one_of(hostile_text, cache_control_values, st.lists(hostile_text, max_size=4)))
@settings(max_examples=500)
def test_parse_cache_control_never_raises(value: str | list[str]) -> None:
    cc = parse_cache_control(value)
    assert isinstance(cc, CacheControl)
    for n in (cc.max_age, cc.s_maxage, cc.min_fresh, cc.max_stale, cc.stale_if_error):
        assert n is None or 0 <= n <= 2**31
    assert all(f == f.lower() and f for f in cc.no_cache_fields + cc.private_fields)


@given(st.one_of(st.none(), hostile_text, st.lists(hostile_text, max_size=4)))
@settings(max_examples=500)
def test_corrected_initial_age_never_raises(age: str | list[str] | None) -> None:
    """RFC 9111 §5.1: any Age value or lines give a finite age within delta-seconds' range."""
    value = corrected_initial_age(age, None, 100.0, 100.0)
    assert 0 <= value <= 2**31


@given(
    st.integers(min_value=0, max_value=2**40),
    st.lists(st.one_of(st.integers(min_value=0, max_value=2**40).map(str), hostile_text), max_size=4),
    st.booleans(),
)
def test_list_valued_age_uses_its_first_member(first: int, rest: list[str], separate_lines: bool) -> None:
    """RFC 9111 §5.1: whatever follows the first member of a list-based Age (on the same line or on later
    lines) is discarded."""
    value: str | list[str] = [str(first), *rest] if separate_lines else ", ".join([str(first), *rest])
    assert first_age_member(value) == str(first)
    assert corrected_initial_age(value, None, 100.0, 100.0) == min(first, 2**31)


@given(hostile_text, st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
@settings(max_examples=500)
def test_parse_http_date_never_raises(value: str, now: float | None) -> None:
    ts = parse_http_date(value, now=now)
    assert ts is None or math.isfinite(ts)


@given(st.integers(min_value=_TS_MIN, max_value=_TS_MAX))
def test_http_date_round_trip(ts: int) -> None:
    # RFC 9110 §5.6.7: format → parse gives the same second back.
    assert parse_http_date(format_http_date(ts)) == ts


@given(st.floats(min_value=_TS_MIN, max_value=_TS_MAX))
def test_http_date_round_trip_floors_fractions(ts: float) -> None:
    assert parse_http_date(format_http_date(ts)) == math.floor(ts)


_range_spec = st.one_of(
    st.tuples(st.integers(0, 300), st.integers(0, 300)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.integers(0, 300).map(lambda n: f"{n}-"),
    st.integers(0, 300).map(lambda n: f"-{n}"),
    hostile_text,
)
range_values = st.one_of(
    hostile_text,
    st.lists(_range_spec, min_size=0, max_size=20).map(lambda specs: "bytes=" + ",".join(specs)),
)


@given(range_values, st.integers(min_value=0, max_value=400))
@settings(max_examples=1000)
def test_parsed_ranges_lie_inside_the_representation(value: str, length: int) -> None:
    result = parse_range(value, length)
    if result is None or result == "unsatisfiable":
        return
    assert 1 <= len(result) <= MAX_RANGES
    for first, last in result:
        assert 0 <= first <= last < length
    assert sum(last - first + 1 for first, last in result) <= length


@given(hostile_text, st.one_of(st.none(), hostile_text), st.one_of(st.none(), st.floats()))
def test_if_range_never_raises(value: str, etag: str | None, last_modified: float | None) -> None:
    assert isinstance(if_range_allows(value, etag, last_modified, date=last_modified), bool)


@given(st.one_of(hostile_text, st.lists(hostile_text, max_size=4)))
@settings(max_examples=500)
def test_parse_etag_list_never_raises(value: str | list[str]) -> None:
    tags = parse_etag_list(value)
    if tags == ["*"]:
        return
    for tag in tags:
        # every member returned is a valid entity-tag: it matches itself weakly
        assert weak_match(tag, tag)
        assert strong_match(tag, tag) == (not tag.startswith(("W/", "w/")))


@given(st.one_of(hostile_text, st.lists(hostile_text, max_size=4)))
def test_parse_list_header_never_raises(value: str | list[str]) -> None:
    for member in parse_list_header(value):
        assert member and member == member.strip(" \t")


@given(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS"]),
    st.dictionaries(
        st.sampled_from(["If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"]),
        hostile_text,
    ),
    st.one_of(st.none(), hostile_text),
    st.one_of(st.none(), st.floats(allow_nan=False)),
)
def test_evaluate_preconditions_never_raises(
    method: str, headers: dict[str, str], etag: str | None, last_modified: float | None
) -> None:
    assert evaluate_preconditions(method, CIMultiDict(headers), etag, last_modified) in (None, 304, 412)


@given(
    cc=cache_control_values,
    status=st.integers(0, 700),
    expires=st.one_of(st.none(), st.floats(-1e10, 1e10)),
    last_modified=st.one_of(st.none(), st.floats(-1e10, 1e10)),
    auth=st.booleans(),
    use_policy=st.booleans(),
    has_etag=st.booleans(),
)
@settings(max_examples=500)
def test_decide_store_invariants(
    cc: str,
    status: int,
    expires: float | None,
    last_modified: float | None,
    auth: bool,
    use_policy: bool,
    has_etag: bool,
) -> None:
    policy = TTLPolicy(min=5, default=50, max=500) if use_policy else None
    decision = decide_store(
        method="GET",
        status=status,
        request_cc=parse_cache_control(None),
        response_cc=parse_cache_control(cc),
        request_has_authorization=auth,
        expires=expires,
        date=0.0,
        last_modified=last_modified,
        has_vary_star=False,
        policy=policy,
        default_swr=3,
        default_sie=4,
        has_etag=has_etag,
    )
    if not decision.store:
        assert decision.reason is not None and decision.ttl == 0
        return
    assert decision.reason is None and decision.ttl >= 0
    assert decision.stale_while_revalidate >= 0 and decision.stale_if_error >= 0
    if decision.must_revalidate or decision.no_cache:
        assert decision.stale_while_revalidate == decision.stale_if_error == 0
    if policy is not None:
        assert policy.min <= decision.ttl <= policy.max
        assert decision.ttl > 0


@given(st.text(alphabet=_ANY_CHAR, max_size=30), hostile_text)
def test_cache_status_never_raises(cache: str, detail: str) -> None:
    member = format_cache_status(cache, hit=False, key=detail, detail=detail, ttl=1.5)
    assert member.isascii() and member.isprintable()


@given(st.one_of(st.none(), st.text(alphabet=_ANY_CHAR, max_size=30)))
def test_multipart_content_type_never_raises(content_type: str | None) -> None:
    _, parts = multipart_byteranges(b"abcdef", [(0, 1), (3, 4)], content_type, 6, "sep")
    assert sum(len(p) for p in parts) > 4
