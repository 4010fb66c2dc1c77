"""A version registered from an MLflow run takes the run's latest metrics and
its params (``service/run_lineage.py``): ``modelyard show`` lists them beside
the run, and version search filters and sorts on them, whichever door asks."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from modelyard.cli.main import app

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)


def test_registered_version_carries_its_runs_metrics_and_params(
    mlflow_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_name: str
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    client = MlflowClient()
    eid = client.create_experiment(f"values-{model_name}")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.bin").write_bytes(b"weights")
    (model_dir / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    with mlflow.start_run(experiment_id=eid) as run:
        mlflow.log_params({"lr": 0.1, "depth": 3, "has space": "kept out"})
        mlflow.log_metric("acc", 0.7, step=0)
        mlflow.log_metric("acc", 0.91, step=1)  # the latest value is the one taken
        mlflow.log_metrics({"f1": 0.5, "loss": float("nan")})
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
    rid = run.info.run_id
    mv = mlflow.register_model(f"runs:/{rid}/model", model_name)
    # The MLflow client naming the run itself: the same values.
    mv2 = client.create_model_version(model_name, f"runs:/{rid}/model", run_id=rid)
    mlflow.log_metric("acc", 0.1, step=2, run_id=rid)  # after registration: not taken

    with httpx.Client(base_url=mlflow_server) as v1:
        got = v1.get(f"/api/v1/models/default/{model_name}/versions/{mv.version}").json()
        assert got["metrics"] == {"acc": 0.91, "f1": 0.5}
        assert got["params"] == {"lr": "0.1", "depth": "3"}
        assert got["lineage"]["source_run"] == rid
        second = v1.get(f"/api/v1/models/default/{model_name}/versions/{mv2.version}").json()
        assert second["metrics"]["acc"] == 0.91

        found = v1.get(
            "/api/v1/search/versions",
            params={
                "filter": f"name = '{model_name}' AND metrics.acc >= 0.9 AND params.lr = '0.1'",
                "order_by": "metrics.f1 DESC",
            },
        ).json()
        assert "versions" in found, found
        items = found["versions"]
        assert sorted(v["version"] for v in items) == [1, 2]
        low = f"name = '{model_name}' AND metrics.acc < 0.5"
        none = v1.get("/api/v1/search/versions", params={"filter": low}).json()
        assert none["versions"] == [], none

    # The MLflow door's own version search reads the same values.
    hits = client.search_model_versions(f"name = '{model_name}'")
    assert {h.run_id for h in hits} == {rid}

    r = CliRunner().invoke(
        app,
        ["show", f"{model_name}/1", "--json"],
        env={"MODELYARD_URL": mlflow_server, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["metrics"]["acc"] == 0.91 and shown["params"]["depth"] == "3"
    assert shown["lineage"]["source_run"] == rid
    r = CliRunner().invoke(
        app,
        ["show", f"{model_name}/1"],
        env={
            "MODELYARD_URL": mlflow_server,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "COLUMNS": "300",
        },
    )
    assert r.exit_code == 0 and "acc" in r.stdout and rid in r.stdout, r.stdout
