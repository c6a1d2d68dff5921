"""The firewall: client networks (``firewall.allow`` / ``deny``) and named rules (``firewall.rules``).

Everything is compiled once at load time; per request, ``NetworkGuard`` does one O(log n) range lookup and
``RuleGuard`` evaluates the rules that apply to the matched behaviour. Evaluation is pure
(``evaluate_rules``): it takes the request's method, raw path, query and headers and returns what the rules
decide; the guards only count and answer.

Rule semantics (see docs/security.md):

- every condition given in ``match`` must hold: ``path`` and ``query`` are regular expressions searched
  (``re.search``, anchor them with ``^`` yourself) in the raw value *and* in its decoded form
  (percent-decoded, dot segments resolved, so ``/%77p-admin`` and ``/x/../wp-admin`` are seen as
  ``/wp-admin``); ``method`` is a list; ``header`` maps names to regular expressions searched in each of
  the request's values of that field (a missing field is the empty string, so ``"^$"`` matches it);
- rules run in file order; ``block`` answers 403 at once, ``allow`` skips the remaining rules, ``count``
  only counts (and the request goes on);
- a rule named in some behaviour's ``firewall.rules`` applies to those behaviours only; a rule that no
  behaviour names applies to every request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_plus

from proxy.edge.client_address import NetworkSet, parse_ip
from proxy.edge.paths import needs_normalising, normalise_path
from proxy.edge.verdicts import refuse
from proxy.http.reasons import BlockReason
from proxy.messages import GuardInput, Headers, Verdict
from proxy.settings import EdgeConfig, FirewallRule

__all__ = [
    "CompiledRule",
    "NetworkGuard",
    "RuleDecision",
    "RuleGuard",
    "compile_rule",
    "evaluate_rules",
    "rules_by_behaviour",
]

Action = Literal["block", "allow", "count"]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A ``firewall.rules`` entry with its regular expressions compiled."""

    name: str
    action: Action
    path: re.Pattern[str] | None
    query: re.Pattern[str] | None
    methods: frozenset[str]
    headers: tuple[tuple[str, re.Pattern[str]], ...]


def compile_rule(rule: FirewallRule) -> CompiledRule:
    """Compile one rule (the config model already checked that every expression compiles)."""
    match = rule.match
    return CompiledRule(
        name=rule.name,
        action=rule.action,
        path=re.compile(match.path) if match.path is not None else None,
        query=re.compile(match.query) if match.query is not None else None,
        methods=frozenset(match.method),
        headers=tuple((name, re.compile(pattern)) for name, pattern in match.header.items()),
    )


@dataclass(frozen=True, slots=True)
class RuleDecision:
    """What the rules said about one request: ``action`` of the deciding rule (``block`` or ``allow``,
    None when no rule decided), that rule's name, and the names of the ``count`` rules that matched."""

    action: Literal["block", "allow"] | None
    rule: str | None
    counted: tuple[str, ...]


_NO_DECISION = RuleDecision(None, None, ())


class _Request:
    """The parts of a request the rules look at, with the decoded forms computed at most once."""

    __slots__ = ("_decoded_path", "_decoded_query", "headers", "method", "path", "query")

    def __init__(self, method: str, path: str, query: str, headers: Headers) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self._decoded_path: str | None = None
        self._decoded_query: str | None = None

    def path_matches(self, pattern: re.Pattern[str]) -> bool:
        if pattern.search(self.path):
            return True
        if self._decoded_path is None:
            self._decoded_path = normalise_path(self.path) if needs_normalising(self.path) else self.path
        return self._decoded_path is not self.path and pattern.search(self._decoded_path) is not None

    def query_matches(self, pattern: re.Pattern[str]) -> bool:
        if pattern.search(self.query):
            return True
        if self._decoded_query is None:
            query = self.query
            decoded = query
            if "%" in query or "+" in query:
                decoded = unquote_plus(query, errors="surrogateescape")
                if "%" in decoded:  # double encoding
                    decoded = unquote_plus(decoded, errors="surrogateescape")
            self._decoded_query = decoded
        return self._decoded_query != self.query and pattern.search(self._decoded_query) is not None

    def header_matches(self, name: str, pattern: re.Pattern[str]) -> bool:
        values = self.headers.getall(name, ())
        if not values:
            return pattern.search("") is not None
        return any(pattern.search(value) for value in values)


def _matches(rule: CompiledRule, request: _Request) -> bool:
    if rule.methods and request.method not in rule.methods:
        return False
    if rule.path is not None and not request.path_matches(rule.path):
        return False
    if rule.query is not None and not request.query_matches(rule.query):
        return False
    return all(request.header_matches(name, pattern) for name, pattern in rule.headers)


