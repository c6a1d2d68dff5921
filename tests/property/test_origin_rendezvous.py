"""Rendezvous hashing properties for any member names and keys (hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.origin.rendezvous import Rendezvous

names = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8, unique=True)
keys = st.text(max_size=64)


def ordered(ring: Rendezvous, key: str) -> list[str]:
    return [ring.names[i] for i in ring.order(key)]


@given(names, keys, st.randoms(use_true_random=False))
def test_order_is_a_permutation_independent_of_configured_order(
    members: list[str], key: str, rnd: object
) -> None:
    ring = Rendezvous(members)
    order = ordered(ring, key)
    assert sorted(order) == sorted(members)
    shuffled = list(members)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert ordered(Rendezvous(shuffled), key) == order


@given(names, keys, st.data())
def test_removing_a_member_keeps_the_others_order(members: list[str], key: str, data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(members))
    rest = [m for m in members if m != gone]
    before = ordered(Rendezvous(members), key)
    if rest:
        # The failover order without a member is the old order with that member left out: a member
        # removed (or known down) hands each of its keys to the next member in that key's hash order.
        assert ordered(Rendezvous(rest), key) == [m for m in before if m != gone]


@given(names, st.text(min_size=1, max_size=12), keys)
def test_a_new_member_either_takes_the_key_or_changes_nothing(members: list[str], new: str, key: str) -> None:
    if new in members:
        return
    before = ordered(Rendezvous(members), key)
    after = ordered(Rendezvous([*members, new]), key)
    assert [m for m in after if m != new] == before
