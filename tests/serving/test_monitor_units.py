"""The model server's monitoring in-process (issue 12): the rolling window
(bounded, slices expire), PSI/KS from a real model's traffic, the Prometheus
gauges, and the watcher's thresholds and debounce on a controlled clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from modelyard.client import compute_reference_stats
from modelyard.domain.monitoring import MonitorSettings
from modelyard.serving.flavors import skops as skops_flavor
from modelyard.serving.loader import LoadedVersion
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.monitor import SLICES, VersionMonitor
from modelyard.serving.table import Live, ModelTable
from modelyard.serving.watcher import MonitorWatcher
from tests.serving.models import train, write_skops

FEATURES = ["a", "b", "c", "d"]


class Clock:
    """Time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served(tmp_path: Path) -> tuple[ModelTable, Live, np.ndarray]:
    """A real skops model with reference statistics, in a table."""
    trained = train(0)
    predictor = skops_flavor.load({"m.skops": write_skops(trained, tmp_path / "m.skops")}, None)
    stats = compute_reference_stats(trained.inputs, input="input", columns=FEATURES)
    loaded = LoadedVersion(
        "default/iris/1", "default", "iris", 1, "skops", predictor, reference_stats=stats
    )
    table = ModelTable(ServingMetrics(), window_seconds=10)
    table.add("iris@production", loaded)
    live = table.live("iris", "1")
    assert live is not None
    return table, live, trained.inputs


def test_window_counts_expire_slice_by_slice(served: tuple[ModelTable, Live, np.ndarray]) -> None:
    _, live, x = served
    clock = Clock()
    live.monitor = VersionMonitor(live.loaded.reference_stats, live.signature, 10, clock=clock)
    live.monitor.observe_inputs({"input": x[:50]})
    live.monitor.observe(False, 0.001)
    clock.now += 5
    live.monitor.observe(True, 0.002)
    snap = live.monitor.snapshot()
    assert (snap["requests"], snap["errors"], snap["error_rate"]) == (2, 1, 0.5)
    assert snap["features"]["a"]["count"] == 50
    assert 1.0 <= snap["latency_p50_ms"] <= 1.2 * 1.0 * 1.2  # the bucket's upper edge
    clock.now += 6  # the first second's slice has left the 10 s window
    snap = live.monitor.snapshot()
    assert (snap["requests"], snap["errors"]) == (1, 1)
    assert snap["features"]["a"]["count"] == 0 and snap["features"]["a"]["psi"] is None
    clock.now += 10 * SLICES  # long silence: everything expired
    assert live.monitor.snapshot()["requests"] == 0


def test_drift_measures_and_gauges(served: tuple[ModelTable, Live, np.ndarray]) -> None:
    table, live, x = served
    live.monitor.observe_inputs({"input": x})
    snap = live.monitor.snapshot()
    for f in FEATURES:
        assert snap["features"][f]["psi"] == pytest.approx(0.0, abs=1e-9)
    shifted = x.copy()
    shifted[:, 1] -= 3
    live.monitor.resize(10)
    live.monitor.observe_inputs({"input": shifted})
    snap = live.monitor.snapshot()
    assert snap["features"]["b"]["psi"] > 5 and snap["features"]["b"]["ks"] > 0.8
    assert snap["features"]["a"]["psi"] == pytest.approx(0.0, abs=1e-9)
    text = generate_latest(table.metrics.registry).decode()
    assert 'modelyard_serving_drift_psi{feature="b",model="iris",version="1"}' in text
    assert 'modelyard_serving_drift_ks{feature="b",model="iris",version="1"}' in text
    [window] = table.monitoring()
    assert window["ref"] == "default/iris/1" and window["reference_stats"] is True


def test_features_the_signature_cannot_carry_are_left_out(
    served: tuple[ModelTable, Live, np.ndarray],
) -> None:
    _, live, x = served
    stats = compute_reference_stats(
        np.concatenate([x, x[:, :1]], axis=1), input="input", columns=[*FEATURES, "e"]
    )
    monitor = VersionMonitor(stats, live.signature, 10)
    assert monitor.features == FEATURES  # "e" is column 4 of a [-1, 4] input
    other = compute_reference_stats(x, input="other", columns=FEATURES)
    assert VersionMonitor(other, live.signature, 10).features == []