def evaluate_rules(
    rules: Sequence[CompiledRule], method: str, path: str, query: str, headers: Headers
) -> RuleDecision:
    """Run ``rules`` in order against one request (pure: no clock, no I/O, never raises on any input).

    ``path`` is the raw path, ``query`` the raw query string without ``?``.
    """
    if not rules:
        return _NO_DECISION
    request = _Request(method, path, query, headers)
    counted: list[str] = []
    for rule in rules:
        if not _matches(rule, request):
            continue
        if rule.action == "count":
            counted.append(rule.name)
            continue
        return RuleDecision(rule.action, rule.name, tuple(counted))
    return RuleDecision(None, None, tuple(counted)) if counted else _NO_DECISION


def rules_by_behaviour(
    config: EdgeConfig,
) -> tuple[dict[str, tuple[CompiledRule, ...]], tuple[CompiledRule, ...]]:
    """The rules that apply to each behaviour (by its path; the first behaviour with a path wins, as in
    routing) and the edge-wide rules (those no behaviour names), each list in ``firewall.rules`` order."""
    compiled = [compile_rule(rule) for rule in config.firewall.rules]
    named: set[str] = set()
    for behaviour in config.behaviours:
        if behaviour.firewall is not None:
            named.update(behaviour.firewall.rules)
    everywhere = tuple(rule for rule in compiled if rule.name not in named)
    per_behaviour: dict[str, tuple[CompiledRule, ...]] = {}
    for behaviour in config.behaviours:
        if behaviour.path in per_behaviour:
            continue
        own = frozenset(behaviour.firewall.rules) if behaviour.firewall is not None else frozenset()
        per_behaviour[behaviour.path] = tuple(
            rule for rule in compiled if rule.name not in named or rule.name in own
        )
    return per_behaviour, everywhere


class RuleGuard:
    """RECV guard running the firewall rules that apply to the matched behaviour.

    Built by ``build_guards`` when ``firewall.rules`` is not empty. ``block`` → 403 (reason
    ``firewall-rule``); matches of every rule are counted per rule name (``stats``).
    """

    def __init__(
        self, per_behaviour: Mapping[str, tuple[CompiledRule, ...]], everywhere: tuple[CompiledRule, ...]
    ) -> None:
        self._per_behaviour = dict(per_behaviour)
        self._everywhere = everywhere
        self.matches: dict[str, int] = {}
        self.blocked = 0

    def _count(self, name: str) -> None:
        self.matches[name] = self.matches.get(name, 0) + 1

    def check(self, ctx: GuardInput) -> Verdict | None:
        """403 when a ``block`` rule matches first; None otherwise (``count`` matches are counted)."""
        behaviour = ctx.behaviour
        rules = self._everywhere
        if behaviour is not None:
            rules = self._per_behaviour.get(behaviour.path, rules)
        if not rules:
            return None
        request = ctx.request
        decision = evaluate_rules(rules, request.method, request.path, request.query, request.headers)
        for name in decision.counted:
            self._count(name)
        if decision.rule is not None:
            self._count(decision.rule)
        if decision.action == "block":
            self.blocked += 1
            return refuse(ctx, 403, BlockReason.FIREWALL_RULE)
        return None

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters: matches per rule name (any action) and requests blocked by a rule."""
        return {"rule_matches": dict(self.matches), "blocked": {"firewall-rule": self.blocked}}


class NetworkGuard:
    """RECV guard for ``firewall.deny`` (403 ``firewall-deny``) and ``firewall.allow`` (when not empty,
    any other client gets 403 ``firewall-not-allowed``). Looks at ``ctx.request.client_ip``, so it runs
    after ``ClientAddressGuard``."""

    def __init__(self, allow: NetworkSet, deny: NetworkSet) -> None:
        self.allow = allow
        self.deny = deny
        self.denied = 0
        self.not_allowed = 0

    def check(self, ctx: GuardInput) -> Verdict | None:
        """403 for a denied or not-allowed client; None otherwise."""
        address = parse_ip(ctx.request.client_ip)
        if self.deny and address in self.deny:
            self.denied += 1
            return refuse(ctx, 403, BlockReason.FIREWALL_DENY)
        if self.allow and address not in self.allow:
            self.not_allowed += 1
            return refuse(ctx, 403, BlockReason.FIREWALL_NOT_ALLOWED)
        return None

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters: requests refused by the deny list and by the allow list."""
        return {"blocked": {"firewall-deny": self.denied, "firewall-not-allowed": self.not_allowed}}
