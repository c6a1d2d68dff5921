"""HTTP-date parsing and formatting (RFC 9110 §5.6.7)."""

from __future__ import annotations

import calendar

import pytest

from proxy.http.dates import format_http_date, parse_http_date

T_1994 = float(calendar.timegm((1994, 11, 6, 8, 49, 37)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("Sun, 06 Nov 1994 08:49:37 GMT", T_1994, id="§5.6.7 IMF-fixdate"),
        pytest.param("  Sun, 06 Nov 1994 08:49:37 GMT ", T_1994, id="§5.6.7 surrounding whitespace"),
        pytest.param("sun, 06 nov 1994 08:49:37 gmt", T_1994, id="§5.6.7 robust: case-insensitive names"),
        pytest.param("Sun, 6 Nov 1994 08:49:37 GMT", T_1994, id="§5.6.7 robust: one-digit day"),
        pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", T_1994, id="§5.6.7 obsolete rfc850-date"),
        pytest.param("Sun Nov  6 08:49:37 1994", T_1994, id="§5.6.7 obsolete asctime-date"),
        pytest.param("Sun Nov 16 08:49:37 1994", T_1994 + 10 * 86400, id="§5.6.7 asctime two-digit day"),
        pytest.param("Thu, 01 Jan 1970 00:00:00 GMT", 0.0, id="§5.6.7 epoch"),
        pytest.param("Tue, 29 Feb 2000 12:00:00 GMT", 951825600.0, id="§5.6.7 leap day of a 400-year"),
        pytest.param("Thu, 01 Mar 1900 00:00:00 GMT", -2203891200.0, id="§5.6.7 pre-epoch date"),
        pytest.param("Wed, 31 Dec 2008 23:59:60 GMT", 1230768000.0, id="§5.6.7 leap second 60 accepted"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", 253402300799.0, id="§5.6.7 year 9999"),
        pytest.param("Mon, 29 Feb 1900 00:00:00 GMT", None, id="§5.6.7 1900 is not a leap year"),
        pytest.param("Sun, 31 Nov 1994 08:49:37 GMT", None, id="§5.6.7 day past month end"),
        pytest.param("Sun, 00 Nov 1994 08:49:37 GMT", None, id="§5.6.7 day zero"),
        pytest.param("Sun, 06 Nov 1994 24:00:00 GMT", None, id="§5.6.7 hour 24"),
        pytest.param("Sun, 06 Nov 1994 08:60:00 GMT", None, id="§5.6.7 minute 60"),
        pytest.param("Sun, 06 Nov 1994 08:49:61 GMT", None, id="§5.6.7 second 61"),
        pytest.param("Sun, 06 Foo 1994 08:49:37 GMT", None, id="§5.6.7 unknown month"),
        pytest.param("Xyz, 06 Nov 1994 08:49:37 GMT", None, id="§5.6.7 unknown day name"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 UTC", None, id="§5.6.7 only GMT"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 +0000", None, id="§5.6.7 numeric zone invalid"),
        pytest.param("Sun, \u06606 Nov 1994 08:49:37 GMT", None, id="§5.6.7 non-ASCII digit"),
        pytest.param("Sunday, 06-Nov-94 08:49:37", None, id="§5.6.7 rfc850 without GMT"),
        pytest.param(
            "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT", None, id="list of dates"
        ),
        pytest.param("0", None, id="§5.3-style Expires: 0 is invalid"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
        pytest.param("x" * 10_000, None, id="hostile long input"),
    ],
)
def test_parse_http_date(value: str | None, expected: float | None) -> None:
    assert parse_http_date(value) == expected


@pytest.mark.parametrize(
    ("value", "now_year", "expected_year"),
    [
        pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", 2025, 1994, id="§5.6.7 94 in 2025 → 1994"),
        pytest.param("Sunday, 06-Nov-30 08:49:37 GMT", 2025, 2030, id="§5.6.7 30 in 2025 → 2030"),
        pytest.param("Monday, 06-Nov-75 08:49:37 GMT", 2025, 2075, id="§5.6.7 exactly 50 years ahead kept"),
        pytest.param("Wednesday, 06-Nov-76 08:49:37 GMT", 2025, 1976, id="§5.6.7 51 years ahead → past"),
        pytest.param("Friday, 06-Nov-10 08:49:37 GMT", 2090, 2110, id="§5.6.7 pivot follows now"),
    ],
)
def test_rfc850_two_digit_years(value: str, now_year: int, expected_year: int) -> None:
    now = float(calendar.timegm((now_year, 6, 1, 0, 0, 0)))
    parsed = parse_http_date(value, now=now)
    assert parsed is not None
    assert calendar.timegm((expected_year, 11, 6, 8, 49, 37)) == parsed


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        pytest.param(T_1994, "Sun, 06 Nov 1994 08:49:37 GMT", id="§5.6.7 IMF-fixdate"),
        pytest.param(T_1994 + 0.999, "Sun, 06 Nov 1994 08:49:37 GMT", id="§5.6.7 fraction floored"),
        pytest.param(0.0, "Thu, 01 Jan 1970 00:00:00 GMT", id="§5.6.7 epoch"),
        pytest.param(951825600.0, "Tue, 29 Feb 2000 12:00:00 GMT", id="§5.6.7 leap day"),
        pytest.param(-1.0, "Wed, 31 Dec 1969 23:59:59 GMT", id="§5.6.7 before epoch"),
        pytest.param(1e15, "Fri, 31 Dec 9999 23:59:59 GMT", id="§5.6.7 4DIGIT year: clamp high"),
    ],
)
def test_format_http_date(ts: float, expected: str) -> None:
    assert format_http_date(ts) == expected


def test_format_http_date_caches_current_second() -> None:
    first = format_http_date(1_700_000_000.1)
    assert format_http_date(1_700_000_000.9) is first
    assert format_http_date(1_700_000_001.0) == "Tue, 14 Nov 2023 22:13:21 GMT"


@pytest.mark.parametrize("ts", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_format_http_date_rejects_non_finite(ts: float) -> None:
    with pytest.raises(ValueError):
        format_http_date(ts)
