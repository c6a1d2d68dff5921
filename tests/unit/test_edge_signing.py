"""Signed URLs and cookies (proxy.edge.signing), with ``now`` injected."""

from __future__ import annotations

import base64
import logging
from urllib.parse import urlsplit

import pytest
from multidict import CIMultiDict

from proxy.edge.signing import (
    COOKIE_NAME,
    Check,
    SignedGuard,
    SigningPolicy,
    policies_by_behaviour,
    sign_cookie,
    sign_url,
    split_signed_query,
    verify_cookie,
    verify_url,
)
from proxy.http.cookies import cookie_values
from proxy.messages import EdgeRequest
from proxy.pipeline.context import RequestContext
from proxy.pipeline.runtime import build_runtime
from proxy.settings import parse_config

KEY = "a-long-enough-signing-key"
KEYS = (KEY.encode(),)
NOW = 1_700_000_000.0
LATER = int(NOW) + 3600


def parts(url: str) -> tuple[str, str]:
    split = urlsplit(url)
    return split.path, split.query


def test_signed_url_verifies_and_strips_its_parameters() -> None:
    url = sign_url("https://cdn.example/videos/a.mp4?quality=hd&lang=de", KEY, LATER)
    assert url.startswith("https://cdn.example/videos/a.mp4?quality=hd&lang=de&Expires=")
    path, query = parts(url)
    assert verify_url(KEYS, path, query, "192.0.2.1", NOW) == (Check.VALID, "quality=hd&lang=de")


def test_relative_urls_and_resigning() -> None:
    once = sign_url("/a", KEY, LATER)
    twice = sign_url(once, KEY, LATER + 1)
    assert twice.count("Signature=") == 1
    assert verify_url(KEYS, *parts(twice), "192.0.2.1", NOW)[0] is Check.VALID


def test_missing_signature_keeps_the_query() -> None:
    assert verify_url(KEYS, "/a", "x=1", "192.0.2.1", NOW) == (Check.MISSING, "x=1")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p, q: (p + "x", q),  # another path
        lambda p, q: (p, "extra=1&" + q),  # another parameter
        lambda p, q: (p, q.replace(f"Expires={LATER}", f"Expires={LATER + 1}")),  # a later expiry
        lambda p, q: (p, q[:-1] + ("A" if q[-1] != "A" else "B")),  # another signature
        lambda p, q: (p, q + "&Signature=AAAA"),  # the signature twice
        lambda p, q: (p, q.replace("Expires=", "Expires=x")),  # a malformed expiry
        lambda p, q: (p, q.replace("&Signature", "&Network=10.0.0.0%2F8&Signature")),  # a network added
    ],
)
def test_tampered_urls_are_invalid(tamper) -> None:  # type: ignore[no-untyped-def]
    path, query = tamper(*parts(sign_url("/videos/a.mp4?q=1", KEY, LATER)))
    assert verify_url(KEYS, path, query, "192.0.2.1", NOW)[0] is Check.INVALID


def test_expired_url() -> None:
    path, query = parts(sign_url("/a", KEY, int(NOW)))
    assert verify_url(KEYS, path, query, "192.0.2.1", NOW)[0] is Check.EXPIRED


def test_network_bound_url() -> None:
    url = sign_url("/a", KEY, LATER, network="192.0.2.77/24")
    assert "Network=192.0.2.0%2F24" in url
    path, query = parts(url)
    assert verify_url(KEYS, path, query, "192.0.2.1", NOW)[0] is Check.VALID
    assert verify_url(KEYS, path, query, "198.51.100.1", NOW)[0] is Check.NETWORK
    assert verify_url(KEYS, path, query, "2001:db8::1", NOW)[0] is Check.NETWORK


def test_key_rotation_any_key_verifies() -> None:
    old, new = b"old-key-0123456789", b"new-key-0123456789"
    path, query = parts(sign_url("/a", old.decode(), LATER))
    assert verify_url((new, old), path, query, "192.0.2.1", NOW)[0] is Check.VALID
    assert verify_url((new,), path, query, "192.0.2.1", NOW)[0] is Check.INVALID
    assert verify_url((), path, query, "192.0.2.1", NOW)[0] is Check.INVALID


def test_empty_keys_cannot_sign() -> None:
    with pytest.raises(ValueError):
        sign_url("/a", "", LATER)
    with pytest.raises(ValueError):
        sign_cookie("", "/", LATER)
    with pytest.raises(ValueError):
        sign_url("/a", KEY, LATER, network="not a network")


def test_split_signed_query() -> None:
    split = split_signed_query("a=1&Expires=5&b&Signature=x%2By&Network=")
    assert (split.rest, split.expires, split.signature, split.network) == ("a=1&b", "5", "x+y", "")
    assert not split_signed_query("a=1").present


def test_signed_cookie_grants_a_prefix() -> None:
    value = sign_cookie(KEY, "/videos/", LATER)
    assert verify_cookie(KEYS, value, "/videos/1/seg.ts", "192.0.2.1", NOW) is Check.VALID
    assert verify_cookie(KEYS, value, "/other", "192.0.2.1", NOW) is Check.INVALID
    assert verify_cookie(KEYS, value, "/videos/%2e%2e/admin", "192.0.2.1", NOW) is Check.INVALID
    assert verify_cookie(KEYS, value, "/videos/../admin", "192.0.2.1", NOW) is Check.INVALID
    assert verify_cookie(KEYS, value, "/videos/1", "192.0.2.1", float(LATER)) is Check.EXPIRED


