"""``edgeproxy replay`` against logs whose hit ratio is known by construction (proxy/tools/demo_log.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.settings import parse_config
from proxy.tools import demo_log
from proxy.tools.replay import parse_line, simulate
from tests.integration.test_cli import run_cli

CONFIG = """
server: {name: sim}
cache: {memory: {max_bytes: 64MiB, max_object_bytes: 1MiB}}
origins: {app: {url: "http://127.0.0.1:9"}}
behaviours:
  - path: /assets/*
    origin: app
    ttl: {default: 1d}
  - path: "*"
    origin: app
    methods: [GET, HEAD, POST]
    ttl: {default: 60s}
"""


def _write(tmp_path: Path, fmt: str, objects: int = 100, rounds: int = 4, size: int = 10_000) -> Path:
    log = tmp_path / f"access-{fmt}.log"
    log.write_text("\n".join(demo_log.lines(objects, rounds, size, fmt)) + "\nnot a log line\n")
    (tmp_path / "edge.yaml").write_text(CONFIG)
    return log


@pytest.mark.parametrize("fmt", ["json", "combined"])
def test_hit_ratio_known_by_construction(tmp_path: Path, fmt: str) -> None:
    log = _write(tmp_path, fmt)
    config = parse_config(CONFIG, str(tmp_path / "edge.yaml"), env={}, base_dir=tmp_path)
    records = [r for r in map(parse_line, log.read_text().splitlines()) if r is not None]
    assert len(records) == 4 * 101  # the junk line is skipped
    big, small = simulate(config, records, [64 * 2**20, 256 * 1024])
    # Everything fits: only the first pass misses (3 of 4 GETs hit); the 4 POSTs always miss.
    assert big.requests == 404 and big.hits == 300 and big.evictions == 0
    assert big.hit_bytes == 300 * 10_000 and big.bytes == 400 * 10_000 + 4 * 10
    # 256 KiB holds ~25 of the 100 objects: a cyclic pattern under LRU never hits, and evicts all the time.
    assert small.hits == 0 and small.evictions >= 300
    assert big.misses_by_behaviour == {"/assets/*": 100, "*": 4}


def test_replay_command_prints_each_size_and_plots(tmp_path: Path) -> None:
    log = _write(tmp_path, "json")
    chart = tmp_path / "curve.png"
    result = run_cli(
        "replay",
        str(log),
        "--config",
        str(tmp_path / "edge.yaml"),
        "--memory",
        "256KiB,64MiB",
        "--plot",
        str(chart),
    )
    assert result.returncode == 0, result.stderr
    rows = {
        line.split()[0]: line.split()
        for line in result.stdout.splitlines()
        if "KiB " in line or "MiB " in line
    }
    assert rows["256KiB"][1] == "0.0%" and rows["64MiB"][1] == "74.3%"  # 300 of 404 requests
    assert rows["64MiB"][2] == "75.0%"  # bytes: 3,000,000 of 4,000,040
    assert "Behaviours that miss most" in result.stdout and "/assets/*" in result.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_bad_memory_and_missing_log(tmp_path: Path) -> None:
    _write(tmp_path, "json")
    bad = run_cli("replay", str(tmp_path / "nope.log"), "--config", str(tmp_path / "edge.yaml"))
    assert bad.returncode == 2 and "cannot read" in bad.stderr and "Traceback" not in bad.stderr
    size = run_cli(
        "replay",
        str(tmp_path / "access-json.log"),
        "--config",
        str(tmp_path / "edge.yaml"),
        "--memory",
        "lots",
    )
    assert size.returncode == 2 and "Traceback" not in size.stderr
