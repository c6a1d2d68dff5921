"""Rendezvous hashing (``balance: hash``): the weight function, the order, and how keys spread and move."""

from __future__ import annotations

import pytest

from proxy.origin.rendezvous import Rendezvous, weight

KEYS = [f"GET|www.example.test|/objects/{i}.bin" for i in range(10_000)]


def owners(names: list[str]) -> dict[str, str]:
    ring = Rendezvous(names)
    return {key: ring.owner(key) for key in KEYS}


@pytest.mark.parametrize(
    ("member", "key", "expected"),
    [
        # Fixed values: every edge of a pool (and every release of edgeproxy during a rolling deploy) must
        # compute the same weights, or the pool's edges disagree about who owns a key.
        ("r1", "/a", 8996692449512747856),
        ("r2", "/a", 7628126446682238348),
        ("", "", 10734006239897485896),
        ("regional-1", "GET|www.example.test|/index.html", 3364960246290612112),
    ],
)
def test_weight_is_fixed(member: str, key: str, expected: int) -> None:
    assert weight(member, key) == expected


def test_weight_separates_member_from_key() -> None:
    assert weight("ab", "c") != weight("a", "bc")


@pytest.mark.parametrize(
    ("key", "expected"),
    [("/1", "bca"), ("/2", "bca"), ("/3", "abc"), ("/4", "cab"), ("k", "abc"), ("", "bca")],
)
def test_order(key: str, expected: str) -> None:
    ring = Rendezvous(["a", "b", "c"])
    assert "".join(ring.names[i] for i in ring.order(key)) == expected
    # The configured order of the members does not matter: only their names and the key.
    other = Rendezvous(["c", "a", "b"])
    assert "".join(other.names[i] for i in other.order(key)) == expected
    assert ring.owner(key) == expected[0]


def test_weights_match_the_weight_function() -> None:
    ring = Rendezvous(["a", "b", "c"])
    assert ring.weights("/x") == [weight(name, "/x") for name in "abc"]


def test_non_ascii_and_surrogates_do_not_raise() -> None:
    ring = Rendezvous(["é", "\udcff"])
    assert sorted(ring.order("/caf\u00e9\udc80")) == [0, 1]


def test_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError):
        Rendezvous(["a", "a"])


def test_three_members_share_10000_keys_evenly() -> None:
    counts: dict[str, int] = {}
    for owner in owners(["regional-1", "regional-2", "regional-3"]).values():
        counts[owner] = counts.get(owner, 0) + 1
    even = len(KEYS) / 3
    assert set(counts) == {"regional-1", "regional-2", "regional-3"}
    for name, count in counts.items():
        assert abs(count - even) <= 0.15 * even, (name, counts)


def test_a_fourth_member_takes_about_a_quarter_and_only_for_itself() -> None:
    before = owners(["regional-1", "regional-2", "regional-3"])
    after = owners(["regional-1", "regional-2", "regional-3", "regional-4"])
    moved = [key for key in KEYS if before[key] != after[key]]
    assert len(moved) <= 0.40 * len(KEYS)
    assert len(moved) >= 0.15 * len(KEYS)  # about 1/4: the new member does get its share
    assert {after[key] for key in moved} == {"regional-4"}  # keys only move to the new member


def test_removing_a_member_moves_only_its_keys() -> None:
    before = owners(["regional-1", "regional-2", "regional-3"])
    after = owners(["regional-1", "regional-3"])
    for key in KEYS:
        if before[key] == "regional-2":
            assert after[key] in ("regional-1", "regional-3")
        else:
            assert after[key] == before[key]
