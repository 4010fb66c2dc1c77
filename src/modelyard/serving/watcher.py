"""Thresholds on the monitoring windows, and the alerts they raise (issue 12).

A thread looks at the window of every served reference's version a few
times per window (:func:`check_interval`) and judges it by the deployment's
monitoring settings (``MonitorSettings``: from the registry's answer to the
heartbeats when the server runs with ``--env``, else the defaults), drift
thresholds falling back on the version's statistics file, then on its model's
production policy (:func:`drift_thresholds`):

- **drift**: a feature seen at least ``min_requests`` times whose PSI or KS
  is above its threshold;
- **degraded**: at least ``min_requests`` requests in the window, and the
  error rate above ``error_rate`` or the p99 latency above
  ``latency_p99_ms``.

Debounce: a condition that holds sends one alert per window length (its
first crossing at once, then at most one per window while it holds). A
degradation that has held for ``rollback_after_seconds`` on a deployment that
opted in to rollback sends one more alert at that moment, carrying how long
it held: the registry rolls the alias back then, and the follower swaps to
the version it names. The state starts anew for each version served, so a
rolled-back-to version is judged on its own traffic.

Alerts go to the registry through the SDK (``report_alert``, with the
server's token) when the server runs with ``--env``; every alert is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelyard.domain.monitoring import DriftThresholds, MonitorSettings
from modelyard.serving.table import Live

log = logging.getLogger("modelyard.serving")

Served = Callable[[], list[tuple[str, Live]]]
"""The references served now, each with the version taking its traffic."""
Send = Callable[[str, str, int, float | None, dict[str, Any]], dict[str, Any] | None]
"""``send(ref, kind, version, sustained_seconds, detail)``: report an alert."""
Settings = Callable[[str], MonitorSettings]


def check_interval(settings: MonitorSettings) -> float:
    """How often windows are judged: ten times a window, between 0.1 and 5 s."""
    return max(0.1, min(5.0, settings.window_seconds / 10))


@dataclass(slots=True)
class _Condition:
    since: float | None = None
    last_sent: float | None = None
    escalated: bool = False


@dataclass(slots=True)
class _State:
    version: str
    drift: _Condition = field(default_factory=_Condition)
    degraded: _Condition = field(default_factory=_Condition)


def drift_thresholds(settings: MonitorSettings, live: Live) -> DriftThresholds:
    """The PSI and KS thresholds ``live``'s drift is judged by, each from the
    first that sets it: the deployment's monitoring settings, the version's
    statistics file, its model's production policy (``drift_thresholds``, the
    namespace's merged with the model's own), the defaults."""
    own = live.loaded.reference_stats.thresholds if live.loaded.reference_stats else None
    policy = live.loaded.policy_drift or {}
    defaults = DriftThresholds()
    if settings.psi is not None:
        psi_max = settings.psi
    else:
        psi_max = own.psi if own is not None else policy.get("psi", defaults.psi)
    if settings.ks is not None:
        ks_max = settings.ks
    else:
        ks_max = own.ks if own is not None else policy.get("ks", defaults.ks)
    return DriftThresholds(psi_max, ks_max)


def drift_of(snap: dict[str, Any], settings: MonitorSettings, live: Live) -> dict[str, Any]:
    """The features over their thresholds in a window snapshot (empty: no drift)."""
    limits = drift_thresholds(settings, live)
    psi_max, ks_max = limits.psi, limits.ks
    over = {}
    for name, f in snap["features"].items():
        if f["count"] < settings.min_requests:
            continue
        if (f["psi"] is not None and f["psi"] > psi_max) or (
            f["ks"] is not None and f["ks"] > ks_max
        ):
            over[name] = {"psi": f["psi"], "ks": f["ks"], "count": f["count"]}
    if not over:
        return {}
    return {"features": over, "thresholds": {"psi": psi_max, "ks": ks_max}}


def degradation_of(snap: dict[str, Any], settings: MonitorSettings) -> dict[str, Any]:
    """What is over its threshold in a window snapshot (empty: healthy)."""
    if snap["requests"] < settings.min_requests:
        return {}
    reasons = []
    if snap["error_rate"] is not None and snap["error_rate"] > settings.error_rate:
        reasons.append("error_rate")
    p99 = snap["latency_p99_ms"]
    if settings.latency_p99_ms is not None and p99 is not None and p99 > settings.latency_p99_ms:
        reasons.append("latency")
    if not reasons:
        return {}
    return {
        "reasons": reasons,
        "error_rate": snap["error_rate"],
        "latency_p99_ms": p99,
        "thresholds": {
            "error_rate": settings.error_rate,
            "latency_p99_ms": settings.latency_p99_ms,
        },
    }


class MonitorWatcher:
    """The thread that judges the windows and sends the alerts."""

    def __init__(
        self,
        served: Served,
        settings: Settings,
        send: Send | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.served = served
        self.settings = settings
        self.send = send
        self.clock = clock
        self._states: dict[str, _State] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor-watcher", daemon=True)

    def start(self) -> None:
        """Start judging."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (at its next check)."""
        self._stop.set()

    def _run(self) -> None:
        while True:
            interval = 5.0
            try:
                for ref, live in self.served():
                    settings = self.settings(ref)
                    interval = min(interval, check_interval(settings))
                    self.check(ref, live, settings)
            except Exception:  # a bug or the registry unreachable: keep serving, retry
                log.exception("monitoring check failed; retrying")
            if self._stop.wait(interval):
                return

    def check(self, ref: str, live: Live, settings: MonitorSettings) -> list[str]:
        """Judge ``ref``'s window once; the kinds of the alerts sent."""
        if live.monitor.window_seconds != settings.window_seconds:
            live.monitor.resize(settings.window_seconds)
        state = self._states.get(ref)
        if state is None or state.version != live.version:
            state = self._states[ref] = _State(live.version)
        snap = live.monitor.snapshot()
        now = self.clock()
        sent = []
        drift = drift_of(snap, settings, live)
        if self._due(state.drift, bool(drift), now, settings.window_seconds):
            self._alert(
                ref, live, "drift", None, {**drift, "window_seconds": snap["window_seconds"]}
            )
            sent.append("drift")
        bad = degradation_of(snap, settings)
        cond = state.degraded
        due = self._due(cond, bool(bad), now, settings.window_seconds)
        held = 0.0 if cond.since is None else now - cond.since
        if (
            bad
            and settings.rollback
            and not cond.escalated
            and held >= settings.rollback_after_seconds
        ):
            cond.escalated = due = True
            cond.last_sent = now
        if due:
            detail = {**bad, "requests": snap["requests"], "window_seconds": snap["window_seconds"]}
            if not self._alert(ref, live, "degraded", held, detail) and cond.escalated:
                cond.escalated = False  # the registry never heard it: escalate again
            sent.append("degraded")
        return sent

    @staticmethod
    def _due(cond: _Condition, holds: bool, now: float, window: float) -> bool:
        """Debounce (module docstring): True when an alert is to be sent now."""
        if not holds:
            cond.since, cond.escalated = None, False
            return False
        if cond.since is None:
            cond.since = now
        if cond.last_sent is None or now - cond.last_sent >= window:
            cond.last_sent = now
            return True
        return False

    def _alert(
        self, ref: str, live: Live, kind: str, held: float | None, detail: dict[str, Any]
    ) -> bool:
        """Log and report an alert; False if the registry could not be told."""
        log.warning("%s: %s on %s: %s", ref, kind, live.loaded.ref, detail)
        if self.send is None:
            return True
        try:
            answer = self.send(ref, kind, live.loaded.version, held, detail)
        except Exception as exc:  # the registry unreachable: the next window alerts again
            log.warning("%s: reporting %s failed: %s", ref, kind, exc)
            return False
        rollback = (answer or {}).get("rollback")
        if rollback:
            log.warning("%s: automatic rollback: %s", ref, rollback)
        return True
