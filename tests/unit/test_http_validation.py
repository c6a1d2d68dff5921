"""Freshening stored responses with a 304 (RFC 9111 §4.3.4) and updating their fields (§3.2)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.http.validation import freshens, update_stored_headers

LM = "Wed, 01 Jan 2020 00:00:00 GMT"
LM2 = "Thu, 02 Jan 2020 00:00:00 GMT"

FRESHENS: list[Any] = [
    pytest.param([("ETag", '"a"')], [("ETag", '"a"')], True, id="§4.3.4 same strong validator"),
    pytest.param([("ETag", '"a"')], [("ETag", '"b"')], False, id="§4.3.4 other strong validator: MUST NOT"),
    pytest.param([("ETag", 'W/"a"')], [("ETag", '"a"')], False, id="§4.3.4 strong 304 vs weak stored"),
    pytest.param([("ETag", 'W/"a"')], [("ETag", 'W/"a"')], True, id="§4.3.4 weak validators match"),
    pytest.param([("ETag", '"a"')], [("ETag", 'W/"a"')], True, id="§4.3.4 weak 304 matches strong stored"),
    pytest.param([("ETag", 'W/"a"')], [("ETag", 'W/"b"')], False, id="§4.3.4 weak mismatch"),
    pytest.param([], [("ETag", '"a"')], False, id="§4.3.4 stored has no ETag, 304 has one"),
    pytest.param([("Last-Modified", LM)], [("Last-Modified", LM)], True, id="§4.3.4 same Last-Modified"),
    pytest.param([("Last-Modified", LM)], [("Last-Modified", LM2)], False, id="§4.3.4 other Last-Modified"),
    pytest.param([("ETag", '"a"')], [("Date", LM)], True, id="§4.3.4 no validator in the 304: ours"),
    pytest.param([], [], True, id="§4.3.4 no validators at all"),
]


@pytest.mark.parametrize(("stored", "not_modified", "expected"), FRESHENS)
def test_freshens(stored: list[tuple[str, str]], not_modified: list[tuple[str, str]], expected: bool) -> None:
    assert freshens(stored, not_modified) is expected


UPDATES: list[Any] = [
    pytest.param(
        [("Test-Header", "A"), ("X", "1")],
        [("Test-Header", "B")],
        [("X", "1"), ("Test-Header", "B")],
        id="§3.2 a field in the 304 replaces the stored one",
    ),
    pytest.param(
        [("Test-Header", "A")],
        [("Date", LM)],
        [("Test-Header", "A"), ("Date", LM)],
        id="§4.3.4 stored field absent from the 304 is kept",
    ),
    pytest.param(
        [("Cache-Control", "max-age=1")],
        [("Cache-Control", "max-age=3600")],
        [("Cache-Control", "max-age=3600")],
        id="§3.2 Cache-Control updated (new lifetime)",
    ),
    pytest.param(
        [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
        [("Set-Cookie", "c=3")],
        [("Set-Cookie", "c=3")],
        id="§3.2 all stored lines of a field replaced together",
    ),
    pytest.param(
        [("Content-Length", "5")],
        [("Content-Length", "10")],
        [("Content-Length", "5")],
        id="§3.2 Content-Length never updated",
    ),
    pytest.param(
        [("X", "1")],
        [("Connection", "a"), ("a", "2"), ("Keep-Alive", "5"), ("Proxy-Authenticate", "Basic")],
        [("X", "1")],
        id="§3.1 fields excepted from storage are not merged",
    ),
    pytest.param(
        [("Content-Type", "text/plain")],
        [("Content-Type", "text/plain;charset=utf-8")],
        [("Content-Type", "text/plain;charset=utf-8")],
        id="§3.2 representation metadata updated (content stored as received)",
    ),
    pytest.param(
        [("Age", "5"), ("X-Cache", "Hit")],
        [("Age", "1"), ("X-Cache", "Miss")],
        [("Age", "5"), ("X-Cache", "Hit")],
        id="fields the edge recomputes are left to it",
    ),
    pytest.param(
        [("etag", '"a"')],
        [("ETag", '"a"')],
        [("ETag", '"a"')],
        id="§5.1 names compared case-insensitively",
    ),
]


@pytest.mark.parametrize(("stored", "not_modified", "expected"), UPDATES)
def test_update_stored_headers(
    stored: list[tuple[str, str]], not_modified: list[tuple[str, str]], expected: list[tuple[str, str]]
) -> None:
    assert update_stored_headers(stored, not_modified) == tuple(expected)


def test_preserve_is_configurable() -> None:
    stored = [("Content-Type", "text/plain")]
    new = [("Content-Type", "text/html")]
    kept = update_stored_headers(stored, new, preserve=frozenset({"content-type"}))
    assert kept == (("Content-Type", "text/plain"),)
