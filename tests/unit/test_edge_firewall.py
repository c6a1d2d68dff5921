"""Firewall networks and rules (proxy.edge.firewall), pure evaluation and the guards."""

from __future__ import annotations

from pathlib import Path

import pytest
from multidict import CIMultiDict

from proxy.edge import build_guards
from proxy.edge.client_address import NetworkSet
from proxy.edge.firewall import (
    CompiledRule,
    NetworkGuard,
    RuleDecision,
    RuleGuard,
    compile_rule,
    evaluate_rules,
    rules_by_behaviour,
)
from proxy.messages import EdgeRequest
from proxy.pipeline.context import RequestContext
from proxy.pipeline.runtime import build_runtime
from proxy.settings import ConfigError, EdgeConfig, FirewallRule, parse_config


def rule(name: str, action: str = "block", **match: object) -> CompiledRule:
    return compile_rule(FirewallRule.model_validate({"name": name, "match": match, "action": action}))


def decide(
    rules: list[CompiledRule], method: str = "GET", path: str = "/", query: str = "", **headers: str
) -> RuleDecision:
    return evaluate_rules(rules, method, path, query, CIMultiDict(headers))


def test_no_rules_no_decision() -> None:
    decision = decide([])
    assert decision.action is None and decision.counted == ()


def test_every_condition_must_hold() -> None:
    r = rule("admin-post", path="^/wp-admin", method=["POST"])
    assert decide([r], "POST", "/wp-admin/x").action == "block"
    assert decide([r], "GET", "/wp-admin/x").action is None
    assert decide([r], "POST", "/blog").action is None


def test_path_is_matched_decoded_too() -> None:
    r = rule("admin", path="^/wp-admin")
    assert decide([r], path="/%77p-admin").action == "block"
    assert decide([r], path="/blog/../wp-admin").action == "block"
    assert decide([r], path="//wp-admin").action == "block"
    assert decide([r], path="/blog/wp-admin").action is None


def test_query_is_matched_raw_and_decoded() -> None:
    r = rule("xss", query="<script")
    assert decide([r], query="q=<script>").action == "block"
    assert decide([r], query="q=%3Cscript%3E").action == "block"
    assert decide([r], query="q=%253Cscript").action == "block"
    assert decide([r], query="q=script").action is None


def test_header_regex_matches_any_value_and_missing_is_empty() -> None:
    scanners = rule("scanners", header={"User-Agent": "sqlmap|nikto"})
    assert decide([scanners], **{"User-Agent": "Mozilla sqlmap/1.0"}).action == "block"
    assert decide([scanners], **{"User-Agent": "Mozilla"}).action is None
    assert decide([scanners]).action is None
    no_agent = rule("no-agent", header={"User-Agent": "^$"})
    assert decide([no_agent]).action == "block"
    assert decide([no_agent], **{"User-Agent": "curl"}).action is None


def test_first_deciding_rule_wins_and_counts_accumulate() -> None:
    rules = [
        rule("bots", "count", header={"User-Agent": "bot"}),
        rule("office", "allow", path="^/admin", header={"X-Office": "yes"}),
        rule("admin", "block", path="^/admin"),
        rule("never", "count", path="^/admin"),
    ]
    allowed = decide(rules, path="/admin", **{"User-Agent": "bot", "X-Office": "yes"})
    assert (allowed.action, allowed.rule, allowed.counted) == ("allow", "office", ("bots",))
    blocked = decide(rules, path="/admin", **{"User-Agent": "bot"})
    assert (blocked.action, blocked.rule, blocked.counted) == ("block", "admin", ("bots",))
    counted = decide(rules, path="/blog", **{"User-Agent": "bot"})
    assert (counted.action, counted.counted) == (None, ("bots",))


YAML = """
origins: {app: {url: "http://127.0.0.1:9"}}
behaviours:
  - {path: /admin/*, origin: app, firewall: {rules: [admin-only]}}
  - {path: /api/*, origin: app}
  - {path: "*", origin: app}
firewall:
  rules:
    - {name: admin-only, match: {method: [DELETE]}}
    - {name: everywhere, match: {path: "^/.*\\\\.php$"}}
    - {name: count-bots, match: {header: {User-Agent: bot}}, action: count}
"""


