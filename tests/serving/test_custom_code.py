"""Custom Python code as a model (issue 12): a version of format ``python``
(its ``entrypoint.py``) is refused by ``modelyard serve`` until its
namespace's policy sets ``allow_custom_code``, then served by a real process;
a model policy withdrawing it stops the next load."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from tests.conftest_server import stop_server
from tests.serving.servers import start_serving

ENTRYPOINT = """
import json


class Scaled:
    def __init__(self, factor):
        self.factor = factor

    def predict(self, inputs):
        return {"y": inputs["x"] * self.factor}


def load(files, signature):
    return Scaled(json.loads(files["factor.json"].read_text())["factor"])
"""
SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1]}],
    "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}],
}


def test_custom_code_runs_only_when_the_namespace_allows_it(
    live_server: str, tmp_path: Path
) -> None:
    ns = f"custom-{uuid.uuid4().hex[:8]}"
    assert httpx.post(f"{live_server}/api/v1/namespaces", json={"name": ns}).status_code == 201
    src = tmp_path / "model"
    src.mkdir()
    (src / "entrypoint.py").write_text(ENTRYPOINT)
    (src / "factor.json").write_text('{"factor": 3}')
    ref = f"{ns}/scaler/1"
    with Registry(live_server, cache_dir=tmp_path / "sdk") as reg:
        reg.push("scaler", src, namespace=ns, format="python", signature=SIGNATURE)

        refused = CliRunner().invoke(
            app, ["serve", ref, "-r", live_server, "--cache-dir", str(tmp_path / "r")]
        )
        assert refused.exit_code == 1 and "allow_custom_code" in refused.output

        reg.set_policy({"allow_custom_code": True}, namespace=ns)
        assert reg.custom_code_allowed(ref) is True
        proc, url = start_serving(live_server, [ref], tmp_path / "serve")
        try:
            body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3], "data": [1, 2, 3]}]}
            answer = httpx.post(f"{url}/v2/models/scaler/infer", json=body).json()
            assert answer["outputs"][0]["data"] == [3.0, 6.0, 9.0]
            assert httpx.get(f"{url}/v2/models/scaler").json()["platform"] == "python"
        finally:
            stop_server(proc)

        # A model policy can withdraw it (never grant it).
        reg.set_policy({"allow_custom_code": False}, namespace=ns, model="scaler")
        again = CliRunner().invoke(
            app, ["serve", ref, "-r", live_server, "--cache-dir", str(tmp_path / "a")]
        )
        assert again.exit_code == 1 and "allow_custom_code" in again.output
