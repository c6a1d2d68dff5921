"""Turns the frozen config into the objects the pipeline works with, once, at start-up (and on reload).

``build_runtime(config)`` compiles each behaviour (key builder, TTL policy, method set, origin) and creates
one origin client per configured origin. Nothing reads the config model per request beyond these objects.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from proxy.cache.admission import AdmissionPolicy
from proxy.cache.keys import KeyBuilder
from proxy.edge.forwarding import Forwarding, resolve_forwarding
from proxy.edge.policies import BehaviourPolicies
from proxy.functions import DEVICE_HEADER, FunctionLoadError, FunctionSet
from proxy.http.freshness import TTLPolicy
from proxy.origin.base import Origin
from proxy.origin.group import OriginGroup
from proxy.origin.health import HealthProber, OriginHealth, probe_targets
from proxy.origin.http import HttpOrigin
from proxy.origin.static import StaticOrigin
from proxy.pipeline.hooks import BehaviourHooks
from proxy.routing import Router
from proxy.settings import BehaviourConfig, ConfigError, ConfigProblem, EdgeConfig, OriginConfig

CACHEABLE_METHODS = frozenset(("GET", "HEAD"))


@dataclass(frozen=True, slots=True)
class BehaviourRuntime:
    """A behaviour ready for requests: what RECV, HASH, LOOKUP and FETCH need, precomputed."""

    path: str
    config: BehaviourConfig
    methods: frozenset[str]
    allow: str  # the Allow header of a 405 (RFC 9110 §15.5.6)
    keys: KeyBuilder
    ttl: TTLPolicy | None
    group: OriginGroup | None  # the origins FETCH tries (a single origin is a group of one)
    policies: BehaviourPolicies | None  # redirects, rewrites, header policies, CORS, error pages
    functions: FunctionSet | None  # edge functions (None: no event pays anything)
    honour_request_cache_control: bool  # RFC 9111 §5.2.1 in plain mode; CloudFront ignores it under a ttl
    forwarding: Forwarding  # the origin request policy (``forward``), resolved against the key and ttl
    hooks: BehaviourHooks  # policies, edge functions and compression, per step of the trip
    admission: AdmissionPolicy  # what STORE keeps and for how long


def _functions(config: EdgeConfig, index: int, behaviour: BehaviourConfig) -> FunctionSet | None:
    """The behaviour's edge functions, resolved now (a missing module is a config error, not a 502 later).
    Modules are looked up on sys.path, beside the config file and in the working directory."""
    if behaviour.functions is None:
        return None
    base = os.path.dirname(os.path.abspath(config.source_file)) if config.source_file != "<origin>" else "."
    try:
        return FunctionSet.from_config(behaviour.functions, paths=(base, os.getcwd()))
    except FunctionLoadError as exc:
        problems = [
            ConfigProblem(
                config.source_file,
                0,
                0,
                f"behaviours[{index}].functions.{p.event or ''}".rstrip("."),
                p.reason,
            )
            for p in exc.problems
        ]
        raise ConfigError(problems) from exc


@dataclass(slots=True)
class Runtime:
    """Everything compiled from one config: the router over behaviours and the origin clients."""

    router: Router[BehaviourRuntime]
    origins: Mapping[str, Origin]
    health: Mapping[str, OriginHealth]
    groups: Mapping[str, OriginGroup]
    prober: HealthProber
    needs_device: bool = False  # some behaviour keys on or runs functions with Edge-Viewer-Device

    async def start(self) -> None:
        """Start the active health probes; called once the event loop runs."""
        await self.prober.start()

    async def close(self) -> None:
        """Stop the probes and release every origin's pooled connections; called on shutdown."""
        await self.prober.close()
        for origin in self.origins.values():
            await origin.close()


