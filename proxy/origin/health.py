"""Origin health: a passive + active circuit breaker per origin, and the background prober that feeds it.

``OriginHealth`` is a pure state machine (it never reads the clock: every call takes ``now``, a
``time.monotonic()`` value). The FETCH phase asks it ``is_available(now)`` before trying an origin (through
``OriginGroup.candidates``) and reports each attempt's outcome with ``record_success`` / ``record_failure``;
``HealthProber`` reports the results of the active probe (``origins.NAME.health``) into the same object.

States::

    UP ──(unhealthy_after consecutive failures)──► DOWN ──(cooldown elapsed, is_available)──► PROBING
     ▲                                              │  ▲                                        │
     └──────(healthy_after consecutive successes)───┘  └───────────(any failure)────────────────┤
     ▲                                                                                          │
     └──────────────────────────(healthy_after consecutive successes)───────────────────────────┘

DOWN skips the origin without waiting for its timeouts. PROBING (half-open) lets exactly one trial request
through at a time; its success counts toward ``healthy_after``, its failure sends the origin back to DOWN
with a fresh cooldown. Probe successes count in DOWN too, so a probed origin comes back without live
traffic.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import aiohttp
from yarl import URL

from proxy.settings.model import OriginConfig

__all__ = ["HealthProber", "HealthState", "OriginHealth", "ProbeTarget", "probe_targets"]

log = logging.getLogger(__name__)

PROBE_BODY_LIMIT = 64 * 1024  # bytes of a probe answer read (then dropped) so the connection can be reused


class HealthState(enum.Enum):
    """Where one origin stands; the value is what ``/stats`` shows."""

    UP = "up"
    DOWN = "down"
    PROBING = "probing"


class OriginHealth:
    """The passive + active health state of ONE origin (created once per origin per worker).

    ``unhealthy_after`` consecutive failures mark it DOWN; ``cooldown`` seconds after that the next
    ``is_available`` call turns it PROBING and admits one trial request; ``healthy_after`` consecutive
    successes (live or probe, in PROBING or DOWN) mark it UP again.

    A trial that never reports (the request was abandoned before an outcome) would keep a PROBING origin
    closed forever, so a trial admitted more than ``cooldown`` seconds ago counts as lost and the next
    ``is_available`` call admits another one.
    """

    def __init__(
        self, name: str, *, unhealthy_after: int = 3, healthy_after: int = 2, cooldown: float = 5.0
    ) -> None:
        if unhealthy_after < 1 or healthy_after < 1:
            raise ValueError("unhealthy_after and healthy_after must be 1 or more")
        if cooldown < 0:
            raise ValueError("cooldown must not be negative")
        self.name = name
        self.unhealthy_after = unhealthy_after
        self.healthy_after = healthy_after
        self.cooldown = cooldown
        self._state = HealthState.UP
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.total_failures = 0
        self.total_successes = 0
        self.times_down = 0  # how often it went UP/PROBING -> DOWN
        self._down_since = 0.0  # when it last went DOWN (the cooldown starts here)
        self._trial_since: float | None = None  # when the outstanding PROBING trial was admitted
        self.last_check: float | None = None  # wall clock of the last recorded outcome (for the dashboard)
        self.last_error: str | None = None  # the last failure's reason

    @classmethod
    def for_origin(cls, name: str, config: OriginConfig, *, cooldown: float = 5.0) -> OriginHealth:
        """The health state for ``origins.NAME``, called once per origin when the runtime is built.

        Thresholds come from ``health:`` when the origin has one, else the defaults (3 down, 2 up), so
        passive health works for every origin.
        """
        if config.health is None:
            return cls(name, cooldown=cooldown)
        return cls(
            name,
            unhealthy_after=config.health.unhealthy_after,
            healthy_after=config.health.healthy_after,
            cooldown=cooldown,
        )

    @property
    def state(self) -> HealthState:
        """The current state. Read-only: DOWN becomes PROBING only inside ``is_available``."""
        return self._state

    def is_available(self, now: float) -> bool:
        """Whether a request may be sent to this origin now; called right before trying it.

        True when UP. When DOWN: False until ``cooldown`` seconds after it went down; then it becomes
        PROBING and this call returns True (the trial). When PROBING: True only when no trial is
        outstanding (or the outstanding one is older than ``cooldown``). A True answer in PROBING admits a
        trial, so call this only for an origin you will actually try, and report the outcome.
        """
        if self._state is HealthState.UP:
            return True
        if self._state is HealthState.DOWN:
            if now - self._down_since < self.cooldown:
                return False
            self._state = HealthState.PROBING
            self._trial_since = None
        if self._trial_since is not None and now - self._trial_since < self.cooldown:
            return False
        self._trial_since = now
        return True

    def is_known_down(self, now: float) -> bool:
        """Whether ``is_available(now)`` would say False; unlike it, this never changes the state.

        Called by FETCH (through ``OriginGroup.all_down``) to serve a stale entry at once when no origin
        can be tried: True while DOWN within its cooldown, or PROBING with a trial outstanding.
        """
        if self._state is HealthState.UP:
            return False
        if self._state is HealthState.DOWN:
            return now - self._down_since < self.cooldown
        return self._trial_since is not None and now - self._trial_since < self.cooldown

    def record_success(self, now: float) -> None:
        """Report an attempt (live request or probe) that got an acceptable answer.

        Called by the FETCH phase after an origin answered with a status it does not fail over on, and by
        the prober after a 2xx/3xx. Ends an outstanding PROBING trial; ``healthy_after`` consecutive
        successes in PROBING or DOWN make the origin UP.
        """
        self.total_successes += 1
        self.last_check = time.time()
        self.consecutive_successes += 1
        self.consecutive_failures = 0
        if self._state is HealthState.UP:
            return
        self._trial_since = None
        if self.consecutive_successes >= self.healthy_after:
            self._state = HealthState.UP
            log.warning("origin %s is UP again", self.name)

    def record_failure(self, now: float, *, reason: str = "") -> None:
        """Report an attempt (live request or probe) that failed: connect error, timeout, failover status.

        Called by the FETCH phase and by the prober. ``unhealthy_after`` consecutive failures make an UP
        origin DOWN; any failure in PROBING sends it back to DOWN with a fresh cooldown. A failure while
        DOWN does not restart the cooldown (requests still in flight when it went down report late).
        ``reason`` (e.g. ``"HTTP 503"``) only goes into the log line.
        """
        self.total_failures += 1
        self.last_check = time.time()
        self.last_error = reason or "failed"
        self.consecutive_failures += 1
        self.consecutive_successes = 0
        if self._state is HealthState.DOWN:
            return
        if self._state is HealthState.UP and self.consecutive_failures < self.unhealthy_after:
            return
        was_probing = self._state is HealthState.PROBING
        self._state = HealthState.DOWN
        self._down_since = now
        self._trial_since = None
        self.times_down += 1
        detail = f"; last: {reason}" if reason else ""
        if was_probing:
            log.warning("origin %s is DOWN (trial request failed%s)", self.name, detail)
        else:
            log.warning(
                "origin %s is DOWN (%d consecutive failures%s)", self.name, self.consecutive_failures, detail
            )

    def snapshot(self) -> dict[str, object]:
        """The state and counters as plain values, for ``/stats`` and the admin API."""
        return {
            "name": self.name,
            "state": self._state.value,
            "consecutive_failures": self.consecutive_failures,
            "consecutive_successes": self.consecutive_successes,
            "total_failures": self.total_failures,
            "total_successes": self.total_successes,
            "times_down": self.times_down,
            "unhealthy_after": self.unhealthy_after,
            "healthy_after": self.healthy_after,
            "cooldown": self.cooldown,
        }

    def __repr__(self) -> str:
        return f"OriginHealth({self.name!r}, state={self._state.value}, failures={self.consecutive_failures})"


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One origin to probe: ``GET url + path`` every ``interval`` seconds, failing after ``timeout``.

    ``url`` is the origin's base URL including its path prefix (``http://127.0.0.1:9000/app``); ``headers``
    are sent with every probe (the origin's configured headers, and ``Host`` for a literal host_header).
    """

    name: str
    url: str
    path: str
    interval: float
    timeout: float
    health: OriginHealth
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def probe_url(self) -> str:
        """The full URL the probe requests."""
        return self.url.rstrip("/") + self.path


