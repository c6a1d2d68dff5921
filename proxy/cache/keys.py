"""Cache keys: which parts of a request select a stored response.

A ``KeyBuilder`` is compiled once per behaviour when the settings load; HASH calls ``KeyBuilder.key`` on every
request, and LOOKUP/STORE call ``variant_key`` when the stored response carries ``Vary`` (RFC 9111 §4.1).

A key is readable text: ``example.com/path?a=1&b=2``, then one line per listed header (``\\nh:name=value``)
and per listed cookie (``\\nc:name=value``); a Vary variant adds ``\\nv:name=value`` lines. A header or cookie
that is absent gives its line without ``=`` (``\\nh:name``), so absent and empty never share an entry. The
separator is a line feed because no request line, header or cookie a client can send contains one.

Keys are built from the request as received: the path is the raw, percent-encoded path (normalising it is the
router's job), the query keeps the raw bytes of the parameters it keeps. Method (GET/HEAD) and scheme are not
part of the key: the caller decides what shares an entry beyond this.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from operator import methodcaller
from typing import Literal, Protocol
from urllib.parse import quote, unquote_plus

from multidict import MultiMapping

from proxy.http.cookies import cookie_pairs

__all__ = [
    "KeyBuilder",
    "KeyPolicy",
    "QueryExcept",
    "normalise_accept_language",
    "normalise_host",
    "query_param_name",
    "variant_key",
]


class QueryExcept(Protocol):
    """The ``query: {except: [...]}`` form of a key policy: every parameter except those named."""

    @property
    def except_(self) -> tuple[str, ...]: ...


class KeyPolicy(Protocol):
    """What a behaviour's key policy (a settings model) offers ``KeyBuilder``; read once, at load time."""

    @property
    def query(self) -> Literal["all", "none"] | tuple[str, ...] | QueryExcept: ...

    @property
    def headers(self) -> tuple[str, ...]: ...

    @property
    def cookies(self) -> tuple[str, ...]: ...

    @property
    def sort_query(self) -> bool: ...


_OWS = " \t"
_is_token = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch

# Host normalisation is memoised: a key is built per request, but an edge sees few distinct Host values. The
# memos (one per scheme: the default port differs) are bounded (a client can send any Host) and start over
# when full.
_HOSTS: dict[str, str] = {}
_HOSTS_HTTPS: dict[str, str] = {}
_HOSTS_MAX = 1024
# RFC 3986 host and port characters besides the always-safe ones, minus "%": anything else (a "/" above all,
# which would let "Host: a.com/x" + "/y" pose as "a.com" + "/x/y") is percent-encoded, "%" included, so two
# different Host values can only share a key by differing in letter case, a trailing dot or a default port.
_HOST_SAFE = "!$&'()*+,;=:[]"


def normalise_host(host: str, scheme: str = "http") -> str:
    """A ``Host`` value as it goes into a cache key: ``Example.COM.``, ``example.com:80`` and ``example.com``
    give the same text. Pure; called (through a memo) by ``KeyBuilder.key``.

    The name is lower-cased (RFC 3986 §6.2.2.1: host names are case-insensitive), its trailing dots dropped
    (the absolute form of a DNS name names the same host, as ``server.hosts`` matching treats it), and the
    port dropped when it is the scheme's default (``:80`` for http, ``:443`` for https) or empty (RFC 3986
    §6.2.3, RFC 9110 §4.2.3). Other ports are kept. Characters a host cannot contain are percent-encoded.
    """
    normal = host.lower()
    if normal.startswith("["):
        end = normal.find("]") + 1
        name, port = (normal[:end], normal[end:]) if end else (normal, "")
    else:
        colon = normal.find(":")
        name, port = (normal[:colon], normal[colon:]) if colon >= 0 else (normal, "")
    if name.endswith("."):
        name = name.rstrip(".")
    if port == ":" or port == (":443" if scheme == "https" else ":80"):
        port = ""
    return quote(name + port, safe=_HOST_SAFE, errors="surrogatepass")


def _normalise_host(host: str, scheme: str) -> str:
    """``normalise_host``, remembered in the scheme's bounded memo."""
    memo = _HOSTS_HTTPS if scheme == "https" else _HOSTS
    normal = normalise_host(host, scheme)
    if len(memo) >= _HOSTS_MAX:
        memo.clear()
    memo[host] = normal
    return normal


# Sort key of one parameter: ("name", "=", "value"), or ("name", "", "") for a bare name. Tuples order by
# name, then a bare name before "name=", then by value. A C-level callable: no Python frame per parameter.
_param_sort_key = methodcaller("partition", "=")


