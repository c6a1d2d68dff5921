"""The fields of the request the edge sends to an origin, from the viewer's request. Pure: no I/O.

Called by FETCH once per origin tried. The viewer's end-to-end fields pass, minus the ones the edge answers
or rewrites itself (hop-by-hop, ``Host``, ``Expect``, forwarding fields a viewer could forge); the origin
request policy (``forward``) filters what is left; a cache fill drops the viewer's conditionals and
``Range`` (the edge answers them against the full response) and revalidates with the stored validators;
then the edge adds its own ``X-Forwarded-*``, ``Via`` and ``Surrogate-Capability``.
"""

from __future__ import annotations

from multidict import CIMultiDict

from proxy.edge.client_address import FORWARDING_HEADERS, METHOD_OVERRIDE_HEADERS
from proxy.edge.forwarding import Forwarding
from proxy.http.headers import HOP_BY_HOP, parse_list_header
from proxy.http.targeted import surrogate_capability
from proxy.messages import Headers

# Request fields never sent on a cache fill: the edge evaluates them itself against the full response.
FILL_DROPPED = (
    "Range",
    "If-Range",
    "If-None-Match",
    "If-Modified-Since",
    "If-Match",
    "If-Unmodified-Since",
    *METHOD_OVERRIDE_HEADERS,
    # No body goes with a fill: announcing the viewer's would make the origin wait for it (RFC 9112 §6.3).
    "Content-Length",
)
# Request fields the edge rewrites itself rather than passing on from the viewer. Forwarding headers from
# viewers are never trusted nor passed on (cache-poisoning defence, docs/security.md). Expect: 100-continue
# belongs to the viewer's hop (the front answers it); an origin that never sends 100 must not hold the
# request (RFC 9110 §10.1.1).
REQUEST_DROPPED = frozenset(h.lower() for h in (*HOP_BY_HOP, "Host", "Expect", *FORWARDING_HEADERS))


def origin_fields(
    viewer: Headers,
    *,
    client_ip: str,
    scheme: str,
    host: str,
    via: str,
    device: str,
    forwarding: Forwarding | None,
    fill: bool,
    validators: tuple[str | None, str | None] | None = None,
) -> CIMultiDict[str]:
    """The origin request's fields for a viewer request with fields ``viewer``.

    ``via`` is this edge's own ``Via`` member (``1.1 NAME``), ``device`` its name as a Surrogate-Capability
    device (RFC 9213 / Edge Architecture); ``forwarding`` the behaviour's ``forward`` policy (None or one
    that passes everything: no filtering). ``fill``: the request fills the cache, so the viewer's
    conditionals and Range go; ``validators`` (ETag, Last-Modified) of the stored entry being revalidated
    then become ``If-None-Match`` / ``If-Modified-Since`` (RFC 9111 §4.3.1).
    """
    headers: CIMultiDict[str] = CIMultiDict()
    # RFC 9110 §7.6.1: fields named in Connection are hop-by-hop too.
    connection_tokens = {t.lower() for t in parse_list_header(viewer.getall("Connection", ()))}
    for name, value in viewer.items():
        lowered = name.lower()
        if lowered in REQUEST_DROPPED or lowered in connection_tokens:
            continue
        headers.add(name, value)
    if forwarding is not None and not forwarding.passes_all:
        forwarding.filter_headers(headers)
    if fill:
        for name in FILL_DROPPED:
            headers.popall(name, None)
        if validators is not None:
            etag, last_modified = validators
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
    headers["X-Forwarded-For"] = client_ip
    headers["X-Forwarded-Proto"] = scheme
    if host:
        headers["X-Forwarded-Host"] = host
    received = viewer.get("Via")
    headers["Via"] = f"{received}, {via}" if received else via
    capability = viewer.get("Surrogate-Capability")
    mine = surrogate_capability(device)[1]
    headers["Surrogate-Capability"] = f"{capability}, {mine}" if capability else mine
    return headers
