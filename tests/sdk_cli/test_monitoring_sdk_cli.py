"""Reference statistics and monitoring settings through the SDK and the CLI
(issue 12): ``push --reference-data``, ``push(reference_stats=...)``, the
reserved path, ``deploy set --monitor``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry, compute_reference_stats
from modelyard.domain.errors import InvalidInput
from modelyard.domain.monitoring import STATS_PATH, parse_reference_stats


def test_push_reference_data_and_deploy_monitor(tmp_path: Path) -> None:
    data = tmp_path / "data"
    model = tmp_path / "model"
    model.mkdir()
    (model / "m.onnx").write_bytes(b"weights")
    sample = tmp_path / "sample.csv"
    sample.write_text("age,plan\n" + "".join(f"{20 + i},{i % 3}\n" for i in range(100)))
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "push", "fraud", str(model), "-r", str(data), "--json",
            "--reference-data", str(sample), "--reference-input", "X", "--categorical", "plan",
        ],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    files = {f["path"]: f for f in json.loads(out.stdout)["files"]}
    assert set(files) == {"m.onnx", STATS_PATH}
    with Registry(data, cache_dir=tmp_path / "cache") as reg:
        _, pulled = reg.pull_version("fraud/1", tmp_path / "out")
        stats = parse_reference_stats(json.loads((pulled / STATS_PATH).read_bytes()))
        assert [(f.name, f.input, f.index, f.kind) for f in stats.features] == [
            ("age", "X", 0, "numeric"),
            ("plan", "X", 1, "categorical"),
        ]
        assert stats.sample_size == 100
        # The SDK: the same statistics give the same file (content-addressed).
        again = reg.push(
            "fraud", model, reference_stats=stats, signature={"inputs": [
                {"name": "X", "datatype": "FP32", "shape": [-1, 2]}]},
        )  # fmt: skip
        digests = {f["path"]: f["digest"] for f in again.files or []}
        assert digests[STATS_PATH] == files[STATS_PATH]["digest"]
        # Statistics naming an input the signature lacks, or a file at the
        # reserved path, are refused before anything is uploaded.
        wrong = compute_reference_stats({"a": [1.0, 2.0]}, input="Y")
        signature = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 1]}]}
        with pytest.raises(InvalidInput) as err:
            reg.push("fraud", model, reference_stats=wrong, signature=signature)
        assert err.value.code == "INVALID_REFERENCE_STATS"
        reserved = tmp_path / "reserved"
        (reserved / ".modelyard").mkdir(parents=True)
        (reserved / ".modelyard" / "reference_stats.json").write_text("{}")
        with pytest.raises(InvalidInput) as err:
            reg.push("fraud", reserved, reference_stats=stats)
        assert err.value.code == "INVALID_PATH"
        reg.set_alias("fraud/1", "production")
    out = runner.invoke(
        app,
        [
            "deploy", "set", "prod", "fraud@production", "-r", str(data), "--json",
            "--monitor", "rollback=true", "--monitor", "error_rate=0.1",
            "--monitor", "rollback_after_seconds=120",
        ],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    monitoring = json.loads(out.stdout)["monitoring"]
    assert (monitoring["rollback"], monitoring["error_rate"]) == (True, 0.1)
    assert monitoring["rollback_after_seconds"] == 120.0
    shown = runner.invoke(app, ["deploy", "show", "prod", "fraud@production", "-r", str(data)])
    assert shown.exit_code == 0, shown.output
    assert "error rate > 0.1; automatic rollback after 120 s degraded" in shown.output
    bad = runner.invoke(app, ["deploy", "set", "prod", "fraud@production", "-r", str(data),
                              "--monitor", "window_seconds=0"])  # fmt: skip
    assert bad.exit_code == 1 and "INVALID_DEPLOYMENT" in bad.output
    usage = runner.invoke(app, ["deploy", "set", "prod", "fraud@production", "-r", str(data),
                                "--monitor", "rollback"])  # fmt: skip
    assert usage.exit_code == 2
