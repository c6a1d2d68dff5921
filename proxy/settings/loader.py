"""From a YAML file (or a bare origin URL) to a validated ``EdgeConfig``, or one ``ConfigError`` listing
every problem with its file, line, column and key path.

Called at start-up, on reload and by ``edgeproxy check``. The steps: read the file, replace ``${VAR}``
references (keeping every line in place), parse the YAML once into both a node tree (for positions) and
plain data, run the cross-section checks on the data, validate the data with the model, and convert every
problem found on the way (syntax, duplicate keys, validation errors, cross-section findings) into a
``ConfigProblem`` pointing into the file. Nothing the YAML parser or pydantic raises escapes as anything but
a ``ConfigError``.

The YAML dialect is YAML 1.1 as PyYAML reads it, except that only ``true``/``false`` are booleans (so
``NO``, ``off`` and ``yes`` stay text: the Norway problem) and dates stay text.

Hostile or mistaken files are refused before they can cost much: a file larger than ``MAX_CONFIG_BYTES`` is
not read (nor is a text that ``${VAR}`` values would make larger than that), and YAML aliases may add at most
``MAX_ALIAS_NODES`` nodes to the document (a "billion laughs" file is refused while it is being composed,
before anything walks the expanded structure).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from proxy.settings.errors import ConfigError, ConfigProblem, did_you_mean
from proxy.settings.interpolate import interpolate
from proxy.settings.model import (
    ALIASES,
    EdgeConfig,
    KeyedValueError,
    cross_check,
    describe_value,
    format_key_path,
    known_keys,
)
from proxy.settings.units import format_size

__all__ = ["MAX_ALIAS_NODES", "MAX_CONFIG_BYTES", "config_for_origin", "load_config", "parse_config"]

MAX_CONFIG_BYTES = 1024 * 1024
"""The largest config file (and text after ``${VAR}`` replacement) accepted: 1MiB. The reference config is
about 10 KB; PyYAML's pure-Python parser takes seconds per MiB, so a larger file is refused unread."""
MAX_ALIAS_NODES = 100_000
"""How many nodes YAML aliases may add to a document, counting each alias as the size of what it expands to
(nested aliases included). Merge keys (``<<: *defaults``) in a real config add a few thousand at most."""

