"""Property tests for edge compression: Accept-Encoding negotiation never raises and keeps its contract on
hostile input; coding round-trips any bytes; the header rules are idempotent and never duplicate Vary."""

from __future__ import annotations

import gzip
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.edge.compression import (
    BROTLI_AVAILABLE,
    ENCODINGS,
    compress,
    compressed_headers,
    is_compressible,
    normalise_accept_encoding,
    should_compress,
)

try:
    import brotli
except ImportError:  # pragma: no cover
    brotli = None

# aiohttp decodes undecodable header bytes to lone surrogates, so those are part of "arbitrary text".
_ANY_CHAR = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
_SYNTAX = st.sampled_from(list('gzipbrdeflatidentyx*-;,=q.0123456789 \t/"WQ'))
hostile = st.one_of(
    st.text(), st.text(alphabet=_ANY_CHAR, max_size=40), st.text(alphabet=_SYNTAX, max_size=80)
)

codings = st.sampled_from(["gzip", "br", "identity", "*", "x-gzip", "deflate", "zstd", "GZIP", "Br"])
qvalues = st.one_of(
    st.none(),
    st.sampled_from(["0", "1", "0.5", "0.001", "1.000", "0.000", "0.8", "abc", "2", ""]),
)


@st.composite
def accept_encodings(draw: st.DrawFn) -> list[str]:
    """Well-formed-ish members (``coding[;q=value]``), the raw material of a field value."""
    members = []
    for coding, q in draw(st.lists(st.tuples(codings, qvalues), max_size=8)):
        members.append(coding if q is None else f"{coding};q={q}")
    return members


@given(hostile)
def test_normalise_never_raises(value: str) -> None:
    assert normalise_accept_encoding(value) in ENCODINGS
    assert normalise_accept_encoding(value, allow_br=False) in ("gzip", "identity")


@given(accept_encodings(), st.randoms(use_true_random=False))
def test_member_order_does_not_matter(members: list[str], random: Random) -> None:
    shuffled = list(members)
    random.shuffle(shuffled)
    assert normalise_accept_encoding(", ".join(members)) == normalise_accept_encoding(", ".join(shuffled))


@given(accept_encodings())
def test_a_chosen_coding_was_acceptable(members: list[str]) -> None:
    """br/gzip is chosen only when the field accepts it: listed (or via ``*``) with a q above 0."""
    chosen = normalise_accept_encoding(", ".join(members))
    if chosen == "identity":
        return
    names = {chosen, "x-gzip"} if chosen == "gzip" else {chosen}
    listed = [m for m in members if m.partition(";")[0].lower() in names]
    pool = listed or [m for m in members if m.partition(";")[0] == "*"]
    assert pool
    assert all(m.partition(";")[2] not in ("q=0", "q=0.000") for m in pool)


@given(accept_encodings())
def test_without_q_zero_gzip_listed_is_never_identity(members: list[str]) -> None:
    """Listing gzip (no q, nothing refusing it) always gets a compressed coding unless identity is
    explicitly preferred."""
    members = [m for m in members if "identity" not in m.lower() and "gzip" not in m.lower()]
    assert normalise_accept_encoding(", ".join([*members, "gzip"])) in ("br", "gzip")


@given(st.binary(max_size=20_000), st.integers(0, 9))
@settings(max_examples=60)
def test_gzip_round_trips(body: bytes, level: int) -> None:
    coded = compress(body, "gzip", level)
    assert gzip.decompress(coded) == body
    assert coded == compress(body, "gzip", level)


@given(st.binary(max_size=20_000), st.integers(0, 11))
@settings(max_examples=60)
def test_brotli_round_trips(body: bytes, quality: int) -> None:
    if brotli is None:
        assert not BROTLI_AVAILABLE
        return
    assert brotli.decompress(compress(body, "br", quality)) == body


@given(hostile)
def test_is_compressible_never_raises(value: str) -> None:
    assert is_compressible(value) in (True, False)


header_names = st.sampled_from(
    ["Vary", "ETag", "Content-Encoding", "Cache-Control", "Content-Type", "Digest", "Content-Range"]
)


@given(st.lists(st.tuples(header_names, hostile), max_size=8), st.sampled_from(["gzip", "br"]))
def test_compressed_headers_contract(pairs: list[tuple[str, str]], encoding: str) -> None:
    headers = CIMultiDict(pairs)
    before = [m.strip(" \t").lower() for v in headers.getall("Vary", []) for m in v.split(",")]
    compressed_headers(headers, encoding, 42)
    assert headers.getall("Content-Encoding") == [encoding]
    assert headers.getall("Content-Length") == ["42"]
    assert "Digest" not in headers
    assert len(headers.getall("ETag", [])) <= 1
    etag = headers.get("ETag")
    assert etag is None or etag.startswith('W/"')
    vary = [m.strip(" \t").lower() for v in headers.getall("Vary") for m in v.split(",")]
    assert vary.count("accept-encoding") <= max(1, before.count("accept-encoding"))  # never adds a second
    assert "accept-encoding" in vary or any("*" in m for m in vary) or any('"' in m for m in vary)
    again = CIMultiDict(headers)
    compressed_headers(again, encoding, 42)
    assert list(again.items()) == list(headers.items())


@given(
    st.lists(st.tuples(header_names, hostile), max_size=6),
    st.integers(100, 599),
    st.one_of(st.none(), st.integers(0, 2**40)),
    hostile,
    st.sampled_from(["GET", "HEAD", "POST"]),
)
def test_should_compress_never_raises(
    pairs: list[tuple[str, str]], status: int, length: int | None, encoding: str, method: str
) -> None:
    result = should_compress(
        status=status, headers=CIMultiDict(pairs), body_length=length, encoding=encoding, method=method
    )
    assert result in (True, False)
    if result:
        assert encoding in ("gzip", "br") and status in (200, 203) and method in ("GET", "HEAD")
