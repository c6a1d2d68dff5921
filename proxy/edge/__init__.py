"""The edge's protective features: client address, firewall, rate limits, geo restriction, signed URLs.

``build_guards(config)`` returns the RECV guards (see ``proxy.messages``) for a config; called once
per runtime by ``proxy.app.Edge`` (at start-up and on reload). Only what the config asks for is built: an
edge without ``trusted_proxies``, ``firewall``, ``geoip`` or signed behaviours gets an empty list and pays
nothing per request. ``guard_stats(guards)`` adds up their counters for ``/stats`` and ``/metrics``.

Request screening at the server (open proxy, smuggling, limits) lives in ``proxy.edge.hardening`` and is
applied by the server adapter; docs/security.md describes the whole threat model.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.edge.client_address import ClientAddressGuard, NetworkSet
from proxy.edge.firewall import NetworkGuard, RuleGuard, rules_by_behaviour
from proxy.edge.ratelimit import RateLimitGuard
from proxy.edge.scope import AmbiguousPathGuard
from proxy.edge.signing import SignedGuard, policies_by_behaviour
from proxy.messages import Guard
from proxy.settings import ConfigError, ConfigProblem, EdgeConfig

__all__ = ["GuardSetupError", "build_guards", "guard_stats"]


class GuardSetupError(ConfigError, ValueError):
    """A protective feature cannot start with this config (e.g. the GeoIP database cannot be opened).

    A ``ConfigError`` (so a reload refuses the config and keeps the old one) and a ``ValueError`` (so
    ``edgeproxy serve`` prints the message and exits 2 instead of a traceback)."""

    def __init__(self, config: EdgeConfig, key_path: str, message: str) -> None:
        super().__init__([ConfigProblem(config.source_file, 0, 0, key_path, message)])


def _geo_guard(config: EdgeConfig) -> Guard | None:
    if config.geoip is None:
        return None
    from proxy.edge.geo import CountryDatabase, GeoGuard

    try:
        database = CountryDatabase(config.geoip.database)
    except ImportError:
        raise GuardSetupError(config, "geoip.database", "needs the maxminddb package") from None
    except (OSError, ValueError) as exc:
        message = f"cannot open {config.geoip.database!r} as a MaxMind database: {exc}"
        raise GuardSetupError(config, "geoip.database", message) from None
    countries = config.firewall.countries
    return GeoGuard(database, frozenset(countries.allow), frozenset(countries.deny))


def build_guards(config: EdgeConfig) -> list[Guard]:
    """The guards ``config`` asks for, in evaluation order: client address (``server.trusted_proxies``),
    geo (``geoip``: viewer country header and ``firewall.countries``), networks (``firewall.allow`` /
    ``deny``), ambiguous paths (when behaviours carry their own protection), rules (``firewall.rules``),
    rate limit (``firewall.rate_limit``), then signed URLs (``behaviours[].signed``).

    Raises ``GuardSetupError`` (a ``ConfigError``) when the GeoIP database cannot be opened.
    """
    guards: list[Guard] = []
    if config.server.trusted_proxies:
        guards.append(ClientAddressGuard(NetworkSet(config.server.trusted_proxies)))
    geo = _geo_guard(config)
    if geo is not None:
        guards.append(geo)
    firewall = config.firewall
    if firewall.allow or firewall.deny:
        guards.append(NetworkGuard(NetworkSet(firewall.allow), NetworkSet(firewall.deny)))
    per_behaviour, everywhere = rules_by_behaviour(config)
    policies = policies_by_behaviour(config)
    scoped = {path for path, rules in per_behaviour.items() if any(rule not in everywhere for rule in rules)}
    protected = scoped | set(policies)
    if protected:
        guards.append(AmbiguousPathGuard(config.behaviours, protected))
    if firewall.rules:
        guards.append(RuleGuard(per_behaviour, everywhere))
    if firewall.rate_limit is not None:
        guards.append(RateLimitGuard(firewall.rate_limit))
    if policies:
        guards.append(SignedGuard(policies))
    return guards


def guard_stats(guards: Iterable[Guard]) -> dict[str, dict[str, int]]:
    """The counters of every guard that keeps some (a ``stats()`` method), added up by group and name:
    ``blocked`` (refusals by reason token), ``rule_matches`` (by rule name), ``rate_limit`` (``clients``,
    ``evicted``), ``geo``, ``signed``, ``client_address``. For ``/stats`` and ``/metrics``."""
    total: dict[str, dict[str, int]] = {}
    for guard in guards:
        stats = getattr(guard, "stats", None)
        if stats is None:
            continue
        for group, counters in stats().items():
            into = total.setdefault(group, {})
            for name, value in counters.items():
                into[name] = into.get(name, 0) + value
    return total
