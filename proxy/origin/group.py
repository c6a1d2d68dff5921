"""Origin groups: which origins one request tries, in which order (``origin_groups.NAME``).

Built once per runtime from ``OriginGroupConfig`` (or with ``OriginGroup.single`` for a behaviour that names
one origin), so the FETCH phase always talks to a group. Its failover loop is::

    for origin, health in group.candidates(time.monotonic(), key):
        ...try origin...; health.record_success(now) or health.record_failure(now)
        stop unless it failed (error, timeout, group.should_fail_over(status)) and a retry is allowed

The group is pure: it reads no clock and sends nothing; availability comes from each member's
``OriginHealth``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

from proxy.origin.base import Origin
from proxy.origin.health import OriginHealth
from proxy.origin.rendezvous import Rendezvous

__all__ = ["Balance", "Member", "OriginGroup"]

Balance = Literal["failover", "round_robin", "hash"]
Member = tuple[Origin, OriginHealth]


class OriginGroup:
    """Members tried in configured order (``failover``), starting at the next one each time
    (``round_robin``), or in the rendezvous-hash order of the request's cache key (``hash``: each member
    owns a slice of the key space, see ``proxy.origin.rendezvous``); ``failover_on`` lists the statuses
    that move a request to the next member."""

    def __init__(
        self,
        name: str,
        members: Sequence[Member],
        failover_on: frozenset[int],
        balance: Balance = "failover",
    ) -> None:
        if not members:
            raise ValueError(f"origin group {name!r} needs at least one member")
        if balance not in ("failover", "round_robin", "hash"):
            raise ValueError(f"origin group {name!r}: unknown balance {balance!r}")
        names = [origin.name for origin, _ in members]
        if len(set(names)) != len(names) or len({id(origin) for origin, _ in members}) != len(members):
            raise ValueError(f"origin group {name!r} lists a member twice: {names}")
        self.name = name
        self.members: tuple[Member, ...] = tuple(members)
        self.failover_on = failover_on
        self.balance: Balance = balance
        self._next_start = 0  # round_robin: index of the member the next request starts at
        # hash: the members' rendezvous order per key (built once; member names are unique, checked above)
        self._hash = Rendezvous(names) if balance == "hash" else None

    @classmethod
    def single(cls, origin: Origin, health: OriginHealth) -> OriginGroup:
        """A group of one, named after the origin, that never fails over on a status.

        Used for a behaviour that names an origin rather than a group, so FETCH has one code path. With a
        single member, the "all down → primary" rule means the origin is still tried when it is DOWN.
        """
        return cls(origin.name, [(origin, health)], frozenset(), "failover")

    @property
    def primary(self) -> Member:
        """The first configured member."""
        return self.members[0]

    def candidates(self, now: float, key: str | None = None) -> Iterator[Member]:
        """The members one request may try, in order, each at most once; called once per request.

        The order is the configured one for ``failover``; for ``round_robin`` each call starts one member
        further (the rotation happens at this call, not when iteration starts); for ``hash`` it is the
        members by falling rendezvous weight for ``key`` (the request's cache key, or its target when it
        has none), so the key's owner comes first and a member known down hands its keys to the next in
        hash order (without ``key``, the configured order). Members whose
        ``is_available(now)`` is False are skipped; when none is available, the first member of this
        call's order (the primary) is yielded anyway, so a group whose members are all down still tries
        one origin rather than failing blind.

        The result is lazy on purpose: ``is_available`` is asked for a member only when the iterator
        reaches it, because a True answer for a PROBING member admits its single trial request. Take the
        next member only when you are about to send to it, and report every member you took with
        ``record_success`` or ``record_failure``. Members after the one that answered are never asked.
        """
        if self._hash is not None and key is not None:
            members = self.members
            return self._walk(tuple(members[i] for i in self._hash.order(key)), now)
        count = len(self.members)
        start = 0
        if self.balance == "round_robin":
            start = self._next_start
            self._next_start = (start + 1) % count
        order = self.members[start:] + self.members[:start]
        return self._walk(order, now)

    @staticmethod
    def _walk(order: tuple[Member, ...], now: float) -> Iterator[Member]:
        yielded = False
        for member in order:
            if member[1].is_available(now):
                yielded = True
                yield member
        if not yielded:
            yield order[0]

    def all_down(self, now: float) -> bool:
        """Whether no member would be available now (each DOWN in its cooldown or with a trial out).

        Called by FETCH before trying the group, to serve a stale entry at once instead of waiting out the
        primary's timeout. Never admits a trial (uses ``OriginHealth.is_known_down``).
        """
        return all(health.is_known_down(now) for _, health in self.members)

    def should_fail_over(self, status: int) -> bool:
        """Whether an origin's answer with ``status`` sends the request on to the next member.

        Called by FETCH after a response head arrived; such an answer also counts as a failure for health.
        """
        return status in self.failover_on

    def snapshot(self) -> dict[str, object]:
        """The group and its members' health, for ``/stats``."""
        return {
            "name": self.name,
            "balance": self.balance,
            "failover_on": sorted(self.failover_on),
            "members": [health.snapshot() for _, health in self.members],
        }

    def __repr__(self) -> str:
        names = ", ".join(origin.name for origin, _ in self.members)
        return f"OriginGroup({self.name!r}, [{names}], balance={self.balance})"
