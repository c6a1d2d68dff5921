"""Wires one edge process together: config → runtime → pipeline → HTTP/1.1 front, and runs it.

``Edge`` is created by the CLI (``edgeproxy serve``) and by the tests; ``start`` binds the listeners,
``stop`` stops accepting, lets in-flight requests finish (bounded) and releases every resource.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from aiohttp import web

from proxy.admin.api import make_admin_app
from proxy.admin.ops import EdgeAdmin
from proxy.cache.banlog import BanLog
from proxy.cache.bans import Ban, BanList
from proxy.cache.coordination import Coordinator
from proxy.cache.disk import DiskStore
from proxy.cache.memory import MemoryStats, MemoryStore
from proxy.cache.shared import make_shared_store
from proxy.cache.tiers import LowerTier
from proxy.edge import build_guards, guard_stats
from proxy.edge.ratelimit import RateLimitGuard, RateLimitSync
from proxy.http.h3_fields import alt_svc_value
from proxy.observability.access_log import AccessLog
from proxy.observability.publish import GENERATION_ENV, STATS_DIR_ENV, Publisher
from proxy.origin.health import OriginHealth
from proxy.pipeline.pipeline import Pipeline
from proxy.pipeline.runtime import Runtime, build_runtime
from proxy.server.http1 import H1Server, make_server
from proxy.server.http2 import enable_http2
from proxy.server.http3 import H3Server, make_h3_server
from proxy.server.tls import TlsContext
from proxy.settings import ConfigError, EdgeConfig, ListenAddress, load_config
from proxy.startup import NOTHING_TO_RELOAD, ORIGIN_SOURCE, listen_failure, startup_line

log = logging.getLogger("edgeproxy")

SHUTDOWN_GRACE = 30.0  # seconds in-flight requests get to finish after SIGTERM


class Edge:
    """One edge server process: its memory tier, pipeline and listeners. Implements the admin API's
    ``AdminSurface`` (``proxy.admin.ops``)."""

    def __init__(
        self, config: EdgeConfig, *, shutdown_grace: float = SHUTDOWN_GRACE, reuse_port: bool = False
    ) -> None:
        self.config = config
        self._reuse_port = reuse_port
        self.runtime = build_runtime(config)
        memory = config.cache.memory
        self.memory = MemoryStore(memory.max_bytes, memory.max_object_bytes)
        self.access_log = AccessLog(config.server.access_log, fmt=config.server.access_log_format)
        shared = config.cache.shared
        self.shared = make_shared_store(shared) if shared is not None else None
        self.supervised = reuse_port  # a worker of the supervisor (server.workers > 1)
        # The reload generation: the supervisor's for its workers, else 1 + reloads done in place.
        self.generation = int(os.environ.get(GENERATION_ENV, "1")) if reuse_port else 1
        bans = BanList()
        disk = config.cache.disk
        self.disk = (
            DiskStore(disk.path, max_bytes=disk.max_bytes, max_object_bytes=disk.max_object_bytes)
            if disk is not None
            else None
        )
        # Bans, worker registry and the shield lock need Redis; a memcached shared tier is storage only.
        self.coordinator = (
            Coordinator(shared.url, node=config.server.name, on_ban=bans.add)
            if shared is not None and self.shared is not None and self.shared.supports_coordination
            else None
        )
        # Without Redis (whose ban set every worker re-reads at start), bans persist next to the disk
        # tier, so that an invalidation made before a restart is not undone by the disk.
        self.ban_log = BanLog(self.disk.path) if self.disk is not None and self.coordinator is None else None
        if self.ban_log is not None:
            bans.extend(self.ban_log.load())
            self.ban_log.rewrite(bans.snapshot())
        if config.cache.shield and self.coordinator is None:
            raise ValueError("cache.shield needs a Redis shared tier (cache.shared.url: redis://…)")
        lower = [LowerTier("disk", self.disk, self.disk.max_object_bytes)] if self.disk is not None else []
        if self.shared is not None and shared is not None:
            lower.append(LowerTier("shared", self.shared, shared.max_object_bytes))
        self.pipeline = Pipeline(
            self.runtime,
            self.memory,
            name=config.server.name,
            access_log=self.access_log,
            lower=lower,
            collapse=config.cache.collapse,
            show_key=config.cache.status_key,
            guards=build_guards(config),
            bans=bans,
            coordinator=self.coordinator if config.cache.shield else None,
        )
        self.admin = EdgeAdmin(self)
        if self.coordinator is not None:
            self.coordinator.stats_provider = self.admin.local_snapshot
        self.publisher = Publisher(
            self.pipeline.stats.sample,
            self.admin.local_snapshot,
            os.environ.get(STATS_DIR_ENV) if reuse_port else None,
        )
        self._shutdown_grace = shutdown_grace
        self._front: H1Server | None = None
        self._admin_runner: web.AppRunner | None = None
        self._tls_front: H1Server | None = None
        self.tls: TlsContext | None = None
        self.tls_addresses: list[tuple[str, int]] = []
        self._h3_front: H3Server | None = None
        self.h3_addresses: list[tuple[str, int]] = []
        self.addresses: list[tuple[str, int]] = []
        self.admin_addresses: list[tuple[str, int]] = []
        self._retired: set[asyncio.Task[None]] = set()
        self.binding: tuple[str, ListenAddress] | None = None  # the listener being bound (for errors)

    async def start(self, listen: tuple[ListenAddress, ...] | None = None) -> list[tuple[str, int]]:
        """Bind every listen address (port 0 picks a free port) and start serving; returns the bound
        (host, port) pairs."""
        await self.runtime.start()
        if self.disk is not None and self.coordinator is not None:
            # The bans made while this node was down, before it listens (so before any disk hit).
            with contextlib.suppress(Exception):
                await self.coordinator.poll_once()
        front = make_server(self.pipeline, self.config.server)
        if self.config.server.h2c:
            enable_http2(front, self.config.server, tls=False)
        self._front = front
        for address in listen or self.config.server.listen:
            self.binding = ("--listen" if listen else "server.listen", address)
            await front.listen(address.host, address.port, reuse_port=self._reuse_port)
        self.addresses = list(front.addresses)
        await self._start_tls()
        if self.disk is not None:
            self.disk.start()
        if self.coordinator is not None:
            await self.coordinator.start()
            self._share_rate_limits(self.coordinator)
        await self._start_admin()
        self.publisher.publish_once()
        task = asyncio.get_running_loop().create_task(self.publisher.run(), name="stats publisher")
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        return self.addresses

    async def _start_tls(self, listen: ListenAddress | None = None) -> None:
        """The HTTPS listener (``server.tls``): the same pipeline, requests marked ``https``."""
        tls = self.config.server.tls
        if tls is None:
            return
        self.tls = TlsContext(tls.cert, tls.key)
        front = make_server(self.pipeline, self.config.server, scheme="https")
        enable_http2(front, self.config.server, tls=True)  # ALPN: h2, then http/1.1
        self._tls_front = front
        address = listen or tls.listen
        self.binding = ("server.tls.listen", address)
        await front.listen(
            address.host, address.port, ssl_context=self.tls.context, reuse_port=self._reuse_port
        )
        self.tls_addresses = list(front.addresses)
        if self.config.server.http3:
            await self._start_h3(self.tls)
        task = asyncio.get_running_loop().create_task(self.tls.watch(), name="tls certificate watch")
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _start_h3(self, tls: TlsContext) -> None:
        """HTTP/3 (``server.http3``) on UDP at each address of the HTTPS listener, advertised by
        ``Alt-Svc`` on that listener's responses (RFC 7838)."""
        h3 = make_h3_server(self.pipeline, self.config.server, tls)
        self._h3_front = h3
        for host, port in self.tls_addresses:
            await h3.listen(host, port, reuse_port=self._reuse_port)
        self.h3_addresses = list(h3.addresses)
        if self._tls_front is not None and self.h3_addresses:
            self._tls_front.alt_svc = f"Alt-Svc: {alt_svc_value(self.h3_addresses[0][1])}\r\n"

    def _share_rate_limits(self, coordinator: Coordinator) -> None:
        """With Redis, ``firewall.rate_limit`` budgets are shared by every worker and node."""
        for guard in self.pipeline.guards:
            if isinstance(guard, RateLimitGuard):
                sync = RateLimitSync(guard, coordinator.client)
                task = asyncio.get_running_loop().create_task(sync.run(), name="rate-limit sync")
                self._retired.add(task)
                task.add_done_callback(self._retired.discard)

    async def _start_admin(self, listen: ListenAddress | None = None) -> None:
        admin = self.config.admin
        if admin is None:
            return
        app = make_admin_app(self.admin, admin.token)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        address = listen or admin.listen
        self.binding = ("admin.listen", address)
        site = web.TCPSite(runner, address.host, address.port, reuse_port=self._reuse_port or None)
        await site.start()
        self._admin_runner = runner
        self.admin_addresses = [(a[0], a[1]) for a in runner.addresses]

    # ---------------------------------------------------------------- AdminSurface
    @property
    def node_name(self) -> str:
        return self.config.server.name

    @property
    def behaviour_count(self) -> int:
        return len(self.config.behaviours)

    def add_ban(self, ban: Ban) -> None:
        if self.pipeline.bans.add(ban) and self.ban_log is not None:
            self.ban_log.append(ban)

    def find_ban(self, ban_id: str) -> Ban | None:
        return self.pipeline.bans.get(ban_id)

    def ban_count(self) -> int:
        return len(self.pipeline.bans)

    def pipeline_stats(self) -> dict[str, Any]:
        return self.pipeline.stats.snapshot()

    def memory_stats(self) -> MemoryStats:
        return self.memory.stats()

    def collapsed_requests(self) -> int:
        return self.pipeline.collapser.collapsed

    def guard_stats(self) -> dict[str, Any]:
        return guard_stats(self.pipeline.guards)

    def origin_health(self) -> Mapping[str, OriginHealth]:
        return self.runtime.health

    def shared_stats(self) -> dict[str, int] | None:
        return self.shared.stats() if self.shared is not None else None

    def disk_stats(self) -> dict[str, int] | None:
        return self.disk.stats() if self.disk is not None else None

    def shared_available(self) -> bool | None:
        return self.shared.available if self.shared is not None else None

    def listening(self) -> bool:
        return self._front is not None and bool(self.addresses)

    @property
    def stats_folder(self) -> str | None:
        return self.publisher.folder_name

    @property
    def memory_max_bytes(self) -> int:
        return self.config.cache.memory.max_bytes

    def bans(self) -> tuple[Ban, ...]:
        return self.pipeline.bans.snapshot()

    async def reload(self) -> None:
        """Re-read the config file and switch this process to it (single-process mode; with workers the
        supervisor starts new processes instead). The memory tier and its contents are kept; in-flight
        requests finish on the old origins, which are closed a little later."""
        config = load_config(self.config.source_file)
        runtime = build_runtime(config)
        await runtime.start()
        old = self.runtime
        self.runtime = runtime
        self.pipeline.runtime = runtime
        self.pipeline.guards = tuple(build_guards(config))
        self.config = config
        self.generation += 1
        task = asyncio.get_running_loop().create_task(self._retire(old))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        log.info("configuration reloaded from %s (generation %d)", config.source_file, self.generation)

    async def _retire(self, runtime: Runtime) -> None:
        await asyncio.sleep(self._shutdown_grace)
        await runtime.close()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded by the shutdown grace: idle keep-alive
        connections close at once, busy ones after answering what they read), then close origins and the
        log."""
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
            self._admin_runner = None
        fronts: list[H1Server | H3Server] = [f for f in (self._front, self._tls_front, self._h3_front) if f]
        self._front = self._tls_front = self._h3_front = None
        await asyncio.gather(*(front.shutdown(self._shutdown_grace) for front in fronts))
        for task in list(self._retired):
            task.cancel()
        self.publisher.close()
        if self.coordinator is not None:
            await self.coordinator.close()
        await self.pipeline.close()
        await self.runtime.close()
        if self.shared is not None:
            await self.shared.close()
        if self.disk is not None:
            await self.disk.close()
        self.access_log.close()


async def serve(
    config: EdgeConfig,
    listen: tuple[ListenAddress, ...] | None = None,
    *,
    reuse_port: bool = False,
    ready_fd: int | None = None,
) -> int:
    """Run an edge until SIGTERM or SIGINT, then shut down gracefully. Returns the exit code.

    As a worker of ``edgeproxy serve`` with ``server.workers`` > 1, ``reuse_port`` lets several processes
    share the port and ``ready_fd`` is a pipe on which one byte tells the supervisor the worker listens.
    """
    try:
        edge = Edge(config, reuse_port=reuse_port)
    except (ValueError, ConfigError) as exc:
        log.error("edgeproxy: %s", exc)
        return 2
    try:
        await edge.start(listen)
    except OSError as exc:
        log.error("edgeproxy: %s", listen_failure(exc, edge.binding, config))
        await edge.stop()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not reuse_port:
        # Single-process mode: SIGHUP reloads the config in place (workers are reloaded by the supervisor).
        reloads: set[asyncio.Task[None]] = set()

        def on_hup() -> None:
            if config.source_file == ORIGIN_SOURCE:
                log.warning("edgeproxy: SIGHUP: %s", NOTHING_TO_RELOAD)
                return
            task = loop.create_task(_reload_quietly(edge))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
    log.info("%s", startup_line(edge, os.getpid()))
    if ready_fd is not None:
        with contextlib.suppress(OSError):
            os.write(ready_fd, b"1")
            os.close(ready_fd)
    await stop.wait()
    log.info("edgeproxy: shutting down")
    await edge.stop()
    return 0


async def _reload_quietly(edge: Edge) -> None:
    try:
        await edge.reload()
    except ConfigError as exc:
        log.error("edgeproxy: reload refused, the config has errors (still serving the old one):\n%s", exc)


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on a uvloop event loop (asyncio's own when uvloop is not installed)."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)
