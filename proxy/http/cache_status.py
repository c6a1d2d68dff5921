"""``Cache-Status`` response field (RFC 9211), serialised as an RFC 8941 structured-field list.

Called by DELIVER once per response: :func:`format_cache_status` builds this edge's list member and
:func:`append_cache_status` appends it to whatever the origin (or an upstream cache) already sent.
"""

from __future__ import annotations

import math

from proxy.http.reasons import FwdReason

__all__ = ["append_cache_status", "format_cache_status", "sf_string", "sf_token_or_string"]

# RFC 8941 §3.3.4: sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" ).
_TOKEN_START = frozenset("*ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~:/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# RFC 8941 §3.3.1: sf-integer has at most 15 digits.
_SF_INT_MAX = 999_999_999_999_999


def sf_string(value: str) -> str:
    """Serialise ``value`` as an sf-string (RFC 8941 §4.1.6): quoted, with ``\\`` and ``"`` escaped.

    sf-strings may only hold printable ASCII (%x20-7E); any other character cannot be represented, so it
    is percent-encoded (UTF-8) instead of failing the whole field. Never raises.
    """
    if not (value.isascii() and value.isprintable()):
        chars: list[str] = []
        for ch in value:
            if " " <= ch <= "~":
                chars.append(ch)
            else:
                chars.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
        value = "".join(chars)
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def _is_token(value: str) -> bool:
    return bool(value) and value[0] in _TOKEN_START and all(c in _TOKEN_CHARS for c in value)


def sf_token_or_string(value: str) -> str:
    """``value`` as a bare sf-token when it is one (RFC 8941 §3.3.4), else as an sf-string."""
    return value if _is_token(value) else sf_string(value)


def _sf_int(value: float) -> int:
    """Floor to an integer and clamp into the sf-integer range (RFC 8941 §3.3.1)."""
    return max(-_SF_INT_MAX, min(_SF_INT_MAX, math.floor(value)))


def format_cache_status(
    cache: str,
    *,
    hit: bool,
    fwd: FwdReason | None = None,
    fwd_status: int | None = None,
    ttl: float | None = None,
    stored: bool = False,
    collapsed: bool = False,
    key: str | None = None,
    detail: str | None = None,
) -> str:
    """This cache's ``Cache-Status`` list member (RFC 9211 §2), e.g. ``edge; fwd=uri-miss; stored``.

    ``cache`` identifies the cache (sf-token when possible, else sf-string, §2). Parameters follow in RFC 9211
    order: ``hit`` (§2.1), ``fwd`` (§2.2), ``fwd-status`` (§2.3), ``ttl`` (§2.4: remaining freshness in whole
    seconds, floored, negative when stale; omitted if not finite), ``stored`` (§2.5), ``collapsed`` (§2.6),
    ``key`` (§2.7, always an sf-string) and ``detail`` (§2.8, token when valid else string). Booleans are
    written bare (true) or omitted (false), per RFC 8941 §4.1.1.
    """
    out = [sf_token_or_string(cache)]
    if hit:
        out.append("hit")
    if fwd is not None:
        out.append(f"fwd={fwd.value}")
    if fwd_status is not None:
        out.append(f"fwd-status={_sf_int(fwd_status)}")
    if ttl is not None and math.isfinite(ttl):
        out.append(f"ttl={_sf_int(ttl)}")
    if stored:
        out.append("stored")
    if collapsed:
        out.append("collapsed")
    if key is not None:
        out.append(f"key={sf_string(key)}")
    if detail is not None:
        out.append(f"detail={sf_token_or_string(detail)}")
    return "; ".join(out)


def append_cache_status(existing: str | None, member: str) -> str:
    """The ``Cache-Status`` value to send: ``existing`` (from upstream) with ``member`` appended.

    RFC 9211 §2: each cache appends its member, so the first member is the cache closest to the origin and
    the last the one closest to the user. Blank or absent ``existing`` gives just ``member``; trailing
    commas/whitespace of ``existing`` are dropped.
    """
    if existing is None:
        return member
    prior = existing.strip().rstrip(", \t")
    return f"{prior}, {member}" if prior else member