def test_signed_cookie_tampering_and_network() -> None:
    value = sign_cookie(KEY, "/", LATER, network="192.0.2.0/24")
    assert verify_cookie(KEYS, value, "/a", "198.51.100.1", NOW) is Check.NETWORK
    payload, _, signature = value.partition(".")
    assert verify_cookie(KEYS, payload + "." + signature[::-1], "/a", "192.0.2.1", NOW) is Check.INVALID
    assert verify_cookie(KEYS, "garbage", "/a", "192.0.2.1", NOW) is Check.INVALID
    assert verify_cookie(KEYS, "x" * 10_000, "/a", "192.0.2.1", NOW) is Check.INVALID


def test_url_signature_is_not_a_cookie_signature() -> None:
    _, query = parts(sign_url("/", KEY, LATER))
    signature = split_signed_query(query).signature
    payload = base64.urlsafe_b64encode(f"/\n{LATER}\n".encode()).rstrip(b"=").decode()
    assert verify_cookie(KEYS, f"{payload}.{signature}", "/", "192.0.2.1", NOW) is Check.INVALID


def test_cookie_values() -> None:
    headers = ["a=1; Edge-Signed=abc", 'Edge-Signed="def"; b=2', "Edge-Signed-Other=x", "nothing"]
    assert cookie_values(headers, COOKIE_NAME) == ["abc", "def"]


YAML = """
origins: {app: {url: "http://127.0.0.1:9"}}
behaviours:
  - {path: /private/*, origin: app, signed: {key: [%s], cookies: true}}
  - {path: "*", origin: app}
"""


def _guard_and_ctx(
    keys: str, path: str, query: str = "", **headers: str
) -> tuple[SignedGuard, RequestContext]:
    cfg = parse_config(YAML % keys, "edge.yaml", env={})
    guard = SignedGuard(policies_by_behaviour(cfg))
    request = EdgeRequest("GET", path, query, CIMultiDict(headers), "192.0.2.1", "example.com")
    ctx = RequestContext(request, NOW, 0.0)
    ctx.behaviour = build_runtime(cfg).router.match(path)
    return guard, ctx


def test_guard_accepts_valid_url_and_rewrites_query() -> None:
    path, query = parts(sign_url("/private/a?x=1", KEY, LATER))
    guard, ctx = _guard_and_ctx(f'"{KEY}"', path, query)
    assert guard.check(ctx) is None
    assert ctx.request.query == "x=1"


def test_guard_refuses_missing_and_reports_reason() -> None:
    guard, ctx = _guard_and_ctx(f'"{KEY}"', "/private/a")
    verdict = guard.check(ctx)
    assert verdict is not None and (verdict.status, verdict.reason) == (403, "signature-missing")


def test_guard_accepts_cookie() -> None:
    cookie = f"{COOKIE_NAME}={sign_cookie(KEY, '/private/', LATER)}"
    guard, ctx = _guard_and_ctx(f'"{KEY}"', "/private/a", Cookie=cookie)
    assert guard.check(ctx) is None


def test_bad_url_signature_is_not_rescued_by_a_cookie() -> None:
    cookie = f"{COOKIE_NAME}={sign_cookie(KEY, '/private/', LATER)}"
    guard, ctx = _guard_and_ctx(f'"{KEY}"', "/private/a", "Expires=1&Signature=x", Cookie=cookie)
    verdict = guard.check(ctx)
    assert verdict is not None and verdict.reason == "signature-invalid"


def test_unsigned_behaviours_pass() -> None:
    guard, ctx = _guard_and_ctx(f'"{KEY}"', "/public", "Signature=whatever")
    assert guard.check(ctx) is None
    assert ctx.request.query == "Signature=whatever"


def test_empty_key_refuses_everything_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="edgeproxy.edge"):
        guard, ctx = _guard_and_ctx('""', "/private/a")
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "behaviours[0].signed.key is empty" in caplog.records[0].getMessage()
    caplog.clear()
    # Nothing gets through, whatever it carries.
    for query in ("", parts(sign_url("/private/a", "any-key-at-all", LATER))[1]):
        ctx.request.query = query
        verdict = guard.check(ctx)
        assert verdict is not None and verdict.reason == "signing-key-missing"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_unset_environment_key_is_empty() -> None:
    text = YAML % '"${URL_SIGNING_KEY}"'
    cfg = parse_config(text, "edge.yaml", env={})
    assert policies_by_behaviour(cfg)["/private/*"] == SigningPolicy((), True)


def test_short_key_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgeproxy.edge"):
        _guard_and_ctx('"short"', "/private/a")
    assert any("shorter than" in r.getMessage() for r in caplog.records)


def test_every_failed_check_is_a_block_reason() -> None:
    from proxy.http.reasons import BlockReason

    assert {BlockReason(c.value) for c in Check if c is not Check.VALID} <= set(BlockReason)
