"""``modelyard policy set --drift`` (issue 12): a model's drift thresholds set
from the CLI, shown back, and read by a model server's SDK call, against a
live server."""

from __future__ import annotations

import uuid
from pathlib import Path

from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry


def test_cli_sets_drift_thresholds_a_server_reads(live_server: str, tmp_path: Path) -> None:
    name = "d" + uuid.uuid4().hex[:8]
    (tmp_path / "m.onnx").write_bytes(name.encode())
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "COLUMNS": "200"}
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        reg.push(name, {"m.onnx": tmp_path / "m.onnx"})
        assert reg.serving_policy(f"{name}/1")["drift_thresholds"] is None
        r = runner.invoke(
            app,
            ["policy", "set", "--model", name, "--drift", "psi=0.05", "--drift", "ks=0.3"],
            env=env,
        )
        assert r.exit_code == 0, r.output
        assert "psi=0.05, ks=0.3" in r.stdout
        assert reg.serving_policy(f"{name}/1")["drift_thresholds"] == {"psi": 0.05, "ks": 0.3}
        r = runner.invoke(app, ["policy", "set", "--model", name, "--drift", "psi"], env=env)
        assert r.exit_code != 0 and "psi=NUMBER" in r.output
        r = runner.invoke(app, ["policy", "set", "--model", name, "--drift", "ks=2"], env=env)
        assert r.exit_code != 0 and "INVALID_POLICY" in r.output
        assert reg.serving_policy(f"{name}/1")["drift_thresholds"] == {"psi": 0.05, "ks": 0.3}
