"""The deployment reporter of ``modelyard serve --env`` in-process, on an
embedded registry: what it sends for a start, a swap and a broken version
that the follower retries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelyard.client import Registry
from modelyard.domain.errors import InvalidInput
from modelyard.serving.reporter import DeploymentReporter, default_replica_id


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    for n in (1, 2, 3):
        src = tmp_path / f"v{n}"
        src.mkdir()
        (src / "model.onnx").write_bytes(f"v{n}".encode())
        reg.push("fraud", src)
    reg.set_alias("fraud/1", "production")
    return reg


def test_start_swap_and_a_failure_reported_once(registry: Registry) -> None:
    reporter = DeploymentReporter(
        registry, "prod-eu", [("fraud@production", 1)], replica="pod-a", interval=3600
    )
    reporter.register()
    assert registry.deployment("prod-eu", "fraud@production")["instances"][0]["status"] == "ready"
    reporter.swapped("fraud@production", 2)
    # The follower retries a broken version at each reconcile: one failure on record.
    reporter.load_failed("fraud@production", 3, "InvalidGraph: not an onnx graph")
    reporter.load_failed("fraud@production", 3, "InvalidGraph: not an onnx graph")
    d = registry.deployment("prod-eu", "fraud@production")
    assert d["version"] == 2 and d["status"] == "degraded"
    assert d["instances"][0]["error"] == "InvalidGraph: not an onnx graph"
    kinds = [(h["kind"], h["version"]) for h in registry.deployment_history("prod-eu")["history"]]
    assert kinds == [
        ("replica", 2),
        ("load_failed", 3),
        ("swapped", 2),
        ("replica", 1),
        ("created", 1),
    ]
    # A later good swap clears the failure: ready again.
    reporter.swapped("fraud@production", 1)
    assert registry.deployment("prod-eu", "fraud@production")["status"] == "ready"
    registry.close()


def test_a_refused_registration_stops_the_start(registry: Registry) -> None:
    reporter = DeploymentReporter(registry, "prod eu", [("fraud@production", 1)])
    with pytest.raises(InvalidInput) as err:
        reporter.register()
    assert err.value.code == "INVALID_ENVIRONMENT"
    registry.close()


def test_default_replica_ids_are_valid() -> None:
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", default_replica_id())
