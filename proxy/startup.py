"""What ``edgeproxy serve`` says when it starts, cannot start, or gets a SIGHUP it cannot act on.

Called by ``proxy.app.serve`` (and the worker supervisor): pure text builders, no I/O.
"""

from __future__ import annotations

import errno
from typing import Protocol

from proxy.settings import EdgeConfig, ListenAddress


class _Shared(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def available(self) -> bool: ...


class Edge(Protocol):
    """What the startup line reads of ``proxy.app.Edge`` once it listens."""

    config: EdgeConfig
    addresses: list[tuple[str, int]]
    tls_addresses: list[tuple[str, int]]
    admin_addresses: list[tuple[str, int]]

    @property
    def shared(self) -> _Shared | None: ...


__all__ = ["NOTHING_TO_RELOAD", "ORIGIN_SOURCE", "listen_failure", "startup_line"]

ORIGIN_SOURCE = "<origin>"  # EdgeConfig.source_file of `serve --origin URL`
NOTHING_TO_RELOAD = "nothing to reload: --origin mode has no config file (restart with new arguments)"


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def startup_line(edge: Edge, pid: int) -> str:
    """The one line printed once an edge process listens: every listener (viewer, TLS, admin), the
    workers, the shared tier's state, the config and the pid."""
    config = edge.config
    parts = [", ".join(_url("http", h, p) for h, p in edge.addresses)]
    if edge.tls_addresses:
        parts.append("TLS " + ", ".join(_url("https", h, p) for h, p in edge.tls_addresses))
    h3_addresses = getattr(edge, "h3_addresses", ())
    if h3_addresses:
        parts.append("HTTP/3 " + ", ".join(_url("h3", h, p) + " (udp)" for h, p in h3_addresses))
    if edge.admin_addresses:
        parts.append("admin " + ", ".join(_url("http", h, p) for h, p in edge.admin_addresses))
    else:
        parts.append("no admin API")
    workers = config.server.workers
    parts.append(f"workers {workers}" if workers != 1 else "1 worker")
    parts.append(f"shared tier {shared_state(edge)}")
    source = "--origin" if config.source_file == ORIGIN_SOURCE else f"config {config.source_file}"
    return f"edgeproxy {config.server.name}: serving on {'; '.join(parts)} ({source}, pid {pid})"


def shared_state(edge: Edge) -> str:
    """``none``, or the shared tier's URL (password redacted) and whether it is reachable now."""
    shared = edge.shared
    if shared is None:
        return "none"
    return f"{shared.url} ({'up' if shared.available else 'down, serving without it'})"


def listen_failure(exc: OSError, binding: tuple[str, ListenAddress] | None, config: EdgeConfig) -> str:
    """The message for a listener that could not be bound: which address, which setting, how to change
    it. ``binding`` is (setting, address) of the listener being bound (``Edge.binding``), if known."""
    if binding is None:
        return f"cannot listen: {exc}"
    setting, address = binding
    host = f"[{address.host}]" if ":" in address.host else address.host
    where = f"{host}:{address.port}"
    file = "the command line" if config.source_file == ORIGIN_SOURCE else config.source_file
    if setting == "--listen":
        change = "choose another with --listen HOST:PORT"
    elif setting == "server.listen":
        change = f"change server.listen in {file}, or override it with --listen HOST:PORT"
    else:
        change = f"change {setting} in {file}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where} ({setting}): address already in use (another process has this port): "
            f"stop it or {change}"
        )
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where} ({setting}): permission denied (a port below 1024?): {change}"
    reason = exc.strerror or str(exc)
    return f"cannot listen on {where} ({setting}): {reason}: {change}"
