"""Path normalisation for security checks (proxy.edge.paths)."""

from __future__ import annotations

import pytest

from proxy.edge.paths import needs_normalising, normalise_path, remove_dot_segments


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/a/b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/../../b", "/b"),
        ("//admin", "/admin"),
        ("/a/b/", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/..", "/"),
        ("/", "/"),
    ],
)
def test_remove_dot_segments(raw: str, expected: str) -> None:
    assert remove_dot_segments(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/%77p-admin", "/wp-admin"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/%252e%252e/admin", "/admin"),
        ("/public\\..\\admin", "/admin"),
        ("/a%2Fb", "/a/b"),
        ("/100%25.txt", "/100%.txt"),
        ("/bad%zz", "/bad%zz"),
        ("/%ff", "/\udcff"),
    ],
)
def test_normalise_path(raw: str, expected: str) -> None:
    assert needs_normalising(raw)
    assert normalise_path(raw) == expected


def test_plain_paths_need_no_work() -> None:
    assert not needs_normalising("/static/app.js")
