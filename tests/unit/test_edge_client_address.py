"""Client address from the peer and X-Forwarded-For (proxy.edge.client_address), pure."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest
from multidict import CIMultiDict

from proxy.edge.client_address import (
    FORWARDING_HEADERS,
    MAX_FORWARDED_HOPS,
    ClientAddressGuard,
    NetworkSet,
    client_address,
    forwarded_for_hops,
    parse_ip,
)
from proxy.messages import EdgeRequest
from proxy.pipeline.context import RequestContext

TRUSTED = NetworkSet([ip_network("10.0.0.0/8"), ip_network("2001:db8::/32")])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", IPv4Address("1.2.3.4")),
        (" 1.2.3.4 ", IPv4Address("1.2.3.4")),
        ("1.2.3.4:5678", IPv4Address("1.2.3.4")),
        ("2001:db8::1", IPv6Address("2001:db8::1")),
        ("[2001:db8::1]", IPv6Address("2001:db8::1")),
        ("[2001:db8::1]:443", IPv6Address("2001:db8::1")),
        ("fe80::1%eth0", IPv6Address("fe80::1")),
        ("::ffff:1.2.3.4", IPv4Address("1.2.3.4")),
        ("", None),
        ("unknown", None),
        ("1.2.3.4:http", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("1.2.3.4.5", None),
        ("9" * 100, None),
    ],
)
def test_parse_ip(text: str, expected: object) -> None:
    assert parse_ip(text) == expected


def test_forwarded_for_hops_joins_lines_and_drops_empty() -> None:
    assert forwarded_for_hops(["1.1.1.1, 2.2.2.2", " ,3.3.3.3"]) == ["1.1.1.1", "2.2.2.2", "3.3.3.3"]


def test_forwarded_for_hops_keeps_only_the_last_hops() -> None:
    hops = [f"1.1.1.{i % 250}" for i in range(100)]
    assert forwarded_for_hops([", ".join(hops)]) == hops[-MAX_FORWARDED_HOPS:]


def test_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert client_address("203.0.113.9", ["1.1.1.1"], TRUSTED) == "203.0.113.9"


def test_trusted_peer_right_most_untrusted_hop() -> None:
    # The viewer wrote "6.6.6.6" itself; 198.51.100.7 is who connected to our proxy 10.0.0.2.
    assert client_address("10.0.0.1", ["6.6.6.6, 198.51.100.7, 10.0.0.2"], TRUSTED) == "198.51.100.7"


def test_trusted_peer_without_forwarded_for_is_the_client() -> None:
    assert client_address("10.0.0.1", [], TRUSTED) == "10.0.0.1"


def test_every_hop_trusted_gives_the_left_most() -> None:
    assert client_address("10.0.0.1", ["10.9.9.9, 10.0.0.2"], TRUSTED) == "10.9.9.9"


def test_garbage_hop_stops_at_the_last_trusted_one() -> None:
    assert client_address("10.0.0.1", ["1.1.1.1, <script>, 10.0.0.2"], TRUSTED) == "10.0.0.2"


def test_ipv6_and_mapped_addresses_are_canonical() -> None:
    assert client_address("::ffff:10.0.0.1", ["[2001:0db8::5]:80, 2a00::1"], TRUSTED) == "2a00::1"
    assert client_address("::ffff:192.0.2.1", [], TRUSTED) == "192.0.2.1"


def test_unparsable_peer_is_returned_as_is() -> None:
    assert client_address("", ["1.1.1.1"], TRUSTED) == ""


def test_network_set_membership_and_merging() -> None:
    networks = NetworkSet(
        [ip_network("192.0.2.0/25"), ip_network("192.0.2.128/25"), ip_network("192.0.2.64/26")]
    )
    assert IPv4Address("192.0.2.0") in networks
    assert IPv4Address("192.0.2.255") in networks
    assert IPv4Address("192.0.3.0") not in networks
    assert IPv4Address("192.0.1.255") not in networks
    assert IPv6Address("::1") not in networks
    assert None not in networks
    assert not NetworkSet([])


def _ctx(peer: str, headers: dict[str, str]) -> RequestContext:
    request = EdgeRequest("GET", "/", "", CIMultiDict(headers), peer, "example.com")
    return RequestContext(request, 0.0, 0.0)


def test_guard_sets_client_and_scheme_for_trusted_peer() -> None:
    guard = ClientAddressGuard(TRUSTED)
    ctx = _ctx("10.0.0.1", {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"})
    assert guard.check(ctx) is None
    assert ctx.request.client_ip == "198.51.100.7"
    assert ctx.request.scheme == "https"
    assert guard.stats() == {"client_address": {"from_forwarded_for": 1}}


def test_guard_ignores_untrusted_peer() -> None:
    guard = ClientAddressGuard(TRUSTED)
    ctx = _ctx("203.0.113.9", {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"})
    assert guard.check(ctx) is None
    assert ctx.request.client_ip == "203.0.113.9"
    assert ctx.request.scheme == "http"


def test_guard_ignores_odd_forwarded_proto() -> None:
    ctx = _ctx("10.0.0.1", {"X-Forwarded-Proto": "https, http"})
    ClientAddressGuard(TRUSTED).check(ctx)
    assert ctx.request.scheme == "http"


def test_forwarding_headers_cover_the_cache_poisoning_classics() -> None:
    names = {name.lower() for name in FORWARDING_HEADERS}
    for name in ("forwarded", "x-original-url", "x-rewrite-url", "x-forwarded-port", "x-forwarded-prefix"):
        assert name in names
