"""Durations and sizes as written in the config file, and back.

``parse_duration`` and ``parse_size`` are called by the config model while the YAML is validated (every
duration and size key goes through them), and may be called by anything else that reads a human-written
value (the command line, the admin API). They raise ``ValueError`` with a message meant for the user, and
nothing else, whatever they are given. ``format_duration`` and ``format_size`` are their inverses, used by the
configuration report: ``parse_duration(format_duration(x)) == x`` and ``parse_size(format_size(n)) == n``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_DURATION",
    "MAX_HEADER_SIZE",
    "MAX_PROBE_COUNT",
    "MAX_RATE_COUNT",
    "MAX_SHARED_OBJECT_SIZE",
    "MAX_SIZE",
    "MAX_TIMEOUT",
    "MAX_WORKERS",
    "Duration",
    "HeaderSize",
    "Period",
    "PositiveDuration",
    "PositiveSize",
    "SharedObjectSize",
    "Size",
    "duration_at_most",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
    "size_at_most",
    "split_listen",
]

# Seconds per duration unit, as exact fractions so "100ms" is exactly 0.1 once rounded to a float.
_DURATION_UNITS: dict[str, Fraction] = {
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
    "d": Fraction(86400),
    "y": Fraction(365 * 86400),
}
# Largest first: format_duration picks the largest unit that divides the value exactly.
_DURATION_FORMAT_UNITS: tuple[tuple[str, int], ...] = (
    ("y", 365 * 86400),
    ("d", 86400),
    ("h", 3600),
    ("m", 60),
    ("s", 1),
)

_SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}
_SIZE_FORMAT_UNITS: tuple[tuple[str, int], ...] = (
    ("TiB", 1024**4),
    ("GiB", 1024**3),
    ("MiB", 1024**2),
    ("KiB", 1024),
    ("TB", 1000**4),
    ("GB", 1000**3),
    ("MB", 1000**2),
    ("KB", 1000),
)

_MAX_DIGITS = 400  # enough for any float written out in full; longer text is refused before Fraction
_NUMBER = r"(?P<number>[0-9]+(?:\.[0-9]+)?)"
_DURATION_RE = re.compile(_NUMBER + r"(?P<unit>ms|s|m|h|d|y)?", re.ASCII)
_SIZE_RE = re.compile(_NUMBER + r"(?P<unit>[A-Za-z]+)?", re.ASCII)

_HOST_RE = re.compile(
    r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?"
)
_LISTEN_HINT = "use host:port, [::]:8080 or :8080"
_DURATION_HINT = "use e.g. 30s, 5m, 2h, 7d, 1y, 100ms or a number of seconds"
_SIZE_HINT = "use e.g. 512KiB, 64MiB, 1GiB, 10MB or a number of bytes"


def _describe(value: object) -> str:
    """Name a non-text value the way a YAML author would recognise it, for error messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def parse_duration(value: str | float) -> float:
    """Turn ``"30s"``, ``"5m"``, ``"2h"``, ``"7d"``, ``"1y"``, ``"100ms"`` or a number into seconds.

    Called while a config is validated, for every duration key. A plain number (or a string of digits)
    counts as seconds; a fraction such as ``"1.5h"`` is allowed. Units are case-sensitive, ``1y`` is 365
    days. Negative, non-finite and malformed values (and booleans) raise ``ValueError`` with a message that
    quotes the value and shows the accepted forms.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid duration: expected text such as 30s or a number, got {_describe(value)}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"invalid duration {value!r}: must be a finite number of seconds")
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid duration {value!r} ({_DURATION_HINT})")
    number = match["number"]
    if len(number) > _MAX_DIGITS:
        raise ValueError(f"invalid duration {value!r}: the number is too long")
    seconds = Fraction(number) * _DURATION_UNITS[match["unit"] or "s"]
    try:
        result = float(seconds)
    except OverflowError:
        raise ValueError(f"invalid duration {value!r}: too large") from None
    if not math.isfinite(result):
        raise ValueError(f"invalid duration {value!r}: too large")
    return result


def parse_size(value: str | float) -> int:
    """Turn ``"512KiB"``, ``"64MiB"``, ``"1GiB"``, ``"10MB"``, ``"100B"`` or a number into bytes.

    Called while a config is validated, for every size key. ``KiB``/``MiB``/``GiB``/``TiB`` are powers of
    1024, ``KB``/``MB``/``GB``/``TB`` powers of 1000; unit names are case-sensitive. A fraction such as
    ``"1.5GiB"`` is rounded to the nearest byte. Negative, fractional plain numbers, malformed values and
    booleans raise ``ValueError`` with a message that quotes the value and shows the accepted forms.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid size: expected text such as 64MiB or a number, got {_describe(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"invalid size {value!r}: must be a whole number of bytes")
        value = int(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value!r}: must not be negative")
        return value
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"invalid size {value!r}: must not be negative")
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid size {value!r} ({_SIZE_HINT})")
    unit = match["unit"] or "B"
    if unit not in _SIZE_UNITS:
        same = [name for name in _SIZE_UNITS if name.lower() == unit.lower()]
        if same:
            raise ValueError(
                f"invalid size {value!r}: unit names are case-sensitive; did you mean '{same[0]}'?"
            )
        raise ValueError(f"invalid size {value!r}: unknown unit '{unit}' ({_SIZE_HINT})")
    number = match["number"]
    if len(number) > _MAX_DIGITS:
        raise ValueError(f"invalid size {value!r}: the number is too long")
    return round(Fraction(number) * _SIZE_UNITS[unit])


