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
    SET_COOKIE = "set-cookie"  # the response sets cookies and the behaviour's set_cookie is pass


class SynthReason(StrEnum):
    """Why the edge answered by itself instead of the cache or the origin."""

    METHOD_NOT_ALLOWED = "method-not-allowed"
    ORIGIN_UNREACHABLE = "origin-unreachable"  # connect failure → 502
    ORIGIN_TIMEOUT = "origin-timeout"  # timeout → 504
    LOOP = "loop-detected"  # the request already passed through this edge (Via) → 508
    FUNCTION_ERROR = "function-error"  # an edge function raised or timed out → 502


class BlockReason(StrEnum):
    """Why a request was refused or answered before any cache work: by the front's screening, a guard, a
    RECV policy or an edge function. Shown as ``detail=`` in ``Cache-Status`` and ``reason`` in the log."""

    # The front's screening (``proxy.edge.hardening``) and body limits (``proxy.server.http1.body``).
    HTTP_VERSION = "http-version"  # not HTTP/1.0 or 1.1 → 505
    CONNECT_REFUSED = "connect-refused"  # CONNECT: the edge is never a forward proxy → 405
    OPTIONS_ASTERISK = "options-asterisk"  # ``OPTIONS *`` answered by the edge → 200
    BAD_TARGET = "bad-target"  # not origin-form, absolute-form or ``*`` → 400
    FOREIGN_HOST = "foreign-host"  # absolute-form target for a host that is not ours → 400
    HEADER_TOO_LARGE = "header-too-large"  # request head above server.limits.max_header_bytes → 431
    AMBIGUOUS_FRAMING = "ambiguous-framing"  # request smuggling (RFC 9112 §6.3) → 400
    UNSUPPORTED_TRANSFER_CODING = "unsupported-transfer-coding"  # a coding other than chunked → 501
    BAD_HOST = "bad-host"  # several or a malformed Host field → 400
    MISDIRECTED = "misdirected"  # a host not in server.hosts → 421
    BODY_TOO_LARGE = "body-too-large"  # body above server.limits.max_body_bytes → 413
    CLIENT_TIMEOUT = "client-timeout"  # the body did not arrive within server.limits.client_timeout → 408
    BAD_BODY = "bad-body"  # malformed chunked body → 400
    # Guards (``proxy.edge``).
    FIREWALL_DENY = "firewall-deny"
    FIREWALL_NOT_ALLOWED = "firewall-not-allowed"
    FIREWALL_RULE = "firewall-rule"
    GEO_BLOCKED = "geo-blocked"
    AMBIGUOUS_PATH = "ambiguous-path"  # raw and decoded paths route to different behaviours → 400
    RATE_LIMITED = "rate-limited"  # → 429
    SIGNING_KEY_MISSING = "signing-key-missing"
    SIGNATURE_MISSING = "signature-missing"
    SIGNATURE_INVALID = "signature-invalid"
    SIGNATURE_EXPIRED = "signature-expired"
    SIGNATURE_NETWORK = "signature-network"
    # RECV policies, functions and upgrades (``proxy.pipeline``).
    HTTPS_ONLY = "https-only"  # viewer_protocol https-only on plain HTTP → 403
    REDIRECT_TO_HTTPS = "redirect-to-https"  # viewer_protocol redirect-to-https on plain HTTP → 301
    REDIRECT = "redirect"  # a behaviour's redirect rule
    CORS_PREFLIGHT = "cors-preflight"  # a CORS preflight answered at the edge → 204
    CORS_REFUSED = "cors-refused"  # a CORS preflight from an origin not allowed → 403
    EDGE_FUNCTION = "edge-function"  # a viewer_request function returned a response
    WEBSOCKET_DISABLED = "websocket-disabled"  # a WebSocket handshake on a behaviour without websocket → 400