def test_watcher_debounces_and_escalates_once(served: tuple[ModelTable, Live, np.ndarray]) -> None:
    _, live, x = served
    clock = Clock()
    live.monitor = VersionMonitor(live.loaded.reference_stats, live.signature, 10, clock=clock)
    sent: list[tuple[str, float | None, dict[str, Any]]] = []

    def send(
        ref: str, kind: str, version: int, held: float | None, detail: dict[str, Any]
    ) -> dict[str, Any]:
        assert (ref, version) == ("iris@production", 1)
        sent.append((kind, held, detail))
        return {"rollback": None}

    settings = MonitorSettings(
        window_seconds=10, min_requests=5, error_rate=0.2, rollback=True, rollback_after_seconds=3
    )
    watcher = MonitorWatcher(
        lambda: [("iris@production", live)], lambda _: settings, send, clock=clock
    )
    for _ in range(4):
        live.monitor.observe(True, 0.001)
    assert watcher.check("iris@production", live, settings) == []  # under min_requests
    live.monitor.observe(True, 0.001)
    assert watcher.check("iris@production", live, settings) == ["degraded"]
    assert sent[-1][1] == 0.0 and sent[-1][2]["reasons"] == ["error_rate"]
    clock.now += 1
    assert watcher.check("iris@production", live, settings) == []  # debounced
    clock.now += 2.5  # held 3.5 s >= rollback_after_seconds: one escalation
    assert watcher.check("iris@production", live, settings) == ["degraded"]
    assert sent[-1][1] == pytest.approx(3.5)
    clock.now += 1
    assert watcher.check("iris@production", live, settings) == []
    # Drift: shifted inputs cross the PSI threshold once per window.
    shifted = x.copy()
    shifted[:, 0] += 5
    live.monitor.observe_inputs({"input": shifted})
    assert watcher.check("iris@production", live, settings) == ["drift"]
    assert set(sent[-1][2]["features"]) == {"a"}
    clock.now += 1
    live.monitor.observe_inputs({"input": shifted})
    assert watcher.check("iris@production", live, settings) == []
    # Healthy traffic later: the window forgets, the conditions reset.
    clock.now += 20
    for _ in range(10):
        live.monitor.observe(False, 0.001)
    live.monitor.observe_inputs({"input": x})
    assert watcher.check("iris@production", live, settings) == []
    # A latency threshold alone makes it degraded too.
    slow = MonitorSettings(window_seconds=10, min_requests=5, latency_p99_ms=0.5)
    assert watcher.check("iris@production", live, slow) == ["degraded"]
    assert sent[-1][2]["reasons"] == ["latency"]


def test_small_and_large_batches_count_alike(served: tuple[ModelTable, Live, np.ndarray]) -> None:
    """Row by row (small requests) and vectorized (large ones) give the same
    counts, NaN left out, categories and unseen values included."""
    _, live, x = served
    data = np.concatenate([x, np.round(x[:, :1])], axis=1)[:, [0, 1, 2, 4]]
    stats = compute_reference_stats(data, input="input", columns=FEATURES, categorical=["d"])
    seen = data.copy()
    seen[::7, 0] = np.nan
    seen[::5, 3] = 99.0  # a category the reference never saw
    one, whole = (VersionMonitor(stats, live.signature, 10) for _ in range(2))
    for i in range(0, len(seen), 3):
        one.observe_inputs({"input": seen[i : i + 3]})
    whole.observe_inputs({"input": seen})
    a, b = one.snapshot()["features"], whole.snapshot()["features"]
    assert a == b
    assert a["a"]["count"] == len(seen) - len(seen[::7])
    assert a["d"]["kind"] == "categorical" and a["d"]["unseen_share"] == pytest.approx(
        len(seen[::5]) / len(seen)
    )


def test_heartbeat_measures_keep_the_most_drifted_features() -> None:
    from modelyard.serving.reporter import trim_features

    features = {f"f{i}": {"psi": i / 100, "ks": None, "count": 10} for i in range(80)}
    features["ks-only"] = {"psi": None, "ks": 0.99, "count": 10}
    trimmed = trim_features({"requests": 10, "features": features}, limit=5)
    assert list(trimmed["features"]) == ["ks-only", "f79", "f78", "f77", "f76"]
    assert trimmed["features_total"] == 81 and trimmed["requests"] == 10
    assert trim_features({"requests": 0, "features": {}})["features_total"] == 0


def test_drift_thresholds_precedence(served: tuple[ModelTable, Live, np.ndarray]) -> None:
    """Each of PSI and KS comes from the first that sets it: the deployment's
    settings, the version's statistics file, the model's policy, the defaults."""
    from dataclasses import astuple, replace

    from modelyard.domain.monitoring import DriftThresholds
    from modelyard.serving.watcher import drift_thresholds

    _, live, _ = served
    plain = MonitorSettings()
    assert live.loaded.reference_stats is not None
    assert live.loaded.reference_stats.thresholds is None
    assert astuple(drift_thresholds(plain, live)) == (0.2, 0.2)  # the defaults
    live.loaded.policy_drift = {"psi": 0.05}
    assert astuple(drift_thresholds(plain, live)) == (0.05, 0.2)  # policy's PSI, default KS
    live.loaded.policy_drift = {"psi": 0.05, "ks": 0.3}
    assert astuple(drift_thresholds(plain, live)) == (0.05, 0.3)
    assert astuple(drift_thresholds(MonitorSettings(ks=0.4), live)) == (0.05, 0.4)  # the deployment
    own = replace(live.loaded.reference_stats, thresholds=DriftThresholds(0.5, 0.6))
    live.loaded.reference_stats = own
    assert astuple(drift_thresholds(plain, live)) == (0.5, 0.6)  # the version's own file
    assert astuple(drift_thresholds(MonitorSettings(psi=0.7), live)) == (0.7, 0.6)
