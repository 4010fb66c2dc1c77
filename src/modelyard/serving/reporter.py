"""Deployment heartbeats: tell the registry what this server runs (issue 12).

Started with ``--env NAME``, ``modelyard serve`` is a replica of one
deployment per reference it serves. Through the SDK it

- reports each reference once before it takes traffic (which registers the
  deployment if none is recorded; a refusal stops the start, as a refused
  reference does),
- sends a heartbeat per reference every ``interval`` seconds: status
  (``ready``, or ``degraded`` after a version failed to load while the old
  one keeps serving), the version loaded, this replica's id and endpoint,
  and the monitoring window's figures (``measures``: requests, error rate,
  latency, the most drifted features with the thresholds they are judged
  by; the registry's UI shows them on the deployment's page),
- reports at once when the follower swaps (the new resolved version) or
  when a version fails to load (``failed_version`` and the error).

A heartbeat that fails (registry unreachable) is logged and retried at the
next beat; serving never depends on it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelyard.client import Registry
from modelyard.domain.errors import InvalidInput
from modelyard.domain.monitoring import MonitorSettings, parse_monitor_settings

log = logging.getLogger("modelyard.serving")

HEARTBEAT_SECONDS = 15.0
MAX_REPORTED_FEATURES = 50
"""Features per heartbeat: the most drifted ones (a heartbeat's measures
must stay well under the registry's 16 KiB bound, and a model may track
up to 1,000 features)."""

Measures = Callable[[str], dict[str, Any] | None]
"""``measures(ref)``: the monitoring window of what serves ``ref`` now, or None."""


def trim_features(measures: dict[str, Any], limit: int = MAX_REPORTED_FEATURES) -> dict[str, Any]:
    """``measures`` with only its ``limit`` most drifted features (by the larger
    of PSI and KS), and ``features_total`` saying how many there were."""
    features: dict[str, dict[str, Any]] = measures.get("features") or {}

    def worst(item: tuple[str, dict[str, Any]]) -> float:
        f = item[1]
        return max(f.get("psi") or 0.0, f.get("ks") or 0.0)

    kept = dict(sorted(features.items(), key=worst, reverse=True)[:limit])
    return {**measures, "features": kept, "features_total": len(features)}


def default_replica_id() -> str:
    """``HOST-PID``: unique per process on a machine, readable in ``deploy show``.
    The host part is trimmed to the characters a replica id allows."""
    host = "".join(
        c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in socket.gethostname()
    ).lstrip("._-")
    return f"{(host or 'host')[:100]}-{os.getpid()}"


@dataclass(slots=True)
class _Served:
    ref: str
    version: int
    failed: tuple[int, str] | None = None
    """The last version that failed to load and why, until a swap succeeds."""


class DeploymentReporter:
    """Heartbeats of one model server for every reference it serves."""

    def __init__(
        self,
        registry: Registry,
        environment: str,
        served: list[tuple[str, int]],
        *,
        endpoint: str | None = None,
        replica: str | None = None,
        interval: float = HEARTBEAT_SECONDS,
        measures: Measures | None = None,
    ) -> None:
        self.registry = registry
        self.measures = measures
        self.environment = environment
        self.endpoint = endpoint
        self.replica = replica or default_replica_id()
        self.interval = interval
        self._served = {ref: _Served(ref, version) for ref, version in served}
        self._monitoring: dict[str, MonitorSettings] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deployment-heartbeat", daemon=True)

    def register(self) -> None:
        """Report every reference now; raises what the registry refuses."""
        for ref in list(self._served):
            self._send(ref)

    def start(self) -> None:
        """Start the heartbeat thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (it does within one interval at most)."""
        self._stop.set()

    def swapped(self, ref: str, version: int) -> None:
        """The follower swapped ``ref`` to ``version``: report it now."""
        with self._lock:
            served = self._served[ref]
            served.version, served.failed = version, None
        self._try_send(ref)

    def load_failed(self, ref: str, version: int, error: str) -> None:
        """``version`` of ``ref`` failed to load (the old one keeps serving): report it now."""
        with self._lock:
            served = self._served[ref]
            # The follower retries a broken version at every reconcile: report
            # it once (the heartbeats keep saying "degraded" with its error).
            again = served.failed is not None and served.failed[0] == version
            served.failed = (version, error)
        if not again:
            self._try_send(ref, report_failure=True)

    def monitoring(self, ref: str) -> MonitorSettings | None:
        """The deployment's monitoring settings as the registry last answered them."""
        return self._monitoring.get(ref)

    def alert(
        self, ref: str, kind: str, version: int, held: float | None, detail: dict[str, Any]
    ) -> dict[str, Any]:
        """Report a drift or degradation alert on ``ref``'s deployment (see
        :mod:`~modelyard.serving.watcher`); the registry's answer."""
        return self.registry.report_alert(
            self.environment,
            ref,
            replica=self.replica,
            kind=kind,
            version=version,
            sustained_seconds=held,
            detail=detail,
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for ref in list(self._served):
                self._try_send(ref)

    def _try_send(self, ref: str, *, report_failure: bool = False) -> None:
        try:
            self._send(ref, report_failure=report_failure)
        except Exception as exc:  # the registry unreachable: keep serving, retry next beat
            log.warning("deployment heartbeat for %s failed: %s", ref, exc)

    def _send(self, ref: str, *, report_failure: bool = False) -> None:
        with self._lock:
            served = self._served[ref]
            version, failed = served.version, served.failed
        window = None
        if self.measures is not None:
            try:
                found = self.measures(ref)
                window = None if found is None else trim_features(found)
            except Exception:  # figures are a bonus: never let them stop a heartbeat
                log.exception("monitoring figures of %s not available", ref)
        answer = self.registry.report_heartbeat(
            self.environment,
            ref,
            replica=self.replica,
            status="ready" if failed is None else "degraded",
            version=version,
            endpoint=self.endpoint,
            failed_version=failed[0] if failed and report_failure else None,
            error=failed[1] if failed else None,
            measures=window,
        )
        raw = answer.get("monitoring")
        if raw is not None:
            try:
                self._monitoring[ref] = parse_monitor_settings(raw)
            except InvalidInput as exc:  # a newer registry's settings: keep the last known
                log.warning("deployment monitoring settings of %s not understood: %s", ref, exc)
