"""Range requests (RFC 9110 §14, §13.1.5)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.http.ranges import (
    content_range,
    content_range_unsatisfied,
    if_range_allows,
    multipart_byteranges,
    parse_range,
)

LM = 784111777.0
LM_TEXT = "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    ("value", "length", "expected"),
    [
        pytest.param("bytes=0-499", 10000, [(0, 499)], id="§14.1.2 first 500 bytes"),
        pytest.param("bytes=500-999", 10000, [(500, 999)], id="§14.1.2 second 500 bytes"),
        pytest.param("bytes=-500", 10000, [(9500, 9999)], id="§14.1.2 suffix range"),
        pytest.param("bytes=9500-", 10000, [(9500, 9999)], id="§14.1.2 open-ended range"),
        pytest.param("bytes=0-0,-1", 10000, [(0, 0), (9999, 9999)], id="§14.1.2 first and last byte"),
        pytest.param("bytes=0-99999", 100, [(0, 99)], id="§14.1.2 last-pos clamped to length"),
        pytest.param("bytes=-200", 100, [(0, 99)], id="§14.1.2 suffix longer than representation"),
        pytest.param("Bytes=0-1", 10, [(0, 1)], id="§14.1 unit is case-insensitive"),
        pytest.param("bytes= 0-1 , 5-6 ", 10, [(0, 1), (5, 6)], id="§5.6.1 OWS around members"),
        pytest.param("bytes=0-1,,5-6", 10, [(0, 1), (5, 6)], id="§5.6.1 empty member ignored"),
        pytest.param("bytes=5-6,0-1", 10, [(5, 6), (0, 1)], id="§14.1.2 request order kept"),
        pytest.param("bytes=0-4,5-9", 10, [(0, 4), (5, 9)], id="§14.2 adjacent ranges totalling length ok"),
        pytest.param("bytes=0-" + "9" * 5000, 10, [(0, 9)], id="§14.1.1 huge last-pos saturates"),
        pytest.param("bytes=20-30,0-1", 10, [(0, 1)], id="§14.1.1 unsatisfiable member dropped"),
        pytest.param("bytes=10-", 10, "unsatisfiable", id="§14.1.1 first-pos = length unsatisfiable → 416"),
        pytest.param("bytes=-0", 10, "unsatisfiable", id="§14.1.1 zero suffix unsatisfiable"),
        pytest.param("bytes=0-", 0, "unsatisfiable", id="§15.5.17 empty representation"),
        pytest.param("bytes=" + "9" * 5000 + "-", 10, "unsatisfiable", id="§14.1.1 huge first-pos"),
        pytest.param(None, 10, None, id="§14.2 absent"),
        pytest.param("", 10, None, id="§14.2 empty"),
        pytest.param("items=0-1", 10, None, id="§14.2 unknown unit ignored"),
        pytest.param("bytes 0-1", 10, None, id="§14.1.1 missing '=' invalid"),
        pytest.param("bytes=", 10, None, id="§14.1.1 empty range-set invalid"),
        pytest.param("bytes=5-1", 10, None, id="§14.1.1 last < first invalid"),
        pytest.param("bytes=a-b", 10, None, id="§14.1.1 non-digits invalid"),
        pytest.param("bytes=1", 10, None, id="§14.1.1 missing dash invalid"),
        pytest.param("bytes=-", 10, None, id="§14.1.1 lone dash invalid"),
        pytest.param("bytes=+1-2", 10, None, id="§14.1.1 sign invalid"),
        pytest.param("bytes=0-1,x", 10, None, id="§14.2 one invalid member ignores the field"),
        pytest.param("bytes=0-5,3-9", 10, None, id="§14.2 overlapping ranges beyond length: whole"),
        pytest.param("bytes=0-1,0-1", 10, [(0, 1), (0, 1)], id="§14.2 small overlap within length allowed"),
        pytest.param(
            "bytes=" + ",".join(f"{i}-{i}" for i in range(16)),
            100,
            [(i, i) for i in range(16)],
            id="§14.2 16 ranges allowed",
        ),
        pytest.param(
            "bytes=" + ",".join(f"{i}-{i}" for i in range(17)),
            100,
            None,
            id="§14.2 more than 16 ranges: whole",
        ),
        pytest.param("bytes=" + "," * 100_000 + "0-1", 10, None, id="§14.2 comma flood: whole"),
    ],
)
def test_parse_range(value: str | None, length: int, expected: Any) -> None:
    assert parse_range(value, length) == expected


@pytest.mark.parametrize(
    ("if_range", "etag", "last_modified", "date", "expected"),
    [
        pytest.param(None, '"a"', LM, None, True, id="§13.1.5 absent If-Range"),
        pytest.param('"a"', '"a"', LM, None, True, id="§13.1.5 strong entity-tag match"),
        pytest.param('"a"', '"b"', LM, None, False, id="§13.1.5 entity-tag mismatch"),
        pytest.param('W/"a"', 'W/"a"', LM, None, False, id="§13.1.5 weak tag never matches"),
        pytest.param('"a"', 'W/"a"', LM, None, False, id="§13.1.5 weak current ETag never matches"),
        pytest.param('"a"', None, LM, None, False, id="§13.1.5 no current ETag"),
        pytest.param(LM_TEXT, None, LM, LM + 10, True, id="§13.1.5 exact date, strong (Date ≥ LM + 1s)"),
        pytest.param(
            LM_TEXT, None, LM, LM + 0.5, False, id="§8.8.2.2 date validator too close to Date: weak"
        ),
        pytest.param(LM_TEXT, None, LM, None, False, id="§8.8.2.2 no Date: date validator weak"),
        pytest.param(LM_TEXT, None, LM + 1, LM + 10, False, id="§13.1.5 date not an exact match"),
        pytest.param(LM_TEXT, None, None, LM, False, id="§13.1.5 no Last-Modified"),
        pytest.param("garbage", '"a"', LM, LM + 10, False, id="§13.1.5 invalid If-Range: whole"),
    ],
)
def test_if_range_allows(
    if_range: str | None, etag: str | None, last_modified: float | None, date: float | None, expected: bool
) -> None:
    assert if_range_allows(if_range, etag, last_modified, date=date) is expected


def test_content_range() -> None:
    # RFC 9110 §14.4
    assert content_range(0, 499, 1234) == "bytes 0-499/1234"
    assert content_range_unsatisfied(1234) == "bytes */1234"


def test_multipart_byteranges_layout() -> None:
    # RFC 9110 §14.6 and RFC 2046 §5.1.1
    body = b"0123456789"
    ctype, parts = multipart_byteranges(body, [(0, 1), (8, 9)], "text/plain", 10, "SEP")
    assert ctype == "multipart/byteranges; boundary=SEP"
    assert b"".join(parts) == (
        b"--SEP\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01"
        b"\r\n--SEP\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89"
        b"\r\n--SEP--\r\n"
    )


def test_multipart_byteranges_does_not_copy_body() -> None:
    body = bytearray(b"abcdefghij")
    _, parts = multipart_byteranges(memoryview(body), [(2, 3), (5, 5)], None, 10, "b")
    payloads = [p for p in parts if isinstance(p, memoryview)]
    assert [bytes(p) for p in payloads] == [b"cd", b"f"]
    body[2] = ord("X")  # the payload parts are views on the same buffer
    assert bytes(payloads[0]) == b"Xd"
    assert b"Content-Type" not in b"".join(parts)


def test_multipart_boundary_quoted_when_not_a_token() -> None:
    # RFC 9110 §5.6.6: parameter values that are not tokens are quoted-strings
    ctype, _ = multipart_byteranges(b"ab", [(0, 0), (1, 1)], None, 2, "a:b=c")
    assert ctype == 'multipart/byteranges; boundary="a:b=c"'


@pytest.mark.parametrize(
    ("boundary", "ranges"),
    [
        pytest.param("", [(0, 0)], id="RFC 2046 empty boundary"),
        pytest.param("x" * 71, [(0, 0)], id="RFC 2046 boundary longer than 70"),
        pytest.param("bad\r\n", [(0, 0)], id="RFC 2046 CRLF in boundary"),
        pytest.param("trailing ", [(0, 0)], id="RFC 2046 boundary ends with space"),
        pytest.param("ok", [(0, 10)], id="range outside body"),
    ],
)
def test_multipart_byteranges_rejects_bad_arguments(boundary: str, ranges: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError):
        multipart_byteranges(b"0123456789", ranges, None, 10, boundary)