def format_duration(seconds: float) -> str:
    """Write a duration the way a config author would: ``86400 -> "1d"``, ``30 -> "30s"``, ``0 -> "0s"``.

    Called by the configuration report. The largest unit that divides the value exactly is used
    (``"1y"``, ``"7d"``, ``"90m"``, ``"100ms"``); other values are written as exact decimal seconds, so
    ``parse_duration`` always gives the same float back. Negative or non-finite values raise ``ValueError``.
    """
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format duration {seconds!r}: must be a finite number >= 0")
    seconds = float(seconds)
    if seconds == 0:
        return "0s"
    if seconds.is_integer() and seconds < 2**53:
        whole = int(seconds)
        for unit, size in _DURATION_FORMAT_UNITS:
            if whole % size == 0:
                return f"{whole // size}{unit}"
    if seconds < 2**53 / 1000:
        millis = round(seconds * 1000)
        if float(Fraction(millis, 1000)) == seconds:
            return f"{millis}ms"
    # Shortest round-tripping digits, written without an exponent (the parser takes none).
    return f"{format(Decimal(repr(seconds)), 'f')}s"


def format_size(size: int) -> str:
    """Write a byte count the way a config author would: ``1073741824 -> "1GiB"``, ``0 -> "0B"``.

    Called by the configuration report. The largest binary unit that divides the value exactly is used,
    then the largest decimal one, else plain bytes, so ``parse_size`` always gives the same number back.
    Negative values raise ``ValueError``.
    """
    if isinstance(size, bool) or size < 0:
        raise ValueError(f"cannot format size {size!r}: must be a whole number >= 0")
    if size == 0:
        return "0B"
    for unit, factor in _SIZE_FORMAT_UNITS:
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def split_listen(value: str | int) -> tuple[str, int]:
    """Split a listen address into ``(host, port)``: ``"0.0.0.0:8080"``, ``"[::]:8080"``, ``":8080"``, 8080.

    Called by the config model for every listen address. A missing host means ``0.0.0.0``; IPv6 hosts must
    be in brackets (returned without them); the port must be 0-65535. Anything else raises ``ValueError``.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"invalid listen address: expected host:port, got {_describe(value)}")
    if isinstance(value, int):
        host, port_text = "0.0.0.0", str(value)
    else:
        text = value.strip()
        if text.startswith("["):
            match = re.fullmatch(r"\[([^\]]+)\]:([0-9]+)", text)
            if match is None:
                raise ValueError(f"invalid listen address {value!r} ({_LISTEN_HINT})")
            host, port_text = match[1], match[2]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(
                    f"invalid listen address {value!r}: {host!r} is not an IPv6 address"
                ) from None
        elif ":" in text:
            host, _, port_text = text.rpartition(":")
            if ":" in host:
                raise ValueError(
                    f"invalid listen address {value!r}: put IPv6 addresses in brackets, [::1]:8080"
                )
            host = host or "0.0.0.0"
            if not _HOST_RE.fullmatch(host):
                raise ValueError(f"invalid listen address {value!r}: {host!r} is not a host name or address")
        elif text.isdigit():
            host, port_text = "0.0.0.0", text
        else:
            raise ValueError(f"invalid listen address {value!r}: no port ({_LISTEN_HINT})")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid listen address {value!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


# --------------------------------------------------------------------------------------------- upper bounds
# Every size, duration and count in the config has a maximum that no real deployment reaches but that keeps
# the runtime safe: no value can overflow a C integer (parser limits, timers, Redis expiries) or make the
# edge allocate absurd amounts. A value above its maximum is a config error at its line, naming the maximum.

MAX_SIZE = 1024**4
"""1TiB: any size (memory tier budget, object and body limits)."""
MAX_HEADER_SIZE = 1024**2
"""1MiB: per-request sizes that bound buffers of every request (``server.limits.max_header_bytes``)."""
MAX_SHARED_OBJECT_SIZE = 512 * 1024**2
"""512MiB: the largest value Redis stores (its ``proto-max-bulk-len``); memcached's own limit is lower."""
MAX_DURATION = 10 * 365 * 86400.0
"""10y: TTLs, stale windows, CORS max-age, rate-limit periods."""
MAX_TIMEOUT = 86400.0
"""1d: timeouts and intervals (connect, read, client, shared tier, health probe)."""
MAX_WORKERS = 1024
"""Processes of one edge (``server.workers``)."""
MAX_CONNECTIONS = 100_000
"""Connections to one origin (``origins.NAME.max_connections``)."""
MAX_PROBE_COUNT = 1000
"""Consecutive health probe results (``healthy_after``, ``unhealthy_after``)."""
MAX_RATE_COUNT = 10**9
"""Requests and burst of a rate limit."""


