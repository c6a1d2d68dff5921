"""Edge compression: Accept-Encoding negotiation (RFC 9110 §12.5.3), eligibility, coding round trips and the
header rules for a coded variant (Content-Encoding, Vary, ETag, digests, no-transform)."""

from __future__ import annotations

import gzip
import zlib

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.edge import compression
from proxy.edge.compression import (
    BROTLI_AVAILABLE,
    ENCODINGS,
    KEY_SUFFIXES,
    MAX_SIZE,
    MIN_SIZE,
    add_vary_accept_encoding,
    compress,
    compressed_headers,
    freshens_compressed,
    is_compressible,
    key_suffix,
    negotiate,
    normalise_accept_encoding,
    should_compress,
    would_compress,
)
from proxy.http.validation import freshens, update_stored_headers

try:
    import brotli
except ImportError:  # pragma: no cover
    brotli = None

needs_brotli = pytest.mark.skipif(brotli is None, reason="brotli is not installed")


# ---------------------------------------------------------------------------------------- negotiation

NEGOTIATION = [
    # absent / empty
    (None, "identity"),
    ("", "identity"),
    (" ", "identity"),
    # plain lists: br preferred over gzip at equal q
    ("gzip", "gzip"),
    ("br", "br"),
    ("gzip, deflate, br", "br"),
    ("gzip, deflate, br, zstd", "br"),
    ("br, gzip", "br"),
    ("deflate", "identity"),
    ("zstd, deflate", "identity"),
    ("compress", "identity"),
    # case and whitespace
    ("GZIP", "gzip"),
    ("Br", "br"),
    ("  gzip  ,\tbr\t", "br"),
    ("gzip ; q=0.5 , br ; Q=0.4", "gzip"),
    # q-values
    ("gzip;q=1.0, br;q=0.9", "gzip"),
    ("gzip;q=0.8, br;q=0.8", "br"),
    ("br;q=0, gzip", "gzip"),
    ("gzip;q=0, br;q=0", "identity"),
    ("gzip;q=0.000", "identity"),
    ("gzip;q=0.001", "gzip"),
    ("gzip;q=1.000", "gzip"),
    ("gzip;q=0.", "identity"),
    ("gzip;q=1.", "gzip"),
    ("gzip;q=0.0001", "gzip"),  # more decimals than the grammar allows: read leniently
    # x-gzip is gzip (RFC 9110 §8.4.1.3)
    ("x-gzip", "gzip"),
    ("x-gzip;q=0.5, br;q=0.1", "gzip"),
    # wildcard: matches codings not listed
    ("*", "br"),
    ("*;q=0", "identity"),
    ("*;q=0.5, gzip;q=0.6", "gzip"),
    ("*;q=0.5, gzip;q=0.4", "br"),
    ("br;q=0, *", "gzip"),
    ("br;q=0, gzip;q=0, *", "identity"),
    ("*, br;q=0, gzip;q=0", "identity"),
    ("gzip;q=0, *;q=0.3", "br"),
    # identity
    ("identity", "identity"),
    ("identity, gzip", "gzip"),
    ("identity;q=1, gzip;q=0.5", "identity"),
    ("identity;q=0.5, gzip;q=0.5", "gzip"),
    ("identity;q=0, gzip", "gzip"),
    ("identity;q=0", "identity"),  # nothing acceptable: identity anyway
    ("*;q=0.2, identity;q=0.1", "br"),
    ("*;q=0.2, identity;q=0.9", "identity"),
    # duplicates keep the lowest q
    ("gzip, gzip;q=0", "identity"),
    ("gzip;q=0, gzip", "identity"),
    ("gzip;q=0, x-gzip", "identity"),
    ("br;q=0.2, br;q=0.9, gzip;q=0.5", "gzip"),
    # other parameters are ignored; q is found among them
    ("gzip;level=9", "gzip"),
    ("gzip;level=9;q=0", "identity"),
    ("br;foo;q=0.3, gzip;q=0.2", "br"),
    # garbage: members skipped, never an error
    ("gzip;q=abc", "identity"),
    ("gzip;q=abc, br", "br"),
    ("gzip;q=2", "identity"),
    ("gzip;q=-1", "identity"),
    ("gzip;q=", "identity"),
    ("gzip;q=0.5x", "identity"),
    ("gzip;q=\u0661", "identity"),  # a non-ASCII digit (ARABIC-INDIC ONE) is not a qvalue
    ("gz ip, br", "br"),
    (";q=1", "identity"),
    (",,,", "identity"),
    (", , gzip ,", "gzip"),
    ("gzip;;;", "gzip"),
    ('"gzip"', "identity"),
    ("gzip\x00", "identity"),
    ("br\udcff", "identity"),
    ("\ud800", "identity"),
    ("gzip;q=0.5;q=0", "gzip"),  # the first q counts
]


