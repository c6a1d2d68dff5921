"""The circuit breaker's state machine, driven step by step with explicit times (no clock, no loop).

Each scenario is a list of steps ``(operation, now, expected allow() result or None, state afterwards)``.
"""

from __future__ import annotations

import math

import pytest

from proxy.cache.breaker import BreakerState, CircuitBreaker

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

Step = tuple[str, float, bool | None, BreakerState]

SCENARIOS: dict[str, list[Step]] = {
    "closed allows": [
        ("allow", 0.0, True, CLOSED),
        ("success", 0.0, None, CLOSED),
        ("allow", 1.0, True, CLOSED),
    ],
    "failures below the threshold keep it closed": [
        ("failure", 0.0, None, CLOSED),
        ("failure", 0.1, None, CLOSED),
        ("allow", 0.2, True, CLOSED),
    ],
    "the threshold-th consecutive failure opens": [
        ("failure", 0.0, None, CLOSED),
        ("failure", 0.1, None, CLOSED),
        ("failure", 0.2, None, OPEN),
        ("allow", 0.3, False, OPEN),
    ],
    "a success resets the count": [
        ("failure", 0.0, None, CLOSED),
        ("failure", 0.1, None, CLOSED),
        ("success", 0.2, None, CLOSED),
        ("failure", 0.3, None, CLOSED),
        ("failure", 0.4, None, CLOSED),
        ("failure", 0.5, None, OPEN),
    ],
    "open refuses until reset_after, then one probe": [
        *[("failure", 10.0, None, CLOSED)] * 2,
        ("failure", 10.0, None, OPEN),
        ("allow", 14.999, False, OPEN),
        ("allow", 15.0, True, HALF),
        ("allow", 15.0, False, HALF),
        ("allow", 19.9, False, HALF),
    ],
    "a successful probe closes": [
        *[("failure", 0.0, None, CLOSED)] * 2,
        ("failure", 0.0, None, OPEN),
        ("allow", 5.0, True, HALF),
        ("success", 5.1, None, CLOSED),
        ("allow", 5.2, True, CLOSED),
        ("failure", 5.3, None, CLOSED),  # counting starts again from zero
        ("failure", 5.4, None, CLOSED),
        ("failure", 5.5, None, OPEN),
    ],
    "a failed probe opens again for another reset_after": [
        *[("failure", 0.0, None, CLOSED)] * 2,
        ("failure", 0.0, None, OPEN),
        ("allow", 6.0, True, HALF),
        ("failure", 6.5, None, OPEN),
        ("allow", 11.0, False, OPEN),
        ("allow", 11.5, True, HALF),
    ],
    "an unanswered probe is given up after reset_after": [
        *[("failure", 0.0, None, CLOSED)] * 2,
        ("failure", 0.0, None, OPEN),
        ("allow", 5.0, True, HALF),
        ("allow", 9.9, False, HALF),
        ("allow", 10.0, True, HALF),
        ("success", 10.1, None, CLOSED),
    ],
    "late results while open are ignored": [
        *[("failure", 0.0, None, CLOSED)] * 2,
        ("failure", 0.0, None, OPEN),
        ("success", 1.0, None, OPEN),
        ("failure", 4.0, None, OPEN),  # does not push the probe back
        ("allow", 5.0, True, HALF),
    ],
}


@pytest.mark.parametrize("steps", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_scenarios(steps: list[Step]) -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after=5.0)
    assert breaker.state is CLOSED
    for index, (operation, now, expected, state) in enumerate(steps):
        if operation == "allow":
            assert breaker.allow(now) is expected, f"step {index}: allow({now})"
        elif operation == "success":
            breaker.record_success(now)
        else:
            breaker.record_failure(now)
        assert breaker.state is state, f"step {index}: {operation}({now}) left {breaker!r}"


@pytest.mark.parametrize(
    ("threshold", "failures_to_open"),
    [(1, 1), (2, 2), (5, 5)],
)
def test_threshold(threshold: int, failures_to_open: int) -> None:
    breaker = CircuitBreaker(failure_threshold=threshold, reset_after=1.0)
    for n in range(1, failures_to_open + 1):
        breaker.record_failure(float(n))
        assert breaker.state is (OPEN if n == failures_to_open else CLOSED)
        assert breaker.failures == (0 if n == failures_to_open else n)


def test_defaults_and_repr() -> None:
    breaker = CircuitBreaker()
    assert (breaker.failure_threshold, breaker.reset_after) == (3, 5.0)
    assert "closed" in repr(breaker)
    assert str(BreakerState.HALF_OPEN) == "half-open"


@pytest.mark.parametrize(
    ("threshold", "reset_after"),
    [(0, 1.0), (-1, 1.0), (1, 0.0), (1, -1.0), (1, math.inf), (1, math.nan)],
)
def test_invalid_arguments(threshold: int, reset_after: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=threshold, reset_after=reset_after)
