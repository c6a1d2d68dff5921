"""Admission: whether a response head becomes a cache entry, and the entry it becomes. Pure: no I/O, the
times are passed in.

Called by STORE for every response to a cache fill (and for a 304 merged into its stored entry): the
result is either a ``CacheEntry`` with an empty body (the body is filled in once read) or the
``NotStoredReason`` that ``Cache-Status`` and the access log show. The rules themselves live in
``proxy.http`` (storability and TTL in ``freshness.decide_store``, error caching, ``Set-Cookie``, the
fields kept); this module puts them in order for one behaviour's ``AdmissionPolicy``.
"""

from __future__ import annotations

from dataclasses import dataclass

from multidict import CIMultiDict

from proxy.cache.entry import CacheEntry
from proxy.http.cache_control import parse_cache_control
from proxy.http.dates import parse_http_date
from proxy.http.error_caching import apply_error_ttl
from proxy.http.freshness import TTLPolicy, corrected_initial_age, decide_store, parse_expires
from proxy.http.headers import parse_list_header
from proxy.http.reasons import NotStoredReason
from proxy.http.storing import (
    EDGE_RECOMPUTED,
    SET_COOKIE_FIELDS,
    CookieHandling,
    SetCookieMode,
    fields_to_store,
    set_cookie_handling,
    surrogate_keys,
)
from proxy.http.targeted import effective_cache_control
from proxy.messages import Headers

# What a stored entry leaves out under set_cookie: strip.
_STRIPPED_FIELDS = EDGE_RECOMPUTED | SET_COOKIE_FIELDS
_NO_REQUEST_CC = parse_cache_control(None)


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """One behaviour's storing rules, compiled once from its config (``proxy.pipeline.runtime``)."""

    ttl: TTLPolicy | None  # the behaviour's ttl: clamps (CloudFront's policy mode); None: RFC 9111 alone
    honour_request_cache_control: bool  # RFC 9111 §5.2.1 request directives count (plain mode only)
    stale_while_revalidate: float = 0.0  # default window when the response names none (RFC 5861 §3)
    stale_if_error: float = 0.0  # default window when the response names none (RFC 5861 §4)
    error_ttl: float = 10.0  # how long an error without explicit freshness is kept
    set_cookie: SetCookieMode = "pass"


def admit(
    policy: AdmissionPolicy,
    *,
    method: str,
    request_headers: Headers,
    status: int,
    headers: CIMultiDict[str],
    request_time: float,
    response_time: float,
    device: str,
) -> tuple[CacheEntry | None, NotStoredReason | None]:
    """The entry to store for a response head (its body filled in later), or why it is not stored.

    ``device`` is this edge's name, the Surrogate-Control device token (RFC 9213 targeted fields).
    ``request_time``/``response_time`` are when the origin request left and its response arrived
    (RFC 9111 §4.2.3); the entry carries them so that its age is computed the same way in every tier.
    """
    effective = effective_cache_control(headers, device=device)
    response_cc = effective.cc
    date = parse_http_date(headers.get("Date"))
    vary = tuple(v.lower() for v in parse_list_header(headers.getall("Vary", ())))
    expires = None if effective.targeted else parse_expires(headers.get("Expires"))
    decision = decide_store(
        method=method,
        status=status,
        request_cc=parse_cache_control(request_headers.get("Cache-Control"))
        if policy.honour_request_cache_control
        else _NO_REQUEST_CC,
        response_cc=response_cc,
        request_has_authorization="Authorization" in request_headers,
        expires=expires,
        date=date if date is not None else response_time,
        last_modified=parse_http_date(headers.get("Last-Modified")),
        has_vary_star="*" in vary,
        has_etag="ETag" in headers,
        policy=policy.ttl,
        default_swr=policy.stale_while_revalidate,
        default_sie=policy.stale_if_error,
    )
    if status >= 400:
        explicit = response_cc.s_maxage is not None or response_cc.max_age is not None or expires is not None
        decision = apply_error_ttl(
            status,
            decision,
            explicit=explicit,
            policy_mode=policy.ttl is not None,
            error_ttl=policy.error_ttl,
        )
    if not decision.store:
        return None, decision.reason
    # set_cookie: a stored Set-Cookie would be replayed to every later viewer (docs/security.md).
    cookies = set_cookie_handling(policy.set_cookie, headers.items(), response_cc)
    if cookies is CookieHandling.REFUSE:
        return None, NotStoredReason.SET_COOKIE
    drop = _STRIPPED_FIELDS if cookies is CookieHandling.STRIP else EDGE_RECOMPUTED
    entry = CacheEntry(
        status=status,
        headers=fields_to_store(headers.items(), response_cc, drop=drop),
        body=b"",
        request_time=request_time,
        response_time=response_time,
        initial_age=corrected_initial_age(headers.getall("Age", ()), date, request_time, response_time),
        ttl=decision.ttl,
        stale_while_revalidate=decision.stale_while_revalidate,
        stale_if_error=decision.stale_if_error,
        must_revalidate=decision.must_revalidate,
        no_cache=decision.no_cache,
        vary=vary,
        tags=surrogate_keys(headers.items()),
    )
    return entry, None