def make_origin(name: str, config: OriginConfig) -> Origin:
    """The origin client for ``origins.NAME``: a folder when ``root`` is set, else HTTP."""
    if config.root is not None:
        return StaticOrigin(name, config.root, config.index)
    assert config.url is not None  # guaranteed by config validation (exactly one of url/root)
    return HttpOrigin(
        name,
        config.url,
        host_header=config.host_header,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_connections=config.max_connections,
        headers=dict(config.headers),
        tls_verify=config.tls_verify,
        keepalive_timeout=config.keepalive_timeout,
    )


def build_groups(
    config: EdgeConfig, origins: Mapping[str, Origin], health: Mapping[str, OriginHealth]
) -> dict[str, OriginGroup]:
    """One group per name a behaviour may use: every origin (a group of one) and every origin group."""
    groups = {name: OriginGroup.single(origin, health[name]) for name, origin in origins.items()}
    for name, group in config.origin_groups.items():
        members = [(origins[m], health[m]) for m in group.members]
        groups[name] = OriginGroup(name, members, frozenset(group.failover_on), group.balance)
    return groups


def object_limit(config: EdgeConfig) -> int:
    """The largest object any cache tier keeps (``max_object_bytes`` of memory and the shared tier)."""
    shared = config.cache.shared
    return max(config.cache.memory.max_object_bytes, shared.max_object_bytes if shared is not None else 0)


def build_runtime(
    config: EdgeConfig, *, origin_factory: Callable[[str, OriginConfig], Origin] | None = None
) -> Runtime:
    """Compile ``config`` into a Runtime. Called once per worker at start-up and on every reload.

    ``origin_factory`` makes the origin client of each ``origins.NAME`` (``make_origin`` by default; the
    socketless pipeline tests pass scripted origins)."""
    factory = origin_factory or make_origin
    origins: dict[str, Origin] = {name: factory(name, oc) for name, oc in config.origins.items()}
    health = {name: OriginHealth.for_origin(name, oc) for name, oc in config.origins.items()}
    groups = build_groups(config, origins, health)
    behaviours = []
    for index, behaviour in enumerate(config.behaviours):
        methods = frozenset(m.upper() for m in behaviour.methods)
        ttl = None
        if behaviour.ttl is not None:
            ttl = TTLPolicy(min=behaviour.ttl.min, default=behaviour.ttl.default, max=behaviour.ttl.max)
        policies = BehaviourPolicies.from_config(
            behaviour, https_port=config.server.tls.listen.port if config.server.tls else 443
        )
        functions = _functions(config, index, behaviour)
        behaviours.append(
            BehaviourRuntime(
                path=behaviour.path,
                config=behaviour,
                methods=methods,
                allow=", ".join(sorted(methods)),
                keys=KeyBuilder(behaviour.cache_key),
                ttl=ttl,
                group=groups[behaviour.origin] if behaviour.origin is not None else None,
                policies=policies,
                functions=functions,
                honour_request_cache_control=ttl is None,
                forwarding=resolve_forwarding(
                    behaviour.forward,
                    behaviour.cache_key,
                    has_ttl=ttl is not None,
                    compress=behaviour.compress,
                ),
                hooks=BehaviourHooks.of(
                    policies, functions, compress=behaviour.compress, max_body=object_limit(config)
                ),
                admission=AdmissionPolicy(
                    ttl=ttl,
                    honour_request_cache_control=ttl is None,
                    stale_while_revalidate=behaviour.stale_while_revalidate,
                    stale_if_error=behaviour.stale_if_error,
                    error_ttl=behaviour.error_ttl,
                    set_cookie=behaviour.set_cookie,
                ),
            )
        )
    prober = HealthProber(probe_targets(config.origins, health))
    needs_device = any(
        b.functions is not None or DEVICE_HEADER.lower() in (h.lower() for h in b.config.cache_key.headers)
        for b in behaviours
    )
    return Runtime(
        router=Router(behaviours),
        origins=origins,
        health=health,
        groups=groups,
        prober=prober,
        needs_device=needs_device,
    )