def query_param_name(param: str) -> str:
    """The name of one raw query parameter (``a%20b=1`` → ``a b``), as key and forward policies name it.

    Called by ``KeyBuilder`` and by the origin request policy (``proxy.edge.forwarding``) for each
    parameter they filter: the name is what precedes the first ``=``, percent- and ``+``-decoded.
    """
    name = param.partition("=")[0]
    if "%" in name or "+" in name:
        name = unquote_plus(name)
    return name


def _check_names(names: Iterable[str], what: str, *, lower: bool) -> tuple[str, ...]:
    checked: set[str] = set()
    for name in names:
        if not isinstance(name, str) or _is_token(name) is None:
            raise ValueError(f"cache key {what} name {name!r} is not a valid token")
        checked.add(name.lower() if lower else name)
    return tuple(sorted(checked))


# Query handling modes, fixed at compile time.
_Q_RAW = 0  # "all", unsorted: the raw query string as received
_Q_NONE = 1  # "none": no query in the key
_Q_SORT = 2  # "all", sorted
_Q_FILTER = 3  # a list of names or {except: names}, sorted or not


class KeyBuilder:
    """A behaviour's key policy compiled into a fast ``key()`` function; built once per behaviour at load."""

    __slots__ = (
        "_cookie_names",
        "_cookie_specs",
        "_header_specs",
        "_keeping",
        "_mode",
        "_names",
        "_plain",
        "_sort",
    )

    def __init__(self, policy: KeyPolicy) -> None:
        """Compile ``policy`` (a behaviour's ``cache_key``); called once per behaviour when a config is loaded
        or reloaded. Raises ValueError for a policy that cannot give unambiguous keys (an unknown query word,
        a header or cookie name that is not a token)."""
        query = policy.query
        self._sort = bool(policy.sort_query)
        # Filtering: a parameter stays when (its decoded name in _names) == _keeping.
        self._names: frozenset[str] = frozenset()
        self._keeping = False
        if isinstance(query, str):
            if query == "all":
                self._mode = _Q_SORT if self._sort else _Q_RAW
            elif query == "none":
                self._mode = _Q_NONE
            else:
                raise ValueError(
                    f"cache key query must be 'all', 'none', a list or {{except: …}}, not {query!r}"
                )
        elif isinstance(query, tuple):
            self._mode = _Q_FILTER
            self._names = frozenset(query)
            self._keeping = True
        else:
            self._mode = _Q_FILTER
            self._names = frozenset(query.except_)
        headers = _check_names(policy.headers, "header", lower=True)
        cookies = _check_names(policy.cookies, "cookie", lower=False)
        # (name to look up, line when absent, line prefix when present), in a fixed (sorted) order.
        self._header_specs = tuple((n, f"\nh:{n}", f"\nh:{n}=") for n in headers)
        self._cookie_specs = tuple((n, f"\nc:{n}", f"\nc:{n}=") for n in cookies)
        self._cookie_names = frozenset(cookies)
        self._plain = not headers and not cookies

    def key(self, host: str, path: str, query: str, headers: MultiMapping[str], scheme: str = "http") -> str:
        """Return the cache key of one request; called by HASH on every request, so it never awaits.

        ``host`` is the Host header (normalised: ``normalise_host``), ``path`` the raw path (no ``?`` in it),
        ``query`` the raw query without ``?`` (empty when none), ``headers`` the case-insensitive request
        headers (read only when the policy lists headers or cookies), ``scheme`` the request's (it only
        decides which default port is dropped from ``host``). Equal keys mean the requests may share a
        stored response (before Vary is considered).
        """
        normal_host = (_HOSTS_HTTPS if scheme == "https" else _HOSTS).get(host)
        if normal_host is None:
            normal_host = _normalise_host(host, scheme)
        mode = self._mode
        if query and mode:
            if mode == _Q_NONE:
                query = ""
            elif mode == _Q_FILTER or "&" in query:
                query = self._query(query)
        base = f"{normal_host}{path}?{query}" if query else f"{normal_host}{path}"
        if self._plain:
            return base
        return self._with_fields(base, headers)

    def _query(self, query: str) -> str:
        """The query part of the key under a filtering or sorting policy; empty pieces (``a&&b``) dropped."""
        names = self._names
        keeping = self._keeping
        if not names and not keeping:  # "all" (sorted) or {except: []}
            params = [p for p in query.split("&") if p]
        else:
            params = []
            for param in query.split("&"):
                if param and (query_param_name(param) in names) is keeping:
                    params.append(param)
        if self._sort and len(params) > 1:
            params.sort(key=_param_sort_key)
        return "&".join(params)

    def _with_fields(self, base: str, headers: MultiMapping[str]) -> str:
        """``base`` plus one line per listed header and cookie."""
        parts = [base]
        append = parts.append
        getall = headers.getall
        for name, absent, present in self._header_specs:
            values = getall(name, None)
            if values is None:
                append(absent)
            else:
                append(present)
                append(",".join(values))
        if self._cookie_specs:
            found: dict[str, list[str]] = {}
            wanted = self._cookie_names
            for header in getall("cookie", ()):
                for name, value in cookie_pairs(header):
                    if name in wanted:
                        found.setdefault(name, []).append(value)
            for name, absent, present in self._cookie_specs:
                cookie_values = found.get(name)
                if cookie_values is None:
                    append(absent)
                else:
                    for value in cookie_values:
                        append(present)
                        append(value)
        return "".join(parts)