@pytest.mark.parametrize(("value", "expected"), NEGOTIATION)
def test_normalise_accept_encoding(value: str | None, expected: str) -> None:
    if expected == "br" and not BROTLI_AVAILABLE:
        pytest.skip("brotli is not installed")
    assert normalise_accept_encoding(value) == expected
    # The memo gives the same answer the second time.
    assert normalise_accept_encoding(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gzip, deflate, br", "gzip"),
        ("br", "identity"),
        ("*", "gzip"),
        ("br;q=1, gzip;q=0.1", "gzip"),
        ("br, identity;q=0.5", "identity"),
    ],
)
def test_without_brotli_br_is_never_chosen(value: str, expected: str) -> None:
    assert normalise_accept_encoding(value, allow_br=False) == expected


def test_memo_is_bounded_and_skips_long_values() -> None:
    compression._MEMO.clear()
    for i in range(compression._MEMO_SIZE + 10):
        normalise_accept_encoding(f"gzip;q=0.{i % 1000:03d}, x{i}")
    assert len(compression._MEMO) <= compression._MEMO_SIZE
    compression._MEMO.clear()
    long_value = "gzip, " + "x, " * 500 + "br"
    assert normalise_accept_encoding(long_value) == ("br" if BROTLI_AVAILABLE else "gzip")
    assert not compression._MEMO


def test_negotiate_reads_every_line() -> None:
    assert negotiate(CIMultiDictProxy(CIMultiDict())) == "identity"
    lines = CIMultiDict([("Accept-Encoding", "gzip;q=0.5"), ("accept-encoding", "br;q=0.9")])
    assert negotiate(lines, allow_br=True) == "br"
    assert negotiate(lines, allow_br=False) == "gzip"
    refused = CIMultiDict([("Accept-Encoding", "gzip"), ("Accept-Encoding", "gzip;q=0")])
    assert negotiate(refused) == "identity"
    assert negotiate(CIMultiDict([("Accept-Encoding", "")])) == "identity"


def test_key_suffixes() -> None:
    assert key_suffix("br") == "\nae:br"
    assert key_suffix("gzip") == "\nae:gzip"
    assert key_suffix("identity") == "\nae:identity"
    assert KEY_SUFFIXES == ("\nae:br", "\nae:gzip", "\nae:identity")
    assert len(set(KEY_SUFFIXES)) == len(ENCODINGS)
    for bad in ("", "deflate", "GZIP", "x-gzip"):
        with pytest.raises(ValueError):
            key_suffix(bad)


def test_key_suffix_keeps_the_ban_target() -> None:
    from proxy.cache.bans import target_of_key

    for suffix in KEY_SUFFIXES:
        assert target_of_key("example.com/a/b?x=1" + suffix) == "/a/b?x=1"


# ---------------------------------------------------------------------------------------- eligibility


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/html", True),
        ("text/html; charset=utf-8", True),
        ("TEXT/HTML;CHARSET=UTF-8", True),
        (" text/css ", True),
        ("text/plain", True),
        ("text/csv", True),
        ("text/javascript", True),
        ("text/xml", True),
        ("text/event-stream", False),
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("application/ld+json", True),
        ("application/problem+json", True),
        ("application/manifest+json", True),
        ("application/javascript", True),
        ("application/x-javascript", True),
        ("application/ecmascript", True),
        ("application/xml", True),
        ("application/rss+xml", True),
        ("application/atom+xml", True),
        ("application/xhtml+xml", True),
        ("image/svg+xml", True),
        ("application/wasm", True),
        ("application/vnd.apple.mpegurl", True),
        ("font/ttf", True),
        ("font/otf", True),
        ("image/x-icon", True),
        ("image/png", False),
        ("image/jpeg", False),
        ("image/webp", False),
        ("image/avif", False),
        ("font/woff", False),
        ("font/woff2", False),
        ("video/mp4", False),
        ("audio/mpeg", False),
        ("application/zip", False),
        ("application/gzip", False),
        ("application/pdf", False),
        ("application/octet-stream", False),
        (None, False),
        ("", False),
        ("text", False),
        ("text/", False),
        ("/html", False),
        (";charset=utf-8", False),
        ("html", False),
    ],
)
def test_is_compressible(content_type: str | None, expected: bool) -> None:
    assert is_compressible(content_type) is expected


