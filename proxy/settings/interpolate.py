"""``${VAR}`` and ``${VAR:-default}`` in a config file, replaced from the environment before YAML parsing.

The loader calls ``interpolate`` on the raw text of the file, then parses the result. Every line break of
the input is kept in place (line endings are normalised to ``\\n``, and line breaks inside a substituted
value become spaces), so the line and column numbers that YAML and the model report still point into the
file the author wrote.

Rules:

- ``${NAME}`` is the variable's value; unset, it becomes ``""`` and a warning is recorded.
- ``${NAME:-default}`` is the default when the variable is unset or empty (as in the shell).
- ``$${`` is a literal ``${`` (``$${HOME}`` stays ``${HOME}``).
- YAML comments are left alone: a ``${...}`` in a comment is neither replaced nor warned about.
- A ``${`` that does not form a valid reference is left as written, with a warning.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from proxy.settings.errors import ConfigError, ConfigProblem

__all__ = ["Interpolated", "interpolate"]

# Everything str.splitlines() or YAML counts as a line break; none may be added or removed.
_LINE_BREAK_CHARS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_LINE_BREAK_RE = re.compile("[" + re.escape(_LINE_BREAK_CHARS) + "]")
_YAML_LINE_BREAK_RE = re.compile("[\n\x85\u2028\u2029]")  # after \r\n and \r became \n
_REFERENCE_RE = re.compile(
    r"\$\$\{"  # escaped: a literal ${
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}" + re.escape(_LINE_BREAK_CHARS) + r"]*))?\}"
    r"|\$\{"  # anything else after ${ is malformed
)


@dataclass(frozen=True, slots=True)
class Interpolated:
    """The text ready for YAML parsing, with the warnings to show the author.

    ``warnings`` are formatted like config problems (``FILE:LINE:COL: message``), one per unset variable
    reference, malformed reference or value whose line breaks had to be flattened.
    """

    text: str
    warnings: tuple[str, ...]


def interpolate(
    text: str, env: Mapping[str, str], filename: str = "<config>", *, max_length: int | None = None
) -> Interpolated:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in ``text`` from ``env`` without moving any line.

    Called by the loader on the raw file text before YAML parsing; ``filename`` labels the warnings.
    The result has exactly as many line breaks as ``text``, each on the same line. With ``max_length``,
    a result that would be longer raises ``ConfigError`` at the reference that crossed it, before the
    result is built (many references to a long value cannot make a huge text).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    line_starts = [0] + [m.end() for m in _YAML_LINE_BREAK_RE.finditer(text)]
    comments = _comment_spans(text)
    comment_starts = [start for start, _ in comments]
    warnings: list[str] = []
    growth = 0  # how much longer than ``text`` the result is so far

    def position(offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(line_starts, offset)
        return line, offset - line_starts[line - 1] + 1

    def where(offset: int) -> str:
        line, column = position(offset)
        return f"{filename}:{line}:{column}"

    def substitute(match: re.Match[str]) -> str:
        nonlocal growth
        result = replace(match)
        growth += len(result) - len(match.group(0))
        if max_length is not None and len(text) + growth > max_length:
            line, column = position(match.start())
            message = (
                f"environment variables make the config longer than {max_length} characters, "
                "the most a config may be"
            )
            raise ConfigError([ConfigProblem(filename, line, column, "", message)])
        return result

    def in_comment(offset: int) -> bool:
        index = bisect.bisect_right(comment_starts, offset) - 1
        return index >= 0 and offset < comments[index][1]

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if in_comment(match.start()):
            return token
        if token == "$${":
            return "${"
        name = match["name"]
        if name is None:
            warnings.append(
                f"{where(match.start())}: '${{' is not followed by NAME}} or NAME:-default}}; "
                "left as written (write $${ for a literal ${)"
            )
            return token
        value = env.get(name)
        default = match["default"]
        if default is not None and not value:
            return default
        if value is None:
            warnings.append(
                f"{where(match.start())}: environment variable {name} is not set; ${{{name}}} became ''"
            )
            return ""
        if _LINE_BREAK_RE.search(value):
            warnings.append(
                f"{where(match.start())}: environment variable {name} contains line breaks; "
                "they were replaced by spaces"
            )
            return _LINE_BREAK_RE.sub(" ", value)
        return value

    return Interpolated(_REFERENCE_RE.sub(substitute, text), tuple(warnings))


def _comment_spans(text: str) -> list[tuple[int, int]]:
    """Find the ``[start, end)`` offsets of YAML comments, in order, using PyYAML's scanner.

    Comments are what lies between tokens from a ``#`` to the end of its line. If the text cannot be
    scanned (it is not valid YAML) no comment is known and everything is interpolated; the parse that
    follows reports the syntax error.
    """
    spans: list[tuple[int, int]] = []
    previous_end = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            _comments_between(text, previous_end, token.start_mark.index, spans)
            previous_end = max(previous_end, token.end_mark.index)
    except yaml.YAMLError:
        return []
    _comments_between(text, previous_end, len(text), spans)
    return spans


def _comments_between(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    """Append the comments found in ``text[start:end]``, a stretch between tokens, to ``spans``."""
    hash_at = text.find("#", start, end)
    while hash_at != -1:
        line_break = _YAML_LINE_BREAK_RE.search(text, hash_at, end)
        comment_end = line_break.start() if line_break else end
        spans.append((hash_at, comment_end))
        hash_at = text.find("#", comment_end, end)