def config(text: str = YAML) -> EdgeConfig:
    return parse_config(text, "edge.yaml", env={})


def test_named_rules_apply_only_to_their_behaviours() -> None:
    per_behaviour, everywhere = rules_by_behaviour(config())
    assert [r.name for r in everywhere] == ["everywhere", "count-bots"]
    assert [r.name for r in per_behaviour["/admin/*"]] == ["admin-only", "everywhere", "count-bots"]
    assert [r.name for r in per_behaviour["/api/*"]] == ["everywhere", "count-bots"]


def _ctx(cfg: EdgeConfig, method: str, path: str, **headers: str) -> RequestContext:
    router = build_runtime(cfg).router
    request = EdgeRequest(method, path, "", CIMultiDict(headers), "192.0.2.1", "example.com")
    ctx = RequestContext(request, 0.0, 0.0)
    ctx.behaviour = router.match(path)
    return ctx


def test_rule_guard_blocks_counts_and_reports() -> None:
    cfg = config()
    guard = RuleGuard(*rules_by_behaviour(cfg))
    verdict = guard.check(_ctx(cfg, "DELETE", "/admin/users"))
    assert verdict is not None and verdict.status == 403 and verdict.reason == "firewall-rule"
    request_id = verdict.headers["X-Request-Id"]
    assert len(request_id) == 16 and request_id in verdict.body
    assert guard.check(_ctx(cfg, "DELETE", "/api/users")) is None
    assert guard.check(_ctx(cfg, "GET", "/api/x", **{"User-Agent": "a bot"})) is None
    assert guard.check(_ctx(cfg, "GET", "/x.php")) is not None
    stats = guard.stats()
    assert stats["rule_matches"] == {"admin-only": 1, "count-bots": 1, "everywhere": 1}
    assert stats["blocked"] == {"firewall-rule": 2}


def test_network_guard_deny_and_allow_lists() -> None:
    from ipaddress import ip_network

    cfg = config()
    guard = NetworkGuard(
        NetworkSet([ip_network("192.0.2.0/24"), ip_network("::1/128")]),
        NetworkSet([ip_network("192.0.2.66/32")]),
    )
    ctx = _ctx(cfg, "GET", "/")
    assert guard.check(ctx) is None
    ctx.request.client_ip = "192.0.2.66"
    verdict = guard.check(ctx)
    assert verdict is not None and verdict.reason == "firewall-deny"
    ctx.request.client_ip = "198.51.100.1"
    verdict = guard.check(ctx)
    assert verdict is not None and verdict.reason == "firewall-not-allowed"
    ctx.request.client_ip = "not an address"
    assert guard.check(ctx) is not None
    assert guard.stats() == {"blocked": {"firewall-deny": 1, "firewall-not-allowed": 2}}


def test_bad_rule_regex_is_a_config_error_with_its_line() -> None:
    text = """origins: {app: {url: "http://127.0.0.1:9"}}
behaviours: [{path: "*", origin: app}]
firewall:
  rules:
    - name: broken
      match: {path: "(unclosed"}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "edge.yaml", env={})
    assert "edge.yaml:6:" in str(caught.value) and "firewall.rules[0].match.path" in str(caught.value)


def test_nothing_configured_builds_no_guards(tmp_path: Path) -> None:
    assert (
        build_guards(
            config('origins: {app: {url: "http://127.0.0.1:9"}}\nbehaviours: [{path: "*", origin: app}]')
        )
        == []
    )


def test_guards_come_in_evaluation_order() -> None:
    text = """
server: {trusted_proxies: [10.0.0.0/8]}
origins: {app: {url: "http://127.0.0.1:9"}}
behaviours:
  - {path: /private/*, origin: app, signed: {key: k}}
  - {path: "*", origin: app}
firewall:
  deny: [192.0.2.0/24]
  rate_limit: {requests: 5, per: 1s}
  rules: [{name: r, match: {method: [TRACE]}}]
"""
    names = [type(g).__name__ for g in build_guards(config(text))]
    assert names == [
        "ClientAddressGuard",
        "NetworkGuard",
        "AmbiguousPathGuard",
        "RuleGuard",
        "RateLimitGuard",
        "SignedGuard",
    ]