def origin(*pairs: tuple[str, str], content_type: str | None = "text/html") -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers.extend(pairs)
    return headers


def check(
    headers: CIMultiDict[str] | None = None,
    *,
    status: int = 200,
    length: int | None = 10_000,
    encoding: str = "gzip",
    method: str = "GET",
) -> bool:
    return should_compress(
        status=status,
        headers=origin() if headers is None else headers,
        body_length=length,
        encoding=encoding,
        method=method,
    )


def test_should_compress_the_plain_case() -> None:
    assert check()
    assert check(encoding="br") is BROTLI_AVAILABLE


@pytest.mark.parametrize("status", [200, 203])
def test_compressible_statuses(status: int) -> None:
    assert check(status=status)


@pytest.mark.parametrize("status", [201, 204, 206, 301, 304, 404, 500])
def test_other_statuses_are_left_alone(status: int) -> None:
    assert not check(status=status)


def test_identity_and_unknown_encodings_are_not_compressed() -> None:
    assert not check(encoding="identity")
    assert not check(encoding="deflate")
    assert not check(encoding="")


def test_head_is_decided_like_get() -> None:
    for headers in (origin(), origin(content_type="image/png")):
        assert check(headers, method="HEAD") == check(headers, method="GET")
    assert check(method="HEAD")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "get"])
def test_other_methods_are_not_compressed(method: str) -> None:
    assert not check(method=method)


def test_size_bounds() -> None:
    assert not check(length=None)
    assert not check(length=0)
    assert not check(length=MIN_SIZE - 1)
    assert check(length=MIN_SIZE)
    assert check(length=MAX_SIZE)
    assert not check(length=MAX_SIZE + 1)
    assert MIN_SIZE == 1024
    assert MAX_SIZE == 16 * 1024 * 1024


def test_size_bounds_are_parameters() -> None:
    kwargs = {"status": 200, "headers": origin(), "encoding": "gzip", "method": "GET"}
    assert should_compress(body_length=10, min_size=0, **kwargs)  # type: ignore[arg-type]
    assert not should_compress(body_length=10_000, max_size=5_000, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ((("Content-Encoding", "gzip"),), False),
        ((("Content-Encoding", "br"),), False),
        ((("Content-Encoding", "zstd"),), False),
        ((("Content-Encoding", "identity"),), True),
        ((("Content-Encoding", "Identity"),), True),
        ((("Content-Encoding", ""),), True),
        ((("Content-Encoding", "identity, gzip"),), False),
        ((("Content-Encoding", "identity"), ("Content-Encoding", "gzip")), False),
        ((("Content-Range", "bytes 0-9/100"),), False),
        ((("Cache-Control", "no-transform"),), False),
        ((("Cache-Control", "public, max-age=60, No-Transform"),), False),
        ((("Cache-Control", "max-age=60"), ("Cache-Control", "no-transform")), False),
        ((("Cache-Control", "public, max-age=60"),), True),
        ((("Cache-Control", 'no-cache="no-transform"'),), True),
        ((("Vary", "Origin"),), True),
        ((("ETag", '"abc"'),), True),
    ],
)
def test_origin_fields(pairs: tuple[tuple[str, str], ...], expected: bool) -> None:
    assert check(origin(*pairs)) is expected


def test_content_type_decides() -> None:
    assert not check(origin(content_type=None))
    assert not check(origin(content_type="image/jpeg"))
    assert check(origin(content_type="application/json"))


def test_would_compress_ignores_the_viewer() -> None:
    headers = origin()
    assert would_compress(status=200, headers=headers, body_length=5000, method="GET")
    assert not would_compress(status=200, headers=headers, body_length=10, method="GET")
    # An identity viewer of a compressible response still needs Vary: the response has coded variants.
    assert not check(headers, encoding="identity")


# ---------------------------------------------------------------------------------------- coding

BODIES = [b"", b"a", b"hello world " * 1000, bytes(range(256)) * 40, b"\x00" * 100_000]


@pytest.mark.parametrize("body", BODIES)
def test_gzip_round_trip(body: bytes) -> None:
    coded = compress(body, "gzip")
    assert gzip.decompress(coded) == body
    assert coded[:2] == b"\x1f\x8b"


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_gzip_levels(level: int) -> None:
    body = b"level " * 2000
    assert gzip.decompress(compress(body, "gzip", level)) == body


