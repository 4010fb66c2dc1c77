"""Rolling statistics of what one served version receives (issue 12).

Per version, over a rolling window of ``window_seconds``:

- each feature of the version's reference statistics, counted into the
  reference's bins (numeric: its quantile edges; categorical: its values plus
  an "other" bucket), so PSI and the binned KS statistic against the
  reference come straight from the counts;
- requests that reached the model, those it failed on (500
  ``INFERENCE_FAILED``; a 400 is the client's error, not the model's), and
  a latency histogram for the window's percentiles.

Memory is bounded and independent of traffic: the window is :data:`SLICES`
slices of ``window_seconds / SLICES``, each holding counts only; a slice is
zeroed when the window moves past it. Requests run on the event loop and the
watcher thread reads snapshots, so one uncontended lock guards the counts.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from math import isfinite
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelyard.domain.monitoring import (
    Feature,
    NumericFeature,
    ReferenceStats,
    category_key,
    ks_binned,
    psi,
)
from modelyard.serving.tensors import BF16, Signature, bf16_to_float

if TYPE_CHECKING:
    from modelyard.serving.table import ModelTable

SLICES = 10
# Latency buckets: 25 µs to about 2 min, 20 % apart (the window's p99 is the
# upper edge of the bucket it falls in, so it errs high by at most 20 %).
LATENCY_EDGES: tuple[float, ...] = tuple(25e-6 * 1.2**i for i in range(85))
# Up to this many rows, a request's values are counted one by one in Python
# (a few hundred nanoseconds each); past it NumPy's vectorized path is cheaper
# than its own fixed cost of a few microseconds per call.
SMALL_BATCH = 32


@dataclass(slots=True)
class _Tracked:
    feature: Feature
    index: int
    slot: int
    width: int
    numeric: bool
    edges: list[float]
    categories: dict[str, int]
    expected: tuple[float, ...]


def _tracked(features: tuple[Feature, ...], signature: Signature) -> tuple[list[_Tracked], int]:
    """The features the signature can carry, each with its slot in the counts."""
    shapes = {s.name: s.shape for s in signature.inputs}
    out: list[_Tracked] = []
    slot = 0
    for f in features:
        shape = shapes.get(f.input)
        if shape is None or len(shape) > 2 or (len(shape) == 2 and 0 <= shape[1] <= f.index):
            continue  # not in this version's inputs: nothing to compare
        if len(shape) < 2 and f.index != 0:
            continue
        if isinstance(f, NumericFeature):
            t = _Tracked(
                f, f.index, slot, len(f.edges) + 1, True, list(f.edges), {}, f.probabilities
            )
        else:
            cats = {k: i for i, k in enumerate(f.categories)}
            expected = (*f.categories.values(), 0.0)
            t = _Tracked(f, f.index, slot, len(cats) + 1, False, [], cats, expected)
        out.append(t)
        slot += t.width
    return out, slot


def _count_small(row: list[int], t: _Tracked, values: list[Any]) -> None:
    """Count a few values into ``row`` one by one (lock held)."""
    if t.numeric:
        edges, slot = t.edges, t.slot
        for v in values:
            if isfinite(v):
                # bisect_left: right-closed bins, as the reference counted them.
                row[slot + bisect_left(edges, v)] += 1
    else:
        other = t.slot + t.width - 1
        for v in values:
            row[t.slot + t.categories[k] if (k := category_key(v)) in t.categories else other] += 1


def _count_batch(t: _Tracked, column: np.ndarray) -> list[int]:
    """Counts of a large column, vectorized (no lock needed)."""
    if t.numeric:
        values = column.astype(np.float64, copy=False)
        values = values[np.isfinite(values)]
        bins = np.searchsorted(np.asarray(t.edges), values, side="left")
        return [int(c) for c in np.bincount(bins, minlength=t.width)]
    counts = [0] * t.width
    for v in column.tolist():
        counts[t.categories.get(category_key(v), t.width - 1)] += 1
    return counts


class VersionMonitor:
    """The rolling window of one served version (see the module docstring).

    Counts are plain Python lists: a request adds a handful of integers, and
    NumPy's per-call cost would be most of the time spent.
    """

    def __init__(
        self,
        stats: ReferenceStats | None,
        signature: Signature,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = stats
        self._clock = clock
        self._tracked, self._width = _tracked(stats.features if stats else (), signature)
        by_input: dict[str, list[_Tracked]] = {}
        for t in self._tracked:
            by_input.setdefault(t.feature.input, []).append(t)
        self._by_input = by_input
        # BF16 inputs are bit patterns in the server: counted as their values.
        self._bf16 = {s.name for s in signature.inputs if s.datatype == BF16}
        self._lock = threading.Lock()
        self.resize(window_seconds)

    @property
    def features(self) -> list[str]:
        """Names of the features this version's traffic is compared on."""
        return [t.feature.name for t in self._tracked]

    def resize(self, window_seconds: float) -> None:
        """Start a new window of ``window_seconds`` (the counts so far are dropped)."""
        with self._lock:
            self.window_seconds = float(window_seconds)
            self._slice = self.window_seconds / SLICES
            self._features = [[0] * self._width for _ in range(SLICES)]
            self._latency = [[0] * (len(LATENCY_EDGES) + 1) for _ in range(SLICES)]
            self._requests = [0] * SLICES
            self._errors = [0] * SLICES
            self._epoch = int(self._clock() / self._slice)

    def _advance(self) -> int:
        """The current slice's row, zeroing the rows the window moved past (lock held)."""
        now = int(self._clock() / self._slice)
        if now != self._epoch:
            for step in range(1, min(now - self._epoch, SLICES) + 1):
                row = (self._epoch + step) % SLICES
                self._features[row] = [0] * self._width
                self._latency[row] = [0] * (len(LATENCY_EDGES) + 1)
                self._requests[row] = 0
                self._errors[row] = 0
            self._epoch = now
        return now % SLICES

    def observe_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """Count the features of one request's inputs into the window."""
        if not self._by_input:
            return
        small: list[tuple[list[_Tracked], list[Any], bool]] = []
        large: list[tuple[_Tracked, list[int]]] = []
        for name, tracked in self._by_input.items():
            arr = inputs.get(name)
            if arr is None or arr.ndim not in (1, 2):
                continue
            if name in self._bf16:
                arr = bf16_to_float(arr)
            if arr.shape[0] <= SMALL_BATCH:
                small.append((tracked, arr.tolist(), arr.ndim == 2))
            else:
                for t in tracked:
                    column = arr[:, t.index] if arr.ndim == 2 else arr
                    large.append((t, _count_batch(t, column)))
        with self._lock:
            row = self._features[self._advance()]
            for tracked, rows, two_d in small:
                for t in tracked:
                    _count_small(row, t, [r[t.index] for r in rows] if two_d else rows)
            for t, counts in large:
                for i, c in enumerate(counts, start=t.slot):
                    row[i] += c

    def observe(self, failed: bool, seconds: float) -> None:
        """Count one request that reached the model: failed or not, and its latency."""
        bucket = bisect_left(LATENCY_EDGES, seconds)
        with self._lock:
            row = self._advance()
            self._requests[row] += 1
            if failed:
                self._errors[row] += 1
            self._latency[row][bucket] += 1

    def snapshot(self) -> dict[str, Any]:
        """The window's measures: requests, error rate, latency percentiles, and
        per feature PSI and KS against the reference (None without observations)."""
        with self._lock:
            self._advance()
            features = [sum(col) for col in zip(*self._features, strict=True)]
            latency = [sum(col) for col in zip(*self._latency, strict=True)]
            requests = sum(self._requests)
            errors = sum(self._errors)
        drift: dict[str, dict[str, Any]] = {}
        for t in self._tracked:
            counts = features[t.slot : t.slot + t.width]
            seen = sum(counts)
            drift[t.feature.name] = {
                "kind": "numeric" if t.numeric else "categorical",
                "count": seen,
                "psi": psi(t.expected, counts) if seen else None,
                # KS needs an order: categories have none.
                "ks": ks_binned(t.expected, counts) if seen and t.numeric else None,
            }
            if not t.numeric and seen:
                drift[t.feature.name]["unseen_share"] = counts[-1] / seen
        return {
            "window_seconds": self.window_seconds,
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests if requests else None,
            "latency_p50_ms": _percentile_ms(latency, 0.5),
            "latency_p99_ms": _percentile_ms(latency, 0.99),
            "features": drift,
        }


