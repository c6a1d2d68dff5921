"""What a bad config file looks like to its author: every problem with its file, line, column and key.

The loader collects ``ConfigProblem`` values from YAML syntax errors, the model's validation errors and the
cross-section checks, then raises one ``ConfigError`` holding all of them. ``str(error)`` is what the command
line prints: one ``FILE:LINE:COL: key.path[2].sub: message`` line per problem, in file order.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigProblem"]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config file.

    ``line`` and ``column`` are 1-based and point at the key (for unknown or missing keys) or at the value
    (for a bad value). They are 0 when the problem concerns the file as a whole (it cannot be read) or a
    config that did not come from a file. ``key_path`` is the dotted path of the key as written in the file,
    list indices in brackets (``behaviours[1].ttl.default``), or ``""`` for problems with no key (syntax).
    """

    file: str
    line: int
    column: int
    key_path: str
    message: str

    def __str__(self) -> str:
        """Render as ``FILE:LINE:COL: key.path: message`` (position and key left out when unknown)."""
        where = f"{self.file}:{self.line}:{self.column}" if self.line > 0 else self.file
        if self.key_path:
            return f"{where}: {self.key_path}: {self.message}"
        return f"{where}: {self.message}"

    def sort_key(self) -> tuple[str, int, int, str]:
        """Order problems as they appear in the file (file-level problems first)."""
        return (self.file, self.line, self.column, self.key_path)


class ConfigError(Exception):
    """Raised by the loader when a config cannot be used; ``problems`` lists every reason at once.

    The problems are kept in file order. Callers print ``str(error)`` (one problem per line) and exit; no
    traceback is meant for the user.
    """

    problems: list[ConfigProblem]

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        unique = dict.fromkeys(problems)  # the same problem found twice is reported once
        self.problems = sorted(unique, key=ConfigProblem.sort_key)
        super().__init__(str(self))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[ConfigProblem]]]:
        """Pickle with the problems (worker processes may pass the error to their parent)."""
        return (ConfigError, (self.problems,))

    def __str__(self) -> str:
        """Every problem on its own line, in file order."""
        return "\n".join(str(problem) for problem in self.problems)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when one of ``candidates`` is close to ``name``, else ``""``.
    The one suggestion helper of config errors (unknown keys, values outside a choice, unknown names)."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
