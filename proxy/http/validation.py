"""Revalidation results: which stored response a 304 freshens and how its header section is updated.

RFC 9111 §4.3.3 / §4.3.4 / §3.2. Called by the FETCH/STORE phases when a conditional request that the edge
sent to revalidate a stored response comes back ``304 Not Modified``: first :func:`freshens` (does this
304 identify the stored response?), then :func:`update_stored_headers` (the stored header section with
the 304's fields merged in), after which the STORE rules run again on the merged fields to give the new
lifetime. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.http.conditional import strong_match, weak_match
from proxy.http.dates import parse_http_date
from proxy.http.headers import HOP_BY_HOP, parse_list_header
from proxy.http.storing import EDGE_RECOMPUTED, PROXY_SPECIFIC

__all__ = ["NEVER_UPDATED", "freshens", "update_stored_headers"]

# RFC 9111 §3.2: fields a newer response never replaces in a stored one: Content-Length (it describes the
# stored content), hop-by-hop and proxy-specific fields (not stored at all, §3.1) and what the edge
# recomputes per delivery. Lower-cased.
NEVER_UPDATED: frozenset[str] = HOP_BY_HOP | PROXY_SPECIFIC | EDGE_RECOMPUTED


def _first(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def freshens(stored: Iterable[tuple[str, str]], not_modified: Iterable[tuple[str, str]]) -> bool:
    """Whether a 304 received for the edge's own revalidation identifies the stored response (§4.3.4).

    ``stored`` is the stored response's header section, ``not_modified`` the 304's. Rules, in order:

    * the 304 carries a strong entity-tag: the stored response is selected only when its ETag matches it
      strongly (RFC 9110 §8.8.3.2) — "if none of the stored responses contain the same strong validator,
      then the cache MUST NOT use the new response to update any stored responses";
    * it carries a weak entity-tag: the stored ETag must match it weakly;
    * it carries no ETag but a Last-Modified: the stored Last-Modified must be the same instant;
    * it carries no validator at all: selected. §4.3.4 selects a validator-less stored response in that
      case; this cache also selects one that has validators, because the 304 answers a conditional request
      the edge built from that single stored response's own validators (servers often leave them out of
      304s, and refusing would turn every such revalidation into a full refetch).

    When False the caller must not use the 304 (it is about another representation): fetch the full
    response again, without validators.
    """
    stored = tuple(stored)
    not_modified = tuple(not_modified)
    etag = _first(not_modified, "etag")
    if etag is not None:
        stored_etag = _first(stored, "etag")
        tag = etag.strip()
        if tag[:2] in ("W/", "w/"):
            return weak_match(tag, stored_etag)
        return strong_match(tag, stored_etag)
    last_modified = _first(not_modified, "last-modified")
    if last_modified is not None:
        new = parse_http_date(last_modified)
        old = parse_http_date(_first(stored, "last-modified"))
        return new is not None and new == old
    return True


def update_stored_headers(
    stored: Iterable[tuple[str, str]],
    not_modified: Iterable[tuple[str, str]],
    *,
    preserve: frozenset[str] = NEVER_UPDATED,
) -> tuple[tuple[str, str], ...]:
    """The stored header section updated with the fields of a 304 (RFC 9111 §3.2, §4.3.4).

    "The cache MUST add each header field in the provided response to the stored response, replacing field
    values that are already present", except Content-Length, the fields excepted from storage (§3.1:
    hop-by-hop, those named in the 304's ``Connection``, proxy-specific ones) and what the edge recomputes:
    ``preserve`` (lower-cased names, default :data:`NEVER_UPDATED`). A field present in the 304 replaces
    all the stored lines of that name; stored fields the 304 does not mention are kept, in their order;
    new fields follow. Content-Type, Content-Encoding and the other representation metadata are updated
    too: the edge keeps the content exactly as received and runs nothing on it that depends on them (§3.2
    lets a cache that does skip them). The caller removes fields named by the merged response's qualified
    ``no-cache``/``private`` with ``proxy.http.storing.fields_to_store``.
    """
    stored = tuple(stored)
    not_modified = tuple(not_modified)
    connection = [value for name, value in not_modified if name.lower() == "connection"]
    skip = preserve | {option.lower() for option in parse_list_header(connection)}
    replaced = {name.lower() for name, _ in not_modified} - skip
    if not replaced:
        return stored
    kept = [(name, value) for name, value in stored if name.lower() not in replaced]
    kept.extend((name, value) for name, value in not_modified if name.lower() in replaced)
    return tuple(kept)
