"""Property tests for the edge's parsers of viewer input: X-Forwarded-For, cookies, signatures, firewall
rule values, paths, request targets and hosts. Hostile input never raises; results keep their contracts."""

from __future__ import annotations

import ipaddress
import re
import warnings

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.edge.client_address import (
    MAX_FORWARDED_HOPS,
    NetworkSet,
    client_address,
    forwarded_for_hops,
    parse_ip,
)
from proxy.edge.firewall import CompiledRule, evaluate_rules
from proxy.edge.hardening import Answer, HostMatcher, RequestPolicy, Target
from proxy.edge.paths import normalise_path
from proxy.edge.ratelimit import TokenBucket, client_key
from proxy.edge.signing import (
    Check,
    sign_cookie,
    sign_url,
    split_signed_query,
    verify_cookie,
    verify_url,
)
from proxy.http.cookies import cookie_values

# aiohttp decodes undecodable header bytes to lone surrogates, so those are part of "arbitrary text".
_ANY_CHAR = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
_SYNTAX = st.sampled_from(list('0123456789abcdef.:[]%/,; ="&?#\\ \t-_ABCDEFSignatureExpiresNetwork'))
hostile = st.one_of(
    st.text(), st.text(alphabet=_ANY_CHAR, max_size=40), st.text(alphabet=_SYNTAX, max_size=80)
)
addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
networks = st.one_of(
    st.ip_addresses(v=4).map(lambda a: f"{a}/{a.max_prefixlen // 2}"), st.ip_addresses(v=6).map(str)
)
NOW = 1_700_000_000.0


# ----------------------------------------------------------------------------------- client address


@given(hostile)
def test_parse_ip_never_raises(text: str) -> None:
    address = parse_ip(text)
    assert address is None or isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)


@given(addresses)
def test_parse_ip_reads_every_address(text: str) -> None:
    address = parse_ip(text)
    assert address is not None
    if isinstance(address, ipaddress.IPv6Address):
        assert address.ipv4_mapped is None


@given(st.lists(hostile, max_size=5))
def test_forwarded_for_hops_never_raises(values: list[str]) -> None:
    hops = forwarded_for_hops(values)
    assert len(hops) <= MAX_FORWARDED_HOPS
    assert all(hop and hop == hop.strip() and "," not in hop for hop in hops)


@given(st.one_of(addresses, hostile), st.lists(st.one_of(addresses, hostile), max_size=6), st.booleans())
def test_client_address_is_the_peer_or_a_forwarded_hop(peer: str, hops: list[str], trust_all: bool) -> None:
    trusted = NetworkSet(
        [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")] if trust_all else []
    )
    values = [", ".join(hops)]
    client = client_address(peer, values, trusted)
    peer_ip = parse_ip(peer)
    if peer_ip is None:
        assert client == peer
        return
    if not trust_all:
        assert client == str(peer_ip)
        return
    candidates = {str(peer_ip)} | {str(a) for a in map(parse_ip, forwarded_for_hops(values)) if a is not None}
    assert client in candidates


@given(st.lists(networks, max_size=8), addresses)
def test_network_set_agrees_with_a_plain_scan(texts: list[str], text: str) -> None:
    nets = [ipaddress.ip_network(t, strict=False) for t in texts]
    address = ipaddress.ip_address(text)
    assert (address in NetworkSet(nets)) == any(address in net for net in nets)


# ----------------------------------------------------------------------------------- rate limits


@given(
    st.integers(1, 50),
    st.floats(0.01, 100),
    st.integers(1, 50),
    st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=60),
)
def test_bucket_never_grants_more_than_its_budget(
    requests: int, per: float, burst: int, times: list[float]
) -> None:
    times.sort()
    rate = requests / per
    bucket = TokenBucket(float(burst), times[0])
    granted = sum(1 for now in times if bucket.take(now, rate, float(burst)) == 0.0)
    assert granted <= burst + rate * (times[-1] - times[0]) + 1e-6


