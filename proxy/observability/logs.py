"""Diagnostics on stderr: every line carries an ISO 8601 UTC time, a level and the process (worker) it
comes from, as text or as one JSON object per line (``--log-format text|json``, ``--log-level``).

``configure`` is called once per process by the CLI before anything logs: by ``edgeproxy serve`` (single
process or worker) and by the worker supervisor. The access log is separate
(``proxy.observability.access_log``); this is for events: start-up, origin up/down, shared tier lost and
recovered, reloads, invalidations, unexpected errors.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import IO, Literal

__all__ = ["LEVELS", "JsonFormatter", "TextFormatter", "configure", "iso_time"]

LogFormat = Literal["text", "json"]
LEVELS = ("debug", "info", "warning", "error")


def iso_time(ts: float) -> str:
    """``ts`` (epoch seconds) as ``2026-11-26T17:51:02.029Z``."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{seconds}.{int(ts % 1 * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-11-26T17:51:02.029Z WARNING worker 1234: origin app is DOWN (…)``; a traceback follows."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso_time(record.created)} {record.levelname} {self.worker}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``worker``, ``logger``, ``message`` (+ ``error``)."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": iso_time(record.created),
            "level": record.levelname.lower(),
            "worker": self.worker,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def configure(
    fmt: LogFormat = "text", level: str = "info", *, worker: str | None = None, stream: IO[str] | None = None
) -> None:
    """Send every logger's records at ``level`` and above to stderr in ``fmt``; replaces earlier handlers.

    ``worker`` names the process in each line (default ``pid <pid>``; the supervisor passes ``supervisor``).
    """
    name = worker if worker is not None else f"pid {os.getpid()}"
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(name) if fmt == "json" else TextFormatter(name))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries chatter at INFO (aiohttp's access log is off; asyncio's slow-callback notes are debug).
    for noisy in ("asyncio", "aiohttp", "redis", "aiocache", "hypothesis"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
