"""Behaviour matching: ordered globs, first match wins (config reference: behaviours[].path)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from proxy.routing import Router, glob_matches


@dataclass(frozen=True)
class B:
    path: str


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("*", "/", True),
        ("*", "/a/b/c", True),
        ("/static/*", "/static/a.css", True),
        ("/static/*", "/static/deep/a.css", True),  # * crosses slashes
        ("/static/*", "/static", False),
        ("/static/*", "/other/static/a.css", False),
        ("/img/?.png", "/img/a.png", True),
        ("/img/?.png", "/img/ab.png", False),
        ("/img/?.png", "/img//.png", True),  # ? is any one character
        ("/a.b", "/aXb", False),  # dots are literal
        ("/api/*/users", "/api/v1/users", True),
        ("/api/*/users", "/api/v1/users/1", False),
        ("/(x)+[y]", "/(x)+[y]", True),  # regex metacharacters are literal
        ("/exact", "/exact", True),
        ("/exact", "/exact/", False),
    ],
)
def test_glob(glob: str, path: str, matches: bool) -> None:
    assert glob_matches(glob, path) is matches


def test_first_match_wins_and_default_is_last() -> None:
    router = Router([B("/a/*"), B("/a/b/*"), B("*")])
    assert router.match("/a/b/c").path == "/a/*"
    assert router.match("/z").path == "*"
    assert router.match("/a/b/c").path == "/a/*"  # memoised answer is the same


def test_memo_is_bounded() -> None:
    router = Router([B("/x/*"), B("*")])
    for i in range(10_000):
        router.match(f"/p{i}")
    assert len(router._memo) <= 4096


def test_router_needs_behaviours() -> None:
    with pytest.raises(ValueError):
        Router([])
