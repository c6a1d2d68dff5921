"""Hypothesis properties of the behaviour glob matcher."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.routing import glob_matches

literal = st.text(alphabet=st.characters(blacklist_characters="*?", codec="utf-8"), max_size=30)


@given(literal)
def test_a_literal_glob_matches_only_itself(text: str) -> None:
    assert glob_matches(text, text)
    assert not glob_matches(text, text + "x")


@given(st.text(max_size=50))
def test_star_matches_everything(path: str) -> None:
    assert glob_matches("*", path)


@given(literal, st.text(max_size=30))
def test_prefix_star_matches_any_suffix(prefix: str, suffix: str) -> None:
    assert glob_matches(prefix + "*", prefix + suffix)


@given(literal, st.characters(codec="utf-8"))
def test_question_mark_is_exactly_one_character(prefix: str, char: str) -> None:
    assert glob_matches(prefix + "?", prefix + char)
    assert not glob_matches(prefix + "?", prefix)
