"""A circuit breaker: stop calling a dependency that keeps failing, and probe it again later.

Pure: every method takes ``now`` (seconds on any monotonic clock) and nothing here reads a clock, sleeps or
logs, so the whole state machine is tested without an event loop. The shared tier (``proxy.cache.shared``)
owns one per store and asks it before every network call.

States (``BreakerState``):

- **closed**: calls go through; ``failure_threshold`` consecutive failures open the circuit.
- **open**: calls are refused without touching the network until ``reset_after`` seconds have passed since
  it opened; then the next ``allow`` moves to half-open and lets that one call through as a probe.
- **half-open**: only the probe is in flight; other calls are refused. Its success closes the circuit, its
  failure opens it again for another ``reset_after``. A probe that never reports (its task was cancelled)
  is given up after ``reset_after`` and the next ``allow`` sends a new probe, so the breaker cannot get
  stuck half-open.

While open, late results of calls that started before the circuit opened are ignored: only a probe decides
that the dependency is back.
"""

from __future__ import annotations

import math
from enum import StrEnum


class BreakerState(StrEnum):
    """Where a ``CircuitBreaker`` is; the values go into logs and stats."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Counts consecutive failures of one dependency and decides whether the next call may go out."""

    __slots__ = ("_failure_threshold", "_failures", "_opened_at", "_probe_at", "_reset_after", "_state")

    def __init__(self, failure_threshold: int = 3, reset_after: float = 5.0) -> None:
        """Create a closed breaker; called once per guarded dependency (one per shared store).

        ``failure_threshold`` (≥ 1) consecutive failures open it; ``reset_after`` (> 0, finite) seconds after
        opening (or after a probe was sent) it lets one probe call through.
        """
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if not (math.isfinite(reset_after) and reset_after > 0):
            raise ValueError("reset_after must be a finite number of seconds > 0")
        self._failure_threshold = failure_threshold
        self._reset_after = reset_after
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_at = 0.0

    @property
    def state(self) -> BreakerState:
        """The current state. An open breaker whose ``reset_after`` has passed still reads ``OPEN`` until the
        next ``allow`` turns it half-open (the state only changes inside the methods that take ``now``)."""
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted while closed (0 after a success); for stats and tests."""
        return self._failures

    @property
    def failure_threshold(self) -> int:
        """Consecutive failures that open the circuit."""
        return self._failure_threshold

    @property
    def reset_after(self) -> float:
        """Seconds an open circuit waits before its probe (and how long a probe may stay unanswered)."""
        return self._reset_after

    def allow(self, now: float) -> bool:
        """Whether a call may go out at ``now``; called right before every call to the dependency.

        True while closed. When open, False until ``reset_after`` has passed since it opened; then True once
        (that call is the probe; the state becomes half-open). When half-open, False while the probe is
        outstanding, True again (a new probe) once it has been outstanding for ``reset_after``. A True from
        an open or half-open breaker obliges the caller to report the call's outcome.
        """
        state = self._state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            if now - self._opened_at < self._reset_after:
                return False
        elif now - self._probe_at < self._reset_after:  # half-open, probe still outstanding
            return False
        self._state = BreakerState.HALF_OPEN
        self._probe_at = now
        return True

    def record_success(self, now: float) -> None:
        """Report that an allowed call completed (the dependency answered); called after the call.

        Closed: resets the failure count. Half-open: the probe worked, the circuit closes. Open: ignored (a
        call that started before the circuit opened proves little).
        """
        if self._state is BreakerState.OPEN:
            return
        self._state = BreakerState.CLOSED
        self._failures = 0

    def record_failure(self, now: float) -> None:
        """Report that an allowed call failed (timeout, connection error); called after the call.

        Closed: counts it, and the ``failure_threshold``-th consecutive failure opens the circuit at ``now``.
        Half-open: the probe failed, the circuit opens again at ``now``. Open: ignored (the wait is not
        extended by calls that were already in flight).
        """
        state = self._state
        if state is BreakerState.OPEN:
            return
        if state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures < self._failure_threshold:
                return
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._failures = 0

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self._state.value}, failures={self._failures}/"
            f"{self._failure_threshold}, reset_after={self._reset_after})"
        )
