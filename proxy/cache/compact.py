"""Sharing the header fields that many cached entries repeat, so each entry does not keep its own copy.

Called by ``MemoryStore.set`` for every entry it stores (the STORE path, never on a hit). Most stored fields
are the same across the objects of a site (``Content-Type: text/css``, ``Cache-Control: max-age=3600``,
``Server: …``, ``Date`` within one second): a per-entry copy of each name, value and ``(name, value)``
pair costs about 250 bytes a field, more than a small body. ``FieldTable.share`` swaps each pair for an
equal one already held by the table, so identical fields are one object for the whole store.

Names come from the origin client as ``multidict.istr`` (a ``str`` subclass that also carries its
lower-cased form, about twice the memory of a plain ``str``): a pair the table keeps first gets a plain,
interned ``str`` name. The table is bounded (``max_pairs``): when full it is emptied and refills from later
entries, so a value that never repeats (an ``ETag``) costs only the time it stays in the table, and pairs
still shared by stored entries live on in them. Equal values only, compared exactly: what an entry holds
is always what it held before, field for field.
"""

from __future__ import annotations

import sys

from proxy.cache.entry import CacheEntry

__all__ = ["FieldTable"]

_SHARED_FLOATS = {0.0: 0.0}  # stale windows are mostly 0: one float object for all entries


class FieldTable:
    """Canonical ``(name, value)`` pairs for one memory store (one worker, one event loop: no lock)."""

    __slots__ = ("_floats", "_max_pairs", "_pairs")

    def __init__(self, max_pairs: int = 8192) -> None:
        """``max_pairs`` bounds the table (a pair with its slot takes about 200 bytes); ``0`` shares
        nothing."""
        self._max_pairs = max_pairs
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}
        self._floats: dict[float, float] = dict(_SHARED_FLOATS)

    def __len__(self) -> int:
        """Pairs held now."""
        return len(self._pairs)

    def share(self, entry: CacheEntry) -> None:
        """Replace ``entry``'s header pairs (and its repeated float fields) with equal shared objects, in
        place; the entry compares equal to what it was. Called once per ``MemoryStore.set``."""
        if self._max_pairs <= 0:
            return
        headers = entry.headers
        if headers:
            pairs = self._pairs
            shared = []
            for pair in headers:
                canonical = pairs.get(pair)
                if canonical is None:
                    if len(pairs) >= self._max_pairs:
                        pairs.clear()
                    name, value = pair
                    # str() of a str subclass (istr) is a plain copy; interned: one object per name.
                    canonical = (sys.intern(str(name)), str(value))
                    pairs[canonical] = canonical
                shared.append(canonical)
            entry.headers = tuple(shared)
        floats = self._floats
        share = floats.setdefault if len(floats) < 64 else floats.get  # few distinct values per site
        entry.ttl = share(entry.ttl, entry.ttl)
        entry.stale_while_revalidate = share(entry.stale_while_revalidate, entry.stale_while_revalidate)
        entry.stale_if_error = share(entry.stale_if_error, entry.stale_if_error)
