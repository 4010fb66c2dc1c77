"""What a deployment's page shows of its monitoring (issue 12): the figures
each live replica reported with its last heartbeat, judged against the
thresholds they are watched by.

A model server sends its monitoring window with every heartbeat
(``Replica.measures``: see ``serving/monitor.py``'s snapshot and
``serving/runner.py``, which adds the version and the thresholds it judges
by). The registry stores that JSON as sent, so here every figure is read
defensively: a value that is not a finite number shows as missing, never as
an error page. Thresholds the server did not report fall back on the
deployment's recorded settings (and the drift defaults).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelyard.domain.deployments import Deployment, HistoryEntry, Replica
from modelyard.domain.monitoring import DriftThresholds, MonitorSettings

MAX_FEATURES_SHOWN = 50


def _num(value: Any) -> float | None:
    """A finite number, or None for anything else (the JSON came from a server)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _over(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and value > limit


@dataclass(frozen=True, slots=True)
class FeatureFigures:
    """One feature's drift over the window, against its thresholds."""

    name: str
    kind: str
    count: int | None
    psi: float | None
    ks: float | None
    unseen_share: float | None
    psi_over: bool
    ks_over: bool

    @property
    def drifted(self) -> bool:
        """Over either threshold."""
        return self.psi_over or self.ks_over


@dataclass(frozen=True, slots=True)
class ReplicaFigures:
    """One replica's monitoring window as of its last heartbeat."""

    replica: str
    stale: bool
    heartbeat_at: int
    version: int | None
    window_seconds: float | None
    requests: int | None
    errors: int | None
    request_rate: float | None
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    thresholds: dict[str, float | None]
    error_over: bool
    latency_over: bool
    judged: bool
    """Enough requests in the window for the thresholds to apply (``min_requests``)."""
    features: list[FeatureFigures] = field(default_factory=list)
    features_total: int = 0

    @property
    def drifted(self) -> list[FeatureFigures]:
        """The features over a threshold."""
        return [f for f in self.features if f.drifted]


def _thresholds(raw: Any, settings: MonitorSettings) -> dict[str, float | None]:
    given: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    base = DriftThresholds()

    def pick(key: str, fallback: float | None) -> float | None:
        value = _num(given.get(key))
        return fallback if value is None else value

    return {
        "psi": pick("psi", settings.psi if settings.psi is not None else base.psi),
        "ks": pick("ks", settings.ks if settings.ks is not None else base.ks),
        "error_rate": pick("error_rate", settings.error_rate),
        "latency_p99_ms": pick("latency_p99_ms", settings.latency_p99_ms),
        "min_requests": pick("min_requests", float(settings.min_requests)),
    }


def _features(raw: Any, limits: dict[str, float | None]) -> list[FeatureFigures]:
    if not isinstance(raw, Mapping):
        return []
    out = []
    for name, f in raw.items():
        if not isinstance(f, Mapping):
            continue
        count = _num(f.get("count"))
        psi, ks = _num(f.get("psi")), _num(f.get("ks"))
        # As the model server judges: a feature seen fewer than min_requests
        # times in the window is not judged.
        judged = count is not None and count >= (limits["min_requests"] or 0)
        out.append(
            FeatureFigures(
                name=str(name),
                kind=str(f.get("kind") or ""),
                count=None if count is None else int(count),
                psi=psi,
                ks=ks,
                unseen_share=_num(f.get("unseen_share")),
                psi_over=judged and _over(psi, limits["psi"]),
                ks_over=judged and _over(ks, limits["ks"]),
            )
        )
    # The most drifted first: what an operator looks for.
    out.sort(key=lambda x: (-(max(x.psi or 0.0, x.ks or 0.0)), x.name))
    return out[:MAX_FEATURES_SHOWN]


def replica_figures(r: Replica, settings: MonitorSettings) -> ReplicaFigures | None:
    """The figures of ``r``'s last heartbeat (None if it sent none)."""
    m = r.measures
    if not isinstance(m, Mapping):
        return None
    limits = _thresholds(m.get("thresholds"), settings)
    window = _num(m.get("window_seconds"))
    requests = _num(m.get("requests"))
    errors = _num(m.get("errors"))
    error_rate = _num(m.get("error_rate"))
    p99 = _num(m.get("latency_p99_ms"))
    version = _num(m.get("version"))
    judged = requests is not None and requests >= (limits["min_requests"] or 0)
    raw_features = m.get("features")
    total = _num(m.get("features_total"))
    features = _features(raw_features, limits)
    return ReplicaFigures(
        replica=r.replica,
        stale=r.stale,
        heartbeat_at=r.heartbeat_at,
        version=r.version if version is None else int(version),
        window_seconds=window,
        requests=None if requests is None else int(requests),
        errors=None if errors is None else int(errors),
        request_rate=None if requests is None or not window else requests / window,
        error_rate=error_rate,
        latency_p50_ms=_num(m.get("latency_p50_ms")),
        latency_p99_ms=p99,
        thresholds=limits,
        error_over=judged and _over(error_rate, limits["error_rate"]),
        latency_over=judged and _over(p99, limits["latency_p99_ms"]),
        judged=judged,
        features=features,
        features_total=int(total) if total is not None else len(features),
    )


def monitoring_figures(dep: Deployment) -> list[ReplicaFigures]:
    """Every replica's figures, live replicas first."""
    found = [replica_figures(r, dep.monitoring) for r in dep.instances]
    return sorted((f for f in found if f is not None), key=lambda f: (f.stale, f.replica))


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert or automatic rollback of the deployment, ready to show."""

    id: int
    kind: str
    at: int
    version: int | None
    previous_version: int | None
    replica: str | None
    actor: str
    facts: list[tuple[str, str]]
    """(label, value) pairs: the measures and thresholds the server reported."""
    features: list[tuple[str, float | None, float | None]]
    """Drifted features: (name, PSI, KS)."""
    rollback: str | None
    """What became of a rollback the alert asked for (done, or refused and why)."""


def _fmt(value: Any, spec: str = ".3g") -> str | None:
    n = _num(value)
    return None if n is None else format(n, spec)


def _rollback_text(raw: Any) -> str | None:
    if not isinstance(raw, Mapping):
        return None
    if raw.get("done") is True:
        return f"rolled back v{raw.get('from_version')} → v{raw.get('to_version')}"
    code, message = raw.get("code"), raw.get("message")
    return f"rollback refused: {code} {message}" if code else None


def alert_view(entry: HistoryEntry) -> AlertView:
    """An alert history entry (``HistoryEntry`` of kind drift, degraded or
    rolled_back) with its detail read defensively (see the module docstring)."""
    detail: Mapping[str, Any] = entry.detail if isinstance(entry.detail, Mapping) else {}
    facts: list[tuple[str, str]] = []
    features: list[tuple[str, float | None, float | None]] = []
    given = detail.get("thresholds")
    limits: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    reasons = detail.get("reasons")
    if isinstance(reasons, list):
        facts.append(("over", ", ".join(str(x) for x in reasons)))
    for key, label, spec in (
        ("error_rate", "error rate", ".2%"),
        ("latency_p99_ms", "p99 ms", ".3g"),
        ("requests", "requests", ".0f"),
        ("sustained_seconds", "held s", ".1f"),
        ("window_seconds", "window s", "g"),
    ):
        shown = _fmt(detail.get(key), spec)
        if shown is not None:
            limit = _fmt(limits.get(key), spec) if key in ("error_rate", "latency_p99_ms") else None
            facts.append((label, shown if limit is None else f"{shown} (limit {limit})"))
    for key in ("psi", "ks"):
        shown = _fmt(limits.get(key))
        if shown is not None:
            facts.append((f"{key.upper()} limit", shown))
    raw = detail.get("features")
    if isinstance(raw, Mapping):
        for name, f in list(raw.items())[:MAX_FEATURES_SHOWN]:
            if isinstance(f, Mapping):
                features.append((str(name), _num(f.get("psi")), _num(f.get("ks"))))
    for key in ("alias", "reason"):
        if isinstance(detail.get(key), str) and detail[key]:
            facts.append((key, detail[key]))
    return AlertView(
        id=entry.id,
        kind=entry.kind.value,
        at=entry.at,
        version=entry.version,
        previous_version=entry.previous_version,
        replica=entry.replica,
        actor=entry.actor,
        facts=facts,
        features=features,
        rollback=_rollback_text(detail.get("rollback")),
    )
