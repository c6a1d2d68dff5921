"""Property tests for the targeted-field parsers and the storing, validation and invalidation helpers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.http.cache_control import DELTA_SECONDS_MAX, parse_cache_control
from proxy.http.invalidation import SAFE_METHODS, invalidation_targets
from proxy.http.storing import fields_to_store
from proxy.http.targeted import (
    effective_cache_control,
    parse_cdn_cache_control,
    parse_sf_dictionary,
    parse_surrogate_control,
)
from proxy.http.validation import NEVER_UPDATED, update_stored_headers

_SYNTAX = st.sampled_from(list(',;=()"\\?:*-. \t0123456789abcmax-agenostore@%AZ'))
_ANY_CHAR = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
hostile_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=_ANY_CHAR, max_size=40),
    st.text(alphabet=_SYNTAX, max_size=80),
)

# Well-formed RFC 8941 dictionaries, built from parts, with the value each member must parse to.
_KEYS = st.from_regex(r"[a-z*][a-z0-9_.*-]{0,8}", fullmatch=True)
_INTEGERS = st.integers(-(10**15) + 1, 10**15 - 1)
_TOKENS = st.from_regex(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+.^_`|~-]{0,8}", fullmatch=True)
_STRINGS = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=10)
_MEMBERS = st.one_of(
    _INTEGERS.map(lambda n: (str(n), n)),
    _TOKENS.map(lambda t: (t, t)),
    _STRINGS.map(lambda s: ('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"', s)),
    st.booleans().map(lambda b: ("?1" if b else "?0", b)),
)


@given(st.lists(st.tuples(_KEYS, st.one_of(st.none(), _MEMBERS)), max_size=6))
def test_sf_dictionary_round_trip(members: list[tuple[str, tuple[str, object] | None]]) -> None:
    text = ", ".join(key if member is None else f"{key}={member[0]}" for key, member in members)
    expected = {key: True if member is None else member[1] for key, member in members}
    assert parse_sf_dictionary(text) == expected


@given(st.one_of(hostile_text, st.lists(hostile_text, max_size=3)))
@settings(max_examples=500)
def test_targeted_parsers_never_raise(value: str | list[str]) -> None:
    parsed = parse_sf_dictionary(value)
    assert parsed is None or isinstance(parsed, dict)
    for cc in (parse_cdn_cache_control(value), parse_surrogate_control(value, "edge-1")):
        if cc is None:
            continue
        for n in (cc.max_age, cc.s_maxage, cc.stale_while_revalidate, cc.stale_if_error):
            assert n is None or 0 <= n <= DELTA_SECONDS_MAX


@given(
    st.lists(
        st.tuples(st.sampled_from(["Cache-Control", "CDN-Cache-Control", "Surrogate-Control"]), hostile_text),
        max_size=4,
    ),
    st.one_of(st.none(), hostile_text),
)
def test_effective_cache_control_never_raises(pairs: list[tuple[str, str]], device: str | None) -> None:
    result = effective_cache_control(CIMultiDict(pairs), device=device)
    assert result.targeted == (result.source != "Cache-Control")


@given(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8),
    st.sampled_from([100, 200, 204, 301, 304, 404, 500]),
    hostile_text,
    st.one_of(st.none(), hostile_text),
    st.one_of(st.none(), hostile_text),
)
@settings(max_examples=500)
def test_invalidation_targets_never_raise_nor_leave_the_origin(
    method: str, status: int, target: str, location: str | None, content_location: str | None
) -> None:
    host = "example.com"
    targets = invalidation_targets(
        method,
        status,
        scheme="http",
        host=host,
        target="/" + target,
        location=location,
        content_location=content_location,
    )
    if method in SAFE_METHODS or status >= 400:
        assert targets == ()
        return
    assert 1 <= len(targets) <= 3
    assert len(set(targets)) == len(targets)
    assert all(t.host == host and t.path.startswith("/") for t in targets)


_NAMES = st.sampled_from(
    ["ETag", "Cache-Control", "Content-Length", "Connection", "X-A", "x-a", "Set-Cookie", "Age", "Keep-Alive"]
)
_FIELDS = st.lists(st.tuples(_NAMES, st.text(alphabet="abc, ", max_size=6)), max_size=8)


@given(_FIELDS, _FIELDS)
def test_update_stored_headers_takes_the_new_values(
    stored: list[tuple[str, str]], new: list[tuple[str, str]]
) -> None:
    merged = update_stored_headers(stored, new)
    connection_listed = {
        option.strip().lower()
        for name, value in new
        if name.lower() == "connection"
        for option in value.split(",")
    }
    skipped = NEVER_UPDATED | connection_listed
    new_names = {name.lower() for name, _ in new} - skipped
    for name in new_names:
        assert [v for k, v in merged if k.lower() == name] == [v for k, v in new if k.lower() == name]
    for name, value in stored:
        if name.lower() not in new_names:
            assert (name, value) in merged
    # applying the same 304 twice changes nothing more
    assert update_stored_headers(merged, new) == merged


@given(_FIELDS, st.one_of(st.none(), hostile_text))
def test_fields_to_store_never_keeps_excluded_fields(fields: list[tuple[str, str]], cc: str | None) -> None:
    kept = fields_to_store(fields, parse_cache_control(cc))
    names = {name.lower() for name, _ in kept}
    assert not names & {"connection", "keep-alive", "content-length", "age"}
    assert set(kept) <= set(fields)