def _normalise_field_value(values: list[str]) -> str:
    """All field lines of one header as one value: joined with ", ", whitespace around commas collapsed."""
    value = values[0] if len(values) == 1 else ", ".join(values)
    if "," in value:
        return ", ".join([item.strip(_OWS) for item in value.split(",")])
    return value.strip(_OWS)


# RFC 4647 §2.1 language-range (as RFC 9110 §12.5.4 uses it), and RFC 9110 §12.4.2 weight / qvalue.
_LANGUAGE_RANGE = re.compile(r"\*|[a-z]{1,8}(?:-[a-z0-9]{1,8})*")
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
# Bound for normalise_accept_language: a value with more list members is only whitespace-normalised (a
# hostile 8 KiB header costs one linear pass, no sort); browsers send a handful of members.
_LANGUAGE_MAX_MEMBERS = 32


def normalise_accept_language(value: str) -> str:
    """``Accept-Language`` (RFC 9110 §12.5.4) normalised for Vary matching (RFC 9111 §4.1); called by
    ``variant_key``.

    RFC 9111 §4.1 lets a cache match selecting fields after normalising them "in a way that is known to
    have identical semantics": language ranges are case-insensitive (RFC 4647 §2.1), the list is unordered
    but for the weights (RFC 9110 §12.5.4: an order among equal weights "cannot be relied upon"), and
    ``q=1``, ``q=1.000`` and no weight are the same (RFC 9110 §12.4.2). So members are lower-cased, their
    weights written in shortest form (``;q=0.5``, none for 1), sorted by descending weight then by range,
    and joined with ``", "``; empty members are skipped (RFC 9110 §5.6.1). A value with anything else (an
    invalid range or weight, another parameter) or with more than 32 list members is only
    whitespace-normalised as any other field, so two different preferences never share a variant. Never
    raises; linear in the size.
    """
    if value.count(",") >= _LANGUAGE_MAX_MEMBERS:
        return _normalise_field_value([value])
    members: list[tuple[int, str]] = []
    for item in value.split(","):
        tag, semicolon, weight = item.partition(";")
        tag = tag.strip(_OWS).lower()
        if not tag and not semicolon:
            continue  # an empty list element (RFC 9110 §5.6.1)
        thousandths = 1000
        if semicolon:
            name, equals, q = weight.strip(_OWS).partition("=")
            if name not in ("q", "Q") or not equals or _QVALUE.fullmatch(q) is None:
                return _normalise_field_value([value])
            thousandths = int(q[2:].ljust(3, "0")) if q[0] == "0" else 1000
        if _LANGUAGE_RANGE.fullmatch(tag) is None:
            return _normalise_field_value([value])
        members.append((-thousandths, tag))
    members.sort()
    return ", ".join([tag if q == -1000 else f"{tag};q={-q / 1000:g}" for q, tag in members])


def variant_key(base_key: str, vary: tuple[str, ...], headers: MultiMapping[str]) -> str:
    """The secondary key of the variant selected by ``vary`` (RFC 9111 §4.1); called by LOOKUP and STORE.

    ``vary`` holds the lower-cased field names of the stored response's Vary header (as
    ``CacheEntry.vary``), never ``*`` (the caller treats ``Vary: *`` as never matching). Returns ``base_key``
    plus, per name in sorted order, ``\\nv:name=value`` with the request's normalised value, or ``\\nv:name``
    when the request lacks the header. Two requests get the same variant key exactly when their varied
    headers normalise equally.
    """
    if not vary:
        return base_key
    names: Iterable[str] = vary if len(vary) == 1 else sorted(set(vary))
    parts = [base_key]
    append = parts.append
    getall = headers.getall
    for name in names:
        values = getall(name, None)
        append("\nv:")
        append(name)
        if values is not None:
            append("=")
            if name == "accept-language":
                append(normalise_accept_language(values[0] if len(values) == 1 else ", ".join(values)))
            else:
                append(_normalise_field_value(values))
    return "".join(parts)
