"""Storing and reuse decisions: RFC 9111 §3, §4.2 and §5.2, RFC 5861, or a CloudFront-style TTL policy.

Three moments use this module:

* when an origin response head arrives: :func:`corrected_initial_age` (RFC 9111 §4.2.3);
* in the STORE phase: :func:`decide_store` says whether the response may be stored and for how long;
* on every cache hit: :func:`reuse_decision` says whether the entry can be served as is, served stale
  (within the RFC 5861 windows, at the pipeline's discretion) or must go to the origin first.

Two modes. With a :class:`TTLPolicy` (CloudFront semantics) the origin's lifetime is clamped into the
policy's [min, max], ``default`` applies when the origin says nothing, and request directives are ignored.
Without a policy the rules are those of a plain RFC 9111 shared cache.

Everything here is pure: times are epoch seconds and durations seconds, passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from proxy.http.cache_control import EMPTY, CacheControl, parse_delta_seconds
from proxy.http.dates import parse_http_date
from proxy.http.reasons import FwdReason, NotStoredReason

__all__ = [
    "HEURISTICALLY_CACHEABLE",
    "HEURISTIC_FRACTION",
    "HEURISTIC_MAX",
    "Reuse",
    "ReuseDecision",
    "StoreDecision",
    "TTLPolicy",
    "corrected_initial_age",
    "decide_store",
    "first_age_member",
    "parse_expires",
    "reuse_decision",
]

# RFC 9110 §15.1: status codes defined as heuristically cacheable (206 is excluded here because a partial
# response is never stored as the full object).
HEURISTICALLY_CACHEABLE: frozenset[int] = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})

# RFC 9111 §4.2.2 allows a heuristic lifetime of "some fraction" of the time since Last-Modified, "typical
# setting of this fraction might be 10%"; this cache caps it at one day.
HEURISTIC_FRACTION = 0.1
HEURISTIC_MAX = 86400.0

# Final status codes whose caching requirements this cache understands (RFC 9110 §15 registrations plus
# 429/431/451/511). RFC 9111 §3 needs a cache to understand the status code only when the response carries
# must-understand (§5.2.2.3): other final codes, unknown ones included, are storable in plain RFC mode when
# the response has explicit freshness or public. Under a TTL policy only understood codes are stored.
_UNDERSTOOD_STATUS: frozenset[int] = frozenset(
    {200, 201, 202, 203, 204, 205, 206}
    | {300, 301, 302, 303, 305, 307, 308}
    | set(range(400, 418))
    | {421, 422, 426, 429, 431, 451}
    | {500, 501, 502, 503, 504, 505, 511}
)


def parse_expires(value: str | None) -> float | None:
    """Parse an ``Expires`` field value for :func:`decide_store`.

    Called by the STORE phase. Returns ``None`` when the field is absent and the epoch (``0.0``, i.e. long
    in the past) when it is present but not a valid HTTP-date: RFC 9111 §5.3 says a cache recipient MUST
    interpret invalid date formats, especially "0", as a time in the past ("already expired").
    """
    if value is None:
        return None
    ts = parse_http_date(value)
    return 0.0 if ts is None else ts


def corrected_initial_age(
    age_value: str | Iterable[str] | None, date: float | None, request_time: float, response_time: float
) -> float:
    """``corrected_initial_age`` of a response (RFC 9111 §4.2.3), in seconds.

    Called once when a response head arrives from the origin; the result goes to
    ``CacheEntry.initial_age``. ``age_value`` is the raw ``Age`` field value, or all its field lines
    (``headers.getall("Age", ())``). Several lines combine into one list (RFC 9110 §5.3), and a
    list-valued Age uses its first member, the rest discarded (§5.1 "SHOULD use the first member");
    empty list elements are skipped (RFC 9110 §5.6.1). An absent Age, or a first member that is not
    ``delta-seconds`` (negative, fractional, with parameters), counts as 0 (§4.2.3 "or 0, if not
    available"). ``date`` is the parsed ``Date`` (``None`` when absent or invalid: apparent_age is then
    0). A negative response delay (clock skew between the two readings) is taken as 0.
    """
    age = parse_delta_seconds(first_age_member(age_value)) or 0
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = age + response_delay
    return max(apparent_age, corrected_age_value)


def first_age_member(age_value: str | Iterable[str] | None) -> str | None:
    """The first non-empty member of an ``Age`` field (one value or all its lines), or ``None``.

    Called by :func:`corrected_initial_age`: RFC 9111 §5.1 has a cache use the first member of a
    list-based Age ("7200, 0" and the lines "7200" / "0" both give "7200"); empty elements do not count
    (RFC 9110 §5.6.1).
    """
    if age_value is None:
        return None
    lines = (age_value,) if isinstance(age_value, str) else age_value
    for line in lines:
        for member in line.split(","):
            member = member.strip(" \t")
            if member:
                return member
    return None


@dataclass(frozen=True, slots=True)
class TTLPolicy:
    """A CloudFront-style cache policy: the origin's lifetime is clamped into [min, max]; ``default`` when
    the origin gives none. ``min > 0`` also keeps no-store/private/no-cache responses for ``min`` seconds.

    Raises ``ValueError`` unless ``0 <= min <= default <= max`` (``max`` may be ``math.inf``).
    """

    min: float
    default: float
    max: float

    def __post_init__(self) -> None:
        if not (0 <= self.min <= self.default <= self.max):
            raise ValueError(f"TTLPolicy needs 0 <= min <= default <= max, got {self}")


@dataclass(frozen=True, slots=True)
class StoreDecision:
    """Result of :func:`decide_store`.

    ``store``: whether the response may be stored; ``reason`` says why not (``None`` when stored).
    ``ttl``: freshness lifetime in seconds (0 for a stored response that is stale at once and must be
    revalidated before reuse). ``stale_while_revalidate``/``stale_if_error``: RFC 5861 windows past ``ttl``;
    they are already 0 whenever ``must_revalidate`` or ``no_cache`` forbid serving stale (RFC 9111 §4.2.4),
    so the pipeline can use them without re-checking. ``must_revalidate``: the entry must never be served
    stale, nor under a request's max-stale (RFC 9111 §5.2.2.2). ``no_cache``: every reuse needs a
    successful revalidation (RFC 9111 §5.2.2.4).
    """

    store: bool
    ttl: float
    reason: NotStoredReason | None
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    must_revalidate: bool = False
    no_cache: bool = False


# Pre-built refusals: decide_store runs for every response, no need to allocate these.
_NOT_STORED: dict[NotStoredReason, StoreDecision] = {
    r: StoreDecision(store=False, ttl=0.0, reason=r) for r in NotStoredReason
}


def _authorization_forbids(cc: CacheControl) -> bool:
    """RFC 9111 §3.5: a shared cache stores a response to a request with Authorization only when the
    response has must-revalidate, public or s-maxage."""
    return not (cc.public or cc.must_revalidate or cc.s_maxage is not None)


def _explicit_lifetime(cc: CacheControl, expires: float | None, date: float | None) -> float | None:
    """The origin's explicit freshness lifetime (RFC 9111 §4.2.1), ``None`` when it gave none.

    s-maxage beats max-age (shared cache, §5.2.2.10) which beats Expires - Date (§5.3 "If a response
    includes a Cache-Control header field with the max-age directive, a recipient MUST ignore the Expires
    header field"). Invalid freshness directives make the response stale (§4.2.1): lifetime 0. Expires without
    a Date cannot be measured here: lifetime 0 (callers pass ``date=response_time`` when Date is missing, as
    RFC 9110 §6.6.1 has a recipient with a clock record the receipt time).
    """
    if cc.invalid:
        return 0.0
    if cc.s_maxage is not None:
        return float(cc.s_maxage)
    if cc.max_age is not None:
        return float(cc.max_age)
    if expires is not None:
        return expires - date if date is not None else 0.0
    return None


def decide_store(
    *,
    method: str,
    status: int,
    request_cc: CacheControl,
    response_cc: CacheControl,
    request_has_authorization: bool,
    expires: float | None,
    date: float | None,
    last_modified: float | None,
    has_vary_star: bool,
    policy: TTLPolicy | None,
    default_swr: float = 0,
    default_sie: float = 0,
    has_etag: bool = False,
) -> StoreDecision:
    """Decide whether a response from the origin is stored, and with which lifetime.

    Called by the STORE phase for every response to a GET/HEAD that went to the origin. ``expires``: see
    :func:`parse_expires` (``0.0`` for an invalid Expires); ``date``: the parsed Date, or the response time
    when Date is missing; ``has_etag``: the response carries an ETag (a validator, used only in RFC mode).
    ``policy=None`` selects plain RFC 9111 shared-cache rules, otherwise CloudFront semantics (``request_cc``
    is then ignored). Status codes that are 1xx or 304 are never stored (``STATUS``); unknown final codes
    are stored only in RFC mode, with explicit freshness or public, and never with must-understand.

    Qualified ``no-cache="f"``/``private="f"`` never block storage: the caller must drop the named fields
    from the stored header section (RFC 9111 §5.2.2.4, §5.2.2.7).
    """
    # RFC 9111 §3 / RFC 9110 §9.2.3: only GET responses are stored; a HEAD miss is filled with a GET.
    if method != "GET" and method != "HEAD":
        return _NOT_STORED[NotStoredReason.METHOD]
    # RFC 9111 §4.1: "A stored response with a Vary header field value containing a member "*" always
    # fails to match", so storing it is pointless.
    if has_vary_star:
        return _NOT_STORED[NotStoredReason.VARY_STAR]
    # RFC 9111 §3.3: a 206 is a partial response; it is not stored as the full object.
    if status == 206:
        return _NOT_STORED[NotStoredReason.PARTIAL]
    # RFC 9111 §3: the status code must be final (not 1xx, RFC 9110 §15); 304 freshens a stored response
    # (§4.3.4) instead of being stored; a status code is three digits (RFC 9110 §15).
    if status < 200 or status == 304 or status > 999:
        return _NOT_STORED[NotStoredReason.STATUS]
    cc = response_cc
    understood = status in _UNDERSTOOD_STATUS
    # RFC 9111 §5.2.2.3 / §3: with must-understand the response is stored only if the cache understands the
    # status code, and then its no-store is ignored (a cache that understands the code SHOULD ignore it).
    if cc.must_understand and not understood:
        return _NOT_STORED[NotStoredReason.STATUS]
    response_no_store = cc.no_store and not cc.must_understand
    # RFC 9111 §5.2.2.2 / §5.2.2.8: must-revalidate / proxy-revalidate (a shared cache) forbid stale reuse.
    must_revalidate = cc.must_revalidate or cc.proxy_revalidate
    lifetime = _explicit_lifetime(cc, expires, date)

    if policy is not None:
        if not understood:
            # CloudFront semantics: only the status codes it knows are cached.
            return _NOT_STORED[NotStoredReason.STATUS]
        return _decide_policy(
            policy,
            status,
            cc,
            response_no_store,
            must_revalidate,
            lifetime,
            request_has_authorization,
            default_swr,
            default_sie,
        )

    # ---- plain RFC 9111 shared cache ----
    # RFC 9111 §3, §5.2.1.5, §5.2.2.5: no-store in the request or in the response.
    if request_cc.no_store or response_no_store:
        return _NOT_STORED[NotStoredReason.NO_STORE]
    # RFC 9111 §5.2.2.7: a shared cache MUST NOT store a response with unqualified private.
    if cc.private:
        return _NOT_STORED[NotStoredReason.PRIVATE]
    # RFC 9111 §3.5.
    if request_has_authorization and _authorization_forbids(cc):
        return _NOT_STORED[NotStoredReason.AUTHORIZATION]
    heuristic_status = status in HEURISTICALLY_CACHEABLE
    # RFC 9111 §3: storable only with explicit freshness, a heuristically cacheable status, or public (any
    # final status code, unknown ones included: RFC 9110 §15 has unrecognised codes treated as x00 for
    # handling, but caching needs only the explicit permission).
    if lifetime is None and not heuristic_status and not cc.public:
        return _NOT_STORED[NotStoredReason.STATUS]
    # RFC 9111 §5.2.2.10: s-maxage incorporates proxy-revalidate for a shared cache. Choice: an explicit
    # RFC 5861 stale-* directive in the same response is the origin saying stale reuse is fine, so it
    # waives this implied (not the explicit) must-revalidate — "s-maxage=60, stale-while-revalidate=30"
    # works as CDNs usually implement it.
    if cc.s_maxage is not None and cc.stale_while_revalidate is None and cc.stale_if_error is None:
        must_revalidate = True
    if lifetime is None and last_modified is not None and date is not None:
        # RFC 9111 §4.2.2: heuristic freshness, 10 % of the time since Last-Modified, capped at one day.
        lifetime = min(HEURISTIC_FRACTION * max(0.0, date - last_modified), HEURISTIC_MAX)
    no_cache = cc.no_cache
    if lifetime is None:
        if not no_cache:
            # Nothing gives the response a lifetime: storing it would only make every reuse a full refetch.
            return _NOT_STORED[NotStoredReason.NO_FRESHNESS]
        # RFC 9111 §5.2.2.4: no-cache allows storing; the response is validated before each reuse, so it
        # needs no lifetime (zero), only a validator (checked below).
        lifetime = 0.0
    if no_cache:
        # RFC 9111 §5.2.2.4: stored, but never reused without successful validation.
        lifetime = 0.0
    ttl = max(0.0, lifetime)
    # RFC 9111 §4.2.4: no stale responses when must-revalidate / no-cache forbid it.
    if must_revalidate or no_cache:
        swr = sie = 0.0
    else:
        swr, sie = _windows(cc, default_swr, default_sie)
    if ttl <= 0:
        # Choice: a response that is stale on arrival (max-age=0, expired or invalid Expires, invalid
        # freshness directives, no-cache, zero heuristic) is worth storing only if it can be revalidated
        # (ETag or Last-Modified, RFC 9110 §8.8) or the origin itself allows serving it stale (RFC 5861).
        has_validator = has_etag or last_modified is not None
        origin_allows_stale = not (must_revalidate or no_cache) and (
            (cc.stale_while_revalidate or 0) > 0 or (cc.stale_if_error or 0) > 0
        )
        if not (has_validator or origin_allows_stale):
            return _NOT_STORED[NotStoredReason.NO_CACHE if no_cache else NotStoredReason.ZERO_TTL]
    return StoreDecision(
        store=True,
        ttl=ttl,
        reason=None,
        stale_while_revalidate=swr,
        stale_if_error=sie,
        must_revalidate=must_revalidate,
        no_cache=no_cache,
    )


def _windows(cc: CacheControl, default_swr: float, default_sie: float) -> tuple[float, float]:
    """RFC 5861 §3/§4 windows: the response's stale-while-revalidate / stale-if-error, else the defaults."""
    swr = float(cc.stale_while_revalidate) if cc.stale_while_revalidate is not None else float(default_swr)
    sie = float(cc.stale_if_error) if cc.stale_if_error is not None else float(default_sie)
    return max(0.0, swr), max(0.0, sie)


def _decide_policy(
    policy: TTLPolicy,
    status: int,
    cc: CacheControl,
    response_no_store: bool,
    must_revalidate: bool,
    lifetime: float | None,
    request_has_authorization: bool,
    default_swr: float,
    default_sie: float,
) -> StoreDecision:
    """:func:`decide_store` under a TTL policy (CloudFront semantics; request directives are ignored)."""
    # CloudFront: no-store / private / no-cache from the origin prevent caching when min TTL is 0; with
    # min TTL > 0 the response is kept for min TTL anyway.
    if response_no_store:
        restrictive: NotStoredReason | None = NotStoredReason.NO_STORE
    elif cc.private:
        restrictive = NotStoredReason.PRIVATE
    elif cc.no_cache:
        restrictive = NotStoredReason.NO_CACHE
    else:
        restrictive = None
    if restrictive is not None and policy.min <= 0:
        return _NOT_STORED[restrictive]
    # RFC 9111 §3.5 kept under a policy: Authorization is only forwarded when it is part of the cache key,
    # and even then a response is shared only when the origin said so.
    if request_has_authorization and _authorization_forbids(cc):
        return _NOT_STORED[NotStoredReason.AUTHORIZATION]
    # RFC 9110 §15.1: without explicit freshness only heuristically cacheable statuses take the default.
    if lifetime is None and status not in HEURISTICALLY_CACHEABLE:
        return _NOT_STORED[NotStoredReason.STATUS]
    if restrictive is not None:
        ttl = policy.min
    elif lifetime is not None:
        ttl = min(max(lifetime, policy.min), policy.max)
    else:
        ttl = policy.default
        if ttl <= 0:
            return _NOT_STORED[NotStoredReason.NO_FRESHNESS]
    if ttl <= 0:
        return _NOT_STORED[NotStoredReason.ZERO_TTL]
    swr, sie = (0.0, 0.0) if must_revalidate else _windows(cc, default_swr, default_sie)
    return StoreDecision(
        store=True,
        ttl=ttl,
        reason=None,
        stale_while_revalidate=swr,
        stale_if_error=sie,
        must_revalidate=must_revalidate,
        no_cache=False,
    )


class ReuseDecision(Enum):
    """What a cache hit may do (RFC 9111 §4).

    FRESH: serve it without contacting the origin (fresh, or stale within the request's max-stale).
    STALE: the entry is stale; the pipeline may serve it within its RFC 5861 windows, else revalidate.
    MUST_REVALIDATE: not usable without contacting the origin (conditional request or full fetch).
    """

    FRESH = "fresh"
    STALE = "stale"
    MUST_REVALIDATE = "must-revalidate"


class Reuse(NamedTuple):
    """Result of :func:`reuse_decision`: the decision and, when not FRESH, the RFC 9211 ``fwd`` reason —
    ``FwdReason.STALE`` when the entry was stale, ``FwdReason.REQUEST`` when it was fresh but the request
    did not allow its use (RFC 9211 §2.2)."""

    decision: ReuseDecision
    fwd: FwdReason | None


_FRESH = Reuse(ReuseDecision.FRESH, None)
_STALE = Reuse(ReuseDecision.STALE, FwdReason.STALE)
_REVALIDATE_STALE = Reuse(ReuseDecision.MUST_REVALIDATE, FwdReason.STALE)
_REVALIDATE_REQUEST = Reuse(ReuseDecision.MUST_REVALIDATE, FwdReason.REQUEST)


def reuse_decision(
    *,
    entry_age: float,
    ttl: float,
    request_cc: CacheControl,
    pragma_no_cache: bool,
    no_cache: bool,
    must_revalidate: bool,
    honour_request: bool,
) -> Reuse:
    """Decide how a stored entry may be used for a request (RFC 9111 §4, §4.2, §5.2.1, §5.2.2).

    Called on every cache hit. ``entry_age`` is the entry's current_age (§4.2.3), ``ttl`` its freshness
    lifetime, ``no_cache``/``must_revalidate`` the flags stored with it. Request directives (max-age,
    max-stale, min-fresh, no-cache, and ``Pragma: no-cache`` when the request has no understood
    Cache-Control, §5.4) apply only when ``honour_request`` is True (plain RFC mode); a TTL policy ignores
    them as CloudFront does. Returns pre-built :class:`Reuse` values (no allocation).
    """
    fresh = entry_age < ttl  # RFC 9111 §4.2: fresh while freshness_lifetime > current_age
    if not honour_request and not no_cache:
        # Fast path: only the entry's own lifetime matters.
        if fresh:
            return _FRESH
        return _REVALIDATE_STALE if must_revalidate else _STALE
    if no_cache:
        # RFC 9111 §5.2.2.4: a stored no-cache response is never reused without validation.
        return _REVALIDATE_STALE
    # honour_request is True from here on.
    rc = request_cc
    # RFC 9111 §5.2.1.4 no-cache; §5.4 Pragma: no-cache counts only without an understood Cache-Control.
    request_no_cache = rc.no_cache or (pragma_no_cache and (rc is EMPTY or rc == EMPTY))
    if fresh:
        if request_no_cache:
            return _REVALIDATE_REQUEST
        # RFC 9111 §5.2.1.1: the client wants a response no older than max-age.
        if rc.max_age is not None and entry_age > rc.max_age:
            return _REVALIDATE_REQUEST
        # RFC 9111 §5.2.1.3: the client wants it to stay fresh for at least min-fresh more seconds.
        if rc.min_fresh is not None and ttl - entry_age < rc.min_fresh:
            return _REVALIDATE_REQUEST
        return _FRESH
    # Stale entry.
    # RFC 9111 §5.2.2.2: must-revalidate (and proxy-revalidate/s-maxage, folded into it) forbid stale reuse,
    # even when the request's max-stale would accept it.
    if must_revalidate or request_no_cache:
        return _REVALIDATE_STALE
    # RFC 9111 §5.2.1.1: "Unless the max-stale request directive is also present, the client does not wish to
    # receive a stale response" — and max-age still caps the age when it is.
    if rc.max_age is not None and entry_age > rc.max_age:
        return _REVALIDATE_STALE
    # RFC 9111 §5.2.1.3: a stale response cannot satisfy min-fresh.
    if rc.min_fresh is not None:
        return _REVALIDATE_STALE
    # RFC 9111 §5.2.1.2: max-stale lets the client accept staleness up to its value (any without one).
    if rc.max_stale_any or (rc.max_stale is not None and entry_age - ttl <= rc.max_stale):
        return _FRESH
    if rc.max_age is not None:
        # The client asked for max-age without max-stale: it does not want a stale response at all.
        return _REVALIDATE_STALE
    return _STALE


def within_stale_window(age: float, ttl: float, window: float) -> bool:
    """Whether a response of ``age`` seconds with freshness lifetime ``ttl`` is still inside an RFC 5861
    window of ``window`` seconds after it went stale (stale-while-revalidate §3, stale-if-error §4).

    Called by LOOKUP (serve stale and refresh in the background) and FETCH (serve stale on an origin error).
    """
    return window > 0 and age < ttl + window


def may_serve_disconnected(*, must_revalidate: bool, no_cache: bool) -> bool:
    """Whether a stale stored response may be served when the origin gave no response at all.

    Called by FETCH when every attempt failed without a response. RFC 9111 §4.2.4: a disconnected cache may
    serve stale unless an explicit directive forbids it: must-revalidate, proxy-revalidate and s-maxage (all
    in ``must_revalidate``: §5.2.2.2, §5.2.2.8, §5.2.2.10) or no-cache (§5.2.2.4).
    """
    return not (must_revalidate or no_cache)
