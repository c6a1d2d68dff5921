"""proxy.edge.origin_request.origin_fields: what the edge sends to an origin (table-driven)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from proxy.edge.forwarding import resolve_forwarding
from proxy.edge.origin_request import origin_fields
from proxy.settings.model import CacheKeyConfig, ForwardConfig


def fields(viewer: list[tuple[str, str]], **kwargs: object) -> CIMultiDict[str]:
    options: dict[str, object] = {
        "client_ip": "192.0.2.1",
        "scheme": "https",
        "host": "www.example.test",
        "via": "1.1 edge-1",
        "device": "edge-1",
        "forwarding": None,
        "fill": False,
    }
    options.update(kwargs)
    return origin_fields(CIMultiDict(viewer), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "dropped",
    ["Connection", "Keep-Alive", "Host", "Expect", "X-Forwarded-For", "Forwarded", "Te", "X-Private"],
)
def test_hop_by_hop_host_expect_forged_forwarding_and_connection_options_are_dropped(dropped: str) -> None:
    sent = fields([("Connection", "X-Private"), (dropped, "v"), ("Accept", "*/*")])
    assert sent.get(dropped) != "v"
    assert sent["Accept"] == "*/*"


def test_the_edge_adds_its_own_forwarding_fields_via_and_surrogate_capability() -> None:
    sent = fields([("Via", "1.1 browser-proxy"), ("Surrogate-Capability", 'up="ESI/1.0"')])
    assert sent["X-Forwarded-For"] == "192.0.2.1"
    assert (sent["X-Forwarded-Proto"], sent["X-Forwarded-Host"]) == ("https", "www.example.test")
    assert sent["Via"] == "1.1 browser-proxy, 1.1 edge-1"
    assert sent["Surrogate-Capability"].startswith('up="ESI/1.0", edge-1=')


def test_a_fill_drops_viewer_conditionals_and_range_and_revalidates_with_the_stored_validators() -> None:
    viewer = [
        ("Range", "bytes=0-1"),
        ("If-None-Match", '"viewer"'),
        ("If-Modified-Since", "x"),
        ("Content-Length", "3"),
    ]
    sent = fields(viewer, fill=True, validators=('"stored"', "Mon, 01 Jan 2024 00:00:00 GMT"))
    assert "Range" not in sent and "Content-Length" not in sent
    assert sent["If-None-Match"] == '"stored"'
    assert sent["If-Modified-Since"] == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert "If-None-Match" not in fields(viewer, fill=True)  # a miss: no validators at all


def test_a_pass_through_keeps_the_viewer_conditionals() -> None:
    assert fields([("If-None-Match", '"v"')])["If-None-Match"] == '"v"'


def test_the_forward_policy_filters_what_is_left() -> None:
    forwarding = resolve_forwarding(
        ForwardConfig(headers=["Accept-Language"]), CacheKeyConfig(), has_ttl=True, compress=False
    )
    sent = fields([("Accept-Language", "fr"), ("User-Agent", "x")], forwarding=forwarding)
    assert sent["Accept-Language"] == "fr" and "User-Agent" not in sent
