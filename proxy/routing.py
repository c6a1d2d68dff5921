"""Behaviour matching: the ordered path globs of ``behaviours:``; the first match wins.

Compiled once at load time (``Router(behaviours)``); ``Router.match`` is called in RECV for every request.
Glob syntax (config reference): ``*`` matches any run of characters including ``/``, ``?`` exactly one
character; everything else is literal. The last behaviour is always ``*`` (enforced by config validation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar


class HasPath(Protocol):
    @property
    def path(self) -> str: ...


B = TypeVar("B", bound=HasPath)

_MEMO_LIMIT = 4096


def glob_to_regex(glob: str) -> str:
    """Translate one behaviour glob into an anchored regular expression source."""
    parts: list[str] = []
    for char in glob:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return "^" + "".join(parts) + r"\Z"


def glob_matches(glob: str, path: str) -> bool:
    """Whether ``path`` matches ``glob``; for tests and one-off checks (the Router precompiles)."""
    return re.match(glob_to_regex(glob), path, re.DOTALL) is not None


class Router(Generic[B]):
    """Finds the behaviour for a path. Matches are memoised per path (bounded) since paths repeat."""

    __slots__ = ("_behaviours", "_memo", "_patterns")

    def __init__(self, behaviours: Sequence[B]) -> None:
        if not behaviours:
            raise ValueError("at least one behaviour is required")
        self._behaviours = tuple(behaviours)
        self._patterns = tuple(re.compile(glob_to_regex(b.path), re.DOTALL) for b in self._behaviours)
        self._memo: dict[str, B] = {}

    @property
    def behaviours(self) -> tuple[B, ...]:
        return self._behaviours

    def match(self, path: str) -> B:
        """The first behaviour whose glob matches ``path``; the last one when none does."""
        found = self._memo.get(path)
        if found is not None:
            return found
        behaviour = self._behaviours[-1]
        for pattern, candidate in zip(self._patterns, self._behaviours, strict=True):
            if pattern.match(path):
                behaviour = candidate
                break
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[path] = behaviour
        return behaviour