@given(st.sampled_from(["ip", "header:X-Key"]), hostile, st.one_of(st.none(), hostile))
def test_client_keys_are_bounded(by: str, client: str, value: str | None) -> None:
    assert len(client_key(by, client, value)) <= 260


# ----------------------------------------------------------------------------------- signatures

keys = st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=3)
paths = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#"), max_size=30
)


@given(keys, hostile, hostile, st.one_of(addresses, hostile))
def test_verify_url_never_raises(keys: list[bytes], path: str, query: str, client: str) -> None:
    result, rest = verify_url(keys, path, query, client, NOW)
    assert isinstance(result, Check)
    assert "Signature=" not in rest or result is Check.MISSING


@given(
    st.text(alphabet="abcdefghij0123456789-_.~", min_size=1, max_size=30),
    paths,
    st.lists(st.tuples(st.sampled_from(["a", "b", "q", "Expires", "x y"]), paths), max_size=4),
    st.integers(int(NOW) + 1, int(NOW) + 10**8),
)
def test_signed_urls_verify_and_give_back_the_rest_of_the_query(
    key: str, path: str, params: list[tuple[str, str]], expires: int
) -> None:
    query = "&".join(f"{name}={value}" for name, value in params if name != "Expires")
    url = sign_url("/" + path + ("?" + query if query else ""), key, expires)
    signed_path, _, signed_query = url.partition("?")
    result, rest = verify_url([key.encode()], signed_path, signed_query, "192.0.2.1", NOW)
    assert result is Check.VALID
    assert rest == split_signed_query(query).rest


@given(keys, hostile, hostile, st.one_of(addresses, hostile))
def test_verify_cookie_never_raises(keys: list[bytes], value: str, path: str, client: str) -> None:
    assert isinstance(verify_cookie(keys, value, path, client, NOW), Check)


@given(st.text(min_size=1, max_size=20), paths, paths)
def test_signed_cookies_cover_exactly_their_prefix(key: str, prefix: str, rest: str) -> None:
    value = sign_cookie(key, "/" + prefix, int(NOW) + 60)
    result = verify_cookie([key.encode("utf-8", "surrogatepass")], value, "/" + prefix + rest, "::1", NOW)
    resolved = normalise_path("/" + prefix + rest)
    assert (result is Check.VALID) == resolved.startswith("/" + prefix)


@given(st.lists(hostile, max_size=4), hostile)
def test_cookie_values_never_raise(headers: list[str], name: str) -> None:
    for value in cookie_values(headers, name):
        assert ";" not in value


@given(
    st.lists(
        st.tuples(
            st.text(alphabet="abcdefXYZ-_", min_size=1, max_size=8),
            st.text(alphabet="abc123-_.~/=", max_size=10),
        ),
        max_size=5,
    ),
    st.text(alphabet="abcdef", min_size=1, max_size=8),
    st.text(alphabet="abc123-_.~/=", max_size=10),
)
def test_cookie_values_find_what_was_written(pairs: list[tuple[str, str]], name: str, value: str) -> None:
    others = [(n, v) for n, v in pairs if n != name]
    header = "; ".join(f"{n}={v}" for n, v in [*others, (name, value)])
    assert cookie_values([header], name) == [value]


# ----------------------------------------------------------------------------------- firewall rules

regexes = st.one_of(
    st.sampled_from(["^/admin", "\\.php$", "<script", "(?i)sqlmap|nikto", "^$", ".*", "a{2,}"]),
    st.text(alphabet="abc^$.*+?()[]|\\", max_size=12),
)


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), regexes), st.one_of(st.none(), regexes), st.one_of(st.none(), regexes)
        ),
        max_size=4,
    ),
    hostile,
    hostile,
    hostile,
)
@settings(max_examples=200)
def test_rules_never_raise(
    specs: list[tuple[str | None, str | None, str | None]], path: str, query: str, agent: str
) -> None:
    rules = []
    for index, (path_re, query_re, header_re) in enumerate(specs):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                compiled = [re.compile(p) if p is not None else None for p in (path_re, query_re, header_re)]
        except (re.error, FutureWarning):
            assume(False)
        headers = (("User-Agent", compiled[2]),) if compiled[2] is not None else ()
        rules.append(
            CompiledRule(
                f"r{index}", "block" if index % 2 else "count", compiled[0], compiled[1], frozenset(), headers
            )
        )
    decision = evaluate_rules(rules, "GET", path, query, CIMultiDict({"User-Agent": agent}))
    assert decision.action in (None, "block")
    assert set(decision.counted) <= {rule.name for rule in rules}


