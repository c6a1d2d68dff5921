"""Bans: CloudFront path patterns, tags, ban time, soft vs hard, expiry, bounds, and the wire form."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.cache.bans import (
    MAX_PATH_LENGTH,
    MAX_PATHS_PER_BAN,
    Ban,
    BanList,
    path_problem,
    tag_problem,
    target_of_key,
)
from proxy.cache.keys import KeyBuilder, variant_key

T0 = 1_700_000_000.0


@dataclass(frozen=True)
class KeyPolicyData:
    query: Literal["all", "none"] | tuple[str, ...] = "all"
    headers: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()
    sort_query: bool = False


def banned(pattern: str, target: str, tags: tuple[str, ...] = ()) -> bool:
    """Does a ban on ``pattern`` (made at T0) hit an entry for ``target`` stored just before it?"""
    bans = BanList()
    bans.add(Ban("b1", T0, paths=(pattern,)))
    return bans.matches(target, tags, T0 - 1) is not None


# ------------------------------------------------------------------------------------------- path patterns

PATH_CASES = [
    # pattern, target, matches
    ("/index.html", "/index.html", True),
    ("/index.html", "/index.htm", False),
    ("/index.html", "/index.html5", False),
    ("/index.html", "/Index.html", False),  # case-sensitive, like CloudFront
    ("/index.html", "/index.html?v=2", True),  # no "?" in the pattern: every query variant
    ("/index.html", "/x/index.html", False),
    ("/", "/", True),
    ("/", "/a", False),
    ("/images/*", "/images/a/b.png", True),
    ("/images/*", "/images/", True),
    ("/images/*", "/images", False),
    ("/images/*", "/images.png", False),
    ("/images*", "/images.png", True),
    ("/images*", "/images/a.png", True),
    ("/images*", "/images", True),
    ("/images*", "/image", False),
    ("/images/*", "/images/a.png?size=2", True),
    ("/a*", "/b?x=/a", False),  # the query is not part of the path
    ("/*", "/", True),
    ("/*", "/anything/at/all?q=1", True),
    ("/*", "", True),
    ("/a?v=1", "/a?v=1", True),  # "?" in the pattern: the query is matched too
    ("/a?v=1", "/a?v=2", False),
    ("/a?v=1", "/a", False),
    ("/a?v=1", "/a?v=1&w=2", False),
    ("/a?*", "/a?anything", True),
    ("/a?*", "/a", False),
    ("/a?v=*", "/a?v=9", True),
    ("/a?v=*", "/a?w=9", False),
    ("/a%20b", "/a%20b", True),  # raw, percent-encoded targets
    ("/a%20b", "/a b", False),
]


@pytest.mark.parametrize(("pattern", "target", "expected"), PATH_CASES)
def test_path_patterns(pattern: str, target: str, expected: bool) -> None:
    assert banned(pattern, target) is expected


INVALID_PATTERNS = [
    ("", 'must start with "/"'),
    ("index.html", 'must start with "/"'),
    ("*", 'must start with "/"'),
    ("/a*b", '"*" is only allowed as the last character'),
    ("/*/x", '"*" is only allowed as the last character'),
    ("/a**", '"*" is only allowed as the last character'),
    ("/a b", "must be visible ASCII"),
    ("/caf\u00e9", "must be visible ASCII"),
    ("/a\nb", "must be visible ASCII"),
    ("/" + "a" * MAX_PATH_LENGTH, f"at most {MAX_PATH_LENGTH}"),
    (7, "must be a string"),
    (None, "must be a string"),
]


@pytest.mark.parametrize(("pattern", "problem"), INVALID_PATTERNS)
def test_invalid_patterns_are_explained(pattern: object, problem: str) -> None:
    found = path_problem(pattern)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize("pattern", ["/", "/*", "/a", "/a*", "/a/*", "/a?b=c", "/a?*", "/%E2%82%AC"])
def test_valid_patterns(pattern: str) -> None:
    assert path_problem(pattern) is None


def test_longest_valid_pattern() -> None:
    assert path_problem("/" + "a" * (MAX_PATH_LENGTH - 1)) is None


@pytest.mark.parametrize(
    ("tag", "valid"),
    [("product-42", True), ("a", True), ("x" * 1024, True), ("", False), ("a b", False), ("a\tb", False),
     ("x" * 1025, False), (3, False)],
)  # fmt: skip
def test_tag_validation(tag: object, valid: bool) -> None:
    assert (tag_problem(tag) is None) is valid


# ------------------------------------------------------------------------------------------- properties

segment = st.text(alphabet=st.sampled_from("abcXYZ019-._~%=&/"), max_size=20)
# Visible ASCII without "*": any valid literal path (the query, if any, included).
literal_path = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="*"), max_size=40
).map(lambda rest: "/" + rest)
any_target = st.text(max_size=60)


@given(literal_path, any_target)
def test_an_exact_path_only_matches_itself(path: str, other: str) -> None:
    assert banned(path, path)
    if "?" in path:
        assert banned(path, other) is (other == path)
    else:
        # without "?" the query of the target is ignored
        assert banned(path, other) is (other.partition("?")[0] == path)


@given(any_target)
def test_slash_star_matches_everything(target: str) -> None:
    assert banned("/*", target)


@given(literal_path, st.text(max_size=30))
def test_a_prefix_pattern_matches_every_extension_of_the_prefix(prefix: str, extension: str) -> None:
    if "?" not in prefix:
        extension = extension.replace("?", "")  # keep the extension in the path part
    assert banned(prefix + "*", prefix + extension)


@given(literal_path, any_target)
def test_a_prefix_pattern_matches_nothing_else(prefix: str, target: str) -> None:
    compared = target if "?" in prefix else target.partition("?")[0]
    everything = prefix == "/"  # "/*" matches every target, even one that is not a path
    assert banned(prefix + "*", target) is (everything or compared.startswith(prefix))


@given(st.lists(literal_path, min_size=1, max_size=8), any_target)
def test_many_patterns_match_when_any_one_does(patterns: list[str], target: str) -> None:
    bans = BanList()
    bans.add(Ban("many", T0, paths=tuple(patterns)))
    assert (bans.matches(target, (), T0 - 1) is not None) is any(banned(p, target) for p in patterns)


# A reference model: every ban checked one by one, straight from the definitions.


def reference_hit(ban: Ban, target: str, tags: tuple[str, ...]) -> bool:
    bare = target.partition("?")[0]
    for pattern in ban.paths:
        subject = target if "?" in pattern else bare
        if pattern == "/*":
            return True
        if pattern.endswith("*") and subject.startswith(pattern[:-1]):
            return True
        if subject == pattern:
            return True
    return any(tag in tags for tag in ban.tags)


def reference(bans: list[Ban], target: str, tags: tuple[str, ...], stored_at: float) -> str | None:
    """ "hard", "soft" or None: what the bans applying to an entry make of it."""
    applying = [b for b in bans if b.created > stored_at and reference_hit(b, target, tags)]
    if any(not b.soft for b in applying):
        return "hard"
    return "soft" if applying else None


small_pattern = st.builds(
    lambda body, star: "/" + body + ("*" if star else ""),
    st.text(alphabet="ab/?=", max_size=4),
    st.booleans(),
)
small_target = st.text(alphabet="ab/?=", max_size=6).map(lambda rest: "/" + rest)
small_tags = st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=2, unique=True).map(tuple)
ban_spec = st.tuples(
    st.integers(0, 20),  # created
    st.lists(small_pattern, max_size=3, unique=True).map(tuple),
    small_tags,
    st.booleans(),  # soft
).filter(lambda spec: bool(spec[1] or spec[2]))
operation = st.one_of(
    st.tuples(st.just("add"), ban_spec),
    st.tuples(st.just("expire"), st.integers(0, 20)),
)
query = st.tuples(small_target, small_tags, st.integers(-1, 21).map(lambda t: t - 0.5))


def run(operations: list[tuple[str, Any]], max_bans: int) -> tuple[BanList, list[Ban]]:
    """Apply the operations to a BanList; returns it and the bans the reference model keeps."""
    bans = BanList(max_bans=max_bans)
    added: list[Ban] = []
    bound = -math.inf
    for number, (kind, arg) in enumerate(operations):
        if kind == "add":
            created, paths, tags, soft = arg
            ban = Ban(f"b{number}", float(created), paths=paths, tags=tags, soft=soft)
            bans.add(ban)
            added.append(ban)
        else:
            bans.expire(float(arg))
            bound = max(bound, float(arg))
    return bans, [b for b in added if b.created > bound]


@settings(max_examples=300)
@given(st.lists(operation, max_size=12), st.lists(query, min_size=1, max_size=10))
def test_the_index_agrees_with_checking_every_ban(
    operations: list[tuple[str, Any]], queries: list[tuple[str, tuple[str, ...], float]]
) -> None:
    bans, kept = run(operations, max_bans=1000)
    for target, tags, stored_at in queries:
        found = bans.matches(target, tags, stored_at)
        expected = reference(kept, target, tags, stored_at)
        assert (None if found is None else ("soft" if found.soft else "hard")) == expected
        assert found is None or found.created > stored_at


@settings(max_examples=300)
@given(st.lists(operation, max_size=12), st.lists(query, min_size=1, max_size=10))
def test_a_bounded_list_never_invalidates_less(
    operations: list[tuple[str, Any]], queries: list[tuple[str, tuple[str, ...], float]]
) -> None:
    bans, kept = run(operations, max_bans=2)
    assert len(bans) <= 2
    for target, tags, stored_at in queries:
        found = bans.matches(target, tags, stored_at)
        expected = reference(kept, target, tags, stored_at)
        if expected == "hard":
            assert found is not None and not found.soft
        elif expected == "soft":
            assert found is not None


# ------------------------------------------------------------------------------------------- tags


TAG_CASES = [
    # ban tags, entry tags, matches
    (("product-42",), ("product-42",), True),
    (("product-42",), ("product-4", "product-420"), False),
    (("product-42",), ("a", "product-42", "b"), True),
    (("a", "b"), ("b",), True),
    (("a",), (), False),
    (("Product-42",), ("product-42",), False),
]


@pytest.mark.parametrize(("ban_tags", "entry_tags", "expected"), TAG_CASES)
def test_tags(ban_tags: tuple[str, ...], entry_tags: tuple[str, ...], expected: bool) -> None:
    bans = BanList()
    bans.add(Ban("t", T0, tags=ban_tags))
    assert (bans.matches("/whatever", entry_tags, T0 - 1) is not None) is expected


def test_paths_and_tags_in_one_ban_match_either() -> None:
    bans = BanList()
    bans.add(Ban("both", T0, paths=("/a",), tags=("t",)))
    assert bans.matches("/a", (), T0 - 1) is not None
    assert bans.matches("/b", ("t",), T0 - 1) is not None
    assert bans.matches("/b", ("u",), T0 - 1) is None


# ------------------------------------------------------------------------------------------- time


@pytest.mark.parametrize(
    ("stored_at", "expected"),
    [(T0 - 3600, True), (T0 - 0.001, True), (T0, False), (T0 + 0.001, False), (T0 + 3600, False)],
)
def test_a_ban_applies_to_entries_stored_before_it(stored_at: float, expected: bool) -> None:
    bans = BanList()
    bans.add(Ban("b", T0, paths=("/a",)))
    assert (bans.matches("/a", (), stored_at) is not None) is expected


def test_only_bans_newer_than_the_entry_apply() -> None:
    bans = BanList()
    old = Ban("old", T0, paths=("/a",))
    new = Ban("new", T0 + 10, paths=("/b",))
    bans.add(new)
    bans.add(old)  # out of order: learned late from another node
    assert [b.id for b in bans.snapshot()] == ["old", "new"]
    assert bans.matches("/a", (), T0 + 5) is None  # refetched after "old"
    assert bans.matches("/a", (), T0 - 5) is old
    assert bans.matches("/b", (), T0 + 5) is new


def test_empty_list_matches_nothing() -> None:
    bans = BanList()
    assert len(bans) == 0
    assert bans.newest == -math.inf
    assert bans.matches("/a", ("t",), T0) is None
    assert bans.snapshot() == ()


# ------------------------------------------------------------------------------------------- soft and hard


def test_soft_ban_is_returned_for_the_caller_to_mark_stale() -> None:
    bans = BanList()
    soft = Ban("s", T0, tags=("t",), soft=True)
    bans.add(soft)
    found = bans.matches("/a", ("t",), T0 - 1)
    assert found is soft
    assert found.soft


@pytest.mark.parametrize("hard_first", [True, False])
def test_a_hard_ban_wins_over_a_soft_one(hard_first: bool) -> None:
    bans = BanList()
    soft = Ban("s", T0 + (1 if hard_first else 0), tags=("t",), soft=True)
    hard = Ban("h", T0 + (0 if hard_first else 1), paths=("/a",))
    bans.add(soft)
    bans.add(hard)
    assert bans.matches("/a", ("t",), T0 - 1) is hard
    assert bans.matches("/b", ("t",), T0 - 1) is soft


# ------------------------------------------------------------------------------------------- list upkeep


def test_adding_the_same_id_twice_is_a_no_op() -> None:
    bans = BanList()
    assert bans.add(Ban("x", T0, paths=("/a",)))
    assert not bans.add(Ban("x", T0, paths=("/a",)))
    assert len(bans) == 1
    assert bans.get("x") == Ban("x", T0, paths=("/a",))
    assert bans.get("y") is None


def test_expire_forgets_bans_older_than_the_bound() -> None:
    bans = BanList()
    bans.extend(Ban(f"b{i}", T0 + i, paths=(f"/{i}",)) for i in range(5))
    assert bans.expire(T0 - 1) == 0
    assert bans.expire(T0 + 2) == 3  # created at or before the bound
    assert [b.id for b in bans.snapshot()] == ["b3", "b4"]
    assert bans.get("b0") is None
    assert bans.newest == T0 + 4
    assert bans.expire(T0 + 10) == 2
    assert len(bans) == 0
    assert bans.newest == -math.inf
    assert bans.matches("/4", (), T0) is None


def test_expired_bans_are_not_taken_back() -> None:
    bans = BanList()
    bans.expire(T0)
    assert not bans.add(Ban("old", T0, paths=("/a",)))  # a poller re-reading it
    assert bans.add(Ban("new", T0 + 1, paths=("/a",)))
    assert [b.id for b in bans.snapshot()] == ["new"]


def test_since_returns_bans_from_a_time_on() -> None:
    bans = BanList()
    bans.extend(Ban(f"b{i}", T0 + i, paths=("/a",)) for i in range(4))
    assert [b.id for b in bans.since(T0 + 2)] == ["b2", "b3"]
    assert bans.since(T0 + 9) == ()


def test_a_hard_everything_ban_supersedes_older_bans() -> None:
    bans = BanList()
    bans.extend(Ban(f"b{i}", T0 + i, paths=("/a",)) for i in range(3))
    later = Ban("later", T0 + 20, tags=("t",))
    bans.add(later)
    everything = Ban("all", T0 + 10, paths=("/*",))
    assert bans.add(everything)
    assert bans.snapshot() == (everything, later)
    # an older ban arriving late is redundant
    assert not bans.add(Ban("late", T0 + 5, paths=("/x",)))
    assert bans.matches("/x", (), T0 + 1) is everything
    assert bans.matches("/x", ("t",), T0 + 15) is later


def test_a_soft_everything_ban_only_supersedes_soft_bans() -> None:
    bans = BanList()
    bans.add(Ban("all", T0 + 10, paths=("/*",), soft=True))
    assert not bans.add(Ban("s", T0, tags=("t",), soft=True))
    hard = Ban("h", T0, tags=("t",))
    assert bans.add(hard)
    assert bans.matches("/x", ("t",), T0 - 1) is hard


def test_the_list_is_bounded_by_folding_old_bans_into_everything() -> None:
    bans = BanList(max_bans=3)
    bans.extend(Ban(f"b{i}", T0 + i, paths=(f"/{i}",)) for i in range(5))
    assert len(bans) <= 3
    ids = [b.id for b in bans.snapshot()]
    assert ids[-1] == "b4"
    # Nothing invalidated before is served again: every old ban still hits (through the fold).
    for i in range(5):
        found = bans.matches(f"/{i}", (), T0 + i - 0.5)
        assert found is not None and not found.soft
    # Entries stored after the folded bans are only hit by what is newer.
    assert bans.matches("/0", (), T0 + 3.5) is None


def test_folding_soft_bans_only_gives_a_soft_ban() -> None:
    bans = BanList(max_bans=2)
    bans.extend(Ban(f"s{i}", T0 + i, tags=("t",), soft=True) for i in range(4))
    found = bans.matches("/x", ("u",), T0 - 1)
    assert found is not None and found.soft and found.everything


def test_max_bans_must_leave_room() -> None:
    with pytest.raises(ValueError):
        BanList(max_bans=1)


# ------------------------------------------------------------------------------------------- the Ban value


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": "", "created": T0, "paths": ("/a",)},
        {"id": "a/b", "created": T0, "paths": ("/a",)},
        {"id": "x" * 129, "created": T0, "paths": ("/a",)},
        {"id": "x", "created": math.nan, "paths": ("/a",)},
        {"id": "x", "created": math.inf, "paths": ("/a",)},
        {"id": "x", "created": "1", "paths": ("/a",)},
        {"id": "x", "created": True, "paths": ("/a",)},
        {"id": "x", "created": T0},
        {"id": "x", "created": T0, "paths": ("a",)},
        {"id": "x", "created": T0, "paths": ("/a*b",)},
        {"id": "x", "created": T0, "tags": ("",)},
        {"id": "x", "created": T0, "paths": ["/a"]},
        {"id": "x", "created": T0, "paths": ("/a",), "soft": 1},
        {"id": "x", "created": T0, "paths": tuple(f"/{i}" for i in range(MAX_PATHS_PER_BAN + 1))},
    ],
)
def test_invalid_bans_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Ban(**kwargs)  # type: ignore[arg-type]


def test_wire_form_round_trips() -> None:
    ban = Ban("I2X", T0 + 0.25, paths=("/a", "/b/*"), tags=("t",), soft=True)
    assert ban.to_dict() == {
        "id": "I2X",
        "created": T0 + 0.25,
        "paths": ["/a", "/b/*"],
        "tags": ["t"],
        "soft": True,
    }
    assert Ban.from_dict(ban.to_dict()) == ban


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "ban",
        {"id": "x", "created": T0},
        {"id": "x", "created": T0, "paths": "/a"},
        {"id": "x", "created": T0, "paths": ["/a"], "extra": 1},
        {"id": "x", "paths": ["/a"]},
        {"created": T0, "paths": ["/a"]},
        {"id": "x", "created": T0, "paths": [1]},
        {"id": "x", "created": T0, "tags": ["a b"]},
        {"id": "x", "created": T0, "paths": ["/a"], "soft": "yes"},
    ],
)
def test_from_dict_refuses_anything_malformed(data: object) -> None:
    with pytest.raises(ValueError):
        Ban.from_dict(data)


# ------------------------------------------------------------------------------------------- keys


def test_target_of_key_reads_the_path_and_query_of_any_key() -> None:
    builder = KeyBuilder(KeyPolicyData(headers=("accept-language",)))
    headers = CIMultiDict({"Accept-Language": "fr", "Accept-Encoding": "gzip"})
    key = builder.key("Example.COM:80", "/a/b.png", "v=1", headers)
    assert target_of_key(key) == "/a/b.png?v=1"
    assert target_of_key(variant_key(key, ("accept-encoding",), headers)) == "/a/b.png?v=1"
    # a Host carrying "/" is escaped in keys, so it cannot pose as a path
    assert target_of_key(builder.key("a.com/x", "/y", "", headers)) == "/y"
    assert target_of_key("no-path") == ""
