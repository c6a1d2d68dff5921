"""Prometheus text exposition format (version 0.0.4), written by hand: no client library needed.

The edge builds ``Family`` objects from its counters when ``GET /metrics`` is asked (nothing is registered
globally), and ``render`` turns them into the text Prometheus scrapes::

    # HELP edgeproxy_requests_total Viewer requests by cache result.
    # TYPE edgeproxy_requests_total counter
    edgeproxy_requests_total{result="hit"} 1027
    edgeproxy_requests_total{result="miss"} 31

Counters and gauges carry one value per label set; a summary here has no quantiles, only ``_sum`` and
``_count`` (enough for rates and averages: ``rate(x_sum) / rate(x_count)``). Families are plain data, so
the values of several workers can be added up before rendering (``merge``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CONTENT_TYPE", "Family", "MetricKind", "format_value", "merge", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Content-Type of a ``render`` result."""

MetricKind = Literal["counter", "gauge", "summary", "untyped"]

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("",),
    "gauge": ("",),
    "untyped": ("",),
    "summary": ("_sum", "_count"),
}

LabelSet = tuple[tuple[str, str], ...]


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers without a fraction, ``+Inf``, ``-Inf``, ``NaN``."""
    if isinstance(value, int):  # bool included: True is 1
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


@dataclass(slots=True)
class Family:
    """One metric family: a name, a kind, a help text and its samples, one per label set.

    Built by the edge's ``metrics()`` each time ``/metrics`` is asked. Raises ValueError for a name that is
    not a Prometheus metric name.
    """

    name: str
    kind: MetricKind
    help: str
    # (suffix, label set) -> value; insertion order is output order.
    samples: dict[tuple[str, LabelSet], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        if self.kind not in _SUFFIXES:
            raise ValueError(f"invalid metric kind {self.kind!r}")

    def set(self, value: float, labels: Mapping[str, str] | None = None) -> Family:
        """Set the value for ``labels`` (counter, gauge, untyped); returns the family, for chaining.

        Raises ValueError on a summary (use ``observe``) and for invalid label names (``__``-prefixed names
        are reserved, ``le`` and ``quantile`` belong to histograms and summaries).
        """
        if self.kind == "summary":
            raise ValueError("a summary takes observe(total, count), not set()")
        self.samples[("", _label_set(labels))] = value
        return self

    def observe(self, total: float, count: float, labels: Mapping[str, str] | None = None) -> Family:
        """Set a summary's ``_sum`` and ``_count`` for ``labels``; returns the family, for chaining."""
        if self.kind != "summary":
            raise ValueError("observe() is for summaries")
        label_set = _label_set(labels)
        self.samples[("_sum", label_set)] = total
        self.samples[("_count", label_set)] = count
        return self

    def lines(self) -> list[str]:
        """The family's text lines (HELP, TYPE, then samples); called by ``render``."""
        out = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for (suffix, labels), value in self.samples.items():
            if labels:
                inner = ",".join(f'{key}="{_escape_label(val)}"' for key, val in labels)
                out.append(f"{self.name}{suffix}{{{inner}}} {format_value(value)}")
            else:
                out.append(f"{self.name}{suffix} {format_value(value)}")
        return out


def _label_set(labels: Mapping[str, str] | None) -> LabelSet:
    """Labels as a sorted tuple (so equal label sets are one sample), each name checked."""
    if not labels:
        return ()
    for key, value in labels.items():
        if not _LABEL_RE.fullmatch(key) or key.startswith("__") or key in ("le", "quantile"):
            raise ValueError(f"invalid label name {key!r}")
        if not isinstance(value, str):
            raise ValueError(f"label {key!r} must be a string")
    return tuple(sorted(labels.items()))


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families``, in order, ending with a newline; the ``/metrics`` body.

    Raises ValueError when two families share a name, or when one family's sample name (``x_sum``) is
    another family's name: Prometheus would reject the whole scrape.
    """
    seen: set[str] = set()
    lines: list[str] = []
    for family in families:
        names = {family.name + suffix for suffix in _SUFFIXES[family.kind]} | {family.name}
        clash = names & seen
        if clash:
            raise ValueError(f"metric name {sorted(clash)[0]!r} is used twice")
        seen |= names
        lines.extend(family.lines())
    return "\n".join(lines) + "\n" if lines else ""


def merge(groups: Iterable[Iterable[Family]]) -> list[Family]:
    """Add up the families of several workers: values with the same name, suffix and labels are summed.

    For counters and summaries a sum is the cluster value; for gauges it suits totals (entries, bytes) but
    not ratios, which the caller should compute after merging. The first help text and kind of a name win;
    output order is first appearance. Raises ValueError when one name has two kinds.
    """
    merged: dict[str, Family] = {}
    for group in groups:
        for family in group:
            into = merged.get(family.name)
            if into is None:
                merged[family.name] = Family(family.name, family.kind, family.help, dict(family.samples))
                continue
            if into.kind != family.kind:
                raise ValueError(f"metric {family.name!r} is both a {into.kind} and a {family.kind}")
            for key, value in family.samples.items():
                into.samples[key] = into.samples.get(key, 0) + value
    return list(merged.values())