_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans (only true/false) and no implicit timestamps, and a
    bound on what aliases expand to (``MAX_ALIAS_NODES``)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded: dict[int, int] = {}  # id(node) -> nodes it stands for with its aliases expanded
        self._alias_nodes = 0  # nodes added by the aliases seen so far

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Compose as PyYAML does, counting each node's expanded size; refuse when aliases add too much.

        An alias adds the expanded size of its anchor (1 while the anchor is still being composed: a cycle,
        which the model reports). The count only grows, so a bomb is refused at the first alias past the
        limit, after composing no more than the file's own nodes.
        """
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # untyped in the stubs
            node = super().compose_node(parent, index)
            self._alias_nodes += self._expanded.get(id(node), 1)
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"aliases expand the document by more than {MAX_ALIAS_NODES:,} nodes (the limit; "
                    "a YAML alias bomb?)",
                    mark,
                )
            return node
        node = super().compose_node(parent, index)
        expanded = self._expanded
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(expanded.get(id(item), 1) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(expanded.get(id(k), 1) + expanded.get(id(v), 1) for k, v in node.value)
        else:
            size = 1
        if node is not None:
            expanded[id(node)] = size
        return node


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


# --------------------------------------------------------------------------------------------- public API


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> EdgeConfig:
    """Load and validate the config file at ``path``; ``env`` (default ``os.environ``) feeds ``${VAR}``.

    Called at start-up, on reload and by ``edgeproxy check``. Relative paths inside the file (origin
    ``root``, TLS files, the GeoIP database, the access log) are taken from the file's directory. Raises
    ``ConfigError`` listing every problem when the file cannot be read or is not a valid config.
    """
    filename = os.fspath(path)
    try:
        with open(filename, "rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)  # never more: a huge file is refused unread
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError([ConfigProblem(filename, 0, 0, "", f"cannot read the file: {reason}")]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([ConfigProblem(filename, 0, 0, "", _TOO_LARGE)])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        message = f"the file is not UTF-8 text (byte 0x{raw[error.start]:02x})"
        raise ConfigError([ConfigProblem(filename, line, column, "", message)]) from None
    return parse_config(text, filename, env, base_dir=Path(filename).absolute().parent)


def parse_config(
    text: str,
    filename: str,
    env: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> EdgeConfig:
    """Validate config ``text``; ``filename`` labels the problems, ``base_dir`` anchors relative paths.

    Called by ``load_config`` and by tests or tools holding the text already. ``env`` defaults to
    ``os.environ``; ``base_dir`` defaults to the directory part of ``filename`` (the current directory for a
    name such as ``"<stdin>"``). Returns the config with ``source_file``, ``source_keys`` and ``warnings``
    set; raises ``ConfigError`` with every problem found, in file order.
    """
    environment: Mapping[str, str] = os.environ if env is None else env
    if base_dir is None:
        base_dir = Path.cwd() if filename.startswith("<") else Path(filename).absolute().parent
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([ConfigProblem(filename, 0, 0, "", _TOO_LARGE)])
    interpolated = interpolate(text, environment, filename, max_length=MAX_CONFIG_BYTES)
    root, data = _parse_yaml(interpolated.text, filename)
    source = _SourceMap(root, empty_file=True)
    problems: list[ConfigProblem] = [
        ConfigProblem(filename, line, column, key_path, message)
        for key_path, line, column, message in source.duplicate_keys()
    ]
    for finding in cross_check(data):
        key_path, line, column = source.locate(finding.loc, at_key=finding.at_key)
        problems.append(ConfigProblem(filename, line, column, finding.key_path or key_path, finding.message))
    config = _validate(
        data, {"base_dir": os.fspath(base_dir), "cross_checked": True}, filename, source, problems
    )
    if problems or config is None:
        raise ConfigError(problems)
    return config.with_source(filename, source.key_paths(), interpolated.warnings)


def config_for_origin(url: str, listen: str | Sequence[str] | None = None) -> EdgeConfig:
    """Build a config without a file: one origin named ``origin`` at ``url``, one ``"*"`` behaviour to it.

    Called for ``edgeproxy serve --origin URL`` (like ``varnishd -b``). ``listen`` is one ``host:port`` or
    a list of them (default ``0.0.0.0:8080``). Raises ``ConfigError`` (file ``"<origin>"``, no line) when
    the URL or the listen address is not valid.
    """
    data: dict[str, Any] = {
        "origins": {"origin": {"url": url}},
        "behaviours": [{"path": "*", "origin": "origin"}],
    }
    key_paths = [
        ("origins",),
        ("origins", "origin"),
        ("origins", "origin", "url"),
        ("behaviours",),
        ("behaviours[]", "path"),
        ("behaviours[]", "origin"),
    ]
    if listen is not None:
        data["server"] = {"listen": listen if isinstance(listen, str) else list(listen)}
        key_paths[:0] = [("server",), ("server", "listen")]
    problems: list[ConfigProblem] = []
    config = _validate(data, {"base_dir": os.getcwd()}, "<origin>", _SourceMap(None), problems)
    if problems or config is None:
        raise ConfigError(problems)
    return config.with_source("<origin>", key_paths)


# --------------------------------------------------------------------------------------------- parsing

_TOO_LARGE = f"the file is larger than {format_size(MAX_CONFIG_BYTES)}, the most a config may be"


def _parse_yaml(text: str, filename: str) -> tuple[yaml.Node | None, Any]:
    """Parse once into the node tree (positions) and the plain data; YAML errors become ``ConfigError``."""
    loader: _ConfigLoader | None = None
    try:
        loader = _ConfigLoader(text)
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or "invalid YAML"
        if error.context and error.problem and error.context_mark is not None:
            message = f"{message} ({error.context} on line {error.context_mark.line + 1})"
        line, column = _line_col(mark) if mark is not None else (0, 0)
        raise ConfigError([ConfigProblem(filename, line, column, "", f"invalid YAML: {message}")]) from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        character = chr(error.character) if isinstance(error.character, int) else str(error.character)
        message = f"invalid YAML: the character {character!r} is not allowed in YAML text"
        raise ConfigError([ConfigProblem(filename, line, column, "", message)]) from None
    except yaml.YAMLError as error:
        raise ConfigError([ConfigProblem(filename, 0, 0, "", f"invalid YAML: {error}")]) from None
    except RecursionError:
        message = "invalid YAML: nested too deeply"
        raise ConfigError([ConfigProblem(filename, 0, 0, "", message)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return root, data


def _validate(
    data: Any, context: dict[str, Any], filename: str, source: _SourceMap, problems: list[ConfigProblem]
) -> EdgeConfig | None:
    """Validate with the model; append a problem per error to ``problems``. None when it failed."""
    try:
        return EdgeConfig.model_validate(data, context=context)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            problems.append(_problem_from_error(item, filename, source))
    except RecursionError:
        problems.append(ConfigProblem(filename, 0, 0, "", "the config refers to itself (a YAML alias cycle)"))
    except Exception as error:  # a validator bug must still not show the user a traceback
        message = (
            f"internal error while checking the config ({type(error).__name__}: {error}); please report it"
        )
        problems.append(ConfigProblem(filename, 0, 0, "", message))
    return None


# --------------------------------------------------------------------------------------------- messages


def _problem_from_error(item: Any, filename: str, source: _SourceMap) -> ConfigProblem:
    """Turn one pydantic error into a problem with the position of its key or value in the file."""
    loc: list[str | int] = list(item["loc"])
    kind: str = item["type"]
    ctx: dict[str, Any] = item.get("ctx") or {}
    value = item.get("input")
    at_key = False
    if loc and loc[-1] == "[key]":  # the key of a mapping entry is wrong, not its value
        loc.pop()
        at_key = True
    if kind in ("value_error", "assertion_error"):
        error = ctx.get("error")
        if isinstance(error, KeyedValueError):
            loc.append(error.key)
            at_key = error.at_key
            message = error.message
        else:
            message = str(error) if error is not None else str(item["msg"])
    elif kind == "extra_forbidden":
        at_key = True
        name = str(loc[-1])
        candidates = known_keys(loc[:-1])
        hint = did_you_mean(name, candidates)
        if len(loc) == 1 and name in ALIASES:  # both spellings given: pydantic took the first
            message = f"use either '{ALIASES[name]}' or '{name}', not both"
        elif hint:
            message = f"unknown key{hint}"
        elif candidates:
            message = "unknown key (expected one of: " + ", ".join(candidates) + ")"
        else:
            message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    else:
        message = _describe_error(kind, ctx, value, str(item["msg"]))
    key_path, line, column = source.locate(loc, at_key=at_key or kind == "missing")
    return ConfigProblem(filename, line, column, key_path, message)


def _line_col(mark: yaml.Mark) -> tuple[int, int]:
    """1-based line and column of a YAML mark, counting only "\\n" as a line break.

    YAML also breaks lines at U+0085, U+2028 and U+2029, which editors do not show as new lines, so its own
    ``mark.line`` can point past the end of the file as the user sees it.
    """
    buffer = getattr(mark, "buffer", None)
    if not isinstance(buffer, str):
        return mark.line + 1, mark.column + 1
    index = min(mark.index, len(buffer))
    line_start = buffer.rfind("\n", 0, index) + 1
    return buffer.count("\n", 0, index) + 1, index - line_start + 1


_TYPE_NAMES = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping (key: value)",
    "mapping_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "tuple_type": "a list",
    "list_type": "a list",
    "iterable_type": "a list",
}


def _describe_error(kind: str, ctx: Mapping[str, Any], value: object, fallback: str) -> str:
    """A message for a pydantic error type, in the config author's terms."""
    got = describe_value(value)
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {got}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        return f"expected {' | '.join(choices) or ctx.get('expected')}, got {got}{hint}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {got}"
    if kind == "greater_than":
        return f"must be more than {ctx.get('gt')}, got {got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}, got {got}"
    if kind == "less_than":
        return f"must be less than {ctx.get('lt')}, got {got}"
    if kind == "too_short":
        return "must not be empty"
    if kind == "recursion_loop":
        return "refers to itself (a YAML alias cycle)"
    return f"{fallback}, got {got}"


