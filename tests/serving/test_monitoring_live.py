"""Monitoring end to end (issue 12): a live registry, ``modelyard serve --env``
as a real process, tritonclient and httpx as callers, a real webhook receiver.

- Drifted inputs against a version pushed with reference statistics: PSI and
  KS on ``/monitoring`` and ``/metrics``, a ``deployment.drift`` event
  delivered to the webhook, a ``drift`` entry in the deployment's history.
- An error burst (inputs the signature accepts but the model fails on: NaN
  features sent as binary tensor data, which scikit-learn refuses) on a
  deployment that opted in to automatic rollback: the alias rolls back by
  itself, the server follows it, and the audit log, the events, the webhook
  and ``modelyard deploy history`` all carry it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry, compute_reference_stats
from modelyard.domain.monitoring import STATS_PATH
from tests.conftest_server import start_server, stop_server
from tests.receiver import Receiver, receiver, wait_for
from tests.serving.models import train, write_skops
from tests.serving.servers import start_serving

REGISTRY_ENV = {
    "MODELYARD_WEBHOOK_ALLOW": "127.0.0.1",
    "MODELYARD_DISPATCHER_INTERVAL": "0.05",
    "MODELYARD_EVENTS_POLL_INTERVAL": "0.05",
}
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# Seconds-long windows so the test runs in seconds; the same code runs minutes.
FAST = {"window_seconds": 2, "min_requests": 5}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_server(tmp_path_factory.mktemp("monitor-registry"), extra_env=REGISTRY_ENV)
    try:
        yield url
    finally:
        stop_server(proc)


@pytest.fixture
def reg(registry: str, tmp_path: Path) -> Iterator[Registry]:
    with Registry(registry, cache_dir=tmp_path / "sdk") as client:
        yield client


@pytest.fixture
def hook(registry: str) -> Iterator[Receiver]:
    with receiver() as rec:
        admin = Registry(registry)
        made = admin.create_webhook(
            rec.url,
            event_types=["deployment.drift", "deployment.degraded", "deployment.rolled_back"],
        )
        try:
            yield rec
        finally:
            admin.delete_webhook(made.id)
            admin.close()


def _events(rec: Receiver, kind: str, model: str) -> list[dict[str, Any]]:
    found = []
    for r in rec.snapshot():
        body = r.json
        if body.get("type") == kind and f"/{model}@" in body.get("subject", ""):
            found.append(body)
    return found


def _infer(url: str, model: str, rows: np.ndarray) -> httpx.Response:
    body = {
        "inputs": [
            {"name": "input", "datatype": "FP64", "shape": list(rows.shape), "data": rows.tolist()}
        ]
    }
    return httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=30)


def _metric_lines(url: str, prefix: str) -> list[str]:
    return [
        line for line in httpx.get(f"{url}/metrics").text.splitlines() if line.startswith(prefix)
    ]


def test_drifted_inputs_raise_the_drift_webhook(
    registry: str, reg: Registry, hook: Receiver, tmp_path: Path
) -> None:
    name = f"drift-{uuid.uuid4().hex[:8]}"
    trained = train(0)
    stats = compute_reference_stats(trained.inputs, input="input", columns=FEATURES)
    v = reg.push(
        name, [write_skops(trained, tmp_path / "m.skops")], format="skops", reference_stats=stats
    )
    assert STATS_PATH in [f["path"] for f in v.files or []]
    reg.set_alias(f"{name}/1", "production")
    reg.put_deployment("prod", f"{name}@production", monitoring=FAST)
    proc, url = start_serving(
        registry,
        [f"{name}@production"],
        tmp_path / "serve",
        args=["--env", "prod", "--heartbeat", "0.5"],
    )
    try:
        # Traffic like the reference: small PSI and KS (a fixed seed, so fixed values).
        rng = np.random.default_rng(7)
        like = trained.inputs[rng.integers(0, len(trained.inputs), 200)]
        assert _infer(url, name, like).status_code == 200
        [window] = httpx.get(f"{url}/monitoring").json()["models"]
        assert window["reference_stats"] is True and window["requests"] == 1
        for feature in FEATURES:
            measures = window["features"][feature]
            assert measures["count"] == 200
            assert measures["psi"] < 0.2 and measures["ks"] < 0.2, (feature, measures)
        # Drifted traffic: petal length shifted far beyond the reference.
        drifted = like.copy()
        drifted[:, 2] += 4.0
        for _ in range(5):
            assert _infer(url, name, drifted).status_code == 200
        # The first alert (while drift holds, another may follow each window).
        event = wait_for(
            lambda: _events(hook, "deployment.drift", name), timeout=60, what="drift webhook"
        )[0]
        payload = event["data"]
        assert payload["environment"] == "prod" and payload["version"] == 1
        assert "petal_length" in payload["features"]
        assert payload["features"]["petal_length"]["psi"] > payload["thresholds"]["psi"]
        assert "sepal_length" not in payload["features"]  # unchanged, not reported
        window = httpx.get(f"{url}/monitoring").json()["models"][0]
        assert window["features"]["petal_length"]["psi"] > 1.0
        psi_line = (
            f'modelyard_serving_drift_psi{{feature="petal_length",model="{name}",version="1"}}'
        )
        assert _metric_lines(url, psi_line)
        assert _metric_lines(
            url, f'modelyard_serving_drift_ks{{feature="petal_length",model="{name}"'
        )
        history = reg.deployment_history("prod", reference=f"{name}@production")["history"]
        assert "drift" in [h["kind"] for h in history]

        # The heartbeats carry the window: the registry keeps each replica's
        # latest figures and the deployment's page shows them. Traffic keeps
        # flowing while we look (the test's window is 2 s long).
        def drifted_figures() -> dict[str, Any] | None:
            assert _infer(url, name, drifted).status_code == 200
            [rep] = reg.deployment("prod", f"{name}@production")["instances"]
            m = rep["measures"] or {}
            psi = ((m.get("features") or {}).get("petal_length") or {}).get("psi")
            return m if psi is not None and psi > 1.0 else None

        m = wait_for(drifted_figures, timeout=60, what="drift in the heartbeat's figures")
        assert m["version"] == 1 and m["window_seconds"] == 2 and m["requests"] >= 1
        assert m["thresholds"]["psi"] == 0.2 and m["thresholds"]["min_requests"] == 5
        assert m["features_total"] == 4 and m["features"]["sepal_length"]["psi"] < 0.2
        page_url = f"{registry}/deployments/prod/default/{name}%40production"
        marked = '<code>petal_length</code> <span class="badge badge-bad">drift</span>'

        def page_shows_drift() -> str | None:
            _infer(url, name, drifted)
            html = httpx.get(page_url).text
            return html if marked in html else None

        html = wait_for(page_shows_drift, timeout=60, what="drift on the deployment's page")
        assert "<code>sepal_length</code> <span" not in html  # not over its threshold
    finally:
        stop_server(proc)


def test_drift_thresholds_come_from_the_models_policy(
    registry: str, reg: Registry, tmp_path: Path
) -> None:
    """A version whose statistics file sets no thresholds is judged by its
    model's policy: the namespace's ``drift_thresholds`` merged with the
    model's own (PSI 0.001 from the model, KS 0.99 from the namespace), so
    traffic like the reference, well under the default PSI 0.2, raises
    ``deployment.drift`` at the policy's threshold."""
    namespace = f"pol{uuid.uuid4().hex[:8]}"
    name = "fraud"
    made = httpx.post(f"{registry}/api/v1/namespaces", json={"name": namespace})
    assert made.status_code == 201, made.text
    trained = train(0)
    stats = compute_reference_stats(trained.inputs, input="input", columns=FEATURES)
    reg.push(
        name,
        [write_skops(trained, tmp_path / "m.skops")],
        namespace=namespace,
        format="skops",
        reference_stats=stats,
    )
    reg.set_policy({"drift_thresholds": {"psi": 5.0, "ks": 0.99}}, namespace=namespace)
    reg.set_policy({"drift_thresholds": {"psi": 0.001}}, namespace=namespace, model=name)
    ref = f"{namespace}/{name}@production"
    reg.set_alias(f"{namespace}/{name}/1", "production")
    reg.put_deployment("prod", ref, monitoring=FAST)
    proc, url = start_serving(
        registry, [ref], tmp_path / "serve", args=["--env", "prod", "--heartbeat", "0.5"]
    )
    try:
        rng = np.random.default_rng(7)
        like = trained.inputs[rng.integers(0, len(trained.inputs), 200)]
        for _ in range(5):
            assert _infer(url, name, like).status_code == 200
        [window] = httpx.get(f"{url}/monitoring").json()["models"]
        assert all(f["psi"] < 0.2 for f in window["features"].values()), window
        event = wait_for(
            lambda: reg.list_events(types=["deployment.drift"], namespace=namespace),
            timeout=60,
            what="deployment.drift at the policy's threshold",
        )[0]
        assert event.payload["thresholds"] == {"psi": 0.001, "ks": 0.99}
        assert event.payload["features"]
    finally:
        stop_server(proc)


