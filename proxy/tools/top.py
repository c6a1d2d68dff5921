"""``edgeproxy top``: a live terminal view of an edge's numbers (like varnishstat), from its admin API.

``snapshot(base_url, token)`` is the one client function: it reads ``GET /stats`` (today's admin API) and
returns a ``Snapshot``; when the admin API grows richer dashboard JSON, only that function changes.
``render`` turns two snapshots (the previous one gives the rates) into a rich table. ``--once`` prints one
snapshot and exits (scripts, tests); otherwise the view refreshes every ``--interval`` seconds until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

__all__ = ["Snapshot", "main", "render", "snapshot"]

RESULTS = ("hit", "stale", "refresh-hit", "miss", "pass", "synth", "error", "generated")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What ``top`` shows, read at ``when`` (monotonic seconds)."""

    when: float
    node: str
    workers: int
    entries: int
    bytes: int
    hit_ratio: float | None
    requests: dict[str, int]
    origins: dict[str, dict[str, Any]] = field(default_factory=dict)
    shared: dict[str, Any] | None = None
    bans: int = 0


def snapshot(base_url: str, token: str | None, timeout: float = 5.0) -> Snapshot:
    """Read the edge's numbers from the admin API (``GET /stats``, bearer token when given). Raises
    ``OSError`` (``urllib.error.URLError``/``HTTPError``) when the API cannot be read."""
    request = urllib.request.Request(base_url.rstrip("/") + "/stats")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = json.loads(response.read())
    return Snapshot(
        when=time.monotonic(),
        node=str(data.get("node", "?")),
        workers=int(data.get("workers", 1)),
        entries=int(data.get("entries", 0)),
        bytes=int(data.get("bytes", 0)),
        hit_ratio=data.get("hit_ratio"),
        requests={str(k): int(v) for k, v in (data.get("requests") or {}).items()},
        origins=dict(data.get("origins") or {}),
        shared=data.get("shared"),
        bans=int(data.get("bans", 0)),
    )


def _size(value: int) -> str:
    number = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if number < 1024 or unit == "GiB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return f"{number:.1f} GiB"  # pragma: no cover


def render(current: Snapshot, previous: Snapshot | None) -> Group:
    """The view: a header line, requests by cache result (total and per second), origins."""
    ratio = "-" if current.hit_ratio is None else f"{current.hit_ratio:.1%}"
    total = sum(current.requests.values())
    header = Text(
        f"edgeproxy top · {current.node} · {current.workers} worker(s) · {total:,} requests · "
        f"hit ratio {ratio} · memory {current.entries:,} objects, {_size(current.bytes)} · "
        f"bans {current.bans}",
        style="bold",
    )
    results = Table(title="requests by cache result", expand=False)
    results.add_column("result")
    results.add_column("total", justify="right")
    results.add_column("per s", justify="right")
    elapsed = (current.when - previous.when) if previous is not None else 0.0
    names = [r for r in RESULTS if r in current.requests] + sorted(set(current.requests) - set(RESULTS))
    for name in names:
        count = current.requests.get(name, 0)
        rate = "-"
        if previous is not None and elapsed > 0:
            rate = f"{(count - previous.requests.get(name, 0)) / elapsed:,.1f}"
        results.add_row(name, f"{count:,}", rate)
    origins = Table(title="origins", expand=False)
    origins.add_column("origin")
    origins.add_column("state")
    origins.add_column("details")
    for name, health in sorted(current.origins.items()):
        state = str(health.get("state", "up" if health.get("healthy", True) else "down"))
        details = ", ".join(f"{k}={v}" for k, v in health.items() if k not in ("state", "healthy"))
        origins.add_row(name, state, details[:80])
    parts: list[Any] = [header, results, origins]
    if current.shared is not None:
        shared = ", ".join(f"{k}={v}" for k, v in current.shared.items())
        parts.append(Text(f"shared tier: {shared}"))
    return Group(*parts)


def _admin_url(args: argparse.Namespace) -> tuple[str, str | None]:
    token = args.token or os.environ.get("EDGEPROXY_ADMIN_TOKEN")
    if args.admin:
        return args.admin, token
    from proxy.settings import load_config

    config = load_config(args.config)
    if config.admin is None:
        raise ValueError(f"{config.source_file} has no admin listener: pass --admin URL")
    host = config.admin.listen.host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{config.admin.listen.port}", token or config.admin.token or None


def main(args: argparse.Namespace) -> int:
    """``edgeproxy top``: exit 0; 1 when the admin API cannot be read; 2 for bad arguments or config."""
    from proxy.settings import ConfigError

    try:
        base, token = _admin_url(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"edgeproxy top: {exc}", file=sys.stderr)
        return 2
    try:
        first = snapshot(base, token)
    except urllib.error.HTTPError as exc:
        hint = " (wrong or missing token: --token or $EDGEPROXY_ADMIN_TOKEN)" if exc.code == 401 else ""
        print(f"edgeproxy top: {base}/stats answered {exc.code}{hint}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"edgeproxy top: cannot read {base}/stats: {exc}", file=sys.stderr)
        return 1
    console = Console()
    if args.once:
        console.print(render(first, None))
        return 0
    from rich.live import Live

    previous = first
    try:
        with Live(render(first, None), console=console, screen=True, auto_refresh=False) as live:
            while True:
                time.sleep(max(0.2, args.interval))
                try:
                    current = snapshot(base, token)
                except OSError as exc:
                    live.update(Text(f"edgeproxy top: cannot read {base}/stats: {exc}", style="red"))
                    live.refresh()
                    continue
                live.update(render(current, previous), refresh=True)
                previous = current
    except KeyboardInterrupt:
        return 0