def probe_targets(
    origins: Mapping[str, OriginConfig], healths: Mapping[str, OriginHealth]
) -> list[ProbeTarget]:
    """The probes for every HTTP origin with ``health:`` configured; called when the runtime is built.

    Folder origins and origins without ``health:`` are not probed (passive health still applies).
    ``healths`` maps each origin name to its ``OriginHealth``.
    """
    targets: list[ProbeTarget] = []
    for name, config in origins.items():
        if config.health is None or config.url is None:
            continue
        headers = dict(config.headers)
        if config.host_header not in ("origin", "viewer"):
            headers["Host"] = config.host_header
        targets.append(
            ProbeTarget(
                name=name,
                url=config.url,
                path=config.health.path,
                interval=config.health.interval,
                timeout=config.health.timeout,
                health=healths[name],
                headers=headers,
            )
        )
    return targets


class HealthProber:
    """Owns one background task per probed origin; started with the edge, closed on shutdown or reload.

    Each task sends ``GET path`` right away and then every ``interval`` seconds (counted from the end of the
    previous probe), and records a 2xx/3xx answer as a success and anything else (other status, connect
    error, timeout after ``timeout`` seconds) as a failure into the target's ``OriginHealth``, using
    ``time.monotonic()``. A probe never raises out of its task; state changes are logged by
    ``OriginHealth`` at WARNING.
    """

    def __init__(self, checks: list[ProbeTarget]) -> None:
        self._checks = list(checks)
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.probes_sent = 0  # probes that completed (either way), for /stats and tests

    @property
    def running(self) -> bool:
        """True while at least one probe task is alive."""
        return any(not task.done() for task in self._tasks)

    async def start(self) -> None:
        """Create the client session and start one task per target; called once, inside the running loop."""
        if self._closed or self._session is not None:
            raise RuntimeError("HealthProber.start() may be called once, before close()")
        if not self._checks:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=len(self._checks) * 2, ttl_dns_cache=60),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        for target in self._checks:
            self._tasks.append(asyncio.create_task(self._run(target), name=f"health-probe:{target.name}"))

    async def close(self) -> None:
        """Cancel and await every probe task, then close the session; safe to call more than once."""
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, target: ProbeTarget) -> None:
        """One origin's probe loop; ends only by cancellation."""
        while True:
            try:
                failure = await self._probe(target)
            except Exception as exc:  # a bug, not an origin failure: keep probing, but say so
                log.warning("health probe of origin %s raised", target.name, exc_info=True)
                failure = type(exc).__name__
            self.probes_sent += 1
            now = time.monotonic()
            if failure is None:
                target.health.record_success(now)
            else:
                target.health.record_failure(now, reason=f"probe: {failure}")
            await asyncio.sleep(target.interval)

    async def _probe(self, target: ProbeTarget) -> str | None:
        """Send one probe; None when it succeeded, else a short description of the failure."""
        assert self._session is not None
        try:
            async with asyncio.timeout(target.timeout):
                async with self._session.get(
                    URL(target.probe_url, encoded=True),
                    headers=dict(target.headers),
                    allow_redirects=False,
                ) as response:
                    await response.content.read(PROBE_BODY_LIMIT)
                    status = response.status
        except TimeoutError:
            return f"no answer within {target.timeout:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return str(exc) or type(exc).__name__
        if 200 <= status < 400:
            return None
        return f"HTTP {status}"
