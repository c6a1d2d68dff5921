"""Viewer country and country rules (proxy.edge.geo) against a tiny MaxMind DB written by the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from proxy.edge import build_guards
from proxy.edge.geo import COUNTRY_HEADER, CountryDatabase, GeoGuard, country_of
from proxy.messages import EdgeRequest
from proxy.pipeline.context import RequestContext
from proxy.settings import ConfigError, parse_config
from tests.geo_db import write_country_db


@pytest.fixture
def database(tmp_path: Path) -> CountryDatabase:
    path = write_country_db(
        tmp_path / "countries.mmdb", {"127.0.0.2/32": "DE", "127.0.0.3/32": "KP", "2001:db8::/32": "FR"}
    )
    return CountryDatabase(str(path))


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"country": {"iso_code": "DE"}}, "DE"),
        ({"registered_country": {"iso_code": "FR"}}, "FR"),
        ({"country": {"iso_code": "d e"}}, None),
        ({"country": "DE"}, None),
        (None, None),
        ([], None),
    ],
)
def test_country_of(record: Any, expected: str | None) -> None:
    assert country_of(record) == expected


def test_lookup(database: CountryDatabase) -> None:
    assert database.lookup("127.0.0.2") == "DE"
    assert database.lookup("::ffff:127.0.0.2") == "DE"
    assert database.lookup("2001:db8::5") == "FR"
    assert database.lookup("127.0.0.9") is None
    assert database.lookup("not an address") is None


def _ctx(client: str, **headers: str) -> RequestContext:
    return RequestContext(EdgeRequest("GET", "/", "", CIMultiDict(headers), client, "h"), 0.0, 0.0)


def test_guard_sets_the_country_header_replacing_the_viewers(database: CountryDatabase) -> None:
    guard = GeoGuard(database)
    ctx = _ctx("127.0.0.2", **{COUNTRY_HEADER: "US"})
    assert guard.check(ctx) is None
    assert ctx.request.headers.getall(COUNTRY_HEADER) == ["DE"]
    unknown = _ctx("127.0.0.9")
    assert guard.check(unknown) is None
    assert unknown.request.headers[COUNTRY_HEADER] == "XX"


def test_guard_deny_and_allow(database: CountryDatabase) -> None:
    deny = GeoGuard(database, deny=frozenset({"KP"}))
    verdict = deny.check(_ctx("127.0.0.3"))
    assert verdict is not None and (verdict.status, verdict.reason) == (403, "geo-blocked")
    assert deny.check(_ctx("127.0.0.2")) is None
    allow = GeoGuard(database, allow=frozenset({"DE"}))
    assert allow.check(_ctx("127.0.0.2")) is None
    assert allow.check(_ctx("127.0.0.3")) is not None
    assert allow.check(_ctx("127.0.0.9")) is not None  # unknown is not on an allow list
    assert allow.stats() == {"blocked": {"geo-blocked": 2}, "geo": {"unknown": 1}}


def test_unreadable_database_is_a_config_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mmdb"
    bogus.write_bytes(b"not a database")
    text = f"""
origins: {{app: {{url: "http://127.0.0.1:9"}}}}
behaviours: [{{path: "*", origin: app}}]
geoip: {{database: {bogus}}}
"""
    with pytest.raises(ConfigError) as caught:
        build_guards(parse_config(text, "edge.yaml", env={}))
    assert "geoip.database" in str(caught.value)
    missing = text.replace(str(bogus), str(tmp_path / "missing.mmdb"))
    with pytest.raises(ConfigError):
        build_guards(parse_config(missing, "edge.yaml", env={}))
