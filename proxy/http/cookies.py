"""The one ``Cookie`` request header parser (RFC 6265 §4.2.1 syntax, read leniently as §5.4 clients send it).

Used by every reader of cookies, so that all of them see the same value for a name: the cache key
(``proxy.cache.keys.KeyBuilder``), the origin request policy (``proxy.edge.forwarding``), edge functions
(``Request.cookies``, ``proxy.functions.api``) and signed cookies (``proxy.edge.signing``). Pure, never
raises.

Rules, one for everybody:
- a field value is ``name=value`` pairs separated by ``;``; the space after ``;`` may be missing, and
  whitespace (SP, HTAB) around names and values is dropped (RFC 6265 §5.2: WSP);
- the name is what precedes the first ``=`` (so a value may contain ``=``); a piece without ``=`` is a value
  with an empty name (RFC 6265bis §5.7), which no lookup by name finds; empty pieces are skipped;
- a value wrapped in one pair of DQUOTEs (RFC 6265 §4.2.1 ``cookie-value``) is seen without them: ``a="x"``
  and ``a=x`` are the same cookie value, for the key as for a function or the signer;
- several cookies with one name: iteration keeps every pair in order; lookup by name gets the first (as the
  order of the header is the client's order, RFC 6265 §5.4 point 2).
- ``,`` is no separator (RFC 6265 §4.2.2 ``cookie-string`` only uses ``;``).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["cookie_map", "cookie_pairs", "cookie_values", "raw_cookie_pairs", "unquote_cookie_value"]

_WSP = " \t"


def raw_cookie_pairs(value: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of one ``Cookie`` field value as written (values keep their DQUOTEs).

    Called by the origin request policy, which forwards the pairs it keeps exactly as the viewer sent them.
    """
    pairs: list[tuple[str, str]] = []
    for piece in value.split(";"):
        name, eq, val = piece.partition("=")
        name = name.strip(_WSP)
        if eq:
            val = val.strip(_WSP)
            if name or val:
                pairs.append((name, val))
        elif name:
            pairs.append(("", name))
    return pairs


def unquote_cookie_value(value: str) -> str:
    """``value`` without one pair of surrounding DQUOTEs (RFC 6265 §4.2.1), else unchanged."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


def cookie_pairs(value: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of one ``Cookie`` field value, in order, duplicates kept, values as
    everybody sees them (DQUOTEs removed). Called by the cache key builder."""
    pairs: list[tuple[str, str]] = []
    for name, raw in raw_cookie_pairs(value):
        val = unquote_cookie_value(raw)
        if name or val:  # a nameless '""' is as empty a piece as ';;'
            pairs.append((name, val))
    return pairs


def cookie_values(field_values: Iterable[str], name: str) -> list[str]:
    """Every value of cookie ``name`` in these ``Cookie`` field values, in order. Called by the signed
    cookie check, which accepts the request if any of them is valid."""
    found: list[str] = []
    for field_value in field_values:
        if name and name in field_value:
            found.extend(val for key, val in cookie_pairs(field_value) if key == name)
    return found


def cookie_map(field_values: Iterable[str]) -> dict[str, str]:
    """The cookies of these ``Cookie`` field values by name, the first of several with one name winning;
    nameless pieces are left out. Called by ``Request.cookies`` of edge functions."""
    cookies: dict[str, str] = {}
    for field_value in field_values:
        for key, val in cookie_pairs(field_value):
            if key:
                cookies.setdefault(key, val)
    return cookies