def size_at_most(limit: int, *, positive: bool = False) -> Callable[[int], int]:
    """A validator for a parsed size: refuses a value above ``limit`` (and 0, when ``positive``)."""

    def check(value: int) -> int:
        if positive and value <= 0:
            raise ValueError(f"must be more than 0 bytes, got {value}")
        if value > limit:
            raise ValueError(f"must be at most {format_size(limit)}, got {_shown_size(value)}")
        return value

    return check


def duration_at_most(limit: float, *, positive: bool = False) -> Callable[[float], float]:
    """A validator for a parsed duration: refuses a value above ``limit`` (and 0, when ``positive``)."""

    def check(value: float) -> float:
        if positive and value <= 0:
            raise ValueError(f"must be more than 0s, got {format_duration(value)}")
        if value > limit:
            raise ValueError(f"must be at most {format_duration(limit)}, got {_shown_duration(value)}")
        return value

    return check


def _shown_size(value: int) -> str:
    text = format_size(value)
    return text if len(text) <= 40 else f"a {len(str(value))}-digit number of bytes"


def _shown_duration(value: float) -> str:
    text = format_duration(value)
    return text if len(text) <= 40 else f"{value:.3g}s"


# The annotated types the config model gives its fields: parse the text, then check the bounds.
Size = Annotated[int, BeforeValidator(parse_size), AfterValidator(size_at_most(MAX_SIZE))]
"""A size in bytes, 0 to 1TiB."""
PositiveSize = Annotated[
    int, BeforeValidator(parse_size), AfterValidator(size_at_most(MAX_SIZE, positive=True))
]
"""A size in bytes, more than 0, at most 1TiB."""
HeaderSize = Annotated[
    int, BeforeValidator(parse_size), AfterValidator(size_at_most(MAX_HEADER_SIZE, positive=True))
]
"""A per-request size, more than 0, at most 1MiB."""
SharedObjectSize = Annotated[
    int, BeforeValidator(parse_size), AfterValidator(size_at_most(MAX_SHARED_OBJECT_SIZE, positive=True))
]
"""An object size for the shared tier, more than 0, at most 512MiB."""
Duration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(duration_at_most(MAX_DURATION))]
"""A TTL-like duration, 0s to 10y."""
Period = Annotated[
    float, BeforeValidator(parse_duration), AfterValidator(duration_at_most(MAX_DURATION, positive=True))
]
"""A period such as a rate-limit window: more than 0s, at most 10y."""
PositiveDuration = Annotated[
    float, BeforeValidator(parse_duration), AfterValidator(duration_at_most(MAX_TIMEOUT, positive=True))
]
"""A timeout or an interval: more than 0s, at most 1d."""
