"""The persisted ban log: bans kept next to the disk tier, so that an invalidation outlives a restart.

Entries on disk survive a restart; the ban list (``proxy.cache.bans.BanList``) lives in memory. Without a
Redis shared tier (whose sorted set of bans every worker re-reads at start), an invalidation made before a
restart would be forgotten and the disk would serve what it invalidated. So the edge appends every ban it
takes to ``<cache.disk.path>/bans.jsonl`` (one JSON object per line, ``Ban.to_dict``) and reads the file back
at start, before it listens. A line that does not parse (a crash in the middle of an append) is skipped.

The file is rewritten at start with the bans the loaded ``BanList`` kept (it folds and drops redundant ones),
so it stays bounded by ``BanList``'s ``max_bans`` plus the bans of one run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable

from proxy.cache.bans import Ban

__all__ = ["BAN_LOG_NAME", "BanLog"]

log = logging.getLogger("edgeproxy.disk")

BAN_LOG_NAME = "bans.jsonl"


class BanLog:
    """Append-only ban file in the disk tier's folder. Blocking file I/O: small appends, called rarely."""

    def __init__(self, folder: str) -> None:
        """The log at ``<folder>/bans.jsonl``; nothing is opened yet."""
        self.path = os.path.join(folder, BAN_LOG_NAME)

    def load(self) -> list[Ban]:
        """Every ban the file holds, in file order (lines that do not parse are skipped); [] without a
        file. Called once at start-up, before the edge listens."""
        try:
            with open(self.path, encoding="utf-8") as file:
                lines = file.readlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("ban log %s unreadable (%s): earlier bans are not applied", self.path, exc)
            return []
        bans: list[Ban] = []
        for line in lines:
            try:
                bans.append(Ban.from_dict(json.loads(line)))
            except (ValueError, TypeError):
                continue
        return bans

    def rewrite(self, bans: Iterable[Ban]) -> None:
        """Replace the file by ``bans`` (written aside, then renamed); called at start after loading."""
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as file:
                file.writelines(json.dumps(ban.to_dict()) + "\n" for ban in bans)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def append(self, ban: Ban) -> bool:
        """Add ``ban`` to the file (one line, flushed and fsynced); False when it could not be written
        (logged: the ban is in force until the next restart only)."""
        try:
            with open(self.path, "a", encoding="utf-8") as file:
                file.write(json.dumps(ban.to_dict()) + "\n")
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            log.warning("ban %s not written to %s (%s): it is lost on restart", ban.id, self.path, exc)
            return False
        return True
