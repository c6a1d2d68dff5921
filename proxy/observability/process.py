"""This process's resource use, for the ``process_*`` metrics (summed over workers by the admin API).

``process_stats`` is called about once a second by each worker's stats publisher; it reads ``/proc`` on
Linux and falls back to ``resource`` elsewhere.
"""

from __future__ import annotations

import os
import resource
import time

_STARTED = time.time()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_stats() -> dict[str, float]:
    """``cpu_seconds`` (user + system), ``rss_bytes``, ``open_fds`` (-1 when unknown), ``start_time``."""
    times = os.times()
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            rss = float(int(statm.read().split()[1]) * _PAGE)
    except (OSError, ValueError, IndexError):
        rss = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    try:
        fds = float(len(os.listdir("/proc/self/fd")))
    except OSError:
        fds = -1.0
    return {
        "cpu_seconds": times.user + times.system,
        "rss_bytes": rss,
        "open_fds": fds,
        "start_time": _STARTED,
    }
