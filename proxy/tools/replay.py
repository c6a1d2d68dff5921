"""``edgeproxy replay ACCESS_LOG --config EDGE.yaml [--memory 64MiB,256MiB,1GiB] [--plot FILE.png]``.

A what-if simulator: every request of an access log (edgeproxy's JSON lines, or Combined Log Format from
nginx/Apache) goes through the config's behaviours (``Router.match``), cache keys (``KeyBuilder``) and
TTL rules, into the real memory tier (``MemoryStore``: the same LRU, byte budget and charge) sized for
each ``--memory`` value, with object sizes and times taken from the log. No network, no origin: a request
is a hit when its key is stored and still fresh at the line's time, else a miss that stores the object
(when the behaviour would store it).

What it models: GET/HEAD under a behaviour with ``ttl`` (lifetime = ``ttl.default``, the CloudFront rule
when the origin says nothing; the log does not carry the origin's Cache-Control) and a cacheable status
(RFC 9111 §3, heuristically cacheable statuses of RFC 9110 §15.1). Behaviours without ``ttl`` (plain RFC
9111 mode, where the origin decides) are counted as passes. ``main`` is called by the CLI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from multidict import CIMultiDict

from proxy.cache.entry import CacheEntry
from proxy.cache.memory import MemoryStore
from proxy.pipeline.runtime import BehaviourRuntime, build_runtime
from proxy.settings import ConfigError, EdgeConfig, load_config
from proxy.settings.units import format_size, parse_size

__all__ = ["LogRecord", "SizeResult", "main", "parse_line", "simulate"]

# RFC 9110 §15.1: statuses cacheable by default (heuristically cacheable).
CACHEABLE_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})

_COMBINED = re.compile(
    r'^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<target>\S+)[^"]*" '
    r"(?P<status>\d{3}) (?P<bytes>\d+|-)"
    r'(?: "[^"]*" "[^"]*")?(?: "?(?P<host>[^"\s]+)"?)?'
)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One request of the log: what replay needs."""

    time: float
    method: str
    host: str
    path: str
    query: str
    status: int
    bytes: int


def _iso_time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def parse_line(line: str) -> LogRecord | None:
    """A log line as a record, or None when it is not a request line of either format (skipped)."""
    line = line.strip()
    if not line:
        return None
    if line.startswith("{"):
        try:
            data = json.loads(line)
            return LogRecord(
                time=_iso_time(str(data["time"])),
                method=str(data.get("method", "GET")),
                host=str(data.get("host", "")),
                path=str(data["path"]),
                query=str(data.get("query", "")),
                status=int(data["status"]),
                bytes=int(data.get("bytes", 0)),
            )
        except (ValueError, KeyError, TypeError):
            return None
    match = _COMBINED.match(line)
    if match is None:
        return None
    try:
        when = dt.datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z").timestamp()
    except ValueError:
        return None
    target = urlsplit(match["target"])
    size = match["bytes"]
    return LogRecord(
        time=when,
        method=match["method"],
        host=match["host"] or target.netloc or "",
        path=target.path or "/",
        query=target.query,
        status=int(match["status"]),
        bytes=0 if size == "-" else int(size),
    )


class _Body(bytes):
    """A one-byte body that the memory tier charges as ``n`` bytes (``sys.getsizeof``), so that a 1 GiB
    simulation does not need 1 GiB of RAM."""

    n: int

    def __sizeof__(self) -> int:
        return self.n


def _body(size: int) -> bytes:
    body = _Body(b"\0")
    body.n = size + 33  # what sys.getsizeof reports for a bytes object of that length
    return body


@dataclass(slots=True)
class SizeResult:
    """The outcome for one memory size."""

    memory: int
    requests: int = 0
    hits: int = 0
    bytes: int = 0
    hit_bytes: int = 0
    passes: int = 0
    evictions: int = 0
    misses_by_behaviour: dict[str, int] = field(default_factory=dict)

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def byte_hit_ratio(self) -> float:
        return self.hit_bytes / self.bytes if self.bytes else 0.0


class _Cache:
    def __init__(self, config: EdgeConfig, memory: int) -> None:
        self.store = MemoryStore(memory, config.cache.memory.max_object_bytes)
        self.result = SizeResult(memory)

    def request(self, record: LogRecord, behaviour: BehaviourRuntime, key: str | None) -> None:
        result = self.result
        result.requests += 1
        result.bytes += record.bytes
        if key is None:
            result.passes += 1
            self._miss(behaviour)
            return
        entry = self.store.get(key)
        if entry is not None and entry.is_fresh(record.time):
            result.hits += 1
            result.hit_bytes += record.bytes
            return
        self._miss(behaviour)
        if record.status in CACHEABLE_STATUSES and behaviour.ttl is not None and behaviour.ttl.default > 0:
            stored = CacheEntry(
                status=record.status,
                headers=(),
                body=_body(record.bytes),
                request_time=record.time,
                response_time=record.time,
                initial_age=0.0,
                ttl=float(behaviour.ttl.default),
            )
            self.store.set(key, stored)

    def _miss(self, behaviour: BehaviourRuntime) -> None:
        counts = self.result.misses_by_behaviour
        counts[behaviour.path] = counts.get(behaviour.path, 0) + 1

    def finish(self) -> SizeResult:
        self.result.evictions = self.store.stats().evictions
        return self.result


