"""The origin request policy (``forward``): what of a viewer's request reaches the origin.

``resolve_forwarding`` is called once per behaviour by ``build_runtime`` (so the hit path pays nothing);
FETCH calls ``Forwarding.filter_headers`` and ``Forwarding.filter_query`` when it builds the origin request
of a miss or a pass. Pure: no I/O, no clock.

As CloudFront's origin request policy: ``headers``, ``cookies`` and ``query`` are each ``all``, ``none`` or
a list of names, and what is in the cache key is always forwarded whatever the policy says (an origin that
never saw a keyed value could not have answered per value). Defaults depend on the behaviour: with a
``ttl`` (CloudFront semantics) all headers but ``Cookie``, only the cookies in the key, the whole query;
without (RFC 9111 mode) everything. The ``Cookie`` header is governed by ``cookies`` alone; a cookie list
rewrites it to the listed pairs. Fields the edge manages itself are outside the policy: hop-by-hop fields,
``Host``, ``Via``, ``X-Forwarded-*``, ``Surrogate-Capability`` and the fill's conditionals keep their own
handling in the pipeline; the body's ``Content-Length``/``Content-Type``/``Content-Encoding``, the edge's
``Edge-Viewer-Device``/``Edge-Viewer-Country`` and, under ``compress: true``, ``Accept-Encoding`` (the
edge's coding bucket) are always sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from multidict import CIMultiDict

from proxy.cache.keys import QueryExcept, query_param_name
from proxy.http.cookies import raw_cookie_pairs

__all__ = ["ALL", "EDGE_MANAGED", "NONE", "Forwarding", "NameSet", "resolve_forwarding"]

# Request fields outside the policy: they describe the body the edge forwards, or the edge set them itself.
EDGE_MANAGED: frozenset[str] = frozenset(
    {"content-length", "content-type", "content-encoding", "edge-viewer-device", "edge-viewer-country"}
)

Setting = Literal["all", "none"] | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NameSet:
    """A set of names: those in ``names`` when ``keeping``, else every name but those.

    ``ALL`` is (nothing, not keeping), ``NONE`` is (nothing, keeping).
    """

    names: frozenset[str]
    keeping: bool

    def __contains__(self, name: object) -> bool:
        return (name in self.names) is self.keeping

    @property
    def is_all(self) -> bool:
        return not self.keeping and not self.names

    def union(self, other: NameSet) -> NameSet:
        """The names in either set."""
        if self.keeping and other.keeping:
            return NameSet(self.names | other.names, True)
        if not self.keeping and not other.keeping:
            return NameSet(self.names & other.names, False)
        kept, excepted = (self, other) if self.keeping else (other, self)
        return NameSet(excepted.names - kept.names, False)

    def describe(self) -> str:
        """``all``, ``none``, ``[a,b]`` or ``all-except[a,b]`` (names sorted)."""
        listed = ",".join(sorted(self.names))
        if self.keeping:
            return f"[{listed}]" if listed else "none"
        return f"all-except[{listed}]" if listed else "all"


ALL = NameSet(frozenset(), False)
NONE = NameSet(frozenset(), True)


class ForwardSettings(Protocol):
    """A behaviour's ``forward`` (a settings model): None for a setting the file leaves out."""

    @property
    def headers(self) -> Setting | None: ...

    @property
    def cookies(self) -> Setting | None: ...

    @property
    def query(self) -> Setting | None: ...


class KeySettings(Protocol):
    """What of a behaviour's ``cache_key`` the policy needs."""

    @property
    def query(self) -> Literal["all", "none"] | tuple[str, ...] | QueryExcept: ...

    @property
    def headers(self) -> tuple[str, ...]: ...

    @property
    def cookies(self) -> tuple[str, ...]: ...


