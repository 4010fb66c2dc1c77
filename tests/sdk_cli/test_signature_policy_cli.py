"""``modelyard policy set --compatible-signature`` and ``policy check
--alias`` showing the signature diff, against a live server (issue 14)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry

X = {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
LABEL = {"name": "label", "datatype": "INT64", "shape": [-1]}


def test_cli_policy_check_shows_the_signature_diff(live_server: str, tmp_path: Path) -> None:
    name = "s" + uuid.uuid4().hex[:8]
    (tmp_path / "m.onnx").write_bytes(name.encode())
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        reg.push(
            name, {"m.onnx": tmp_path / "m.onnx"}, signature={"inputs": [X], "outputs": [LABEL]}
        )
        reg.publish(f"{name}/1")
        reg.set_alias(f"{name}/1", "production")
        new_sig = {"inputs": [{**X, "shape": [-1, 5]}], "outputs": [LABEL]}
        reg.push(name, {"m.onnx": tmp_path / "m.onnx"}, signature=new_sig)
        reg.publish(f"{name}/2")
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "COLUMNS": "200"}
    r = runner.invoke(
        app,
        ["policy", "set", "--model", name, "--protect", "production", "--compatible-signature"],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert "compatible_signature" in r.stdout
    r = runner.invoke(app, ["policy", "check", f"{name}/2", "--alias", "production"], env=env)
    assert r.exit_code == 1, r.output
    assert "compatible_signature" in r.stdout
    assert f"signature against default/{name}/1 (checked by the policy):" in r.stdout
    assert "~ input x: float32 [-1, 4] -> float32 [-1, 5]" in r.stdout
    assert "breaking: " in r.stdout and "input 'x' changed shape" in r.stdout
    r = runner.invoke(
        app, ["policy", "check", f"{name}/2", "--alias", "production", "--json"], env=env
    )
    body = json.loads(r.stdout)
    assert body["signature_diff"]["against"] == f"default/{name}/1"
    assert body["violations"][0]["rule"] == "compatible_signature"
    r = runner.invoke(app, ["alias", f"{name}/2", "production"], env=env)
    assert r.exit_code == 1 and "POLICY_VIOLATION" in r.stderr
