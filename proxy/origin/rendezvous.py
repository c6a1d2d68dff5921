"""Rendezvous (highest random weight) hashing: which member of a ``balance: hash`` group owns a cache key.

Every member gets a pseudo-random weight for a key, ``weight(member, key)``: the first 8 bytes of
BLAKE2b over the member's name, a NUL byte and the key. The member with the highest weight owns the key;
the others follow in falling weight, which is the order a request fails over in. Thaler and Ravishankar,
"Using name-based mappings to increase hit rates" (IEEE/ACM ToN 6(1), 1998).

Why this suits a pool of regional edges:

- The weight depends only on the member's name and the key, never on the process, the other members or
  their order in the config, so every edge that lists the same names picks the same owner for a key
  (Python's ``hash()`` is salted per process and would not do).
- Removing a member moves only the keys it owned (each to its second-highest member); adding one takes
  about 1/(N+1) of the keys, from all the others alike. No ring, no virtual nodes, nothing to rebuild.

Pure: no clock, no I/O; ``Rendezvous.order`` is called by ``OriginGroup.candidates`` once per request that
reaches FETCH (a few microseconds for a handful of members).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["Rendezvous", "weight"]

_DIGEST_BYTES = 8


def _hasher(member: str) -> hashlib.blake2b:
    hasher = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    hasher.update(member.encode("utf-8", "surrogatepass"))
    hasher.update(b"\0")  # ("ab", "c") and ("a", "bc") must not hash alike
    return hasher


def weight(member: str, key: str) -> int:
    """``member``'s weight for ``key``: an integer in [0, 2**64), the same in every process and release."""
    hasher = _hasher(member)
    hasher.update(key.encode("utf-8", "surrogatepass"))
    return int.from_bytes(hasher.digest(), "big")


class Rendezvous:
    """The hash order of a fixed list of member names; built once per group (when the runtime is built)."""

    __slots__ = ("_hashers", "names")

    def __init__(self, names: Sequence[str]) -> None:
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique: {list(names)}")
        self.names = tuple(names)
        self._hashers = tuple(_hasher(name) for name in self.names)

    def weights(self, key: str) -> list[int]:
        """Each member's ``weight(name, key)``, in the configured order."""
        data = key.encode("utf-8", "surrogatepass")
        out: list[int] = []
        for base in self._hashers:
            hasher = base.copy()
            hasher.update(data)
            out.append(int.from_bytes(hasher.digest(), "big"))
        return out

    def order(self, key: str) -> list[int]:
        """The members' indices for ``key``, owner first, then by falling weight.

        Ties (a 2**-64 chance) go to the member configured first, so the order is always total.
        """
        weights = self.weights(key)
        return sorted(range(len(weights)), key=lambda i: (-weights[i], i))

    def owner(self, key: str) -> str:
        """The name of the member that owns ``key`` (the first of ``order``)."""
        return self.names[self.order(key)[0]]
