"""Table-driven tests of the pure helpers behind metrics and logs."""

from __future__ import annotations

import pytest

from proxy.observability.access_log import _clf_quote
from proxy.observability.stats import BUCKETS, TOP_KEEP, PipelineStats, percentile, protocol_name


def buckets(**at: int) -> list[int]:
    """Histogram counts with ``at["b<index>"]`` observations in bucket ``index``."""
    counts = [0] * (len(BUCKETS) + 1)
    for name, count in at.items():
        counts[int(name[1:])] = count
    return counts


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        (buckets(), 0.5, None),
        (buckets(b0=10), 0.5, 0.0005),  # half-way into [0, 1 ms]
        (buckets(b0=10), 1.0, 0.001),
        (buckets(b1=1, b3=1), 0.5, 0.0025),  # the first observation fills (1 ms, 2.5 ms]
        (buckets(b3=100), 0.99, 0.005 + 0.005 * 0.99),
        (buckets(b14=4), 0.5, 30.0 + 30.0 * 0.5),  # above the last bound: up to twice it
    ],
)
def test_percentile(counts: list[int], q: float, expected: float | None) -> None:
    found = percentile(counts, q)
    assert found == expected if expected is None else found == pytest.approx(expected)


@pytest.mark.parametrize(
    ("version", "text"), [((1, 1), "HTTP/1.1"), ((1, 0), "HTTP/1.0"), ((2, 0), "HTTP/2"), ((3, 0), "HTTP/3")]
)
def test_protocol_of(version: tuple[int, int], text: str) -> None:
    assert protocol_name(version) == text


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        ("curl/8.5", "curl/8.5"),
        ('say "hi"', "say \\x22hi\\x22"),
        ("back\\slash", "back\\x5Cslash"),
        ("new\nline\ttab", "new\\x0Aline\\x09tab"),
        ("caf\u00e9 \u2603", "caf\u00e9 \u2603"),  # printable non-ASCII stays as it is
    ],
)
def test_combined_log_quoting(raw: str, quoted: str) -> None:
    assert _clf_quote(raw) == quoted


def test_top_urls_stay_bounded_under_a_path_scan() -> None:
    from proxy.http.reasons import CacheResult
    from proxy.messages import EdgeRequest

    class Ctx:
        behaviour = None
        result = CacheResult.MISS
        status = 200
        bytes_sent = 10
        started = 0.0
        tried = None
        shield_locked = False
        origin_seconds = None
        bytes_from_origin = 0

        def __init__(self, path: str) -> None:
            self.request = EdgeRequest("GET", path, "", {}, "127.0.0.1", "h")  # type: ignore[arg-type]

    stats = PipelineStats()
    for _ in range(50):
        stats.record(Ctx("/popular"), 1_000_000.0)  # type: ignore[arg-type]
    for n in range(3 * TOP_KEEP):
        stats.record(Ctx(f"/scan/{n}"), 1_000_000.0)  # type: ignore[arg-type]
    assert len(stats._top_paths) <= TOP_KEEP
    top = stats.top(1_000_000.0)
    assert top[0][:3] == ["/popular", 50, 500]
    assert stats.status == {"0xx": 0, "1xx": 0, "2xx": 50 + 3 * TOP_KEEP, "3xx": 0, "4xx": 0, "5xx": 0}
    # Five minutes later the bucket has aged out.
    assert stats.top(1_000_000.0 + 5 * 60) == []