def test_error_burst_rolls_the_alias_back_and_the_server_follows(
    registry: str, reg: Registry, hook: Receiver, tmp_path: Path
) -> None:
    name = f"burst-{uuid.uuid4().hex[:8]}"
    for seed, c in ((0, 0.05), (1, 1.0)):
        reg.push(name, [write_skops(train(seed, c), tmp_path / f"m{seed}.skops")], format="skops")
        reg.publish(f"{name}/{seed + 1}")
    reg.set_alias(f"{name}/1", "production")
    reg.set_alias(f"{name}/2", "production", reason="a better model")
    ref = f"{name}@production"
    reg.put_deployment(
        "prod",
        ref,
        monitoring={**FAST, "rollback": True, "error_rate": 0.2, "rollback_after_seconds": 1},
    )
    proc, url = start_serving(
        registry, [ref], tmp_path / "serve", args=["--env", "prod", "--heartbeat", "0.5"]
    )
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    try:
        good = train(0).rows.astype(np.float64)
        assert _infer(url, name, good).json()["model_version"] == "2"

        def burst() -> bool:
            # NaN passes the signature (FP64 [-1, 4]) and makes the model fail.
            bad = triton.InferInput("input", [2, 4], "FP64")
            bad.set_data_from_numpy(np.full((2, 4), np.nan), binary_data=True)
            with pytest.raises(triton.InferenceServerException) as failed:
                client.infer(name, [bad])
            assert "INFERENCE_FAILED" in str(failed.value) or "inference failed" in str(
                failed.value
            )
            return reg.get_version(ref).version == 1

        wait_for(burst, timeout=60, what="the automatic rollback")
        # The server follows the alias back (hot swap) and answers from version 1.
        wait_for(
            lambda: httpx.get(f"{url}/v2/models/{name}").json()["versions"] == ["1"],
            timeout=60,
            what="the server following the rollback",
        )
        ok = triton.InferInput("input", list(good.shape), "FP64")
        ok.set_data_from_numpy(good, binary_data=True)
        answer = client.infer(name, [ok])
        assert answer.get_response()["model_version"] == "1"
    finally:
        client.close()
        stop_server(proc)
    # The audit log: the alias move, automatic, through the governed rollback.
    [moved] = [
        e for e in reg.audit(action="alias.moved", model=name) if e["payload"].get("automatic")
    ]
    assert (moved["payload"]["from_version"], moved["payload"]["to_version"]) == (2, 1)
    assert moved["payload"]["rollback"] is True
    assert moved["payload"]["reason"].startswith("automatic rollback: deployment prod/")
    # The events, and the webhook that carried them.
    [rolled] = wait_for(
        lambda: _events(hook, "deployment.rolled_back", name), timeout=30, what="webhook"
    )
    assert (rolled["data"]["version"], rolled["data"]["previous_version"]) == (1, 2)
    done = {"done": True, "from_version": 2, "to_version": 1}
    wait_for(
        lambda: any(
            e["data"].get("rollback") == done for e in _events(hook, "deployment.degraded", name)
        ),
        timeout=30,
        what="the degraded webhook naming the rollback",
    )
    degraded = _events(hook, "deployment.degraded", name)
    assert all(e["data"]["error_rate"] > 0.2 for e in degraded)
    # modelyard deploy history shows it.
    out = CliRunner().invoke(
        app, ["deploy", "history", "prod", "--ref", ref, "--json", "-r", registry]
    )
    assert out.exit_code == 0, out.output
    kinds = [h["kind"] for h in json.loads(out.stdout)["history"]]
    assert "rolled_back" in kinds and "degraded" in kinds and "swapped" in kinds
