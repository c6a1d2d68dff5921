"""OriginHealth: the per-origin circuit breaker (UP → DOWN → PROBING → UP), driven with explicit ``now``.

Each scenario is a list of steps ``(op, now, state, answer)``: ``op`` is ``"fail"`` or ``"ok"`` (record a
failure / success), ``"avail"`` (ask ``is_available``) or ``"down?"`` (ask ``is_known_down``), whose
result must equal ``answer``; after every step the state must be ``state``. Thresholds:
unhealthy_after=3, healthy_after=2, cooldown=5.0.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from proxy.origin.health import HealthState, OriginHealth, probe_targets
from proxy.settings.model import OriginConfig

UP, DOWN, PROBING = HealthState.UP, HealthState.DOWN, HealthState.PROBING

Step = tuple[str, float, HealthState, bool | None]  # op, now, state after, answer (avail / down? only)

SCENARIOS: dict[str, list[Step]] = {
    "starts up and available": [
        ("avail", 0.0, UP, True),
    ],
    "fewer failures than unhealthy_after stay up": [
        ("fail", 0.0, UP, None),
        ("fail", 1.0, UP, None),
        ("avail", 1.0, UP, True),
    ],
    "a success resets the failure streak": [
        ("fail", 0.0, UP, None),
        ("fail", 1.0, UP, None),
        ("ok", 2.0, UP, None),
        ("fail", 3.0, UP, None),
        ("fail", 4.0, UP, None),
        ("avail", 4.0, UP, True),
    ],
    "unhealthy_after consecutive failures go down; skipped during cooldown": [
        ("fail", 0.0, UP, None),
        ("fail", 0.5, UP, None),
        ("fail", 1.0, DOWN, None),
        ("avail", 1.0, DOWN, False),
        ("avail", 5.9, DOWN, False),
    ],
    "after cooldown exactly one trial goes through": [
        ("fail", 0.0, UP, None),
        ("fail", 0.0, UP, None),
        ("fail", 1.0, DOWN, None),
        ("avail", 6.0, PROBING, True),
        ("avail", 6.0, PROBING, False),
        ("avail", 7.0, PROBING, False),
    ],
    "trial successes count toward healthy_after, one trial at a time": [
        ("fail", 0.0, UP, None),
        ("fail", 0.0, UP, None),
        ("fail", 0.0, DOWN, None),
        ("avail", 5.0, PROBING, True),
        ("ok", 5.1, PROBING, None),
        ("avail", 5.2, PROBING, True),
        ("avail", 5.2, PROBING, False),
        ("ok", 5.3, UP, None),
        ("avail", 5.3, UP, True),
        ("avail", 5.3, UP, True),
    ],
    "a failed trial goes back down with a fresh cooldown": [
        ("fail", 0.0, UP, None),
        ("fail", 0.0, UP, None),
        ("fail", 0.0, DOWN, None),
        ("avail", 5.0, PROBING, True),
        ("fail", 5.5, DOWN, None),
        ("avail", 10.0, DOWN, False),
        ("avail", 10.5, PROBING, True),
    ],
    "one failure in probing is enough, even after a trial success": [
        ("fail", 0.0, UP, None),
        ("fail", 0.0, UP, None),
        ("fail", 0.0, DOWN, None),
        ("avail", 5.0, PROBING, True),
        ("ok", 5.0, PROBING, None),
        ("fail", 6.0, DOWN, None),
        ("avail", 10.9, DOWN, False),
    ],
    "probe successes while down bring it up without live traffic": [
        ("fail", 0.0, UP, None),
        ("fail", 0.0, UP, None),
        ("fail", 0.0, DOWN, None),
        ("ok", 1.0, DOWN, None),
        ("avail", 1.0, DOWN, False),
        ("ok", 2.0, UP, None),
        ("avail", 2.0, UP, True),
    ],
    "a probe success while down carries into probing": [
        ("fail", 0.0, UP, None),
        ("fail", 0.0, UP, None),
        ("fail", 0.0, DOWN, None),
        ("ok", 1.0, DOWN, None),
        ("avail", 5.0, PROBING, True),
        ("ok", 5.1, UP, None),
    ],
    "failures while down do not restart the cooldown": [
        ("fail", 0.0, UP, None),
        ("fail", 0.0, UP, None),
        ("fail", 0.0, DOWN, None),
        ("fail", 4.0, DOWN, None),
        ("avail", 5.0, PROBING, True),
    ],
    "is_known_down answers without admitting a trial": [
        ("down?", 0.0, UP, False),
        ("fail", 0.0, UP, None),
        ("fail", 0.0, UP, None),
        ("fail", 0.0, DOWN, None),
        ("down?", 1.0, DOWN, True),
        ("down?", 5.0, DOWN, False),
        ("down?", 5.0, DOWN, False),
        ("avail", 5.0, PROBING, True),
        ("down?", 5.0, PROBING, True),
        ("down?", 10.0, PROBING, False),
        ("ok", 6.0, PROBING, None),
        ("down?", 6.0, PROBING, False),
    ],
    "a trial that never reports is replaced after a cooldown": [
        ("fail", 0.0, UP, None),
        ("fail", 0.0, UP, None),
        ("fail", 0.0, DOWN, None),
        ("avail", 5.0, PROBING, True),
        ("avail", 9.9, PROBING, False),
        ("avail", 10.0, PROBING, True),
        ("avail", 10.0, PROBING, False),
    ],
}


@pytest.mark.parametrize("steps", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_transitions(steps: list[Step]) -> None:
    health = OriginHealth("app", unhealthy_after=3, healthy_after=2, cooldown=5.0)
    for index, (op, now, state, available) in enumerate(steps):
        if op == "fail":
            health.record_failure(now)
        elif op == "ok":
            health.record_success(now)
        elif op == "down?":
            assert health.is_known_down(now) is available, f"step {index}: {op} at {now}"
        else:
            assert health.is_available(now) is available, f"step {index}: {op} at {now}"
        assert health.state is state, f"step {index}: {op} at {now}"


@pytest.mark.parametrize(
    ("unhealthy_after", "healthy_after", "failures_to_down", "successes_to_up"),
    [(1, 1, 1, 1), (2, 3, 2, 3), (5, 1, 5, 1)],
)
def test_thresholds(
    unhealthy_after: int, healthy_after: int, failures_to_down: int, successes_to_up: int
) -> None:
    health = OriginHealth("app", unhealthy_after=unhealthy_after, healthy_after=healthy_after, cooldown=0.0)
    for _ in range(failures_to_down - 1):
        health.record_failure(0.0)
    assert health.state is UP
    health.record_failure(0.0)
    assert health.state is DOWN
    for _ in range(successes_to_up - 1):
        health.record_success(1.0)
        assert health.state is not UP
    health.record_success(1.0)
    assert health.state is UP


def test_counters_and_snapshot() -> None:
    health = OriginHealth("app", unhealthy_after=2, healthy_after=1, cooldown=1.0)
    health.record_success(0.0)
    health.record_failure(0.0)
    assert (health.consecutive_failures, health.consecutive_successes, health.total_failures) == (1, 0, 1)
    health.record_failure(0.0)
    assert health.snapshot() == {
        "name": "app",
        "state": "down",
        "consecutive_failures": 2,
        "consecutive_successes": 0,
        "total_failures": 2,
        "total_successes": 1,
        "times_down": 1,
        "unhealthy_after": 2,
        "healthy_after": 1,
        "cooldown": 1.0,
    }
    health.record_success(0.5)
    assert health.snapshot()["state"] == "up"
    assert (health.consecutive_failures, health.consecutive_successes, health.total_failures) == (0, 1, 2)


def test_state_changes_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    health = OriginHealth("app", unhealthy_after=3, healthy_after=2, cooldown=5.0)
    with caplog.at_level(logging.WARNING, logger="proxy.origin.health"):
        for _ in range(5):
            health.record_failure(0.0, reason="HTTP 503")
        health.record_success(1.0)
        health.record_success(1.0)
        health.record_success(1.0)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "origin app is DOWN (3 consecutive failures; last: HTTP 503)",
        "origin app is UP again",
    ]
    assert all(record.levelno == logging.WARNING for record in caplog.records)


@pytest.mark.parametrize(
    "kwargs", [{"unhealthy_after": 0}, {"healthy_after": 0}, {"cooldown": -1.0}], ids=str
)
def test_rejects_bad_thresholds(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OriginHealth("app", **kwargs)  # type: ignore[arg-type]


def test_for_origin_reads_health_thresholds() -> None:
    probed_config = OriginConfig.model_validate(
        {"url": "http://127.0.0.1:9000", "health": {"unhealthy_after": 4, "healthy_after": 1}}
    )
    probed = OriginHealth.for_origin("probed", probed_config, cooldown=2.0)
    plain = OriginHealth.for_origin("plain", OriginConfig.model_validate({"url": "http://127.0.0.1:9001"}))
    assert (probed.unhealthy_after, probed.healthy_after, probed.cooldown) == (4, 1, 2.0)
    assert (plain.unhealthy_after, plain.healthy_after, plain.cooldown) == (3, 2, 5.0)


def test_probe_targets_from_config(tmp_path: Path) -> None:
    origins = {
        "app": OriginConfig.model_validate(
            {
                "url": "http://127.0.0.1:9000/prefix/",
                "host_header": "www.example.com",
                "headers": {"X-Edge-Secret": "s3"},
                "health": {"path": "/ping", "interval": "2s", "timeout": "500ms"},
            }
        ),
        "viewer_host": OriginConfig.model_validate(
            {"url": "http://127.0.0.1:9001", "host_header": "viewer", "health": {}}
        ),
        "unprobed": OriginConfig.model_validate({"url": "http://127.0.0.1:9002"}),
        "folder": OriginConfig.model_validate({"root": str(tmp_path), "health": {}}),
    }
    healths = {name: OriginHealth.for_origin(name, config) for name, config in origins.items()}
    app, viewer_host = probe_targets(origins, healths)
    assert (app.name, app.probe_url, app.interval, app.timeout) == (
        "app",
        "http://127.0.0.1:9000/prefix/ping",
        2.0,
        0.5,
    )
    assert app.health is healths["app"]
    assert dict(app.headers) == {"X-Edge-Secret": "s3", "Host": "www.example.com"}
    assert (viewer_host.probe_url, dict(viewer_host.headers)) == ("http://127.0.0.1:9001/healthz", {})
