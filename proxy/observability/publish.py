"""How a worker's counters reach the admin API of whichever worker answers: a per-node folder.

The supervisor creates a private temporary folder and names it to its workers in ``EDGEPROXY_STATS_DIR``
(with the reload generation in ``EDGEPROXY_GENERATION``). ``Publisher.run`` (one task per edge process)
samples the counters about once a second (for rates) and, in a worker, writes its snapshot to
``<folder>/<pid>.json`` (atomically: a temporary file, then a rename). ``read_snapshots`` gives the admin
API every fresh snapshot. A single process has no folder and is read directly.

Why not prometheus-client's multiprocess mode: it only carries Prometheus samples (no top URLs, recent
windows or health details for the dashboard), needs its folder wiped at every start, and its values are
mmap writes on the request path; here the request path bumps plain integers and a worker writes one small
file a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["EXPIRY", "GENERATION_ENV", "INTERVAL", "STATS_DIR_ENV", "Publisher", "read_snapshots"]

STATS_DIR_ENV = "EDGEPROXY_STATS_DIR"
GENERATION_ENV = "EDGEPROXY_GENERATION"
INTERVAL = 1.0  # seconds between two samples (and writes)
EXPIRY = 5.0  # a snapshot older than this belongs to a worker that is gone

log = logging.getLogger("edgeproxy.stats")


class Publisher:
    """Samples (``sample(now)``) and, with a folder, writes (``snapshot()``) once per ``INTERVAL``."""

    def __init__(
        self,
        sample: Callable[[float], None],
        snapshot: Callable[[], dict[str, Any]],
        folder: str | None,
    ) -> None:
        self._sample = sample
        self._snapshot = snapshot
        self.folder = Path(folder) if folder else None
        self._path = self.folder / f"{os.getpid()}.json" if self.folder else None

    @property
    def folder_name(self) -> str | None:
        """The folder written to, or None (single process)."""
        return str(self.folder) if self.folder is not None else None

    def publish_once(self) -> None:
        """Take a sample and write the snapshot now (also called at start, so a new worker shows at once)."""
        self._sample(time.time())
        if self._path is None:
            return
        data = json.dumps({"time": time.time(), "pid": os.getpid(), "stats": self._snapshot()})
        temporary = self._path.with_suffix(".tmp")
        try:
            temporary.write_text(data, encoding="utf-8")
            os.replace(temporary, self._path)
        except OSError as exc:
            log.debug("cannot write the stats snapshot: %s", exc)

    def close(self) -> None:
        """Remove this worker's file at shutdown, so the sums drop it at once."""
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()

    async def run(self) -> None:
        """Publish every ``INTERVAL`` until cancelled; the file is removed when the task ends."""
        try:
            while True:
                try:
                    self.publish_once()
                except Exception:  # a snapshot bug must not stop the edge (nor stay silent)
                    log.exception("stats snapshot failed")
                await asyncio.sleep(INTERVAL)
        finally:
            self.close()


def read_snapshots(folder: str, now: float | None = None) -> list[dict[str, Any]]:
    """Every worker's latest snapshot (``{"time", "pid", "stats"}``) written less than ``EXPIRY`` ago."""
    now = time.time() if now is None else now
    found = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            data = json.loads(Path(folder, name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and now - float(data.get("time", 0)) < EXPIRY and "stats" in data:
            found.append(data)
    return found
