"""Properties of the config parsers: durations, sizes, interpolation, and the loader as a whole."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from proxy.settings import ConfigError, EdgeConfig, parse_config
from proxy.settings.interpolate import interpolate
from proxy.settings.units import (
    MAX_DURATION,
    MAX_HEADER_SIZE,
    MAX_SIZE,
    MAX_TIMEOUT,
    Duration,
    HeaderSize,
    PositiveDuration,
    Size,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
    split_listen,
)

# Text that looks like what the parsers see: digits, dots, unit letters, signs, spaces, anything else.
unitish = st.text(alphabet=st.sampled_from(list("0123456789.-+ eE_smhdyKMGTiBkbB\t\n:[]x")), max_size=12)
any_text = st.one_of(unitish, st.text(max_size=30))
any_value = st.one_of(
    any_text,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=1000)
@given(any_value)
def test_parse_duration_raises_only_value_error(value: Any) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        assert str(error)
    else:
        assert isinstance(seconds, float) and math.isfinite(seconds) and seconds >= 0


@settings(max_examples=1000)
@given(any_value)
def test_parse_size_raises_only_value_error(value: Any) -> None:
    try:
        size = parse_size(value)
    except ValueError as error:
        assert str(error)
    else:
        assert isinstance(size, int) and not isinstance(size, bool) and size >= 0


@settings(max_examples=500)
@given(any_value)
def test_split_listen_raises_only_value_error(value: Any) -> None:
    try:
        host, port = split_listen(value)
    except ValueError as error:
        assert str(error)
    else:
        assert host and 0 <= port <= 65535


@settings(max_examples=1000)
@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_duration_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=10**7), st.sampled_from(["ms", "s", "m", "h", "d", "y"]))
def test_duration_format_of_parsed_text_round_trips(number: int, unit: str) -> None:
    seconds = parse_duration(f"{number}{unit}")
    assert parse_duration(format_duration(seconds)) == seconds


@settings(max_examples=1000)
@given(st.integers(min_value=0, max_value=2**70))
def test_size_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["B", "KiB", "MiB", "GiB", "TiB", "KB", "MB", "GB", "TB"]),
)
def test_size_units(number: int, unit: str) -> None:
    factor = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}.get(unit) or 1000 ** (
        "KMGT".index(unit[0]) + 1
    )
    assert parse_size(f"{number}{unit}") == number * factor


# --------------------------------------------------------------------------------------------- bounds

_SIZE_UNITS = ["", "B", "KiB", "MiB", "GiB", "TiB", "KB", "MB", "GB", "TB"]
_DURATION_UNITS = ["", "ms", "s", "m", "h", "d", "y"]
# Numbers from tiny to absurd (10^20 TiB and beyond, up to the parser's 400 digits), maybe with a fraction.
huge_numbers = st.one_of(
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=10**40),
    st.integers(min_value=1, max_value=400).map(lambda digits: "9" * digits),
).map(str)
fractions = st.one_of(st.just(""), st.integers(min_value=0, max_value=999).map(lambda n: f".{n}"))

_SIZES: list[tuple[Any, int]] = [(Size, MAX_SIZE), (HeaderSize, MAX_HEADER_SIZE)]
_DURATIONS: list[tuple[Any, float]] = [(Duration, MAX_DURATION), (PositiveDuration, MAX_TIMEOUT)]


@settings(max_examples=500)
@given(huge_numbers, fractions, st.sampled_from(_SIZE_UNITS), st.sampled_from(_SIZES))
def test_bounded_sizes_accept_exactly_up_to_their_maximum(
    number: str, fraction: str, unit: str, bounded: tuple[Any, int]
) -> None:
    kind, limit = bounded
    text = f"{number}{fraction}{unit}"
    adapter = TypeAdapter(kind)
    try:
        value = parse_size(text)
    except ValueError:  # longer than the parser reads: refused as a config error too
        with pytest.raises(ValidationError):
            adapter.validate_python(text)
        return
    if value <= limit and (value > 0 or kind is Size):
        assert adapter.validate_python(text) == value
    else:
        with pytest.raises(ValidationError) as caught:
            adapter.validate_python(text)
        if value > limit:
            assert f"must be at most {format_size(limit)}" in str(caught.value)


@settings(max_examples=500)
@given(huge_numbers, fractions, st.sampled_from(_DURATION_UNITS), st.sampled_from(_DURATIONS))
def test_bounded_durations_accept_exactly_up_to_their_maximum(
    number: str, fraction: str, unit: str, bounded: tuple[Any, float]
) -> None:
    kind, limit = bounded
    text = f"{number}{fraction}{unit}"
    adapter = TypeAdapter(kind)
    try:
        seconds = parse_duration(text)
    except ValueError:  # too large even for a float: refused as a config error too
        with pytest.raises(ValidationError):
            adapter.validate_python(text)
        return
    if seconds <= limit and (seconds > 0 or kind is Duration):
        assert adapter.validate_python(text) == seconds
    else:
        with pytest.raises(ValidationError) as caught:
            adapter.validate_python(text)
        if seconds > limit:
            assert f"must be at most {format_duration(limit)}" in str(caught.value)


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(10**30), max_value=10**30)
)


@settings(max_examples=300)
@given(numbers)
def test_bounded_types_give_a_bounded_value_or_a_validation_error(number: float) -> None:
    for kind, limit in [*_SIZES, *_DURATIONS]:
        try:
            value = TypeAdapter(kind).validate_python(number)
        except ValidationError as error:
            assert error.errors()
        else:
            assert 0 <= value <= limit


# --------------------------------------------------------------------------------------------- interpolation

# Fragments that combine into references, escapes, comments, quotes and every kind of line break.
_FRAGMENTS = [
    "${", "}", "$${", "$", "A", "B", "_1", ":-", "-", ":", "#", " ", "x", "'", '"', "[", "{",
    "\n", "\r\n", "\r", "\v", "\f", "\x1c", "\x85", "\u2028", "\u2029",
]  # fmt: skip
config_like_text = st.one_of(
    st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map("".join), st.text(max_size=60)
)
env_values = st.dictionaries(st.sampled_from(["A", "B", "_1", "AB"]), st.text(max_size=10), max_size=3)

_BREAKS = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _line_breaks(text: str) -> list[str]:
    """The line breaks of ``text`` in order, ``\\r\\n``, ``\\r`` and ``\\n`` all counted as ``\\n``."""
    return ["\n" if b in ("\r\n", "\r", "\n") else b for b in _BREAKS.findall(text)]


@settings(max_examples=2000)
@given(config_like_text, env_values)
def test_interpolation_never_changes_the_lines(text: str, env: dict[str, str]) -> None:
    result = interpolate(text, env, "f")
    assert _line_breaks(result.text) == _line_breaks(text)
    before, after = _BREAKS.split(text), _BREAKS.split(result.text)
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        if "$" not in old:  # a line without a reference is untouched, on the same line number
            assert new == old


@given(st.text(alphabet=st.characters(exclude_characters="$\r"), max_size=80), env_values)
def test_text_without_dollar_is_unchanged(text: str, env: dict[str, str]) -> None:
    result = interpolate(text, env, "f")
    assert result.text == text and result.warnings == ()


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="}"), max_size=10))
def test_set_variables_are_substituted_verbatim_on_one_line(value: str) -> None:
    single_line = re.sub("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]", " ", value)  # each break is one space
    assert interpolate("k: ${V}\n", {"V": value}, "f").text == f"k: {single_line}\n"


# --------------------------------------------------------------------------------------------- the loader

_KEYS = [
    "server", "listen", "name", "workers", "origins", "app", "url", "root", "behaviours", "behaviors", "path",
    "origin", "ttl", "min", "default", "max", "cache_key", "query", "except", "methods", "firewall", "rules",
    "match", "header", "countries", "deny", "cache", "memory", "max_bytes", "admin", "token", "tls",
    "origin_groups", "members", "error_pages", 404, "redirect", "to", "from", "rewrite", "x",
]  # fmt: skip
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    st.sampled_from(["*", "/x/*", "app", "http://a", "5m", "1MiB", ":8080", "GET", "all", "(", "0.0.0.0:1"]),
    st.text(max_size=8),
)
_documents = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(_KEYS), children, max_size=4),
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(_documents)
def test_loader_reports_only_config_errors(document: Any) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        config = parse_config(text, "fuzz.yaml", env={})
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.file == "fuzz.yaml" and problem.message
            assert 0 <= problem.line <= text.count("\n") + 1
    else:
        assert isinstance(config, EdgeConfig)
        assert config.behaviours[-1].path == "*"


@settings(max_examples=300, deadline=None)
@given(config_like_text)
def test_loader_survives_arbitrary_text(text: str) -> None:
    try:
        parse_config(text, "fuzz.yaml", env={"A": "1"})
    except ConfigError as error:
        assert error.problems


_REFERENCE = Path(__file__).resolve().parents[2] / "config" / "reference.yaml"
_REFERENCE_DATA: Any = yaml.safe_load(interpolate(_REFERENCE.read_text(), {}, "r").text)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a parsed document, containers included."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


_REFERENCE_PATHS = _paths(_REFERENCE_DATA)[1:]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(_REFERENCE_PATHS), _documents)
def test_any_change_to_the_reference_gives_a_config_or_located_errors(
    path: tuple[Any, ...], value: Any
) -> None:
    document = copy.deepcopy(_REFERENCE_DATA)
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        parse_config(text, "mutant.yaml", env={}, base_dir=_REFERENCE.parent)
    except ConfigError as error:
        for problem in error.problems:
            assert "internal error" not in problem.message
            assert 1 <= problem.line <= text.count("\n") + 1, str(problem)
