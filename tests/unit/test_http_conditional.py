"""Conditional requests (RFC 9110 §8.8.3, §13.1, §13.2.2)."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from proxy.http.conditional import (
    NOT_MODIFIED_HEADERS,
    evaluate_preconditions,
    parse_etag_list,
    strong_match,
    weak_match,
)

LM = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
LM_TEXT = "Sun, 06 Nov 1994 08:49:37 GMT"
BEFORE = "Sat, 05 Nov 1994 08:49:37 GMT"
AFTER = "Mon, 07 Nov 1994 08:49:37 GMT"
ETAG = '"v1"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('"a", W/"b", "c"', ['"a"', 'W/"b"', '"c"'], id="§8.8.3 list of strong and weak tags"),
        pytest.param('"a,b", "c"', ['"a,b"', '"c"'], id="§8.8.3 etagc includes comma"),
        pytest.param("*", ["*"], id="§13.1.2 star"),
        pytest.param(" * ", ["*"], id="§13.1.2 star with OWS"),
        pytest.param('abc, "ok", W/bad, "x', ['"ok"'], id="§8.8.3 invalid members skipped"),
        pytest.param('w/"lower"', ['w/"lower"'], id="§8.8.3 robust: lower-case weak prefix"),
        pytest.param(['"a"', 'W/"b"'], ['"a"', 'W/"b"'], id="§5.3 several field lines"),
        pytest.param(",,", [], id="§5.6.1 empty members only"),
        pytest.param('""', ['""'], id="§8.8.3 empty opaque-tag is valid"),
        pytest.param(None, [], id="absent"),
    ],
)
def test_parse_etag_list(value: Any, expected: list[str]) -> None:
    assert parse_etag_list(value) == expected


@pytest.mark.parametrize(
    ("a", "b", "strong", "weak"),
    [
        pytest.param('W/"1"', 'W/"1"', False, True, id="§8.8.3.2 W/1 vs W/1"),
        pytest.param('W/"1"', 'W/"2"', False, False, id="§8.8.3.2 W/1 vs W/2"),
        pytest.param('W/"1"', '"1"', False, True, id="§8.8.3.2 W/1 vs 1"),
        pytest.param('"1"', '"1"', True, True, id="§8.8.3.2 1 vs 1"),
        pytest.param('"1"', '"2"', False, False, id="§8.8.3.2 1 vs 2"),
        pytest.param("1", "1", False, False, id="§8.8.3 unquoted is not an entity-tag"),
        pytest.param('"1"', None, False, False, id="no current ETag"),
    ],
)
def test_etag_comparison(a: str, b: str | None, strong: bool, weak: bool) -> None:
    assert strong_match(a, b) is strong
    assert weak_match(a, b) is weak
    assert strong_match(b, a) is strong
    assert weak_match(b, a) is weak


CASES: list[Any] = [
    pytest.param("GET", {}, ETAG, LM, None, id="no preconditions"),
    # step 1: If-Match
    pytest.param("GET", {"If-Match": ETAG}, ETAG, LM, None, id="§13.1.1 If-Match strong match"),
    pytest.param("PUT", {"If-Match": '"other"'}, ETAG, LM, 412, id="§13.1.1 If-Match mismatch → 412"),
    pytest.param("GET", {"If-Match": 'W/"v1"'}, ETAG, LM, 412, id="§13.1.1 If-Match weak never matches"),
    pytest.param("GET", {"If-Match": ETAG}, 'W/"v1"', LM, 412, id="§13.1.1 weak current ETag never matches"),
    pytest.param("GET", {"If-Match": "*"}, None, None, None, id="§13.1.1 If-Match * with a representation"),
    pytest.param("GET", {"If-Match": '"x", "v1"'}, ETAG, LM, None, id="§13.1.1 any member may match"),
    pytest.param("GET", {"If-Match": "garbage"}, ETAG, LM, 412, id="§13.1.1 no valid tag matches nothing"),
    pytest.param(
        "GET",
        {"If-Match": ETAG, "If-Unmodified-Since": BEFORE},
        ETAG,
        LM,
        None,
        id="§13.1.4 IUS ignored with IM",
    ),
    # step 2: If-Unmodified-Since
    pytest.param("GET", {"If-Unmodified-Since": BEFORE}, ETAG, LM, 412, id="§13.1.4 modified since → 412"),
    pytest.param("GET", {"If-Unmodified-Since": LM_TEXT}, ETAG, LM, None, id="§13.1.4 equal date passes"),
    pytest.param(
        "GET", {"If-Unmodified-Since": "nonsense"}, ETAG, LM, None, id="§13.1.4 invalid date ignored"
    ),
    pytest.param("GET", {"If-Unmodified-Since": BEFORE}, ETAG, None, None, id="§13.1.4 no Last-Modified"),
    # step 3: If-None-Match
    pytest.param("GET", {"If-None-Match": ETAG}, ETAG, LM, 304, id="§13.1.2 If-None-Match match → 304"),
    pytest.param("HEAD", {"If-None-Match": 'W/"v1"'}, ETAG, LM, 304, id="§13.1.2 weak comparison → 304"),
    pytest.param("GET", {"If-None-Match": '"a", "v1"'}, ETAG, LM, 304, id="§13.1.2 any member matches"),
    pytest.param("GET", {"If-None-Match": '"other"'}, ETAG, LM, None, id="§13.1.2 no match → proceed"),
    pytest.param("GET", {"If-None-Match": "*"}, ETAG, LM, 304, id="§13.1.2 star matches → 304"),
    pytest.param("DELETE", {"If-None-Match": ETAG}, ETAG, LM, 412, id="§13.1.2 other method → 412"),
    pytest.param("GET", {"If-None-Match": ETAG}, None, LM, None, id="§13.1.2 no current ETag, no match"),
    pytest.param(
        "GET",
        {"If-None-Match": '"other"', "If-Modified-Since": AFTER},
        ETAG,
        LM,
        None,
        id="§13.1.3 IMS ignored when If-None-Match present",
    ),
    pytest.param(
        "GET",
        {"If-None-Match": "unquoted", "If-Modified-Since": AFTER},
        ETAG,
        LM,
        None,
        id="§13.1.3 IMS ignored even if If-None-Match is invalid",
    ),
    pytest.param(
        "GET",
        {"If-Unmodified-Since": BEFORE, "If-None-Match": ETAG},
        ETAG,
        LM,
        412,
        id="§13.2.2 IUS failure evaluated before If-None-Match",
    ),
    # step 4: If-Modified-Since
    pytest.param("GET", {"If-Modified-Since": AFTER}, ETAG, LM, 304, id="§13.1.3 not modified since → 304"),
    pytest.param("GET", {"If-Modified-Since": LM_TEXT}, ETAG, LM, 304, id="§13.1.3 equal date → 304"),
    pytest.param("GET", {"If-Modified-Since": BEFORE}, ETAG, LM, None, id="§13.1.3 modified since → proceed"),
    pytest.param("POST", {"If-Modified-Since": AFTER}, ETAG, LM, None, id="§13.1.3 only GET/HEAD"),
    pytest.param(
        "GET", {"If-Modified-Since": "yesterday"}, ETAG, LM, None, id="§13.1.3 invalid date ignored"
    ),
    pytest.param("GET", {"If-Modified-Since": AFTER}, ETAG, None, None, id="§13.1.3 no Last-Modified"),
    pytest.param(
        "GET",
        [("If-Modified-Since", AFTER), ("If-Modified-Since", AFTER)],
        ETAG,
        LM,
        None,
        id="§13.1.3 more than one member ignored",
    ),
    # §13.1 methods that ignore conditionals
    pytest.param("OPTIONS", {"If-Match": '"nope"'}, ETAG, LM, None, id="§13.1 OPTIONS ignores preconditions"),
]


@pytest.mark.parametrize(("method", "headers", "etag", "last_modified", "expected"), CASES)
def test_evaluate_preconditions(
    method: str, headers: Any, etag: str | None, last_modified: float | None, expected: int | None
) -> None:
    items = headers.items() if isinstance(headers, dict) else headers
    assert evaluate_preconditions(method, CIMultiDict(items), etag, last_modified) == expected


def test_evaluate_preconditions_accepts_plain_mapping() -> None:
    assert evaluate_preconditions("GET", {"If-None-Match": ETAG}, ETAG, None) == 304


def test_if_none_match_over_several_lines() -> None:
    headers = CIMultiDict([("If-None-Match", '"a"'), ("if-none-match", ETAG)])
    assert evaluate_preconditions("GET", headers, ETAG, None) == 304


def test_not_modified_headers() -> None:
    # RFC 9110 §15.4.5
    assert set(NOT_MODIFIED_HEADERS) == {
        "Content-Location",
        "Date",
        "ETag",
        "Vary",
        "Cache-Control",
        "Expires",
    }


@pytest.mark.parametrize(
    ("headers", "last_modified", "date", "expected"),
    [
        pytest.param({"If-Modified-Since": LM_TEXT}, None, LM, 304, id="§4.3.2 no LM: Date equal to IMS"),
        pytest.param({"If-Modified-Since": AFTER}, None, LM, 304, id="§4.3.2 no LM: Date before IMS"),
        pytest.param({"If-Modified-Since": BEFORE}, None, LM, None, id="§4.3.2 no LM: Date after IMS"),
        pytest.param({"If-Modified-Since": AFTER}, None, None, None, id="no LM and no Date: ignored"),
        pytest.param(
            {"If-Modified-Since": LM_TEXT}, LM + 10, LM, None, id="§4.3.2 Last-Modified wins over Date"
        ),
        pytest.param({"If-Unmodified-Since": BEFORE}, None, LM, None, id="§13.1.4 Date never used for IUS"),
        pytest.param(
            {"If-None-Match": '"other"', "If-Modified-Since": AFTER},
            None,
            LM,
            None,
            id="§13.2.2 If-None-Match present: IMS not evaluated",
        ),
    ],
)
def test_if_modified_since_without_last_modified_uses_date(
    headers: dict[str, str], last_modified: float | None, date: float | None, expected: int | None
) -> None:
    """RFC 9111 §4.3.2: a stored response without Last-Modified answers If-Modified-Since with its Date."""
    result = evaluate_preconditions("GET", CIMultiDict(headers), ETAG, last_modified, date=date)
    assert result == expected