def _percentile_ms(counts: list[int], q: float) -> float | None:
    total = sum(counts)
    if not total:
        return None
    rank, seen = math.ceil(q * total), 0
    for index, c in enumerate(counts):
        seen += c
        if seen >= rank:
            return LATENCY_EDGES[min(index, len(LATENCY_EDGES) - 1)] * 1000.0
    return LATENCY_EDGES[-1] * 1000.0


class MonitorCollector(Collector):
    """Prometheus gauges computed from every served version's window at scrape time."""

    def __init__(self, table: ModelTable) -> None:
        self.table = table

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Drift (PSI, KS) per feature; window requests, error rate and p99 latency."""
        labels = ["model", "version"]
        psi_g = GaugeMetricFamily(
            "modelyard_serving_drift_psi",
            "Population stability index of a feature over the window, against the "
            "version's reference statistics.",
            labels=[*labels, "feature"],
        )
        ks_g = GaugeMetricFamily(
            "modelyard_serving_drift_ks",
            "KS statistic of a numeric feature over the window (at the reference's "
            "quantile edges).",
            labels=[*labels, "feature"],
        )
        requests_g = GaugeMetricFamily(
            "modelyard_serving_window_requests",
            "Requests that reached the model in the monitoring window.",
            labels=labels,
        )
        errors_g = GaugeMetricFamily(
            "modelyard_serving_window_error_rate",
            "Share of the window's requests the model failed on.",
            labels=labels,
        )
        p99_g = GaugeMetricFamily(
            "modelyard_serving_window_latency_p99_seconds",
            "99th percentile latency over the monitoring window.",
            labels=labels,
        )
        for served in list(self.table.models.values()):
            for version, live in list(served.versions.items()):
                snap = live.monitor.snapshot()
                key = [served.name, version]
                requests_g.add_metric(key, snap["requests"])
                if snap["error_rate"] is not None:
                    errors_g.add_metric(key, snap["error_rate"])
                if snap["latency_p99_ms"] is not None:
                    p99_g.add_metric(key, snap["latency_p99_ms"] / 1000.0)
                for name, f in snap["features"].items():
                    if f["psi"] is not None:
                        psi_g.add_metric([*key, name], f["psi"])
                    if f["ks"] is not None:
                        ks_g.add_metric([*key, name], f["ks"])
        yield from (psi_g, ks_g, requests_g, errors_g, p99_g)
