"""Prometheus collectors of one model server (their own registry, so two
servers in one process, as in tests, never share counts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Sub-millisecond buckets first: a small model answers in well under 1 ms.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


@dataclass(slots=True)
class VersionMetrics:
    """The children of one served version, bound once so a request only
    increments (no label lookup on the hot path)."""

    ok: Any
    latency: Any
    in_flight: Any


class ServingMetrics:
    """Requests, latency, errors, in-flight requests, loaded versions, swaps, load failures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "modelyard_serving_requests",
            "Inference requests by model, version and HTTP status.",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelyard_serving_request_duration_seconds",
            "Time from request received to answer ready, inference included.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "modelyard_serving_errors",
            "Inference requests refused or failed, by model and error code.",
            ["model", "code"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "modelyard_serving_in_flight_requests",
            "Inference requests being handled now.",
            ["model"],
            registry=self.registry,
        )
        self.loaded = Gauge(
            "modelyard_serving_loaded_version",
            "1 for each version taking traffic (the version and its reference as labels).",
            ["model", "version", "ref", "flavor"],
            registry=self.registry,
        )
        self.swaps = Counter(
            "modelyard_serving_swaps",
            "Hot swaps from one version to another after an alias moved.",
            ["model"],
            registry=self.registry,
        )
        self.load_failures = Counter(
            "modelyard_serving_load_failures",
            "Versions that failed to load (they never took traffic).",
            ["model"],
            registry=self.registry,
        )

        self.prediction_log_dropped = Counter(
            "modelyard_serving_prediction_log_dropped",
            "Prediction log records dropped because the writer fell behind.",
            registry=self.registry,
        )

    def for_version(self, model: str, version: str) -> VersionMetrics:
        """The bound children for ``model`` at ``version``."""
        return VersionMetrics(
            self.requests.labels(model, version, "200"),
            self.latency.labels(model, version),
            self.in_flight.labels(model),
        )
