"""Hop-by-hop removal (RFC 9110 §7.6.1) and list-based fields (RFC 9110 §5.6.1)."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from proxy.http.headers import HOP_BY_HOP, parse_list_header, strip_hop_by_hop, via_names


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(
            [(name.title(), "x") for name in sorted(HOP_BY_HOP)] + [("Content-Type", "text/plain")],
            [("Content-Type", "text/plain")],
            id="§7.6.1 every fixed hop-by-hop field removed",
        ),
        pytest.param(
            [("Connection", "close, X-Trace"), ("X-Trace", "1"), ("x-trace", "2"), ("Vary", "Accept")],
            [("Vary", "Accept")],
            id="§7.6.1 fields named in Connection removed, all lines, any case",
        ),
        pytest.param(
            [("Connection", "keep-alive"), ("connection", "X-A"), ("X-A", "1"), ("X-B", "2")],
            [("X-B", "2")],
            id="§7.6.1 several Connection lines combined",
        ),
        pytest.param(
            [("Connection", 'x-a, "quoted", bad name'), ("X-A", "1"), ("Bad Name", "2")],
            [("Bad Name", "2")],
            id="§7.6.1 options that are not field names are ignored",
        ),
        pytest.param(
            [("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Transfer-Encoding", "chunked"), ("Age", "3")],
            [("Age", "3")],
            id="§7.6.1 keep-alive, TE, Transfer-Encoding removed",
        ),
        pytest.param(
            [("Proxy-Authorization", "Basic x"), ("Authorization", "Basic y")],
            [("Authorization", "Basic y")],
            id="§11.7.2 Proxy-Authorization consumed, Authorization kept",
        ),
        pytest.param([], [], id="empty headers"),
    ],
)
def test_strip_hop_by_hop(before: list[tuple[str, str]], after: list[tuple[str, str]]) -> None:
    headers: CIMultiDict[str] = CIMultiDict(before)
    strip_hop_by_hop(headers)
    assert list(headers.items()) == after


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param("a, b,c", ["a", "b", "c"], id="§5.6.1 comma list"),
        pytest.param(" a ,\tb\t", ["a", "b"], id="§5.6.1 OWS trimmed"),
        pytest.param(",, a ,, ,b,", ["a", "b"], id="§5.6.1 empty elements ignored"),
        pytest.param(["a, b", "c"], ["a", "b", "c"], id="§5.3 field lines are list members"),
        pytest.param('a, "b, c", d', ["a", '"b, c"', "d"], id="§5.6.4 comma inside quoted-string"),
        pytest.param('x="a\\"b,c", y', ['x="a\\"b,c"', "y"], id="§5.6.4 quoted-pair inside quotes"),
        pytest.param('a, "unterminated, b', ["a", '"unterminated, b'], id="§5.6.4 unterminated quote"),
        pytest.param("", [], id="empty value"),
        pytest.param(None, [], id="absent"),
    ],
)
def test_parse_list_header(values: Any, expected: list[str]) -> None:
    assert parse_list_header(values) == expected


@pytest.mark.parametrize(
    ("via", "found"),
    [
        ("1.1 edge-1", True),
        ("1.0 fred, 1.1 edge-1 (edgeproxy)", True),
        ("HTTP/1.1 edge-10", False),
        ("1.1 other", False),
        ("edge-1", False),
        ("", False),
    ],
)
def test_via_names_finds_a_received_by_name(via: str, found: bool) -> None:
    assert via_names(via, "edge-1") is found
