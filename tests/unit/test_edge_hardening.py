"""Request screening at the adapter (proxy.edge.hardening), pure."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.edge.hardening import Answer, HostMatcher, RequestPolicy, Target, split_host
from proxy.settings import parse_config


def screen(
    target: str = "/",
    *headers: tuple[str, str],
    method: str = "GET",
    version: tuple[int, int] = (1, 1),
    policy: RequestPolicy | None = None,
    content_length: int | None = None,
) -> Target | Answer:
    fields = headers or (("Host", "example.com"),)
    multi = CIMultiDictProxy(CIMultiDict(fields))
    raw = tuple((k.encode(), v.encode()) for k, v in fields)
    return (policy or RequestPolicy()).screen(method, target, version, multi, raw, content_length)


def status(result: Target | Answer) -> int:
    return result.status if isinstance(result, Answer) else 0


def test_origin_form_passes() -> None:
    assert screen("/a/b?x=1") == Target("/a/b", "x=1", "example.com")


@pytest.mark.parametrize("version", [(0, 9), (2, 0), (1, 2)])
def test_other_http_versions_are_refused(version: tuple[int, int]) -> None:
    assert status(screen("/", version=version)) == 505


def test_connect_is_refused() -> None:
    result = screen("example.com:443", method="CONNECT")
    assert isinstance(result, Answer) and result.status == 405 and result.close
    assert ("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS") in result.headers


def test_absolute_form_for_our_host_becomes_origin_form() -> None:
    assert screen("http://example.com/a?b=1") == Target("/a", "b=1", "example.com")
    assert screen("HTTP://EXAMPLE.COM") == Target("/", "", "example.com")


@pytest.mark.parametrize(
    "target",
    ["http://evil.example/a", "https://user@example.com/", "ftp://example.com/", "http:///a", "http://a b/"],
)
def test_absolute_form_for_other_hosts_is_refused(target: str) -> None:
    assert status(screen(target)) == 400


def test_absolute_form_with_a_host_list() -> None:
    policy = RequestPolicy(hosts=HostMatcher(["example.com", "*.cdn.example"]))
    assert screen("http://img.cdn.example/x", ("Host", "whatever"), policy=policy) == Target(
        "/x", "", "img.cdn.example"
    )
    assert status(screen("http://evil.example/x", policy=policy)) == 400


@pytest.mark.parametrize("target", ["/a#frag", "*", "a/b"])
def test_other_targets_are_refused(target: str) -> None:
    assert status(screen(target)) == 400


def test_options_asterisk_is_answered_at_the_edge() -> None:
    result = screen("*", method="OPTIONS")
    assert isinstance(result, Answer) and result.status == 200 and not result.close


def test_hosts_restrict_served_names() -> None:
    policy = RequestPolicy(hosts=HostMatcher(["example.com", "*.example.org", "api.example.net:8443"]))
    assert status(screen("/", ("Host", "example.com:8080"), policy=policy)) == 0
    assert status(screen("/", ("Host", "EXAMPLE.COM."), policy=policy)) == 0
    assert status(screen("/", ("Host", "a.b.example.org"), policy=policy)) == 0
    assert status(screen("/", ("Host", "example.org"), policy=policy)) == 421
    assert status(screen("/", ("Host", "api.example.net:8443"), policy=policy)) == 0
    assert status(screen("/", ("Host", "api.example.net"), policy=policy)) == 421
    assert status(screen("/", ("Host", "evil.example"), policy=policy)) == 421
    assert status(screen("/", ("X-Other", "1"), version=(1, 0), policy=policy)) == 421


@pytest.mark.parametrize("host", ["a b", "a/b", "a@b", "exa\tmple.com", "[::1"])
def test_malformed_host_is_refused(host: str) -> None:
    assert status(screen("/", ("Host", host))) == 400


def test_two_host_fields_are_refused() -> None:
    assert status(screen("/", ("Host", "a"), ("Host", "b"))) == 400


def test_ipv6_host() -> None:
    assert screen("/", ("Host", "[::1]:8080")) == Target("/", "", "[::1]:8080")
    assert split_host("[::1]:8080") == ("[::1]", "8080")


@pytest.mark.parametrize(
    ("headers", "version", "expected"),
    [
        ((("Transfer-Encoding", "chunked"), ("Content-Length", "5")), (1, 1), 400),
        ((("Transfer-Encoding", "chunked"),), (1, 0), 400),
        ((("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")), (1, 1), 400),
        ((("Transfer-Encoding", "gzip, chunked"),), (1, 1), 501),
        ((("Content-Length", "5"), ("Content-Length", "5")), (1, 1), 400),
        ((("Transfer-Encoding", "Chunked"),), (1, 1), 0),
        ((("Content-Length", "5"),), (1, 1), 0),
    ],
)
def test_ambiguous_framing(
    headers: tuple[tuple[str, str], ...], version: tuple[int, int], expected: int
) -> None:
    assert status(screen("/", ("Host", "example.com"), *headers, version=version)) == expected


def test_request_head_size_limit() -> None:
    policy = RequestPolicy(max_header_bytes=1024)
    assert status(screen("/", ("Host", "example.com"), ("X-A", "a" * 900), policy=policy)) == 0
    assert status(screen("/", ("Host", "example.com"), ("X-A", "a" * 1100), policy=policy)) == 431
    many = tuple(("X-" + str(i), "a" * 40) for i in range(30))
    assert status(screen("/", ("Host", "example.com"), *many, policy=policy)) == 431


def test_declared_body_size_limit() -> None:
    policy = RequestPolicy(max_body_bytes=100)
    assert status(screen("/", policy=policy, content_length=100)) == 0
    assert status(screen("/", policy=policy, content_length=101)) == 413
    assert status(screen("/", policy=RequestPolicy(max_body_bytes=0), content_length=10**12)) == 0


def test_policy_from_config() -> None:
    cfg = parse_config(
        """
server:
  hosts: [example.com]
  limits: {max_header_bytes: 8KiB, max_body_bytes: 1MiB, client_timeout: 5s}
origins: {app: {url: "http://127.0.0.1:9"}}
behaviours: [{path: "*", origin: app}]
""",
        "edge.yaml",
        env={},
    )
    policy = RequestPolicy.from_config(cfg.server)
    assert (policy.max_header_bytes, policy.max_body_bytes, policy.client_timeout) == (8192, 1 << 20, 5.0)
    assert policy.hosts is not None and policy.hosts("example.com") and not policy.hosts("other")
