"""``Cache-Control`` parsing (RFC 9111 §5.2) into an immutable, shareable :class:`CacheControl`.

Called by the pipeline once per request (request directives, RFC 9111 §5.2.1) and once per origin response
(response directives, RFC 9111 §5.2.2, plus the RFC 5861 ``stale-*`` extensions). Parsing never raises: a
hostile or malformed field value gives a best-effort result, and unknown directives are ignored
(RFC 9111 §5.2.3). Identical field values repeat a lot, so parsed results of short strings are memoised in a
small bounded LRU cache; results are frozen, so sharing them is safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "DELTA_SECONDS_MAX",
    "EMPTY",
    "CacheControl",
    "parse_cache_control",
    "parse_delta_seconds",
]

# RFC 9111 §1.2.2: a delta-seconds value too large to represent is taken as 2^31.
DELTA_SECONDS_MAX = 2147483648
_DELTA_MAX_DIGITS = len(str(DELTA_SECONDS_MAX))

# Field values longer than this are parsed every time instead of being memoised, so that a client sending
# unique huge values cannot make the memo cache pin a lot of memory.
_MEMO_MAX_LEN = 512
_MEMO_SIZE = 1024


@dataclass(frozen=True, slots=True)
class CacheControl:
    """The directives of one ``Cache-Control`` field (all its lines combined, RFC 9110 §5.3).

    Integer directives are ``None`` when absent. ``no_cache``/``private`` are the unqualified forms; the
    qualified forms (``no-cache="Set-Cookie"``) only fill ``no_cache_fields``/``private_fields`` with
    lower-cased field names. ``invalid`` is set when ``max-age`` or ``s-maxage`` had an invalid value or a
    conflicting duplicate; RFC 9111 §4.2.1 says such a response should be considered stale (the first valid
    value is still kept in the field for diagnostics).
    """

    max_age: int | None = None
    s_maxage: int | None = None
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    min_fresh: int | None = None
    max_stale: int | None = None
    max_stale_any: bool = False
    no_store: bool = False
    no_cache: bool = False
    private: bool = False
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    immutable: bool = False
    no_transform: bool = False
    only_if_cached: bool = False
    no_cache_fields: tuple[str, ...] = ()
    private_fields: tuple[str, ...] = ()
    invalid: bool = False


EMPTY = CacheControl()
"""The result for an absent field (or one carrying no directive this module understands)."""


def parse_delta_seconds(value: str | None) -> int | None:
    """Parse a ``delta-seconds`` value (RFC 9111 §1.2.2); ``None`` when absent or not ``1*DIGIT``.

    Called for ``Cache-Control`` arguments and for the ``Age`` field (RFC 9111 §5.1). Surrounding
    whitespace is tolerated; signs, inner spaces and non-ASCII digits are not. Values above 2^31 are
    clamped to 2147483648 (RFC 9111 §1.2.2), which also keeps ``int()`` away from huge digit strings.
    """
    if value is None:
        return None
    v = value.strip()
    if not v or not v.isascii() or not v.isdigit():
        return None
    v = v.lstrip("0")
    if not v:
        return 0
    if len(v) > _DELTA_MAX_DIGITS:
        return DELTA_SECONDS_MAX
    n = int(v)
    return n if n < DELTA_SECONDS_MAX else DELTA_SECONDS_MAX


def _split_plain(s: str) -> list[tuple[str, str | None]]:
    """Split a field value that contains no DQUOTE: every comma separates members (RFC 9110 §5.6.1)."""
    out: list[tuple[str, str | None]] = []
    for part in s.split(","):
        name, eq, arg = part.partition("=")
        name = name.strip().lower()
        if name:
            out.append((name, arg.strip() if eq else None))
    return out


def _split_quoted(s: str) -> list[tuple[str, str | None]]:
    """Split a field value that contains DQUOTEs: commas inside quoted-strings do not separate members.

    Quoted-string arguments are unescaped (RFC 9110 §5.6.4: ``\\`` quotes the next octet). An unterminated
    quoted-string runs to the end of the value; anything between a closing quote and the next comma is
    ignored.
    """
    out: list[tuple[str, str | None]] = []
    i = 0
    n = len(s)
    while i < n:
        comma = s.find(",", i)
        eq = s.find("=", i)
        if eq == -1 or (comma != -1 and comma < eq):
            end = n if comma == -1 else comma
            name = s[i:end].strip().lower()
            if name:
                out.append((name, None))
            i = end + 1
            continue
        name = s[i:eq].strip().lower()
        k = eq + 1
        while k < n and s[k] in " \t":
            k += 1
        if k < n and s[k] == '"':
            k += 1
            chunks: list[str] = []
            while k < n:
                q = s.find('"', k)
                b = s.find("\\", k)
                if b != -1 and (q == -1 or b < q):
                    chunks.append(s[k:b])
                    if b + 1 < n:
                        chunks.append(s[b + 1])
                    k = b + 2
                    continue
                if q == -1:
                    chunks.append(s[k:])
                    k = n
                    break
                chunks.append(s[k:q])
                k = q + 1
                break
            arg: str = "".join(chunks)
            comma = s.find(",", k)
            end = n if comma == -1 else comma
        else:
            comma = s.find(",", k)
            end = n if comma == -1 else comma
            arg = s[k:end].strip()
        if name:
            out.append((name, arg))
        i = end + 1
    return out


def _field_names(arg: str) -> tuple[str, ...]:
    """The lower-cased, de-duplicated field names of a qualified ``no-cache``/``private`` argument."""
    seen: dict[str, None] = {}
    for part in arg.split(","):
        name = part.strip().lower()
        if name:
            seen[name] = None
    return tuple(seen)


def _parse(s: str) -> CacheControl:
    """Parse one (already combined) field value; see :func:`parse_cache_control`."""
    members = _split_quoted(s) if '"' in s else _split_plain(s)
    if not members:
        return EMPTY
    max_age: int | None = None
    s_maxage: int | None = None
    swr: int | None = None
    sie: int | None = None
    min_fresh: int | None = None
    max_stale: int | None = None
    max_stale_any = False
    no_store = no_cache = private = public = False
    must_revalidate = proxy_revalidate = must_understand = False
    immutable = no_transform = only_if_cached = False
    no_cache_fields: tuple[str, ...] = ()
    private_fields: tuple[str, ...] = ()
    invalid = False
    for name, arg in members:
        if name == "max-age" or name == "s-maxage":
            # RFC 9111 §5.2.2.1 / §5.2.2.10 (and §5.2.1.1 for requests). An invalid value or a conflicting
            # duplicate makes the freshness information invalid: §4.2.1 says to consider the response
            # stale; the first valid value is kept.
            n = parse_delta_seconds(arg)
            if n is None:
                invalid = True
                continue
            current = max_age if name == "max-age" else s_maxage
            if current is None:
                if name == "max-age":
                    max_age = n
                else:
                    s_maxage = n
            elif current != n:
                invalid = True
        elif name == "no-cache":
            # RFC 9111 §5.2.2.4 (response) / §5.2.1.4 (request). A qualified form with no usable field name
            # is treated as unqualified: the most restrictive reading (§4.2.1).
            fields = _field_names(arg) if arg is not None else ()
            if fields:
                no_cache_fields = tuple(dict.fromkeys(no_cache_fields + fields))
            else:
                no_cache = True
        elif name == "no-store":
            no_store = True  # RFC 9111 §5.2.1.5 / §5.2.2.5
        elif name == "private":
            # RFC 9111 §5.2.2.7: qualified form names the fields a shared cache must not store.
            fields = _field_names(arg) if arg is not None else ()
            if fields:
                private_fields = tuple(dict.fromkeys(private_fields + fields))
            else:
                private = True
        elif name == "public":
            public = True  # RFC 9111 §5.2.2.9
        elif name == "must-revalidate":
            must_revalidate = True  # RFC 9111 §5.2.2.2
        elif name == "proxy-revalidate":
            proxy_revalidate = True  # RFC 9111 §5.2.2.8
        elif name == "stale-while-revalidate":
            # RFC 5861 §3; an invalid value is ignored, the first valid one wins.
            if swr is None:
                swr = parse_delta_seconds(arg)
        elif name == "stale-if-error":
            # RFC 5861 §4; same handling.
            if sie is None:
                sie = parse_delta_seconds(arg)
        elif name == "immutable":
            immutable = True  # RFC 8246 §2
        elif name == "must-understand":
            must_understand = True  # RFC 9111 §5.2.2.3
        elif name == "no-transform":
            no_transform = True  # RFC 9111 §5.2.1.6 / §5.2.2.6
        elif name == "max-stale":
            # RFC 9111 §5.2.1.2: without a value the client accepts any staleness.
            if arg is None or not arg.strip():
                max_stale_any = True
            elif max_stale is None:
                max_stale = parse_delta_seconds(arg)
        elif name == "min-fresh":
            if min_fresh is None:
                min_fresh = parse_delta_seconds(arg)  # RFC 9111 §5.2.1.3
        elif name == "only-if-cached":
            only_if_cached = True  # RFC 9111 §5.2.1.7
        # anything else: RFC 9111 §5.2.3, unrecognised cache directives are ignored.
    cc = CacheControl(
        max_age=max_age,
        s_maxage=s_maxage,
        stale_while_revalidate=swr,
        stale_if_error=sie,
        min_fresh=min_fresh,
        max_stale=max_stale,
        max_stale_any=max_stale_any,
        no_store=no_store,
        no_cache=no_cache,
        private=private,
        public=public,
        must_revalidate=must_revalidate,
        proxy_revalidate=proxy_revalidate,
        must_understand=must_understand,
        immutable=immutable,
        no_transform=no_transform,
        only_if_cached=only_if_cached,
        no_cache_fields=no_cache_fields,
        private_fields=private_fields,
        invalid=invalid,
    )
    return EMPTY if cc == EMPTY else cc


_parse_memo = lru_cache(maxsize=_MEMO_SIZE)(_parse)


def parse_cache_control(values: str | Iterable[str] | None) -> CacheControl:
    """Parse the ``Cache-Control`` field of a request or a response; never raises.

    ``values`` is the field value, or every field line (e.g. ``headers.getall("Cache-Control", ())``),
    which are combined with ", " as RFC 9110 §5.3 allows. Directive names are case-insensitive
    (RFC 9111 §5.2), arguments may be tokens or quoted-strings (both accepted, §5.2), empty list members and
    surrounding whitespace are ignored (RFC 9110 §5.6.1). Returns :data:`EMPTY` when the field is absent or
    carries no directive this module understands (so ``cc is EMPTY`` tells "no usable Cache-Control").
    """
    if values is None:
        return EMPTY
    if isinstance(values, str):
        s = values
    else:
        lines = [v for v in values if v]
        if not lines:
            return EMPTY
        s = lines[0] if len(lines) == 1 else ", ".join(lines)
    if not s:
        return EMPTY
    if len(s) <= _MEMO_MAX_LEN:
        return _parse_memo(s)
    return _parse(s)
