"""The access log: one line per request (``server.access_log``: stdout | off | a path), a JSON object or,
with ``server.access_log_format: combined``, the Combined Log Format of Apache and nginx.

``AccessLog.write`` is called by the LOG phase once the response is written. Lines are buffered and flushed
at least every ``flush_interval`` seconds, when the buffer grows large, and at shutdown, so logging costs no
syscall per request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import sys
import time
from typing import IO, Protocol

from proxy.http.reasons import CacheResult
from proxy.messages import EdgeRequest, RoutedTo
from proxy.observability.stats import protocol_name

_FLUSH_BYTES = 64 * 1024
_ATOMIC_WRITE = 4096  # PIPE_BUF on Linux
_ID_PREFIX = secrets.token_hex(4)  # per process, so ids from several workers and restarts do not collide
_ID_COUNTER = itertools.count()


def log_request_id() -> str:
    """An id (16 hex digits) for a request that got none in its answer: unique within this process's
    run, with no system call (``secrets`` per request would read the kernel's random source every time)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFF:08x}"


class Finished(Protocol):
    """What the access log reads of a finished request (the pipeline's ``RequestContext`` is one)."""

    @property
    def request(self) -> EdgeRequest: ...
    @property
    def behaviour(self) -> RoutedTo | None: ...
    @property
    def now(self) -> float: ...
    @property
    def started(self) -> float: ...
    @property
    def status(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def result(self) -> CacheResult: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def stored(self) -> bool: ...
    @property
    def origin(self) -> str | None: ...
    @property
    def tried(self) -> list[str] | None: ...
    @property
    def collapsed(self) -> bool: ...
    @property
    def fwd_status(self) -> int | None: ...
    @property
    def completed(self) -> bool: ...
    @property
    def tunnel_bytes(self) -> tuple[int, int] | None: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def first_byte(self) -> float: ...
    @property
    def origin_seconds(self) -> float | None: ...
    @property
    def bytes_from_origin(self) -> int: ...


def _iso(ts: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{seconds}.{int(ts % 1 * 1000):03d}Z"


def log_record(ctx: Finished) -> dict[str, object]:
    """The fields of one access log line for a finished request."""
    request = ctx.request
    behaviour = ctx.behaviour
    ended = time.perf_counter()
    first_byte = ctx.first_byte
    origin_seconds = ctx.origin_seconds
    record: dict[str, object] = {
        "time": _iso(ctx.now),
        "request_id": ctx.request_id or log_request_id(),
        "client": request.client_ip,
        "method": request.method,
        "protocol": protocol_name(request.version),
        "host": request.host,
        "path": request.path,
        "query": request.query,
        "status": ctx.status,
        "bytes": ctx.bytes_sent,
        "duration_ms": round((ended - ctx.started) * 1000, 3),
        "ttfb_ms": round((first_byte - ctx.started) * 1000, 3) if first_byte else None,
        "cache": ctx.result.value,
        "reason": ctx.reason,
        "stored": ctx.stored,
        "behaviour": behaviour.path if behaviour is not None else None,
        "origin": ctx.origin,
        "origins_tried": ctx.tried if ctx.tried and len(ctx.tried) > 1 else None,
        "collapsed": ctx.collapsed,
        "origin_status": ctx.fwd_status,
        "origin_ms": round(origin_seconds * 1000, 3) if origin_seconds is not None else None,
        "bytes_from_origin": ctx.bytes_from_origin,
        "completed": ctx.completed,
    }
    if ctx.tunnel_bytes is not None:
        # A WebSocket tunnel (status 101): logged when it closed; duration_ms is the tunnel's lifetime.
        record["tunnel_bytes_up"], record["tunnel_bytes_down"] = ctx.tunnel_bytes
    return record


def _clf_quote(value: str) -> str:
    """A field for inside double quotes: ``"``, ``\\`` and control bytes escaped like nginx (``\\xHH``)."""
    if value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return "".join(
        f"\\x{ord(c):02X}" if (c in '"\\' or not c.isprintable()) and ord(c) < 256 else c for c in value
    )


def combined_line(ctx: Finished) -> str:
    """One line of the Combined Log Format (Apache ``%h %l %u %t "%r" %>s %b "%{Referer}i"
    "%{User-agent}i"``), e.g.
    ``127.0.0.1 - - [26/Nov/2026:17:51:02 +0000] "GET /a?b HTTP/1.1" 200 709 "-" "curl/8"``.
    """
    request = ctx.request
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ctx.now))
    line = _clf_quote(f"{request.method} {request.target} {protocol_name(request.version)}")
    referer = _clf_quote(request.headers.get("Referer", "-")) or "-"
    agent = _clf_quote(request.headers.get("User-Agent", "-")) or "-"
    size = str(ctx.bytes_sent) if ctx.bytes_sent else "-"
    return f'{request.client_ip} - - [{stamp}] "{line}" {ctx.status} {size} "{referer}" "{agent}"\n'


class AccessLog:
    """Buffered line writer. ``target`` is "stdout", "off" or a file path; ``fmt`` "json" or "combined"."""

    def __init__(self, target: str, flush_interval: float = 1.0, fmt: str = "json") -> None:
        self.enabled = target != "off"
        self._combined = fmt == "combined"
        self._owned: IO[str] | None = None
        self._stream: IO[str] | None = None
        if target == "stdout":
            self._stream = sys.stdout
        elif self.enabled:
            self._owned = open(target, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._stream = self._owned
        self._buffer: list[str] = []
        self._buffered = 0
        self._flush_interval = flush_interval
        self._timer: asyncio.TimerHandle | None = None

    def write(self, ctx: Finished) -> None:
        """Queue the line for one finished request."""
        if not self.enabled:
            return
        if self._combined:
            line = combined_line(ctx)
        else:
            line = json.dumps(log_record(ctx), separators=(",", ":")) + "\n"
        self._buffer.append(line)
        self._buffered += len(line)
        if self._buffered >= _FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self._flush_interval, self.flush)

    def flush(self) -> None:
        """Write out what is buffered."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer or self._stream is None:
            return
        lines = self._buffer
        self._buffer = []
        self._buffered = 0
        try:
            # Several worker processes may share one stdout pipe: writes of at most PIPE_BUF bytes made
            # of whole lines are atomic, so lines from different workers never interleave mid-line.
            chunk: list[str] = []
            size = 0
            for line in lines:
                if chunk and size + len(line) > _ATOMIC_WRITE:
                    self._stream.write("".join(chunk))
                    self._stream.flush()
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            if chunk:
                self._stream.write("".join(chunk))
                self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken log stream must never take requests down with it

    def close(self) -> None:
        """Flush and close a file target; called at shutdown."""
        self.flush()
        if self._owned is not None:
            self._owned.close()
            self._owned = None
            self._stream = None
