"""Keep-alive connections to one origin, per worker process (``origins.NAME.max_connections``).

``HttpOrigin.fetch`` calls ``acquire`` for each exchange and ``release`` when it is over. Idle connections
are reused newest first and closed after ``keepalive_timeout`` (default 4 s, below the 5 s many origins use,
so the origin rarely closes one we are about to reuse); a connection the origin closed while idle is dropped
at once. When ``max_connections`` are open, further requests wait in order for one (at most
``connect_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

from proxy.origin.base import OriginTimeoutError
from proxy.origin.connection import OriginConnection

__all__ = ["ConnectionPool"]

Connector = Callable[[], Awaitable[OriginConnection]]


class ConnectionPool:
    """``connect`` opens a new connection (raising an ``OriginError`` when it cannot)."""

    def __init__(
        self,
        connect: Connector,
        *,
        max_connections: int,
        keepalive_timeout: float,
        wait_timeout: float,
    ) -> None:
        self._connect = connect
        self._max = max_connections
        self._keepalive = keepalive_timeout
        self._wait_timeout = wait_timeout
        self._idle: list[OriginConnection] = []  # oldest first; reused from the end
        self._all: set[OriginConnection] = set()
        self._opening = 0
        # A waiter gets a connection, or None: a slot is free, open one.
        self._waiters: deque[asyncio.Future[OriginConnection | None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def size(self) -> int:
        """Connections open or being opened (idle ones included)."""
        return len(self._all) + self._opening

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def acquire(self, *, fresh: bool = False) -> OriginConnection:
        """A connection for one exchange: an idle one (unless ``fresh``), else a new one."""
        if self._closed:
            raise OriginTimeoutError("the origin client is closed")
        loop = asyncio.get_running_loop()
        if not fresh:
            idle = self._idle
            now = loop.time()
            while idle:
                conn = idle.pop()
                if not conn.lost and now - conn.idle_since < self._keepalive:
                    return conn
                self._discard(conn)
        elif self.size >= self._max and self._idle:
            self._discard(self._idle.pop(0))  # make room for the new connection
        if self.size >= self._max:
            waiter: asyncio.Future[OriginConnection | None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(self._wait_timeout):
                    conn_or_slot = await waiter
            except BaseException as exc:
                self._abandon(waiter)
                if isinstance(exc, TimeoutError):
                    raise OriginTimeoutError("no free connection to the origin (max_connections)") from None
                raise
            if conn_or_slot is not None:
                return conn_or_slot
        self._opening += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._opening -= 1
            self._wake_one()
            raise
        self._opening -= 1
        self._all.add(conn)
        return conn

    def _abandon(self, waiter: asyncio.Future[OriginConnection | None]) -> None:
        """A waiter gave up (timeout, cancelled): pass on what it may have been handed meanwhile."""
        if not waiter.done():
            waiter.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        elif not waiter.cancelled() and waiter.exception() is None:
            handed = waiter.result()
            if handed is None:
                self._wake_one()
            else:
                self.release(handed, True)

    def release(self, conn: OriginConnection, reusable: bool) -> None:
        """Give ``conn`` back after an exchange: kept (or handed to a waiter) when ``reusable``."""
        if not reusable or conn.lost or self._closed:
            self._discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = loop.call_at(conn.idle_since + self._keepalive, self._expire)

    def lost(self, conn: OriginConnection) -> None:
        """Called by a connection whose transport is gone (the origin closed it, or we did)."""
        if conn in self._all and conn in self._idle:
            self._idle.remove(conn)
            self._discard(conn)

    def _discard(self, conn: OriginConnection) -> None:
        conn.close()
        if conn in self._all:
            self._all.discard(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        """A slot became free: let the first waiter open a connection."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _expire(self) -> None:
        """Close connections idle for ``keepalive_timeout``; re-armed while some stay idle."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle = self._idle
        while idle and now - idle[0].idle_since >= self._keepalive:
            self._discard(idle.pop(0))
        if idle and not self._closed:
            self._sweep = loop.call_at(idle[0].idle_since + self._keepalive, self._expire)

    async def close(self) -> None:
        """Close every connection (idle or busy) and refuse new exchanges; called once at shutdown."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(OriginTimeoutError("the origin client is closed"))
        self._idle.clear()
        conns = list(self._all)
        self._all.clear()
        for conn in conns:
            conn.close()
        # Let the transports finish closing (TLS ones need a few loop turns), so nothing is left behind.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while any(not conn.lost for conn in conns):
                    await asyncio.sleep(0.001)
