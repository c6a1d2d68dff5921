"""Header-field helpers: hop-by-hop removal (RFC 9110 §7.6.1) and list-based field parsing (§5.6.1).

``strip_hop_by_hop`` is called by the proxy on every request before it goes to the origin and on every
response before it is stored or sent to the viewer. ``parse_list_header`` is the generic ``#element``
splitter used for Connection, Vary and similar fields.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict

__all__ = ["CONNECTION_FIELDS", "FRAMING_FIELDS", "HOP_BY_HOP", "parse_list_header", "strip_hop_by_hop"]

# RFC 9110 §7.6.1: connection-specific fields an intermediary removes before forwarding (Connection itself,
# Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade), plus Trailer (§6.6.2 announces fields of
# this message framing). Lower-cased. Each HTTP/1.1 writer (the viewer front's ``FRAMING_FIELDS``, the
# origin client's own fields) writes these itself and never copies them from a message.
CONNECTION_FIELDS: frozenset[str] = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
# The hop-by-hop fields: the connection fields plus the proxy authentication fields, which are consumed by
# the proxy they address (RFC 9110 §11.7.1, §11.7.2). Lower-cased.
HOP_BY_HOP: frozenset[str] = CONNECTION_FIELDS | frozenset(
    {
        "proxy-authenticate",
        "proxy-authorization",
    }
)

# Fields the viewer front writes itself (framing and connection management, RFC 9112 §6 and RFC 9110
# §7.6.1): never copied from a response the pipeline built, nor from a stored entry. Lower-cased.
FRAMING_FIELDS: frozenset[str] = CONNECTION_FIELDS | {"content-length"}

# RFC 9110 §5.6.2 tchar, for checking that a Connection option names a field.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _split_quoted_list(s: str, out: list[str]) -> None:
    """Append the members of one list value containing DQUOTEs; commas inside quoted-strings do not split."""
    start = 0
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == '"':
            # skip the quoted-string (RFC 9110 §5.6.4), honouring quoted-pairs; unterminated runs to the end
            i += 1
            while i < n and s[i] != '"':
                i += 2 if s[i] == "\\" else 1
            i += 1
            continue
        if c == ",":
            member = s[start:i].strip(" \t")
            if member:
                out.append(member)
            start = i + 1
        i += 1
    member = s[start:].strip(" \t")
    if member:
        out.append(member)


def parse_list_header(values: str | Iterable[str] | None) -> list[str]:
    """Split a comma-separated list field (RFC 9110 §5.6.1) into its members; never raises.

    ``values`` is one field value or all field lines (lines are list members too, §5.3). Members are returned
    as written, minus surrounding OWS; empty members are dropped (§5.6.1 requires recipients to accept
    them); quoted-strings stay intact, so a comma inside quotes does not split. Case is left to the caller.
    """
    if values is None:
        return []
    lines = (values,) if isinstance(values, str) else values
    out: list[str] = []
    for line in lines:
        if not line:
            continue
        if '"' in line:
            _split_quoted_list(line, out)
            continue
        for part in line.split(","):
            member = part.strip(" \t")
            if member:
                out.append(member)
    return out


def strip_hop_by_hop(headers: CIMultiDict[str]) -> None:
    """Remove hop-by-hop fields from ``headers`` in place (RFC 9110 §7.6.1).

    Called on each message the proxy forwards or stores. Removes every field in :data:`HOP_BY_HOP` and every
    field named as a connection option in ``Connection`` (RFC 9110 §7.6.1: "the intermediary MUST ... remove
    any header or trailer field that is listed as a connection option"). Options that are not valid field
    names (tokens) are ignored.
    """
    connection = headers.getall("Connection", ())
    if connection:
        for option in parse_list_header(connection):
            if all(c in _TCHAR for c in option):
                headers.popall(option, None)
    for name in HOP_BY_HOP:
        if name in headers:
            del headers[name]


def via_names(via: str, name: str) -> bool:
    """Whether ``name`` is one of the received-by names in a ``Via`` field value (RFC 9110 §7.6.3).

    Called by RECV on each request that carries ``Via``: True means the request already went through this
    edge, and forwarding it again would loop (answered 508 instead).
    """
    for hop in via.split(","):
        parts = hop.split()
        if len(parts) >= 2 and parts[1] == name:
            return True
    return False
