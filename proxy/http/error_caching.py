"""How long origin error responses (4xx/5xx) are kept: the behaviour's ``error_ttl``.

Called by the STORE phase right after ``decide_store`` for a response with status >= 400. Pure.

* When the origin gave explicit freshness (``s-maxage``, ``max-age``, ``Expires``), its decision stands.
* Otherwise the error is kept for ``error_ttl`` when caching it is allowed: in plain RFC 9111 mode only the
  heuristically cacheable error statuses (RFC 9110 §15.1: 404, 405, 410, 414, 501), for which RFC 9111
  §4.2.2 lets a cache choose a heuristic lifetime; under a behaviour ``ttl`` (CloudFront semantics) also the
  statuses CloudFront caches by default (400, 403, 416, 500, 502, 503, 504), so that a failing origin is not
  hammered.
* Never when the response or request forbids storing (no-store, private, Authorization): those reasons
  stand.
"""

from __future__ import annotations

from dataclasses import replace

from proxy.http.freshness import StoreDecision
from proxy.http.reasons import NotStoredReason

RFC_ERROR_CACHEABLE = frozenset({404, 405, 410, 414, 501})
POLICY_ERROR_CACHEABLE = RFC_ERROR_CACHEABLE | frozenset({400, 403, 416, 500, 502, 503, 504})
_OVERRIDABLE = frozenset(
    {NotStoredReason.NO_FRESHNESS, NotStoredReason.STATUS, NotStoredReason.ZERO_TTL, None}
)


def apply_error_ttl(
    status: int, decision: StoreDecision, *, explicit: bool, policy_mode: bool, error_ttl: float
) -> StoreDecision:
    """The storage decision for an error response once ``error_ttl`` is taken into account."""
    if status < 400 or explicit or error_ttl <= 0:
        return decision
    allowed = POLICY_ERROR_CACHEABLE if policy_mode else RFC_ERROR_CACHEABLE
    if status not in allowed or decision.reason not in _OVERRIDABLE:
        return decision
    return replace(decision, store=True, ttl=error_ttl, reason=None)
