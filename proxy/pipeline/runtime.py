"""Turns the frozen config into the objects the pipeline works with, once, at start-up (and on reload).

``build_runtime(config)`` compiles each behaviour (key builder, TTL policy, method set, origin) and creates
one origin client per configured origin. Nothing reads the config model per request beyond these objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.cache.keys import KeyBuilder
from proxy.http.freshness import TTLPolicy
from proxy.origin.base import Origin
from proxy.origin.http import HttpOrigin
from proxy.origin.static import StaticOrigin
from proxy.routing import Router
from proxy.settings import BehaviourConfig, EdgeConfig, OriginConfig

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
    origin: Origin | None
    origin_name: str | None
    honour_request_cache_control: bool  # RFC 9111 §5.2.1 in plain mode; CloudFront ignores it under a ttl


@dataclass(slots=True)
class Runtime:
    """Everything compiled from one config: the router over behaviours and the origin clients."""

    router: Router[BehaviourRuntime]
    origins: Mapping[str, Origin]

    async def close(self) -> None:
        """Release every origin's pooled connections; called on shutdown and after a reload."""
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
    )


def _resolve_origin(name: str | None, config: EdgeConfig, origins: Mapping[str, Origin]) -> Origin | None:
    if name is None:
        return None
    if name in origins:
        return origins[name]
    # Origin groups act on failover (a later phase of work); until then a group is served by its first
    # member so a config that names a group still works.
    group = config.origin_groups[name]
    return origins[group.members[0]]


def build_runtime(config: EdgeConfig) -> Runtime:
    """Compile ``config`` into a Runtime. Called once per worker at start-up and on every reload."""
    origins: dict[str, Origin] = {name: make_origin(name, oc) for name, oc in config.origins.items()}
    behaviours = []
    for behaviour in config.behaviours:
        methods = frozenset(m.upper() for m in behaviour.methods)
        ttl = None
        if behaviour.ttl is not None:
            ttl = TTLPolicy(min=behaviour.ttl.min, default=behaviour.ttl.default, max=behaviour.ttl.max)
        behaviours.append(
            BehaviourRuntime(
                path=behaviour.path,
                config=behaviour,
                methods=methods,
                allow=", ".join(sorted(methods)),
                keys=KeyBuilder(behaviour.cache_key),
                ttl=ttl,
                origin=_resolve_origin(behaviour.origin, config, origins),
                origin_name=behaviour.origin,
                honour_request_cache_control=ttl is None,
            )
        )
    return Runtime(router=Router(behaviours), origins=origins)
