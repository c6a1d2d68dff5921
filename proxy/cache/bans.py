"""Bans: lazy, cluster-wide invalidation (Varnish bans, with CloudFront's invalidation path syntax).

An invalidation or a tag purge does not walk the cache. It becomes a ``Ban``: patterns (paths and/or tags)
plus the time it was made. The admin API creates bans, the edge publishes them through the shared tier and
every worker adds them to its ``BanList``; LOOKUP asks ``BanList.matches`` about the entry it found, and an
entry stored before a matching ban is a miss (hard ban) or stale (soft ban). Entries stored after the ban
are not affected, so a refetched object is served normally.

Paths follow CloudFront invalidation paths, matched case-sensitively against the raw (percent-encoded)
request target of an entry, ``path`` or ``path?query``:

- ``/index.html`` — exactly that path, with any query string or none;
- ``/images/*`` — every path that starts with ``/images/`` (``/images/a/b.png``), any query;
- ``/images*`` — every path that starts with ``/images`` (``/images.png`` too), any query;
- ``/*`` — everything;
- a pattern containing ``?`` is matched against the whole target, query included: ``/a?v=1`` is that one
  query variant, ``/a?*`` every variant that has a query.

``*`` is a wildcard only as the last character and is refused anywhere else, as CloudFront does. A tag
matches an entry whose ``CacheEntry.tags`` contains it (exact, case-sensitive).

Everything here is pure: times are arguments (epoch seconds, like ``CacheEntry`` times).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "MAX_BAN_ID_LENGTH",
    "MAX_PATHS_PER_BAN",
    "MAX_PATH_LENGTH",
    "MAX_TAGS_PER_BAN",
    "MAX_TAG_LENGTH",
    "Ban",
    "BanList",
    "path_problem",
    "tag_problem",
    "target_of_key",
]

MAX_PATHS_PER_BAN = 3000
"""Paths in one invalidation, as CloudFront allows per call."""
MAX_PATH_LENGTH = 4096
"""Characters in one path pattern."""
MAX_TAGS_PER_BAN = 3000
"""Tags in one purge."""
MAX_TAG_LENGTH = 1024
"""Characters in one tag (Fastly's surrogate key limit)."""
MAX_BAN_ID_LENGTH = 128
"""Characters in a ban id; ids are ``[A-Za-z0-9._:-]``, so they are safe in URLs and log lines."""

# A path pattern: visible ASCII only (a raw request target is percent-encoded: no spaces, controls or
# non-ASCII), "*" at most once, as the last character.
_PATTERN_RE = re.compile(r"/[!-)+-~]*\*?")
_VISIBLE_ASCII_RE = re.compile(r"[!-~]*")
_TAG_RE = re.compile(r"[^\x00-\x20\x7f]+")  # no whitespace or control characters
_ID_RE = re.compile(r"[A-Za-z0-9._:-]+")

_ALL = "/*"


def path_problem(pattern: object) -> str | None:
    """Why ``pattern`` cannot be an invalidation path, or None when it can.

    Called by the admin API for each path of ``POST /invalidations`` (to answer 400 with the reason) and by
    ``Ban`` itself. The result is a short sentence without the pattern in it.
    """
    if not isinstance(pattern, str):
        return "must be a string"
    if not pattern.startswith("/"):
        return 'must start with "/"'
    if len(pattern) > MAX_PATH_LENGTH:
        return f"must be at most {MAX_PATH_LENGTH} characters"
    if _PATTERN_RE.fullmatch(pattern) is None:
        if _VISIBLE_ASCII_RE.fullmatch(pattern) is None:
            return "must be visible ASCII: percent-encode spaces and other characters (%20)"
        return '"*" is only allowed as the last character'
    return None


def tag_problem(tag: object) -> str | None:
    """Why ``tag`` cannot be a purge tag, or None when it can (non-empty, no whitespace or controls).

    Called by the admin API for each tag of ``POST /purge`` and by ``Ban`` itself.
    """
    if not isinstance(tag, str):
        return "must be a string"
    if not tag:
        return "must not be empty"
    if len(tag) > MAX_TAG_LENGTH:
        return f"must be at most {MAX_TAG_LENGTH} characters"
    if _TAG_RE.fullmatch(tag) is None:
        return "must not contain whitespace or control characters"
    return None


def target_of_key(key: str) -> str:
    """The request target (``path`` or ``path?query``) inside a cache key from ``proxy.cache.keys``.

    Called by LOOKUP to get the ``path`` argument of ``BanList.matches`` from the key it looked up (base or
    variant key: both give the same target), so that a ban matches a stored entry the same way whichever
    request finds it. A key is ``host/path?query`` then ``\\n``-separated lines, and a normalised host never
    contains ``/``; returns ``""`` for a key without a path (which only ``/*`` matches).
    """
    line = key.partition("\n")[0]
    start = line.find("/")
    return line[start:] if start >= 0 else ""


@dataclass(frozen=True, slots=True)
class Ban:
    """One invalidation or purge: entries stored before ``created`` that match it are invalid.

    ``paths`` are invalidation path patterns (see the module docstring), ``tags`` surrogate keys; an entry
    matches when any path or any tag matches. ``soft`` bans make matching entries stale instead of invalid.
    Created by the admin side (``created`` = when the API call was made) and rebuilt with ``from_dict`` from
    what the shared tier carries. Raises ValueError when invalid: an id that is empty, too long or not
    ``[A-Za-z0-9._:-]``, a non-finite ``created``, neither paths nor tags, an invalid path or tag, more
    than ``MAX_PATHS_PER_BAN`` paths or ``MAX_TAGS_PER_BAN`` tags.
    """

    id: str
    created: float
    paths: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    soft: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or len(self.id) > MAX_BAN_ID_LENGTH or not _ID_RE.fullmatch(self.id):
            raise ValueError(f"ban id must be 1-{MAX_BAN_ID_LENGTH} characters of [A-Za-z0-9._:-]")
        if isinstance(self.created, bool) or not isinstance(self.created, int | float):
            raise ValueError("ban created must be a number")
        if not math.isfinite(self.created):
            raise ValueError("ban created must be finite")
        if not isinstance(self.paths, tuple) or not isinstance(self.tags, tuple):
            raise ValueError("ban paths and tags must be tuples")
        if not isinstance(self.soft, bool):
            raise ValueError("ban soft must be a bool")
        if not self.paths and not self.tags:
            raise ValueError("a ban needs at least one path or tag")
        if len(self.paths) > MAX_PATHS_PER_BAN:
            raise ValueError(f"a ban has at most {MAX_PATHS_PER_BAN} paths")
        if len(self.tags) > MAX_TAGS_PER_BAN:
            raise ValueError(f"a ban has at most {MAX_TAGS_PER_BAN} tags")
        for index, pattern in enumerate(self.paths):
            problem = path_problem(pattern)
            if problem:
                raise ValueError(f"ban paths[{index}] {problem}")
        for index, tag in enumerate(self.tags):
            problem = tag_problem(tag)
            if problem:
                raise ValueError(f"ban tags[{index}] {problem}")

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict; called by the edge to publish the ban (``from_dict`` reads it back)."""
        return {
            "id": self.id,
            "created": self.created,
            "paths": list(self.paths),
            "tags": list(self.tags),
            "soft": self.soft,
        }

    @classmethod
    def from_dict(cls, data: object) -> Ban:
        """Rebuild a ban from ``to_dict`` output decoded from JSON; called for bans learned from the shared
        tier. Anyone who can write there controls ``data``, so everything is checked: raises ValueError for
        anything but a mapping with exactly the fields of ``to_dict`` holding valid values."""
        if not isinstance(data, Mapping):
            raise ValueError("a ban must be an object")
        unknown = set(data) - {"id", "created", "paths", "tags", "soft"}
        if unknown:
            raise ValueError("a ban has unknown fields")
        paths = data.get("paths", [])
        tags = data.get("tags", [])
        if not isinstance(paths, list | tuple) or not isinstance(tags, list | tuple):
            raise ValueError("ban paths and tags must be lists")
        return cls(
            id=data.get("id", ""),  # every field is checked by __post_init__
            created=data.get("created", math.nan),
            paths=tuple(paths),
            tags=tuple(tags),
            soft=data.get("soft", False),
        )

    @property
    def everything(self) -> bool:
        """True for a ban that matches every entry (its paths include ``/*``)."""
        return _ALL in self.paths


class _Index:
    """Every pattern of the bans of one kind (hard or soft), compiled into lookups across bans.

    Each pattern maps to the newest ban that holds it: a ban applies to an entry stored at ``t`` when it was
    created after ``t``, so if the newest one holding a pattern does not apply, none does. Exact paths and
    tags are dict lookups; prefix patterns are found by looking up the target's own prefixes, one per
    distinct prefix length in use (few in practice: ``/images/``, ``/css/``…); ``/*`` is one comparison.
    Bans only ever leave a ``BanList`` oldest first, so removing a ban removes exactly the patterns whose
    newest holder it is.
    """

    __slots__ = ("everything", "exact", "exact_q", "lengths", "lengths_q", "prefix", "prefix_q", "tags")

    def __init__(self) -> None:
        self.everything: Ban | None = None
        self.exact: dict[str, Ban] = {}  # pattern without "?" -> newest ban; matched against the bare path
        self.exact_q: dict[str, Ban] = {}  # pattern with "?" -> newest ban; matched against path?query
        self.prefix: dict[str, Ban] = {}  # "/images/" for "/images/*"
        self.prefix_q: dict[str, Ban] = {}
        self.lengths: tuple[int, ...] = ()  # distinct lengths of the keys of prefix, ascending
        self.lengths_q: tuple[int, ...] = ()
        self.tags: dict[str, Ban] = {}

    def _tables(self, ban: Ban) -> list[tuple[dict[str, Ban], str]]:
        """(table, key) for each pattern of ``ban``, "/*" excluded."""
        out: list[tuple[dict[str, Ban], str]] = []
        for pattern in ban.paths:
            if pattern == _ALL:
                continue
            with_query = "?" in pattern
            if pattern.endswith("*"):
                out.append((self.prefix_q if with_query else self.prefix, pattern[:-1]))
            else:
                out.append((self.exact_q if with_query else self.exact, pattern))
        out.extend((self.tags, tag) for tag in ban.tags)
        return out

    def add(self, ban: Ban) -> None:
        """Index ``ban``'s patterns, keeping the newest ban per pattern (then call ``refresh``)."""
        if ban.everything and (self.everything is None or ban.created >= self.everything.created):
            self.everything = ban
        for table, key in self._tables(ban):
            held = table.get(key)
            if held is None or ban.created >= held.created:
                table[key] = ban

    def remove(self, ban: Ban) -> None:
        """Unindex ``ban`` (then call ``refresh``); only called for the oldest bans, so a pattern it holds
        has no newer holder."""
        if self.everything is ban:
            self.everything = None
        for table, key in self._tables(ban):
            if table.get(key) is ban:
                del table[key]

    def refresh(self) -> None:
        """Recompute the prefix lengths; called once after a batch of ``add``/``remove``."""
        self.lengths = tuple(sorted({len(key) for key in self.prefix}))
        self.lengths_q = tuple(sorted({len(key) for key in self.prefix_q}))

    def find(self, target: str, bare: str, entry_tags: tuple[str, ...], stored_at: float) -> Ban | None:
        """A ban of this index that applies to the entry, or None (see ``BanList.matches``)."""
        ban = self.everything
        if ban is not None and ban.created > stored_at:
            return ban
        ban = self.exact.get(bare)
        if ban is not None and ban.created > stored_at:
            return ban
        if self.prefix:
            prefix = self.prefix
            size = len(bare)
            for n in self.lengths:
                if n > size:
                    break
                ban = prefix.get(bare[:n])
                if ban is not None and ban.created > stored_at:
                    return ban
        if target is not bare:  # the caller passes the very same str when the target has no query
            ban = self.exact_q.get(target)
            if ban is not None and ban.created > stored_at:
                return ban
            if self.prefix_q:
                prefix = self.prefix_q
                size = len(target)
                for n in self.lengths_q:
                    if n > size:
                        break
                    ban = prefix.get(target[:n])
                    if ban is not None and ban.created > stored_at:
                        return ban
        if entry_tags and self.tags:
            tags = self.tags
            for tag in entry_tags:
                ban = tags.get(tag)
                if ban is not None and ban.created > stored_at:
                    return ban
        return None


class BanList:
    """The bans one worker knows, ordered by ``created``; asked on every cache hit while it is non-empty.

    One list per worker process, used from its event loop only. Adding the same ban id twice is a no-op
    (bans arrive by pub/sub and again by polling). A hard ``/*`` ban makes every older ban redundant, so
    they are dropped. The list is bounded by ``max_bans``: when a new ban would exceed it, the oldest bans
    are folded into one ``/*`` ban as recent as the newest of them, which invalidates at least everything
    they did (more, never less: safe, at the price of extra misses).
    """

    __slots__ = (
        "_all_hard",
        "_all_soft",
        "_bans",
        "_by_id",
        "_created",
        "_expired",
        "_folds",
        "_hard",
        "_max_bans",
        "_soft",
        "newest",
    )

    def __init__(self, max_bans: int = 10_000) -> None:
        """Create an empty list; called once per worker. ``max_bans`` ≥ 2 bounds the number of bans kept."""
        if max_bans < 2:
            raise ValueError("max_bans must be >= 2")
        self._max_bans = max_bans
        self._created: list[float] = []  # ban.created, ascending (for bisect)
        self._bans: list[Ban] = []  # in the same order
        self._by_id: dict[str, Ban] = {}
        self._hard = _Index()
        self._soft = _Index()
        # ``created`` of the newest ban (-inf if none): entries stored at or after it match nothing. A plain
        # attribute, read on every cache hit before anything is called.
        self.newest = -math.inf
        # Newest created of a hard / soft "/*" ban ever added: a ban no newer than it is redundant.
        self._all_hard = -math.inf
        self._all_soft = -math.inf
        self._folds = 0
        self._expired = -math.inf  # the largest expire() bound so far: older bans are never taken again

    def add(self, ban: Ban) -> bool:
        """Learn ``ban``; called when the admin API creates one and when one arrives from the shared tier.

        Returns True when the list changed, False when the ban was already known (same id), is redundant
        (no newer than a ``/*`` ban at least as strong, which already invalidates everything it would) or
        expired (created at or before an ``expire`` bound: it can match no entry still alive).
        """
        if ban.id in self._by_id:
            return False
        created = ban.created
        if created <= self._all_hard or created <= self._expired or (ban.soft and created <= self._all_soft):
            return False
        if ban.everything:
            if ban.soft:
                self._all_soft = created
            else:
                self._all_hard = created
                self._drop_until(bisect_right(self._created, created))
        index = bisect_right(self._created, created)
        self._created.insert(index, created)
        self._bans.insert(index, ban)
        self._by_id[ban.id] = ban
        kind = self._soft if ban.soft else self._hard
        kind.add(ban)
        kind.refresh()
        if created > self.newest:
            self.newest = created
        if len(self._bans) > self._max_bans:
            self._fold_oldest(len(self._bans) - self._max_bans + 1)
        return True

    def _drop_until(self, index: int) -> None:
        """Forget the ``index`` oldest bans (always every ban created at or before some time)."""
        for ban in self._bans[:index]:
            del self._by_id[ban.id]
            (self._soft if ban.soft else self._hard).remove(ban)
        self._hard.refresh()
        self._soft.refresh()
        del self._bans[:index]
        del self._created[:index]
        self.newest = self._created[-1] if self._created else -math.inf

    def _fold_oldest(self, count: int) -> None:
        """Replace the ``count`` oldest bans (and any created at the same time as the last of them) by one
        ``/*`` ban as recent as the newest of them."""
        count = bisect_right(self._created, self._created[count - 1])
        folded = self._bans[:count]
        self._drop_until(count)
        self._folds += 1
        fold_id = f"folded.{self._folds}"
        while fold_id in self._by_id:  # only if a ban from elsewhere took this id
            fold_id += "_"
        merged = Ban(
            id=fold_id,
            created=folded[-1].created,
            paths=(_ALL,),
            soft=all(ban.soft for ban in folded),
        )
        # Not through add(): the "/*" ban that would make it look redundant may be among the folded ones.
        # Every ban left is newer than the merged one, so it goes first.
        self._created.insert(0, merged.created)
        self._bans.insert(0, merged)
        self._by_id[merged.id] = merged
        kind = self._soft if merged.soft else self._hard
        kind.add(merged)
        kind.refresh()
        if merged.soft:
            self._all_soft = max(self._all_soft, merged.created)
        else:
            self._all_hard = max(self._all_hard, merged.created)
        self.newest = max(self.newest, merged.created)

    def matches(self, path: str, entry_tags: tuple[str, ...], stored_at: float) -> Ban | None:
        """The ban that applies to an entry, or None; called by LOOKUP on every hit before using the entry.

        ``path`` is the entry's request target (``target_of_key(key)``: raw path, ``?query`` when the key
        has one), ``entry_tags`` its ``CacheEntry.tags``, ``stored_at`` when its content left the origin
        (``CacheEntry.request_time`` is the conservative choice). Only bans created after ``stored_at``
        apply. Returns a hard ban when one applies (the entry must not be used: treat as a miss, and it may
        be deleted), else a soft one (the entry is stale from ``ban.created`` on: revalidate, or serve it
        under stale-if-error), else None. O(1) when the list is empty or the entry is newer than every ban;
        otherwise a few dict lookups, whatever the number of bans (one per distinct prefix length in use).
        """
        if stored_at >= self.newest:
            return None
        query_at = path.find("?")
        bare = path if query_at < 0 else path[:query_at]
        found = self._hard.find(path, bare, entry_tags, stored_at)
        if found is None:
            found = self._soft.find(path, bare, entry_tags, stored_at)
        return found

    def expire(self, older_than: float) -> int:
        """Forget bans created at or before ``older_than``; returns how many were forgotten.

        Called periodically with ``now - longest entry lifetime`` (the largest TTL plus stale windows an
        entry can be kept for): by then every entry such a ban could match is gone. Never call it with a
        bound that entries can outlive, or invalidated content comes back. Bans this old are refused by
        ``add`` from now on, so a poller re-reading old bans does not bring them back.
        """
        self._expired = max(self._expired, older_than)
        index = bisect_right(self._created, older_than)
        if index:
            self._drop_until(index)
        return index

    def get(self, ban_id: str) -> Ban | None:
        """The ban with this id, if this list knows it (not after it was expired, folded or superseded)."""
        return self._by_id.get(ban_id)

    def since(self, created: float) -> tuple[Ban, ...]:
        """Bans created at or after ``created``, oldest first (for a poller catching up from a time)."""
        return tuple(self._bans[bisect_left(self._created, created) :])

    def snapshot(self) -> tuple[Ban, ...]:
        """Every ban known, oldest first; for stats, and to hand the list to a new worker."""
        return tuple(self._bans)

    def extend(self, bans: Iterable[Ban]) -> int:
        """``add`` each ban; returns how many changed the list (a poller's or a new worker's catch-up)."""
        return sum(1 for ban in bans if self.add(ban))

    def __len__(self) -> int:
        """Number of bans kept."""
        return len(self._bans)
