"""Reasons are enums whose values go straight into ``Cache-Status`` and the access log.

Called by the pipeline when it records why a request was forwarded, why a response was not stored, or why a
request was answered by the edge itself. The ``value`` of each member is the token written on the wire.
"""

from __future__ import annotations

from enum import StrEnum


class CacheResult(StrEnum):
    """What the cache did for one request; shown in ``X-Cache`` and the access log ``cache`` field."""

    HIT = "hit"
    MISS = "miss"
    REFRESH_HIT = "refresh-hit"  # stale entry revalidated with a 304 from the origin
    STALE = "stale"  # stale entry served (stale-while-revalidate / stale-if-error)
    BYPASS = "bypass"  # the request never consulted the cache
    SYNTH = "synth"  # answered by the edge itself (405, redirect, error page …)
    GENERATED = "generated"  # answered by an edge function (viewer_request returned a response)
    ERROR = "error"  # origin failed and nothing could be served


class FwdReason(StrEnum):
    """Why the request went forward to the origin (RFC 9211 §2.2 ``fwd`` parameter)."""

    BYPASS = "bypass"  # the cache was configured not to handle this request
    METHOD = "method"  # the request method is not cacheable
    URI_MISS = "uri-miss"  # no entry for the URI
    VARY_MISS = "vary-miss"  # entries for the URI, none matching the request's Vary headers
    MISS = "miss"  # the cache did not have a usable entry (generic)
    REQUEST = "request"  # the request asked for it (no-cache, max-age=0 …)
    STALE = "stale"  # the stored entry was stale and had to be revalidated or refreshed


class NotStoredReason(StrEnum):
    """Why a forwarded response was not stored; shown as ``detail=`` in ``Cache-Status``."""

    METHOD = "method"  # only GET and HEAD responses are stored
    STATUS = "status"  # status code not storable / not cacheable by default
    NO_STORE = "no-store"  # Cache-Control: no-store (response or request)
    PRIVATE = "private"  # Cache-Control: private (shared cache, RFC 9111 §5.2.2.7)
    NO_CACHE = "no-cache"  # response no-cache under a ttl policy with min 0 (CloudFront semantics)
    AUTHORIZATION = "authorization"  # request carried Authorization (RFC 9111 §3.5)
    NO_FRESHNESS = "no-freshness"  # nothing made the response fresh (no explicit lifetime, no default ttl)
    ZERO_TTL = "zero-ttl"  # the computed lifetime was zero
    TOO_LARGE = "too-large"  # body above cache.memory.max_object_bytes
    INCOMPLETE = "incomplete"  # body ended before Content-Length, or the origin failed mid-body
    VARY_STAR = "vary-star"  # Vary: * can never be matched
    PARTIAL = "partial"  # a 206 answer to a range request is not stored as the full object
    HEAD = "head"  # a HEAD answer has no body to store
    SET_COOKIE = "set-cookie"  # the response sets cookies and the behaviour's set_cookie is pass


class SynthReason(StrEnum):
    """Why the edge answered by itself instead of the cache or the origin."""

    METHOD_NOT_ALLOWED = "method-not-allowed"
    NOT_MODIFIED = "not-modified"  # viewer conditional matched a fresh entry (304)
    BAD_REQUEST = "bad-request"
    ORIGIN_UNREACHABLE = "origin-unreachable"  # connect failure → 502
    ORIGIN_TIMEOUT = "origin-timeout"  # timeout → 504
    ORIGIN_BROKEN = "origin-broken"  # malformed origin response → 502
    REDIRECT = "redirect"
    LOOP = "loop-detected"  # the request already passed through this edge (Via) → 508
    FUNCTION_ERROR = "function-error"  # an edge function raised or timed out → 502
