"""Behaviour-scoped protections must not be walked around by spelling the path differently.

Behaviours are matched on the raw path, but an origin decodes it: ``/%70rivate/x`` does not match the
behaviour ``/private/*`` yet reaches ``/private/x``. When some behaviours carry their own protection
(``signed``, or firewall rules of their own), ``AmbiguousPathGuard`` routes the decoded, dot-resolved path
too, and refuses (400, reason ``ambiguous-path``) a request whose two spellings land in different
behaviours when either of them is protected. Paths with nothing to decode are not looked at twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.edge.paths import needs_normalising, normalise_path
from proxy.edge.verdicts import refuse
from proxy.http.reasons import BlockReason
from proxy.messages import GuardInput, Verdict
from proxy.routing import Router
from proxy.settings import BehaviourConfig

__all__ = ["AmbiguousPathGuard"]


class AmbiguousPathGuard:
    """RECV guard, built only when a behaviour has its own protection; runs before the protections."""

    def __init__(self, behaviours: Iterable[BehaviourConfig], protected: Iterable[str]) -> None:
        self._router: Router[BehaviourConfig] = Router(list(behaviours))
        self._protected = frozenset(protected)
        self.refused = 0

    def check(self, ctx: GuardInput) -> Verdict | None:
        """400 when the raw and decoded paths route to different behaviours and one is protected."""
        path = ctx.request.path
        if not needs_normalising(path):
            return None
        raw = ctx.behaviour.path if ctx.behaviour is not None else self._router.match(path).path
        decoded = self._router.match(normalise_path(path)).path
        if raw == decoded or (raw not in self._protected and decoded not in self._protected):
            return None
        self.refused += 1
        return refuse(ctx, 400, BlockReason.AMBIGUOUS_PATH)

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters: requests refused because their path was ambiguous."""
        return {"blocked": {"ambiguous-path": self.refused}}