_NO_HEADERS: CIMultiDict[str] = CIMultiDict()


def simulate(
    config: EdgeConfig, records: Iterable[LogRecord], memories: list[int], progress: Progress | None = None
) -> list[SizeResult]:
    """Replay ``records`` (in log order) once through a cache of each size; the results in that order."""
    runtime = build_runtime(config)
    router = runtime.router
    caches = [_Cache(config, memory) for memory in memories]
    for record in records:
        behaviour = router.match(record.path)
        key: str | None = None
        if record.method in ("GET", "HEAD") and record.method in behaviour.methods:
            key = behaviour.keys.key(record.host, record.path, record.query, _NO_HEADERS)
        for cache in caches:
            cache.request(record, behaviour, key)
        if progress is not None:
            progress.advance()
    return [cache.finish() for cache in caches]


class Progress:
    """A progress bar on stderr (rich) for long replays, advanced once per line."""

    def __init__(self, total_bytes: int, enabled: bool) -> None:
        self._enabled = enabled and total_bytes > 5_000_000
        self._count = 0
        if self._enabled:
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(transient=True)
            self._task = self._rich.add_task("replaying", total=None)
            self._rich.start()

    def advance(self) -> None:
        self._count += 1
        if self._enabled and self._count % 5000 == 0:
            self._rich.update(
                self._task, completed=self._count, description=f"replaying {self._count:,} lines"
            )

    def close(self) -> None:
        if self._enabled:
            self._rich.stop()


def _records(path: str) -> Iterator[LogRecord]:
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            record = parse_line(line)
            if record is not None:
                yield record


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop returns


def report(results: list[SizeResult], top: int, lines: int, seconds: float) -> str:
    """The text ``replay`` prints."""
    out = [
        f"{lines:,} requests replayed in {seconds:.1f} s ({lines / seconds if seconds else 0:,.0f} lines/s)",
        "",
        f"{'memory':>10} {'hit ratio':>10} {'byte hit':>10} {'origin reqs':>12} {'reqs saved':>11} "
        f"{'origin bytes':>13} {'bytes saved':>12} {'evictions':>10}",
    ]
    for r in results:
        out.append(
            f"{format_size(r.memory):>10} {r.hit_ratio:>10.1%} {r.byte_hit_ratio:>10.1%} "
            f"{r.requests - r.hits:>12,} {r.hits:>11,} {_human(r.bytes - r.hit_bytes):>13} "
            f"{_human(r.hit_bytes):>12} {r.evictions:>10,}"
        )
    if results:
        last = results[-1]
        out += ["", f"Behaviours that miss most (at {format_size(last.memory)}):"]
        ranked = sorted(last.misses_by_behaviour.items(), key=lambda item: -item[1])[:top]
        for path, misses in ranked:
            out.append(f"  {path:<30} {misses:>10,} misses")
        if last.passes:
            out.append(f"  ({last.passes:,} requests not cacheable: method, or a behaviour without ttl)")
    return "\n".join(out)


def plot(results: list[SizeResult], path: str) -> None:
    """Hit ratio (requests and bytes) against memory size, as a PNG (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r.memory / 2**20 for r in results]
    figure, axes = plt.subplots(figsize=(7, 4.2))
    axes.plot(sizes, [100 * r.hit_ratio for r in results], marker="o", label="requests")
    axes.plot(sizes, [100 * r.byte_hit_ratio for r in results], marker="s", label="bytes")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("memory tier (MiB)")
    axes.set_ylabel("hit ratio (%)")
    axes.set_ylim(0, 100)
    axes.grid(True, alpha=0.3)
    axes.legend()
    axes.set_title("edgeproxy replay: hit ratio vs memory size")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(args: argparse.Namespace) -> int:
    """``edgeproxy replay``: exit 0, or 2 for a bad config, size or unreadable log."""
    try:
        config = load_config(args.config)
        memories = (
            [parse_size(v.strip()) for v in args.memory.split(",") if v.strip()]
            if args.memory
            else [config.cache.memory.max_bytes]
        )
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"edgeproxy replay: --memory: {exc}", file=sys.stderr)
        return 2
    memories.sort()
    try:
        import os

        total = os.path.getsize(args.access_log)
    except OSError as exc:
        print(f"edgeproxy replay: cannot read {args.access_log}: {exc.strerror}", file=sys.stderr)
        return 2
    progress = Progress(total, enabled=not args.no_progress and sys.stderr.isatty())
    started = time.perf_counter()
    try:
        results = simulate(config, _records(args.access_log), memories, progress)
    finally:
        progress.close()
    elapsed = time.perf_counter() - started
    lines = results[0].requests if results else 0
    print(report(results, args.top, lines, elapsed))
    if args.plot:
        plot(results, args.plot)
        print(f"\nplot written to {args.plot}")
    return 0
