"""Cluster coordination through the shared tier's Redis: bans (invalidations, purges), acks, worker
registry, statistics snapshots and the origin-shield lock.

One ``Coordinator`` per worker process, created by ``proxy.app.Edge`` when ``cache.shared`` is set.

* **Bans** are written to a sorted set (score = creation time) and published on a channel. Every worker
  subscribes (pub/sub) and also polls the sorted set every ``poll_interval`` seconds, so a lost message
  only delays a ban, never drops it.
* **Acks**: a worker that applied a ban adds its id to the ban's ack set. ``wait_for_acks`` lets the admin
  API return only when every live worker of the cluster (registered with a heartbeat) has the ban in force,
  so an invalidated object is never served after the API call returned.
* **Shield lock**: ``SET key NX PX`` so that one worker in the whole cluster fetches a cold key; a holder
  that dies releases by expiry.

Every Redis call is bounded in time; failures are logged and reported as False/None, never raised into a
viewer's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis_asyncio

from proxy.cache.bans import Ban

log = logging.getLogger("edgeproxy")

PREFIX = "edgeproxy:v1:"
BANS_KEY = PREFIX + "bans"
BANS_CHANNEL = PREFIX + "bans"
WORKERS_KEY = PREFIX + "workers"
HEARTBEAT = 2.0  # seconds between heartbeats
WORKER_EXPIRY = 6.0  # a worker silent this long is no longer waited for
ACK_EXPIRY_MS = 3_600_000


def _ack_key(ban_id: str) -> str:
    return f"{PREFIX}acks:{ban_id}"


def _lock_key(key: str) -> str:
    return f"{PREFIX}lock:{key}"


class Coordinator:
    """This worker's link to the cluster. ``on_ban`` is called (in the event loop) for each new ban."""

    def __init__(
        self,
        url: str,
        *,
        node: str,
        on_ban: Callable[[Ban], bool],
        timeout: float = 1.0,
        poll_interval: float = 1.0,
    ) -> None:
        self.worker_id = f"{node}:{uuid.uuid4().hex[:12]}"
        self._client: Any = redis_asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._on_ban = on_ban
        self._timeout = timeout
        self._poll_interval = poll_interval
        self._tasks: list[asyncio.Task[None]] = []
        self._seen_score = 0.0  # newest ban creation time read from the sorted set
        self.stats_provider: Callable[[], dict[str, Any]] | None = None

    @property
    def client(self) -> Any:
        """The Redis client (for other cluster-wide state, such as shared rate limits)."""
        return self._client

    async def start(self) -> None:
        """Start the subscriber, the poller and the heartbeat (owned tasks, stopped by ``close``)."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscribe(), name="bans subscriber"),
            loop.create_task(self._poll(), name="bans poller"),
            loop.create_task(self._heartbeat(), name="worker heartbeat"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout):
                await self._client.hdel(WORKERS_KEY, self.worker_id)
        with contextlib.suppress(Exception):
            await self._client.aclose()

    async def _bounded(self, call: Any) -> Any:
        async with asyncio.timeout(self._timeout):
            return await call

    # ---------------------------------------------------------------- bans
    async def publish(self, ban: Ban) -> None:
        """Make a ban known to the cluster; raises ``OSError`` when Redis cannot be reached."""
        data = json.dumps(ban.to_dict(), separators=(",", ":"))
        try:
            await self._bounded(self._client.zadd(BANS_KEY, {data: ban.created}))
            await self._bounded(self._client.publish(BANS_CHANNEL, data))
        except Exception as exc:
            raise OSError(f"the shared tier did not take the ban: {exc}") from exc

    def _receive(self, raw: bytes | str) -> None:
        try:
            ban = Ban.from_dict(json.loads(raw))
        except (ValueError, TypeError):
            log.warning("ignoring a malformed ban from the shared tier")
            return
        if self._on_ban(ban):
            self._ack_soon(ban.id)

    def _ack_soon(self, ban_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self.ack(ban_id))
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def ack(self, ban_id: str) -> None:
        """Record that this worker has ``ban_id`` in force."""
        with contextlib.suppress(Exception):
            key = _ack_key(ban_id)
            await self._bounded(self._client.sadd(key, self.worker_id))
            await self._bounded(self._client.pexpire(key, ACK_EXPIRY_MS))

    async def wait_for_acks(self, ban_id: str, timeout: float) -> bool:
        """Wait until every live worker of the cluster acked ``ban_id``; False when time ran out."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                live = await self.live_workers()
                acked = {
                    m.decode() if isinstance(m, bytes) else m
                    for m in await self._bounded(self._client.smembers(_ack_key(ban_id)))
                }
                if live <= acked:
                    return True
            except Exception as exc:
                log.warning("waiting for ban acks: %s", exc)
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)

    async def live_workers(self) -> set[str]:
        """Worker ids whose heartbeat is recent."""
        now = time.time()
        beats = await self._bounded(self._client.hgetall(WORKERS_KEY))
        live = set()
        for worker, beat in beats.items():
            name = worker.decode() if isinstance(worker, bytes) else worker
            try:
                if now - json.loads(beat)["time"] < WORKER_EXPIRY:
                    live.add(name)
            except (ValueError, KeyError, TypeError):
                continue
        return live

    async def worker_stats(self) -> list[dict[str, Any]]:
        """The latest statistics snapshot of every live worker (for /stats and /metrics)."""
        now = time.time()
        beats = await self._bounded(self._client.hgetall(WORKERS_KEY))
        snapshots = []
        for beat in beats.values():
            try:
                data = json.loads(beat)
            except ValueError:
                continue
            if isinstance(data, dict) and now - data.get("time", 0) < WORKER_EXPIRY:
                snapshots.append(data)
        return snapshots

    async def _subscribe(self) -> None:
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(BANS_CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._receive(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("bans subscription interrupted: %s", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(self._poll_interval)

    async def _poll(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("bans poll failed: %s", exc)
            await asyncio.sleep(self._poll_interval)

    async def poll_once(self) -> None:
        """Read bans newer than the newest seen (the fallback when a pub/sub message was missed)."""
        rows = await self._bounded(
            self._client.zrangebyscore(BANS_KEY, self._seen_score, "+inf", withscores=True)
        )
        for raw, score in rows:
            self._seen_score = max(self._seen_score, float(score))
            self._receive(raw)

    async def _heartbeat(self) -> None:
        while True:
            try:
                snapshot: dict[str, Any] = {"time": time.time(), "worker": self.worker_id}
                if self.stats_provider is not None:
                    snapshot["stats"] = self.stats_provider()
                await self._bounded(self._client.hset(WORKERS_KEY, self.worker_id, json.dumps(snapshot)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("heartbeat failed: %s", exc)
            await asyncio.sleep(HEARTBEAT)

    # ---------------------------------------------------------------- shield
    async def acquire(self, key: str, ttl: float) -> bool | None:
        """Take the cluster-wide fetch lock for ``key``: True (ours), False (someone else has it), None
        (Redis unavailable: fetch on our own)."""
        try:
            got = await self._bounded(
                self._client.set(_lock_key(key), self.worker_id, nx=True, px=int(ttl * 1000))
            )
        except Exception:
            return None
        return bool(got)

    async def holds(self, key: str) -> bool | None:
        """Whether anyone still holds the lock for ``key`` (None: unknown)."""
        try:
            return bool(await self._bounded(self._client.exists(_lock_key(key))))
        except Exception:
            return None

    async def release(self, key: str) -> None:
        """Release our lock for ``key`` (only if it is still ours)."""
        with contextlib.suppress(Exception):
            lock = _lock_key(key)
            holder = await self._bounded(self._client.get(lock))
            if (
                holder is not None
                and (holder.decode() if isinstance(holder, bytes) else holder) == self.worker_id
            ):
                await self._bounded(self._client.delete(lock))