def test_gzip_is_deterministic_with_mtime_zero() -> None:
    body = b"<html>" + b"x" * 5000 + b"</html>"
    coded = compress(body, "gzip")
    assert coded == compress(body, "gzip")
    assert coded[4:8] == b"\x00\x00\x00\x00"  # MTIME (RFC 1952 §2.3)
    assert not coded[3] & 0x08  # FLG.FNAME clear: no file name
    assert coded == gzip.compress(body, compresslevel=6, mtime=0)
    assert zlib.decompress(coded, wbits=31) == body


def test_compression_shrinks_text() -> None:
    body = b"<p>the same paragraph again</p>\n" * 500
    assert len(compress(body, "gzip")) < len(body) // 10


@needs_brotli
@pytest.mark.parametrize("body", BODIES)
def test_brotli_round_trip(body: bytes) -> None:
    assert brotli is not None
    assert brotli.decompress(compress(body, "br")) == body


@needs_brotli
@pytest.mark.parametrize("quality", [0, 5, 11])
def test_brotli_qualities(quality: int) -> None:
    assert brotli is not None
    body = b"quality " * 2000
    coded = compress(body, "br", quality)
    assert brotli.decompress(coded) == body
    assert coded == compress(body, "br", quality)


@needs_brotli
def test_brotli_default_quality_is_five() -> None:
    assert brotli is not None
    body = b"default quality " * 3000
    assert compress(body, "br") == brotli.compress(body, quality=5)


@pytest.mark.parametrize(
    ("encoding", "level"),
    [("gzip", -1), ("gzip", 10), ("br", -1), ("br", 12), ("identity", None), ("deflate", None), ("", None)],
)
def test_compress_refuses_bad_arguments(encoding: str, level: int | None) -> None:
    with pytest.raises(ValueError):
        compress(b"data", encoding, level)


def test_br_without_brotli_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "_brotli", None)
    monkeypatch.setattr(compression, "BROTLI_AVAILABLE", False)
    with pytest.raises(ValueError, match="brotli"):
        compress(b"data", "br")
    assert not check(encoding="br")
    assert check(encoding="gzip")


# ---------------------------------------------------------------------------------------- header section


def coded(*pairs: tuple[str, str], encoding: str = "gzip", length: int | None = 123) -> CIMultiDict[str]:
    headers = CIMultiDict(pairs)
    compressed_headers(headers, encoding, length)
    return headers


def test_compressed_headers_basics() -> None:
    headers = coded(("Content-Type", "text/html"), ("Content-Length", "9999"))
    assert headers["Content-Encoding"] == "gzip"
    assert headers.getall("Content-Length") == ["123"]
    assert headers["Vary"] == "Accept-Encoding"
    assert headers["Content-Type"] == "text/html"
    br = coded(encoding="br", length=5)
    assert br["Content-Encoding"] == "br"
    assert br["Content-Length"] == "5"


def test_unknown_length_removes_content_length() -> None:
    headers = coded(("Content-Length", "9999"), length=None)
    assert "Content-Length" not in headers


def test_identity_content_encoding_is_replaced() -> None:
    headers = coded(("Content-Encoding", "identity"))
    assert headers.getall("Content-Encoding") == ["gzip"]


@pytest.mark.parametrize("encoding", ["identity", "deflate", "", "GZIP"])
def test_compressed_headers_refuses_other_codings(encoding: str) -> None:
    with pytest.raises(ValueError):
        compressed_headers(CIMultiDict(), encoding, 1)


@pytest.mark.parametrize(
    ("vary", "expected"),
    [
        ((), "Accept-Encoding"),
        (("Origin",), "Origin, Accept-Encoding"),
        (("Origin, Accept-Language",), "Origin, Accept-Language, Accept-Encoding"),
        (("Origin", "Accept-Language"), "Origin, Accept-Language, Accept-Encoding"),
        (("accept-encoding",), "accept-encoding"),
        (("Origin, ACCEPT-ENCODING",), "Origin, ACCEPT-ENCODING"),
        (("*",), "*"),
        (("Origin, *",), "Origin, *"),
        (("",), "Accept-Encoding"),
        ((" , Origin ,",), "Origin, Accept-Encoding"),
    ],
)
def test_vary_merge(vary: tuple[str, ...], expected: str) -> None:
    headers = coded(*(("Vary", v) for v in vary))
    assert ", ".join(headers.getall("Vary")) == expected
    members = [m.strip().lower() for m in ", ".join(headers.getall("Vary")).split(",")]
    assert members.count("accept-encoding") <= 1


