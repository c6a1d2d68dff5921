"""A tiny MaxMind DB for the geo tests, written with mmdb-writer (a test dependency)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest


def write_country_db(path: Path, countries: Mapping[str, str]) -> Path:
    """A MaxMind DB (GeoLite2-Country layout) mapping each network to a country code."""
    try:
        from mmdb_writer import MMDBWriter
        from netaddr import IPSet
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("mmdb-writer is not installed (it is a test dependency)", pytrace=False)
        pytest.skip("mmdb-writer is not installed")
    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-Country", ipv4_compatible=True)
    for network, country in countries.items():
        writer.insert_network(IPSet([network]), {"country": {"iso_code": country}})
    writer.to_db_file(str(path))
    return path
