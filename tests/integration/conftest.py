"""Fixtures for integration tests that need outside servers (real ``redis-server`` and ``memcached``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.memcached_server import MemcachedServer
from tests.redis_server import RedisServer

NO_REDIS = (
    "redis-server is not installed (apt-get install redis-server; .ci/run installs it): "
    "the shared-tier tests need a real one"
)
NO_MEMCACHED = (
    "memcached is not installed (apt-get install memcached; .ci/run installs it): "
    "the memcached shared-tier tests need a real one"
)


def _need(binary: str, message: str) -> None:
    """Skip the test when ``binary`` is not on PATH, except in CI (``CI`` set), where that is a failure: CI
    must install it, and a skipped shared tier there would hide a broken build."""
    if shutil.which(binary) is None:
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty ``redis-server`` on a free 127.0.0.1 port, stopped after the test.

    Without ``redis-server`` on PATH the test is skipped, except in CI (``CI`` set), where it fails: CI must
    install it, and a skipped shared tier there would hide a broken build.
    """
    _need("redis-server", NO_REDIS)
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def memcached_server(tmp_path: Path) -> Iterator[MemcachedServer]:
    """A fresh, empty ``memcached`` on a free 127.0.0.1 port (item size limit 1 MiB), stopped after the test.

    Skipped without ``memcached`` on PATH, except in CI (``CI`` set), where it fails, as for ``redis_server``.
    """
    _need("memcached", NO_MEMCACHED)
    server = MemcachedServer(tmp_path / "memcached")
    server.start()
    try:
        yield server
    finally:
        server.stop()
