"""Who the viewer is: the peer address, or what a trusted proxy in front of the edge says it is.

``client_address(peer, forwarded_for, trusted)`` is the pure rule: when the TCP peer is in
``server.trusted_proxies``, walk ``X-Forwarded-For`` from the right (the hop our proxy appended) and take
the first address that is not itself a trusted proxy; otherwise the peer is the client. A viewer that
talks to the edge directly can write anything into ``X-Forwarded-For``: it is ignored for them.
``ClientAddressGuard`` applies the rule in RECV (first of the guards, so the firewall, rate limits, geo
and signed URLs all see the real client), and is only built when ``trusted_proxies`` is set.

``FORWARDING_HEADERS`` lists the request fields a viewer could use to make an origin (or a cache key)
believe something about the request's client, scheme, host or URL; the pipeline never forwards the
viewer's values of these (it writes its own ``X-Forwarded-For/-Proto/-Host``).
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from proxy.messages import GuardInput, Verdict

__all__ = [
    "FORWARDING_HEADERS",
    "MAX_FORWARDED_HOPS",
    "METHOD_OVERRIDE_HEADERS",
    "ClientAddressGuard",
    "IPAddress",
    "NetworkSet",
    "client_address",
    "forwarded_for_hops",
    "parse_ip",
]

IPAddress = IPv4Address | IPv6Address

# Request fields that claim something about the client, scheme, host or URL of a request. A viewer's
# values are never believed and never forwarded to an origin (web cache poisoning: an origin that builds
# links or redirects from X-Forwarded-Host, or routes on X-Original-URL, would poison shared entries).
FORWARDING_HEADERS: tuple[str, ...] = (
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Server",
    "X-Forwarded-Scheme",
    "X-Forwarded-Ssl",
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Original-Host",
    "X-Host",
    "X-Real-IP",
    "X-Client-IP",
    "True-Client-IP",
    "X-Cluster-Client-IP",
    "Front-End-Https",
    "X-Url-Scheme",
)
# Fields that make some frameworks treat a GET as another method: never sent on a cache fill (a fill is a
# GET whose answer is shared with everyone), or a viewer could store a POST/DELETE answer under a GET key.
METHOD_OVERRIDE_HEADERS: tuple[str, ...] = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")

MAX_FORWARDED_HOPS = 32  # X-Forwarded-For hops looked at, from the right; older ones cannot matter more
_MAX_HOP_CHARS = 64  # longer than any address with brackets, zone and port: not an address


def parse_ip(text: str) -> IPAddress | None:
    """An address from a socket peer or an ``X-Forwarded-For`` hop, or None when it is not one.

    Accepts ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:443``; IPv6 zone ids are dropped and IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``,
    what dual-stack sockets report) become IPv4. Never raises. Memoised (bounded, short texts only): the
    same clients come back again and again, and ``ipaddress`` parsing costs microseconds.
    """
    if len(text) > _MAX_HOP_CHARS:
        text = text.strip()
        if len(text) > _MAX_HOP_CHARS:
            return None
    return _parse_ip(text)


@functools.lru_cache(maxsize=16_384)
def _parse_ip(text: str) -> IPAddress | None:
    text = text.strip()
    if not text or len(text) > _MAX_HOP_CHARS:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        rest = text[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
        text = host
    text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_for_hops(values: Iterable[str]) -> list[str]:
    """The hops of every ``X-Forwarded-For`` field line, in order (left-most first), the empty ones dropped;
    at most the last ``MAX_FORWARDED_HOPS``."""
    hops: list[str] = []
    for value in values:
        hops.extend(hop.strip() for hop in value.split(","))
    hops = [hop for hop in hops if hop]
    return hops[-MAX_FORWARDED_HOPS:]


class NetworkSet:
    """A set of IPv4/IPv6 networks answering ``address in networks`` in O(log n).

    Built once at load time from config networks (overlaps are merged). Membership is by integer ranges,
    so a list of thousands of networks costs what a handful does.
    """

    __slots__ = ("_v4_ends", "_v4_starts", "_v6_ends", "_v6_starts", "size")

    def __init__(self, networks: Iterable[IPv4Network | IPv6Network]) -> None:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        count = 0
        for network in networks:
            count += 1
            span = (int(network.network_address), int(network.broadcast_address))
            (v4 if network.version == 4 else v6).append(span)
        self.size = count
        self._v4_starts, self._v4_ends = _merged(v4)
        self._v6_starts, self._v6_ends = _merged(v6)

    def __bool__(self) -> bool:
        return self.size > 0

    def __contains__(self, address: object) -> bool:
        if isinstance(address, IPv4Address):
            starts, ends = self._v4_starts, self._v4_ends
        elif isinstance(address, IPv6Address):
            starts, ends = self._v6_starts, self._v6_ends
        else:
            return False
        value = int(address)
        index = bisect.bisect_right(starts, value) - 1
        return index >= 0 and value <= ends[index]


def _merged(spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    starts: list[int] = []
    ends: list[int] = []
    for start, end in sorted(spans):
        if ends and start <= ends[-1] + 1:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def client_address(peer: str, forwarded_for: Sequence[str], trusted: NetworkSet) -> str:
    """The viewer's address for a request from ``peer`` carrying these ``X-Forwarded-For`` field values.

    An untrusted (or unparsable) peer is the client, whatever it sent. For a trusted peer the hops are
    read right to left: the first one that is not a trusted proxy is the client; if a hop is not an
    address at all, the chain can no longer be followed and the last trusted hop reached is the answer; if
    every hop is trusted, the left-most one is. Addresses come back in canonical form (``::ffff:1.2.3.4``
    becomes ``1.2.3.4``).
    """
    current = parse_ip(peer)
    if current is None:
        return peer
    if current not in trusted:
        return str(current)
    for hop in reversed(forwarded_for_hops(forwarded_for)):
        address = parse_ip(hop)
        if address is None:
            break
        current = address
        if address not in trusted:
            break
    return str(current)


class ClientAddressGuard:
    """RECV guard setting ``ctx.request.client_ip`` (and the scheme a trusted proxy reports).

    Built by ``build_guards`` when ``server.trusted_proxies`` is set; always the first guard. For a peer
    that is a trusted proxy, ``X-Forwarded-For`` gives the client and a single ``X-Forwarded-Proto`` value
    of ``http`` or ``https`` gives the scheme. Never stops a request.
    """

    def __init__(self, trusted: NetworkSet) -> None:
        self.trusted = trusted
        self.rewritten = 0

    def check(self, ctx: GuardInput) -> Verdict | None:
        """Adjust the client address; always None."""
        request = ctx.request
        peer = parse_ip(request.client_ip)
        if peer is None or peer not in self.trusted:
            return None
        headers = request.headers
        values = headers.getall("X-Forwarded-For", ())
        if values:
            client = client_address(request.client_ip, values, self.trusted)
            if client != request.client_ip:
                request.client_ip = client
                self.rewritten += 1
        proto = headers.get("X-Forwarded-Proto")
        if proto is not None:
            scheme = proto.strip().lower()
            if scheme in ("http", "https"):
                request.scheme = scheme
        return None

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters for ``/stats`` and ``/metrics``: requests whose client came from X-Forwarded-For."""
        return {"client_address": {"from_forwarded_for": self.rewritten}}
