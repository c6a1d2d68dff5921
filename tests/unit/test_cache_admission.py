"""proxy.cache.admission.admit: a response head → the entry to store, or why not (table-driven)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from proxy.cache.admission import AdmissionPolicy, admit
from proxy.http.freshness import TTLPolicy
from proxy.http.reasons import NotStoredReason

NOW = 1_800_000_000.0
PLAIN = AdmissionPolicy(ttl=None, honour_request_cache_control=True)


def run(
    fields: dict[str, str] | list[tuple[str, str]],
    *,
    status: int = 200,
    policy: AdmissionPolicy = PLAIN,
    request: dict[str, str] | None = None,
    method: str = "GET",
):  # type: ignore[no-untyped-def]
    headers = CIMultiDict(fields)
    return admit(
        policy,
        method=method,
        request_headers=CIMultiDict(request or {}),
        status=status,
        headers=headers,
        request_time=NOW - 1,
        response_time=NOW,
        device="edge-1",
    )


@pytest.mark.parametrize(
    ("fields", "status", "request_fields", "reason"),
    [
        ({"Cache-Control": "no-store"}, 200, {}, NotStoredReason.NO_STORE),
        ({"Cache-Control": "private"}, 200, {}, NotStoredReason.PRIVATE),
        ({"Cache-Control": "max-age=60"}, 200, {"Cache-Control": "no-store"}, NotStoredReason.NO_STORE),
        ({"Cache-Control": "max-age=60", "Vary": "*"}, 200, {}, NotStoredReason.VARY_STAR),
        ({"Cache-Control": "max-age=60", "Set-Cookie": "a=1"}, 200, {}, NotStoredReason.SET_COOKIE),
        ({"Cache-Control": "max-age=60"}, 200, {"Authorization": "Basic x"}, NotStoredReason.AUTHORIZATION),
    ],
)
def test_refusals_name_their_reason(
    fields: dict[str, str], status: int, request_fields: dict[str, str], reason: NotStoredReason
) -> None:
    entry, why = run(fields, status=status, request=request_fields)
    assert (entry, why) == (None, reason)


def test_a_storable_head_becomes_an_entry_with_its_times_tags_and_vary() -> None:
    entry, why = run(
        [
            ("Cache-Control", "max-age=60, stale-while-revalidate=5"),
            ("Vary", "Accept-Language"),
            ("Surrogate-Key", "a b"),
            ("Cache-Tag", "c, a"),
            ("Age", "7"),
            ("Connection", "close"),
        ]
    )
    assert why is None and entry is not None
    assert (entry.ttl, entry.stale_while_revalidate, entry.vary) == (60, 5, ("accept-language",))
    assert entry.tags == ("a", "b", "c")
    assert entry.initial_age == 8  # Age 7 + the one second the request took (RFC 9111 §4.2.3)
    assert "connection" not in {name.lower() for name, _ in entry.headers}


def test_set_cookie_strip_stores_without_the_cookie() -> None:
    policy = AdmissionPolicy(ttl=None, honour_request_cache_control=True, set_cookie="strip")
    entry, _ = run({"Cache-Control": "max-age=60", "Set-Cookie": "a=1"}, policy=policy)
    assert entry is not None and all(name.lower() != "set-cookie" for name, _ in entry.headers)


def test_a_ttl_policy_ignores_request_directives_and_clamps() -> None:
    policy = AdmissionPolicy(ttl=TTLPolicy(min=0, default=30, max=100), honour_request_cache_control=False)
    entry, _ = run({"Cache-Control": "max-age=1000"}, policy=policy, request={"Cache-Control": "no-store"})
    assert entry is not None and entry.ttl == 100


def test_an_error_without_freshness_is_kept_for_error_ttl() -> None:
    policy = AdmissionPolicy(ttl=None, honour_request_cache_control=True, error_ttl=7)
    entry, _ = run({}, status=404, policy=policy)
    assert entry is not None and entry.ttl == 7
