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
    "pragma_no_cache",
]

# RFC 9111 §1.2.2: a delta-seconds value too large to represent is taken as 2^31.
DELTA_SECONDS_MAX = 2147483648
_DELTA_MAX_DIGITS = len(str(DELTA_SECONDS_MAX))

# Field values longer than this are parsed every time instead of being memoised, so that a client sending
# unique huge values cannot make the memo cache pin a lot of memory.
_MEMO_MAX_LEN = 512
_MEMO_SIZE = 1024
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class CacheControl:
    """The directives of one ``Cache-Control`` field (all its lines combined, RFC 9110 §5.3).

    Integer directives are ``None`` when absent. ``no_cache``/``private`` are the unqualified forms; the
    qualified forms (``no-cache="Set-Cookie"``) only fill ``no_cache_fields``/``private_fields`` with
    lower-cased field names. ``invalid`` is set when the first ``max-age`` or ``s-maxage`` has a value that
    is not delta-seconds; RFC 9111 §4.2.1 says such a response should be considered stale. Repeated
    ``max-age``/``s-maxage`` directives: the first occurrence is used (§4.2.1 allows it), later ones are
    ignored.
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
    """Split a field value that contains no DQUOTE: every comma separates members (RFC 9110 §5.6.1).

    RFC 9111 §5.2: ``cache-directive = token [ "=" ( token / quoted-string ) ]`` leaves no room for
    whitespace around ``=``. A member with whitespace before ``=`` is not a directive this cache knows and is
    dropped; whitespace after ``=`` is kept at the front of the argument so that :func:`_parse` can reject
    it for the directives whose value it reads as delta-seconds.
    """
    out: list[tuple[str, str | None]] = []
    for part in s.split(","):
        raw, eq, arg = part.partition("=")
        name = raw.strip(_OWS).lower()
        if not name or (eq and raw[-1:] in _OWS):
            continue
        out.append((name, arg.rstrip(_OWS) if eq else None))
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
        raw = s[i:eq]
        name = raw.strip(_OWS).lower()
        if raw[-1:] in _OWS:
            name = ""  # whitespace before "=": not a cache-directive (see _split_plain); value skipped below
        k = eq + 1
        lead = ""
        while k < n and s[k] in _OWS:
            k += 1
            lead = " "  # whitespace after "=": kept as a marker so _parse can reject the value
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
            arg = s[k:end].rstrip(_OWS)
        if name:
            out.append((name, lead + arg))
        i = end + 1
    return out


def _delta(arg: str | None) -> int | None:
    """A directive argument read as delta-seconds; ``None`` when absent or invalid. RFC 9111 §5.2 allows no
    whitespace after ``=`` (the splitters keep it as a leading marker), so ``max-age= 5`` is invalid."""
    if arg is None or arg[:1] in _OWS:
        return None
    return parse_delta_seconds(arg)


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
    seen: set[str] = set()
    for name, arg in members:
        if name == "max-age" or name == "s-maxage":
            # RFC 9111 §5.2.2.1 / §5.2.2.10 (and §5.2.1.1 for requests). §4.2.1: with several values for
            # the directive "either the first occurrence should be used or the response should be considered
            # stale"; this cache uses the first occurrence (later ones are ignored). A first occurrence
            # whose value is not delta-seconds makes the freshness information invalid: stale (§4.2.1).
            if name in seen:
                continue
            seen.add(name)
            n = _delta(arg)
            if n is None:
                invalid = True
            elif name == "max-age":
                max_age = n
            else:
                s_maxage = n
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
                swr = _delta(arg)
        elif name == "stale-if-error":
            # RFC 5861 §4; same handling.
            if sie is None:
                sie = _delta(arg)
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
                max_stale = _delta(arg)
        elif name == "min-fresh":
            if min_fresh is None:
                min_fresh = _delta(arg)  # RFC 9111 §5.2.1.3
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


def pragma_no_cache(pragma: str | Iterable[str] | None, *, cache_control_present: bool) -> bool:
    """Whether a request's ``Pragma`` asks for ``no-cache`` in a way this cache honours (RFC 9111 §5.4).

    Called by LOOKUP in plain RFC mode, for the ``pragma_no_cache`` argument of ``reuse_decision``.
    ``pragma`` is the field value or all its lines; ``cache_control_present`` says whether the request has
    a ``Cache-Control`` field at all. RFC 9111 deprecates Pragma; this cache keeps the HTTP/1.0 meaning that
    RFC 7234 §5.4 gave it: ``Pragma: no-cache`` counts as ``Cache-Control: no-cache`` only when the request
    carries no ``Cache-Control`` field. Members are compared case-insensitively as whole list members
    (``Pragma: no-cache-please`` is not ``no-cache``). Never raises.
    """
    if cache_control_present or pragma is None:
        return False
    lines = (pragma,) if isinstance(pragma, str) else pragma
    for line in lines:
        for member in line.split(","):
            if member.strip(_OWS).lower() == "no-cache":
                return True
    return False