# ----------------------------------------------------------------------------------- paths, targets, hosts


@given(hostile)
def test_normalised_paths_have_no_dot_segments(path: str) -> None:
    resolved = normalise_path(path)
    assert resolved.startswith("/")
    assert "//" not in resolved
    assert all(segment not in (".", "..") for segment in resolved.split("/"))


header_names = st.sampled_from(["Host", "Content-Length", "Transfer-Encoding", "X-A", "Cookie"])


@given(
    st.sampled_from(["GET", "POST", "CONNECT", "OPTIONS", "PRI"]),
    st.one_of(hostile, st.sampled_from(["/", "*", "http://a/b", "https://x@y/"])),
    st.sampled_from([(1, 1), (1, 0), (0, 9), (2, 0)]),
    st.lists(st.tuples(header_names, hostile), max_size=6),
    st.one_of(st.none(), st.integers(0, 10**12)),
    st.lists(st.text(alphabet="abc.*", min_size=1, max_size=8), max_size=3),
)
def test_screen_never_raises(
    method: str,
    target: str,
    version: tuple[int, int],
    fields: list[tuple[str, str]],
    length: int | None,
    hosts: list[str],
) -> None:
    policy = RequestPolicy(
        hosts=HostMatcher(hosts) if hosts else None, max_header_bytes=4096, max_body_bytes=1024
    )
    raw = tuple((n.encode(), v.encode("utf-8", "surrogatepass")) for n, v in fields)
    result = policy.screen(method, target, version, CIMultiDictProxy(CIMultiDict(fields)), raw, length)
    if isinstance(result, Target):
        assert result.path.startswith("/") and "#" not in result.path
        assert method != "CONNECT" and version in ((1, 1), (1, 0))
    else:
        assert isinstance(result, Answer) and 200 <= result.status < 600


@given(st.lists(st.text(max_size=12), max_size=4), hostile)
def test_host_matcher_never_raises(patterns: list[str], host: str) -> None:
    assert HostMatcher(patterns)(host) in (True, False)


# ---------------------------------------------------------------- origin request policy (forward)
_names = st.frozensets(st.sampled_from(["a", "b", "c d", "session", ""]), max_size=3)


@given(hostile, _names, st.booleans())
def test_forward_query_filter_keeps_raw_parameters_in_order(
    query: str, names: frozenset[str], keeping: bool
) -> None:
    from proxy.edge.forwarding import ALL, Forwarding, NameSet

    allowed = NameSet(names, keeping)
    result = Forwarding(headers=ALL, cookies=ALL, query=allowed).filter_query(query)
    kept = result.split("&") if result else []
    pieces = iter(query.split("&"))
    assert all(any(piece == p for p in pieces) for piece in kept)  # a subsequence of the raw pieces
    if allowed.is_all:
        assert result == query


@given(st.lists(hostile, max_size=3), _names)
def test_forward_cookie_filter_gives_only_allowed_pairs(values: list[str], names: frozenset[str]) -> None:
    from proxy.edge.forwarding import ALL, Forwarding, NameSet
    from proxy.http.cookies import raw_cookie_pairs as parse_cookie_header

    rule = Forwarding(headers=ALL, cookies=NameSet(names, True), query=ALL)
    headers: CIMultiDict[str] = CIMultiDict(("Cookie", v) for v in values)
    rule.filter_headers(headers)
    rewritten = headers.getall("Cookie", [])
    assert len(rewritten) <= 1
    for value in rewritten:
        assert value and all(name in names and name for name, _ in parse_cookie_header(value))
