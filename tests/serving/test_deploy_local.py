"""``modelyard deploy apply --target local`` end to end (issue 12): the
deployment is recorded, the process becomes the model server (same PID, so
the replica it reports is itself), tritonclient calls it, it follows the
alias, its /metrics carries the series the PrometheusRule alerts read, and
``deploy rm`` removes it with its history kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.domain.errors import Conflict
from modelyard.serving.manifests import ERRORS, LATENCY_BUCKETS, REQUESTS
from tests.conftest_server import free_port, stop_server
from tests.serving.models import onnx_predict, train, write_onnx


def _until(what: str, check: Callable[[], Any]) -> Any:
    """``check()`` once it is truthy (a deadline for a live process, not a timing claim)."""
    deadline = time.monotonic() + 60
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_deploy_apply_local_serves_records_and_follows(live_server: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    name, env_name = f"iris-{tag}", f"local-{tag}"
    first, second = train(0, c=0.05), train(1)
    v1 = write_onnx(first, tmp_path / "v1.onnx")
    v2 = write_onnx(second, tmp_path / "v2.onnx")
    reg = Registry(live_server, cache_dir=tmp_path / "sdk")
    try:
        reg.push(name, [v1], format="onnx")
        reg.push(name, [v2], format="onnx")
        reg.set_alias(f"{name}/1", "production")
        port = free_port()
        log = open(tmp_path / "apply.log", "ab")  # noqa: SIM115 - the child keeps its copy
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelyard.cli.main",
                "deploy",
                "apply",
                f"{name}@production",
                "--env",
                env_name,
                "--target",
                "local",
                "--port",
                str(port),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--registry",
                live_server,
            ],
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        url = f"http://127.0.0.1:{port}"
        try:
            _until("the server ready", lambda: proc.poll() is not None or _ready(url))
            assert proc.poll() is None, (tmp_path / "apply.log").read_text()
            # Recorded, and the replica reporting is this very process.
            d = reg.deployment(env_name, f"{name}@production")
            assert (d["endpoint"], d["replicas"], d["version"], d["status"]) == (
                url,
                1,
                1,
                "ready",
            )
            [rep] = d["instances"]
            assert rep["replica"].endswith(f"-{proc.pid}") and rep["endpoint"] == url
            assert (d["desired_version"], d["drift"]) == (1, False)

            import tritonclient.http as httpclient

            rows = first.rows
            client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
            try:
                x = httpclient.InferInput("X", list(rows.shape), "FP32")
                x.set_data_from_numpy(rows)
                got = client.infer(name, [x]).as_numpy("probabilities")
            finally:
                client.close()
            np.testing.assert_allclose(got, onnx_predict(v1, rows)["probabilities"], rtol=1e-6)
            bad = httpx.post(f"{url}/v2/models/{name}/infer", json={"inputs": []})
            assert bad.status_code == 400
            # The series the PrometheusRule's alerts read are the server's own.
            metrics = httpx.get(f"{url}/metrics").text
            for series in (LATENCY_BUCKETS, REQUESTS, ERRORS):
                assert f"\n{series}{{" in metrics, series

            # The alias moves: the server follows, and the record with it.
            reg.set_alias(f"{name}/2", "production")
            d = _until(
                "the swap recorded",
                lambda: (x := reg.deployment(env_name, f"{name}@production"))["version"] == 2 and x,
            )
            assert (d["desired_version"], d["drift"]) == (2, False)
        finally:
            stop_server(proc)
        # Its last heartbeat is fresh: deleting needs --force.
        with pytest.raises(Conflict):
            reg.delete_deployment(env_name, f"{name}@production")
        runner = CliRunner()
        env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c")}
        r = runner.invoke(app, ["deploy", "rm", env_name, f"{name}@production", "--force"], env=env)
        assert r.exit_code == 0, r.output
        kinds = [h["kind"] for h in reg.deployment_history(env_name)["history"]]
        assert kinds[0] == "deleted" and "swapped" in kinds and kinds[-1] == "created"
    finally:
        reg.close()


def test_deploy_apply_local_refuses_before_starting(live_server: str, tmp_path: Path) -> None:
    env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c")}
    runner = CliRunner()
    r = runner.invoke(app, ["deploy", "apply", "ghost@production", "--env", "local"], env=env)
    assert r.exit_code == 1 and "MODEL_NOT_FOUND" in r.output, r.output
    r = runner.invoke(
        app, ["deploy", "apply", "ghost@production", "--env", "local", "--out", "x"], env=env
    )
    assert r.exit_code == 2 and "--target k8s" in r.output, r.output
    with Registry(live_server) as reg:
        assert reg.deployments(environment="local") == []
