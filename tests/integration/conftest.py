"""Fixtures for integration tests that need outside servers (a real ``redis-server``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServer

NO_REDIS = (
    "redis-server is not installed (apt-get install redis-server; .ci/run installs it): "
    "the shared-tier tests need a real one"
)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty ``redis-server`` on a free 127.0.0.1 port, stopped after the test.

    Without ``redis-server`` on PATH the test is skipped, except in CI (``CI`` set), where it fails: CI must
    install it, and a skipped shared tier there would hide a broken build.
    """
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail(NO_REDIS + " (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(NO_REDIS)
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
