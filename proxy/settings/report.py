"""What a loaded config means, in plain text: the behaviour table, keys not yet acted on, warnings.

Called by ``edgeproxy check`` and at start-up (the log shows the same table). ``ACTIVE_KEYS`` lists the key
paths the edge acts on today; a key present in the file but not covered is reported by ``inactive_keys`` so
that nobody believes a setting works before it does. Extend ``ACTIVE_KEYS`` as features land.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.edge.forwarding import resolve_forwarding
from proxy.settings.model import BehaviourConfig, CacheKeyConfig, EdgeConfig, QueryExcept
from proxy.settings.units import format_duration

__all__ = ["ACTIVE_KEYS", "behaviour_table", "forwarding_lines", "inactive_keys", "warnings"]

# Key-path patterns the edge acts on. Segments are separated by dots; "*" matches any one segment (an
# origin name, a header name); "behaviours[]" is any item of the behaviours list. A pattern covers the key
# it names and every key under it (so "origins.*.headers" covers each header).
ACTIVE_KEYS: set[str] = {
    "server.listen",
    "server.name",
    "server.access_log",
    "server.access_log_format",
    "cache.memory.max_bytes",
    "cache.memory.max_object_bytes",
    "origins.*.url",
    "origins.*.root",
    "origins.*.index",
    "origins.*.connect_timeout",
    "origins.*.read_timeout",
    "origins.*.max_connections",
    "origins.*.host_header",
    "origins.*.headers",
    "behaviours[].path",
    "behaviours[].origin",
    "behaviours[].methods",
    "behaviours[].ttl.*",
    "behaviours[].cache_key.*",
    "server.workers",
    "server.tls",
    "origins.*.tls_verify",
    "origins.*.keepalive_timeout",
    "server.hosts",
    "server.limits.max_body_bytes",
    "admin",
    "cache.disk",
    "cache.shared",
    "cache.shield",
    "server.limits.max_header_bytes",
    "server.limits.client_timeout",
    "server.http3",
    "server.h2c",  # HTTP/2 (proxy.server.http2) and its limits
    "server.limits.max_concurrent_streams",
    "server.limits.max_header_list_size",
    "server.limits.hpack_table_size",
    "server.limits.max_stream_resets",
    "server.limits.max_control_frames",
    "server.limits.flood_window",
    "server.limits.idle_timeout",
    "server.limits.send_timeout",
    "cache.collapse",
    "cache.status_key",
    "origins.*.health",
    "origin_groups",
    "behaviours[].stale_while_revalidate",
    "behaviours[].stale_if_error",
    "behaviours[].error_ttl",
    "behaviours[].error_pages",
    "behaviours[].viewer_protocol",
    "behaviours[].redirect",
    "behaviours[].rewrite",
    "behaviours[].request_headers",
    "behaviours[].response_headers",
    "behaviours[].cors",
    "behaviours[].functions",
    "behaviours[].compress",
    "behaviours[].set_cookie",
    "behaviours[].forward",
    # The edge as a firewall (proxy.edge): client address, networks, rules, rate limit, geo, signed URLs.
    "server.trusted_proxies",
    "firewall",
    "geoip",
    "behaviours[].signed",
    "behaviours[].firewall",
    "behaviours[].websocket",
}


def _matches(pattern: Sequence[str], path: Sequence[str]) -> bool:
    """Segment-wise match; ``"behaviours[]"`` in a pattern also matches the list key ``"behaviours"``."""
    return len(pattern) == len(path) and all(
        p in ("*", k, k + "[]") for p, k in zip(pattern, path, strict=True)
    )


def inactive_keys(cfg: EdgeConfig) -> list[str]:
    """Key paths present in ``cfg``'s file that the edge does not act on yet, in file order.

    A key counts as active when an ``ACTIVE_KEYS`` pattern names it or one of its parents; a section with
    active keys inside (``server`` for ``server.listen``) is not reported itself. For an inactive section
    only the section is listed, not each key under it. Empty for a config without a file.
    """
    patterns = [tuple(pattern.split(".")) for pattern in ACTIVE_KEYS]
    paths = cfg.source_key_paths or tuple(tuple(key.split(".")) for key in sorted(cfg.source_keys))

    def covered(path: tuple[str, ...]) -> bool:
        return any(len(p) <= len(path) and _matches(p, path[: len(p)]) for p in patterns)

    def container(path: tuple[str, ...]) -> bool:
        return any(len(p) > len(path) and _matches(p[: len(path)], path) for p in patterns)

    inactive: list[str] = []
    for path in paths:
        if covered(path) or container(path):
            continue
        if len(path) == 1 or container(path[:-1]):
            inactive.append(".".join(path))
    return list(dict.fromkeys(inactive))


def warnings(cfg: EdgeConfig) -> list[str]:
    """Warnings found while loading ``cfg`` (unset environment variables and the like), ready to print."""
    return list(cfg.warnings)


def behaviour_table(cfg: EdgeConfig) -> str:
    """The behaviours of ``cfg`` as a plain-text table, in matching order (the first match wins).

    Columns: ``#`` (the index used in error messages), path, origin (or what answers instead), methods,
    TTL ``min/default/max`` (or ``origin (RFC 9111)`` when the behaviour sets no ttl) and a cache key
    summary such as ``host+path+query(all,sorted)+headers[Accept-Language]+cookies[session]``.
    """
    header = ("#", "path", "origin", "methods", "TTL min/default/max", "cache key")
    rows = [header] + [
        (
            str(index),
            behaviour.path,
            _origin_cell(behaviour),
            ",".join(behaviour.methods),
            _ttl_cell(behaviour),
            cache_key_summary(behaviour.cache_key),
        )
        for index, behaviour in enumerate(cfg.behaviours)
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def forwarding_lines(cfg: EdgeConfig) -> list[str]:
    """The origin request policy each behaviour applies (``forward`` resolved with its defaults and the
    cache key items it always forwards), one line per behaviour with an origin:
    ``0  /static/*  headers all, cookies none, query all``."""
    rows = [
        (str(index), behaviour.path, _forwarding(behaviour))
        for index, behaviour in enumerate(cfg.behaviours)
        if behaviour.origin is not None
    ]
    if not rows:
        return []
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    return [f"{i.ljust(widths[0])}  {path.ljust(widths[1])}  {policy}" for i, path, policy in rows]


def _forwarding(behaviour: BehaviourConfig) -> str:
    policy = resolve_forwarding(
        behaviour.forward, behaviour.cache_key, has_ttl=behaviour.ttl is not None, compress=behaviour.compress
    )
    return policy.describe()


def _origin_cell(behaviour: BehaviourConfig) -> str:
    if behaviour.origin is not None:
        return behaviour.origin
    if behaviour.redirect is not None:
        return f"(redirect {behaviour.redirect.status})"
    return "(function)"


def _ttl_cell(behaviour: BehaviourConfig) -> str:
    ttl = behaviour.ttl
    if ttl is None:
        return "origin (RFC 9111)"
    return "/".join(format_duration(value) for value in (ttl.min, ttl.default, ttl.max))


def cache_key_summary(key: CacheKeyConfig) -> str:
    """One line for a cache key policy: ``host+path+query(all,sorted)+headers[A]+cookies[b]``.

    The query part is ``query(all)``, ``query[a,b]`` or ``query(all-except[a,b])``, with ``sorted`` added
    when parameters are sorted; it is left out for ``query: none``.
    """
    parts = ["host", "path"]
    sort = ",sorted" if key.sort_query else ""
    if key.query == "all":
        parts.append(f"query(all{sort})")
    elif isinstance(key.query, QueryExcept):
        parts.append(f"query(all-except[{','.join(key.query.except_)}]{sort})")
    elif isinstance(key.query, tuple):
        parts.append(f"query[{','.join(key.query)}]" + ("(sorted)" if key.sort_query else ""))
    if key.headers:
        parts.append(f"headers[{','.join(key.headers)}]")
    if key.cookies:
        parts.append(f"cookies[{','.join(key.cookies)}]")
    return "+".join(parts)
