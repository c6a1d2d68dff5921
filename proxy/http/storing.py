"""Which header fields of a response a shared cache keeps (RFC 9111 §3.1).

Called by the STORE phase when it builds the stored header section of an entry: :func:`fields_to_store`
drops what RFC 9111 §3.1 says must not (or need not) be stored and what the edge recomputes on every
delivery. The response forwarded to the viewer that caused the fill is not affected: only the stored copy
loses these fields. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Literal

from proxy.http.cache_control import CacheControl
from proxy.http.headers import HOP_BY_HOP, parse_list_header

__all__ = [
    "EDGE_RECOMPUTED",
    "PROXY_SPECIFIC",
    "SET_COOKIE_FIELDS",
    "CookieHandling",
    "SetCookieMode",
    "excluded_fields",
    "fields_to_store",
    "set_cookie_handling",
]

# The fields that hand a cookie to the viewer (RFC 6265 §4.1; Set-Cookie2 from the obsolete RFC 2965).
SET_COOKIE_FIELDS: frozenset[str] = frozenset({"set-cookie", "set-cookie2"})

# A behaviour's ``set_cookie`` setting.
SetCookieMode = Literal["pass", "strip", "store"]

# RFC 9111 §3.1: fields specific to the proxy a cache used MUST NOT be stored ("effectively limited to
# Proxy-Authenticate, Proxy-Authentication-Info and Proxy-Authorization"). Lower-cased.
PROXY_SPECIFIC: frozenset[str] = frozenset(
    {"proxy-authenticate", "proxy-authentication-info", "proxy-authorization"}
)

# Fields the edge writes itself on every delivery, so a stored copy would only be stale: framing
# (Content-Length, Transfer-Encoding, redone by the server adapter), Age (recomputed from the entry,
# RFC 9111 §4.2.3) and X-Cache (this edge's own). Lower-cased; the STORE phase's default.
EDGE_RECOMPUTED: frozenset[str] = frozenset({"content-length", "transfer-encoding", "age", "x-cache"})


def excluded_fields(headers: Iterable[tuple[str, str]], cc: CacheControl) -> frozenset[str]:
    """The lower-cased names of the fields of ``headers`` that a shared cache does not store.

    ``headers`` are the response's fields as (name, value) pairs, ``cc`` its parsed cache policy (the
    effective one, see ``proxy.http.targeted``). The result holds:

    * hop-by-hop fields and the fields named in ``Connection`` (RFC 9111 §3.1, RFC 9110 §7.6.1: they are
      removed before forwarding, which "MAY be implemented by doing so before storage");
    * proxy-specific fields (RFC 9111 §3.1, :data:`PROXY_SPECIFIC`);
    * the fields named by a qualified ``private="..."`` (RFC 9111 §5.2.2.7: a shared cache MUST NOT store
      them) and by a qualified ``no-cache="..."`` (§5.2.2.4: not reused without revalidation; the simplest
      way to honour it is not to keep them, §3.1 lists both directives as preventing storage of fields).
    """
    names: set[str] = set(HOP_BY_HOP) | PROXY_SPECIFIC
    connection = [value for name, value in headers if name.lower() == "connection"]
    for option in parse_list_header(connection):
        names.add(option.lower())
    names.update(cc.private_fields)
    names.update(cc.no_cache_fields)
    return frozenset(names)


def fields_to_store(
    headers: Iterable[tuple[str, str]],
    cc: CacheControl,
    *,
    drop: frozenset[str] = EDGE_RECOMPUTED,
) -> tuple[tuple[str, str], ...]:
    """The header section to keep in a cache entry: ``headers`` minus :func:`excluded_fields` and ``drop``.

    Called by STORE (and after a 304 merged new fields in, RFC 9111 §4.3.4) with the response's fields as
    (name, value) pairs in origin order; order, case and repeated lines of the kept fields are preserved.
    ``drop`` holds further lower-cased names not to store (default :data:`EDGE_RECOMPUTED`).
    """
    pairs = tuple(headers)
    excluded = excluded_fields(pairs, cc) | drop
    return tuple((name, value) for name, value in pairs if name.lower() not in excluded)


class CookieHandling(Enum):
    """What STORE does with a response, as far as its cookies go (see :func:`set_cookie_handling`)."""

    KEEP = "keep"  # store it as it is (no cookie to share, or ``store``)
    STRIP = "strip"  # store it without its Set-Cookie / Set-Cookie2 fields
    REFUSE = "refuse"  # do not store it (NotStoredReason.SET_COOKIE)


def set_cookie_handling(
    mode: SetCookieMode, headers: Iterable[tuple[str, str]], cc: CacheControl
) -> CookieHandling:
    """How a response that is otherwise storable is stored, given the behaviour's ``set_cookie`` mode.

    Called by STORE for every storable response head (fills, error pages, a 304 merged into its entry).
    ``headers`` are the response's fields, ``cc`` its effective cache policy. RFC 9111 §3 lets a shared
    cache store and replay ``Set-Cookie``; an edge that does so hands one viewer's session to the next, so
    the default (``pass``, as nginx and Varnish do) refuses to store such a response, ``strip`` stores it
    without the cookie fields and ``store`` follows RFC 9111 literally. A cookie the origin already keeps
    out of the stored copy (qualified ``private``/``no-cache`` naming it, §5.2.2.7, §5.2.2.4) does not
    count: what is stored then carries no cookie anyway.
    """
    if mode == "store":
        return CookieHandling.KEEP
    withheld = (*cc.private_fields, *cc.no_cache_fields)
    for name, _ in headers:
        lowered = name.lower()
        if lowered in SET_COOKIE_FIELDS and lowered not in withheld:
            return CookieHandling.REFUSE if mode == "pass" else CookieHandling.STRIP
    return CookieHandling.KEEP


def surrogate_keys(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The purge tags of a response, in order, each once: ``Surrogate-Key`` (space-separated, Fastly and
    Varnish) and ``Cache-Tag`` (comma-separated, Cloudflare). Called by STORE for the entry's ``tags``."""
    fields = [(name.lower(), value) for name, value in headers]
    tags: list[str] = []
    for name, value in fields:
        if name == "surrogate-key":
            tags.extend(value.split())
    for name, value in fields:
        if name == "cache-tag":
            tags.extend(t.strip() for t in value.split(",") if t.strip())
    return tuple(dict.fromkeys(tags))