def _names(setting: Setting | None, default: NameSet, *, lower: bool = False) -> NameSet:
    if setting is None:
        return default
    if setting == "all":
        return ALL
    if setting == "none":
        return NONE
    return NameSet(frozenset(n.lower() if lower else n for n in setting), True)


def _key_query(query: Literal["all", "none"] | tuple[str, ...] | QueryExcept) -> NameSet:
    if query == "all":
        return ALL
    if query == "none":
        return NONE
    if isinstance(query, tuple):
        return NameSet(frozenset(query), True)
    return NameSet(frozenset(query.except_), False)


@dataclass(frozen=True, slots=True)
class Forwarding:
    """A behaviour's resolved origin request policy (key items already included)."""

    headers: NameSet  # lower-cased names, besides EDGE_MANAGED (and Cookie, which ``cookies`` governs)
    cookies: NameSet
    query: NameSet  # decoded parameter names
    keep_accept_encoding: bool = False  # compress: the edge's coding bucket is always sent

    @property
    def passes_all(self) -> bool:
        """Nothing to filter: FETCH skips the policy entirely."""
        return self.headers.is_all and self.cookies.is_all and self.query.is_all

    def describe(self) -> str:
        """One line for ``edgeproxy check``: ``headers all, cookies [session], query all``."""
        headers, cookies, query = self.headers.describe(), self.cookies.describe(), self.query.describe()
        return f"headers {headers}, cookies {cookies}, query {query}"

    def filter_headers(self, headers: CIMultiDict[str]) -> None:
        """Remove from ``headers`` (the viewer's fields about to be forwarded, edited in place) what the
        policy does not forward; the Cookie header keeps only the allowed cookies (none left: removed)."""
        allowed = self.headers
        if not allowed.is_all:
            for name in {name.lower() for name in headers}:
                if name == "cookie" or name in EDGE_MANAGED or name in allowed:
                    continue
                if name == "accept-encoding" and self.keep_accept_encoding:
                    continue
                headers.popall(name, None)
        if not self.cookies.is_all and "Cookie" in headers:
            kept = self.filter_cookies(headers.popall("Cookie"))
            if kept:
                headers["Cookie"] = kept

    def filter_cookies(self, values: Iterable[str]) -> str:
        """The ``Cookie`` value made of the allowed pairs of ``values``, in order (RFC 6265 §4.2.1); empty
        when none is allowed. Pairs are read by the one Cookie parser (``proxy.http.cookies``) and
        forwarded as the viewer wrote them."""
        cookies = self.cookies
        pairs = [
            f"{name}={value}"
            for v in values
            for name, value in raw_cookie_pairs(v)
            if name and name in cookies
        ]
        return "; ".join(pairs)

    def filter_query(self, query: str) -> str:
        """The raw query (no ``?``) with only the allowed parameters, in order and encoded as received;
        empty pieces (``a&&b``) are dropped."""
        allowed = self.query
        if allowed.is_all or not query:
            return query
        return "&".join(p for p in query.split("&") if p and query_param_name(p) in allowed)


def resolve_forwarding(
    forward: ForwardSettings, key: KeySettings, *, has_ttl: bool, compress: bool = False
) -> Forwarding:
    """The policy a behaviour applies, from its ``forward``, its ``cache_key``, whether it has a ``ttl``
    (the defaults of the settings left out) and ``compress``. Called once per behaviour at load time."""
    headers = _names(forward.headers, ALL, lower=True)
    cookies = _names(forward.cookies, NONE if has_ttl else ALL)
    query = _names(forward.query, ALL)
    key_headers = frozenset(h.lower() for h in key.headers)
    if "cookie" in key_headers:
        cookies = ALL  # the whole Cookie header is part of the key
    headers = headers.union(NameSet(key_headers - {"cookie"}, True))
    cookies = cookies.union(NameSet(frozenset(key.cookies), True))
    query = query.union(_key_query(key.query))
    return Forwarding(headers=headers, cookies=cookies, query=query, keep_accept_encoding=compress)
