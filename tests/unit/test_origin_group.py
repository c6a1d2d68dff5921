"""OriginGroup: the order in which one request tries the members (failover, round robin, health)."""

from __future__ import annotations

import pytest

from proxy.origin.base import OriginRequest, OriginResponse
from proxy.origin.group import Balance, OriginGroup
from proxy.origin.health import HealthState, OriginHealth

COOLDOWN = 5.0


class FakeOrigin:
    """Stands in for an origin: the group only reads ``name``; fetching is never done here."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def fetch(self, request: OriginRequest) -> OriginResponse:
        raise AssertionError("the group never fetches")

    async def close(self) -> None:
        return None


def down(health: OriginHealth, now: float = 0.0) -> OriginHealth:
    """Drive ``health`` to DOWN at ``now`` (unhealthy_after failures)."""
    for _ in range(health.unhealthy_after):
        health.record_failure(now)
    assert health.state is HealthState.DOWN
    return health


def make_group(names: str, balance: Balance = "failover", down_at: str = "") -> OriginGroup:
    """A group of members named by single letters; those in ``down_at`` are DOWN since now=0."""
    members = []
    for name in names:
        health = OriginHealth(name, cooldown=COOLDOWN)
        if name in down_at:
            down(health)
        members.append((FakeOrigin(name), health))
    return OriginGroup("g", members, frozenset({502, 503}), balance)


def order(group: OriginGroup, now: float = 1.0) -> str:
    return "".join(origin.name for origin, _ in group.candidates(now))


@pytest.mark.parametrize(
    ("names", "down_at", "expected"),
    [
        ("abc", "", "abc"),  # configured order
        ("abc", "a", "bc"),  # a down member is skipped
        ("abc", "b", "ac"),
        ("abc", "ab", "c"),
        ("abc", "abc", "a"),  # every member down: the primary anyway
        ("a", "", "a"),
        ("a", "a", "a"),
    ],
)
def test_failover_order(names: str, down_at: str, expected: str) -> None:
    group = make_group(names, "failover", down_at)
    assert order(group) == expected
    assert order(group) == expected  # the same for every request


@pytest.mark.parametrize(
    ("names", "down_at", "expected"),
    [
        ("abc", "", ["abc", "bca", "cab", "abc"]),  # one step further per call
        ("abc", "b", ["ac", "ca", "ca", "ac"]),  # rotation goes on; the down member is skipped
        ("abc", "abc", ["a", "b", "c", "a"]),  # all down: the rotated primary
        ("ab", "", ["ab", "ba", "ab"]),
    ],
)
def test_round_robin_order(names: str, down_at: str, expected: list[str]) -> None:
    group = make_group(names, "round_robin", down_at)
    assert [order(group) for _ in expected] == expected


def test_rotation_happens_at_the_call_not_at_iteration() -> None:
    group = make_group("abc", "round_robin")
    first = group.candidates(1.0)
    second = group.candidates(1.0)
    assert "".join(o.name for o, _ in second) == "bca"
    assert "".join(o.name for o, _ in first) == "abc"


def test_member_back_after_cooldown_gets_one_trial() -> None:
    group = make_group("ab", "failover", down_at="a")
    a_health = group.members[0][1]
    assert order(group, now=COOLDOWN) == "ab"  # a's trial
    assert a_health.state is HealthState.PROBING
    assert order(group, now=COOLDOWN) == "b"  # trial outstanding: other requests skip a
    a_health.record_success(COOLDOWN + 0.1)
    assert order(group, now=COOLDOWN + 0.1) == "ab"  # next trial


def test_probing_trial_is_consumed_only_when_reached() -> None:
    group = make_group("ab", "failover", down_at="b")
    a_health, b_health = group.members[0][1], group.members[1][1]
    candidates = group.candidates(COOLDOWN)
    origin, health = next(candidates)
    assert origin.name == "a"
    health.record_success(COOLDOWN)
    del candidates  # a answered and FETCH stops: b is never asked, so its trial is not spent
    assert b_health.state is HealthState.DOWN
    # A request whose first member fails reaches b and takes its trial.
    candidates = group.candidates(COOLDOWN)
    assert next(candidates)[0].name == "a"
    a_health.record_failure(COOLDOWN)
    assert next(candidates)[0].name == "b"
    assert b_health.snapshot()["state"] == "probing"
    assert list(candidates) == []
    assert order(group, now=COOLDOWN) == "a"  # b's single trial is taken


def test_all_down_with_trial_outstanding_still_tries_primary() -> None:
    group = make_group("a", down_at="a")
    assert order(group, now=COOLDOWN) == "a"  # the trial
    assert order(group, now=COOLDOWN) == "a"  # not available, but a group never fails blind


def test_never_tries_one_origin_twice() -> None:
    group = make_group("abc", "round_robin")
    for now in (1.0, 2.0, 3.0, 4.0):
        names = order(group, now)
        assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("down_at", "now", "expected"),
    [
        ("", 1.0, False),
        ("a", 1.0, False),
        ("ab", 1.0, True),
        ("ab", COOLDOWN, False),  # a trial would be admitted: not "all down"
    ],
)
def test_all_down(down_at: str, now: float, expected: bool) -> None:
    group = make_group("ab", "failover", down_at)
    assert group.all_down(now) is expected
    assert [health.state for _, health in group.members] == [
        HealthState.DOWN if name in down_at else HealthState.UP for name in "ab"
    ]  # asking never admits a trial


def test_all_down_while_trials_are_out() -> None:
    group = make_group("ab", "failover", down_at="ab")
    assert order(group, now=COOLDOWN) == "ab"  # both trials taken
    assert group.all_down(COOLDOWN)


@pytest.mark.parametrize(("status", "expected"), [(502, True), (503, True), (500, False), (200, False)])
def test_should_fail_over(status: int, expected: bool) -> None:
    assert make_group("ab").should_fail_over(status) is expected


def test_single() -> None:
    origin, health = FakeOrigin("app"), OriginHealth("app")
    group = OriginGroup.single(origin, health)
    assert (group.name, group.balance, group.failover_on) == ("app", "failover", frozenset())
    assert group.primary == (origin, health)
    assert not group.should_fail_over(503)
    down(health)
    assert [o for o, _ in group.candidates(1.0)] == [origin]  # down, but the only one: tried anyway


def test_snapshot() -> None:
    snapshot = make_group("ab", "round_robin", down_at="b").snapshot()
    assert snapshot["name"] == "g"
    assert snapshot["balance"] == "round_robin"
    assert snapshot["failover_on"] == [502, 503]
    members = snapshot["members"]
    assert isinstance(members, list)
    assert [(m["name"], m["state"]) for m in members] == [("a", "up"), ("b", "down")]


@pytest.mark.parametrize(
    ("names", "balance"),
    [("", "failover"), ("aa", "failover"), ("ab", "random"), ("aa", "hash")],
)
def test_rejects_bad_groups(names: str, balance: str) -> None:
    members = [(FakeOrigin(name), OriginHealth(name)) for name in names]
    with pytest.raises(ValueError):
        OriginGroup("g", members, frozenset(), balance)  # type: ignore[arg-type]


# ------------------------------------------------------------------ balance: hash
# Rendezvous orders of members a, b, c for a few keys (tests/unit/test_origin_rendezvous.py pins them).
HASH_ORDERS = {"/1": "bca", "/3": "abc", "/4": "cab"}


@pytest.mark.parametrize(
    ("key", "down_at", "expected"),
    [
        ("/1", "", "bca"),  # the key's owner first, then by falling weight
        ("/3", "", "abc"),
        ("/4", "", "cab"),
        ("/1", "b", "ca"),  # the owner is down: its keys go to the next member in hash order
        ("/3", "b", "ac"),  # another member's keys do not move
        ("/4", "c", "ab"),
        ("/1", "bc", "a"),
        ("/1", "abc", "b"),  # every member down: the key's owner anyway
    ],
)
def test_hash_order(key: str, down_at: str, expected: str) -> None:
    group = make_group("abc", "hash", down_at)
    assert "".join(o.name for o, _ in group.candidates(1.0, key)) == expected
    assert "".join(o.name for o, _ in group.candidates(1.0, key)) == expected  # the same every time


def test_hash_order_ignores_the_configured_order() -> None:
    for key, expected in HASH_ORDERS.items():
        group = make_group("cab", "hash")
        assert "".join(o.name for o, _ in group.candidates(1.0, key)) == expected


def test_hash_without_a_key_uses_the_configured_order() -> None:
    assert order(make_group("abc", "hash")) == "abc"


def test_hash_member_back_after_cooldown_gets_its_keys_back() -> None:
    group = make_group("abc", "hash", down_at="b")
    assert "".join(o.name for o, _ in group.candidates(1.0, "/1")) == "ca"
    b_health = group.members[1][1]
    candidates = group.candidates(COOLDOWN, "/1")
    assert next(candidates)[0].name == "b"  # its trial, for one of its own keys
    b_health.record_success(COOLDOWN)
    b_health.record_success(COOLDOWN)
    assert "".join(o.name for o, _ in group.candidates(COOLDOWN, "/1")) == "bca"