def test_add_vary_alone() -> None:
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "text/html"})
    add_vary_accept_encoding(headers)
    add_vary_accept_encoding(headers)
    assert headers.getall("Vary") == ["Accept-Encoding"]
    assert "Content-Encoding" not in headers


@pytest.mark.parametrize(
    ("etags", "expected"),
    [
        (('"abc"',), 'W/"abc"'),
        (('W/"abc"',), 'W/"abc"'),
        ((' "abc" ',), 'W/"abc"'),
        (('""',), 'W/""'),
        (('"a-b_c/1"',), 'W/"a-b_c/1"'),
        (("abc",), None),  # not an entity-tag: dropped
        (('"ab"c"',), None),
        (('w/"abc"',), None),  # the weak prefix is case-sensitive (RFC 9110 §8.8.3)
        (('"abc"', '"def"'), None),  # two ETag lines: which one? dropped
        (("",), None),
    ],
)
def test_etag_rules(etags: tuple[str, ...], expected: str | None) -> None:
    headers = coded(*(("ETag", e) for e in etags))
    assert headers.getall("ETag", []) == ([] if expected is None else [expected])


def test_no_etag_stays_absent() -> None:
    assert "ETag" not in coded(("Content-Type", "text/html"))


def test_digests_are_removed() -> None:
    headers = coded(
        ("Content-MD5", "Q2hlY2sgSW50ZWdyaXR5IQ=="),
        ("Digest", "sha-256=abc"),
        ("Content-Digest", "sha-256=:abc:"),
        ("Repr-Digest", "sha-256=:abc:"),
        ("Last-Modified", "Tue, 15 Nov 1994 12:45:26 GMT"),
        ("Cache-Control", "max-age=60"),
    )
    for name in ("Content-MD5", "Digest", "Content-Digest", "Repr-Digest"):
        assert name not in headers
    assert headers["Last-Modified"] == "Tue, 15 Nov 1994 12:45:26 GMT"
    assert headers["Cache-Control"] == "max-age=60"


def test_compressed_headers_is_idempotent() -> None:
    once = coded(("ETag", '"abc"'), ("Vary", "Origin"), ("Digest", "x"), ("Content-Type", "text/css"))
    twice = CIMultiDict(once)
    compressed_headers(twice, "gzip", 123)
    assert list(twice.items()) == list(once.items())


# ---------------------------------------------------------------------------------------- revalidation


def test_a_304_for_the_origin_tag_freshens_the_coded_entry() -> None:
    stored = tuple(
        coded(("ETag", '"v1"'), ("Content-Type", "text/html"), ("Cache-Control", "max-age=60")).items()
    )
    not_modified = (("ETag", '"v1"'), ("Cache-Control", "max-age=120"))
    # The generic rule refuses (the 304's strong tag is not the stored weak one) ...
    assert not freshens(stored, not_modified)
    # ... the coded entry was made from "v1", so a weak comparison is the right one.
    assert freshens_compressed(stored, not_modified)
    assert freshens_compressed(stored, (("ETag", 'W/"v1"'),))
    assert not freshens_compressed(stored, (("ETag", '"v2"'),))
    # After the merge, compressed_headers puts the weak tag and the coding fields back.
    merged = CIMultiDict(update_stored_headers(stored, not_modified))
    assert merged["ETag"] == '"v1"'
    compressed_headers(merged, "gzip", 123)
    assert merged["ETag"] == 'W/"v1"'
    assert merged["Cache-Control"] == "max-age=120"
    assert merged["Vary"] == "Accept-Encoding"


def test_a_304_without_etag_falls_back_to_freshens() -> None:
    stored = (("Last-Modified", "Tue, 15 Nov 1994 12:45:26 GMT"), ("Content-Encoding", "gzip"))
    assert freshens_compressed(stored, (("Last-Modified", "Tue, 15 Nov 1994 12:45:26 GMT"),))
    assert not freshens_compressed(stored, (("Last-Modified", "Wed, 16 Nov 1994 12:45:26 GMT"),))
    assert freshens_compressed(stored, ())
    assert not freshens_compressed((("Content-Encoding", "gzip"),), (("ETag", '"x"'),))