# --------------------------------------------------------------------------------------------- positions


@dataclass(frozen=True, slots=True)
class _Entry:
    key: yaml.Node
    value: yaml.Node


def _entries(node: yaml.MappingNode) -> Iterator[_Entry]:
    """The entries of a mapping node, with ``<<`` merge keys expanded (explicit keys win)."""
    explicit = [_Entry(k, v) for k, v in node.value if k.tag != _MERGE_TAG]
    yield from explicit
    names = {_key_name(entry.key) for entry in explicit}
    for key, value in node.value:
        if key.tag != _MERGE_TAG:
            continue
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for merged in sources:
            if isinstance(merged, yaml.MappingNode):
                for entry in _entries(merged):
                    name = _key_name(entry.key)
                    if name not in names:
                        names.add(name)
                        yield entry


def _key_name(node: yaml.Node) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


class _SourceMap:
    """Positions of keys and values in the parsed file, looked up by a location in the data."""

    def __init__(self, root: yaml.Node | None, *, empty_file: bool = False) -> None:
        self.root = root
        self.empty_file = empty_file  # no node because the file is empty: positions are 1:1

    def locate(self, loc: Sequence[str | int], *, at_key: bool) -> tuple[str, int, int]:
        """Return the key path to show, and the 1-based line and column for ``loc``.

        Elements of ``loc`` that do not name a key or index of the file (pydantic's union tags) are
        skipped. A missing last key points at its parent. ``at_key`` prefers the key's position to the
        value's; values that are empty (null) always point at their key.
        """
        node = self.root
        key_node: yaml.Node | None = None
        shown: list[str | int] = []
        missing = False
        for index, elem in enumerate(loc):
            if isinstance(node, yaml.MappingNode):
                found = None
                for entry in _entries(node):
                    if _key_name(entry.key) == str(elem):
                        found = entry
                if found is not None:
                    key_node, node = found.key, found.value
                    shown.append(str(elem))  # a mapping key, even when it is a number (error_pages.404)
                elif index == len(loc) - 1:
                    shown.append(str(elem))
                    missing = True
            elif (
                isinstance(node, yaml.SequenceNode) and isinstance(elem, int) and 0 <= elem < len(node.value)
            ):
                key_node, node = None, node.value[elem]
                shown.append(elem)
        if self.root is None:  # an empty file, or a config built without one
            return format_key_path(loc), (1 if self.empty_file else 0), (1 if self.empty_file else 0)
        if node is None:
            return format_key_path(shown), 1, 1
        empty = isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG and node.value == ""
        mark_node = key_node if key_node is not None and (at_key or missing or empty) else node
        mark = mark_node.start_mark
        return format_key_path(shown), *_line_col(mark)

    def key_paths(self) -> list[tuple[str, ...]]:
        """Every key path of the file in file order; list items add ``[]`` to their key (``behaviours[]``)."""
        paths: list[tuple[str, ...]] = []

        def walk(node: yaml.Node, prefix: tuple[str, ...], seen: frozenset[int]) -> None:
            if id(node) in seen:
                return
            seen = seen | {id(node)}
            if isinstance(node, yaml.MappingNode):
                for entry in _entries(node):
                    name = _key_name(entry.key)
                    if name is None:
                        continue
                    if not prefix:
                        name = ALIASES.get(name, name)
                    paths.append((*prefix, name))
                    walk(entry.value, (*prefix, name), seen)
            elif isinstance(node, yaml.SequenceNode):
                item_prefix = (*prefix[:-1], prefix[-1] + "[]") if prefix else ("[]",)
                for item in node.value:
                    walk(item, item_prefix, seen)

        if self.root is not None:
            walk(self.root, (), frozenset())
        return paths

    def duplicate_keys(self) -> list[tuple[str, int, int, str]]:
        """``(key path, line, column, message)`` for every key written twice in one mapping."""
        found: list[tuple[str, int, int, str]] = []

        def walk(node: yaml.Node, loc: tuple[str | int, ...], seen: frozenset[int]) -> None:
            if id(node) in seen:
                return
            seen = seen | {id(node)}
            if isinstance(node, yaml.MappingNode):
                first: dict[str, int] = {}
                for key, value in node.value:
                    name = _key_name(key)
                    if name is None or key.tag == _MERGE_TAG:
                        continue
                    if name in first:
                        message = f"duplicate key (first on line {first[name]}); only one may be given"
                        found.append(
                            (
                                format_key_path((*loc, name)),
                                *_line_col(key.start_mark),
                                message,
                            )
                        )
                    else:
                        first[name] = _line_col(key.start_mark)[0]
                    walk(value, (*loc, name), seen)
            elif isinstance(node, yaml.SequenceNode):
                for index, item in enumerate(node.value):
                    walk(item, (*loc, index), seen)

        if self.root is not None:
            walk(self.root, (), frozenset())
        return found
