"""A synthetic access log whose hit ratio is known by construction (``edgeproxy replay`` tests, the worked
example in docs/replay.md): ``objects`` distinct files of ``size`` bytes under ``/assets/``, requested in
``rounds`` full passes in the same order one second apart, plus one uncacheable POST per pass.

With a memory tier that holds every object, only the first pass misses: the hit ratio of the GETs is
``(rounds - 1) / rounds``. With a tier too small for all of them, LRU with a cyclic access pattern evicts
each object before it comes round again: every request misses.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

START = dt.datetime(2026, 1, 5, 12, 0, 0, tzinfo=dt.UTC)


def lines(objects: int, rounds: int, size: int, fmt: str = "json") -> Iterator[str]:
    """The log lines (JSON as edgeproxy writes them, or Combined Log Format)."""
    tick = 0
    for _ in range(rounds):
        for index in range(objects):
            yield _line(tick, "GET", f"/assets/file-{index}.js", 200, size, fmt)
            tick += 1
        yield _line(tick, "POST", "/api/submit", 200, 10, fmt)
        tick += 1


def _line(tick: int, method: str, path: str, status: int, size: int, fmt: str) -> str:
    when = START + dt.timedelta(seconds=tick)
    if fmt == "combined":
        stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
        return f'127.0.0.1 - - [{stamp}] "{method} {path} HTTP/1.1" {status} {size} "-" "demo/1.0"'
    record = {
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "client": "127.0.0.1",
        "method": method,
        "host": "www.example.test",
        "path": path,
        "query": "",
        "status": status,
        "bytes": size,
    }
    return json.dumps(record, separators=(",", ":"))


if __name__ == "__main__":  # python -m proxy.tools.demo_log > demo.log
    import sys

    objects = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    for line in lines(objects, rounds, 64 * 1024):
        print(line)
