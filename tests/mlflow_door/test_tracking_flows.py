"""The flows people write against MLflow, run unchanged against modelyard with
the real client (issue 10): tracking, ``log_model`` with registration,
``register_model`` from a run, loading a registered model back, artifact
downloads and metric history."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

# The client's own advice (type hints, pickle caution, deprecations of its
# dependencies) is MLflow's business, not a failure of the server under test.
pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)


@pytest.fixture
def tracking(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    return mlflow_server


def test_experiments_runs_metrics(tracking: str, model_name: str) -> None:
    client = MlflowClient()
    eid = client.create_experiment(f"exp-{model_name}", tags={"team": "risk"})
    exp = client.get_experiment(eid)
    assert exp.name == f"exp-{model_name}" and exp.tags["team"] == "risk"
    assert client.get_experiment_by_name(f"exp-{model_name}").experiment_id == eid
    client.rename_experiment(eid, f"exp2-{model_name}")
    assert client.get_experiment(eid).name == f"exp2-{model_name}"
    found = client.search_experiments(filter_string=f"name = 'exp2-{model_name}'")
    assert [e.experiment_id for e in found] == [eid]

    mlflow.set_experiment(experiment_id=eid)
    with mlflow.start_run(run_name="first") as run:
        mlflow.log_params({"lr": 0.1, "depth": 3})
        for step, loss in enumerate([0.9, 0.5, 0.25]):
            mlflow.log_metric("loss", loss, step=step)
        mlflow.log_metrics({"acc": 0.8, "f1": float("nan")})
        mlflow.set_tag("owner", "ann")
    rid = run.info.run_id
    got = client.get_run(rid)
    assert got.info.status == "FINISHED" and got.info.run_name == "first"
    assert got.data.params == {"lr": "0.1", "depth": "3"}
    assert got.data.metrics["loss"] == 0.25 and got.data.tags["owner"] == "ann"
    history = client.get_metric_history(rid, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.5), (2, 0.25)]
    with mlflow.start_run(run_name="second"):
        mlflow.log_metric("acc", 0.6)
    runs = mlflow.search_runs(
        [eid], filter_string="metrics.acc > 0.7 AND params.lr = '0.1'", output_format="list"
    )
    assert [r.info.run_id for r in runs] == [rid]
    ordered = client.search_runs([eid], order_by=["metrics.acc ASC"])
    assert [r.info.run_name for r in ordered] == ["second", "first"]
    client.delete_run(rid)
    assert [r.info.run_name for r in client.search_runs([eid])] == ["second"]
    client.restore_run(rid)
    client.delete_tag(rid, "owner")
    assert "owner" not in client.get_run(rid).data.tags
    with pytest.raises(mlflow.exceptions.MlflowException) as bad:
        client.search_runs([eid], filter_string="metrics.acc >> 1")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"
    client.delete_experiment(eid)
    assert client.get_experiment(eid).lifecycle_stage == "deleted"
    client.restore_experiment(eid)


# Named requirements: inferring them runs the model in a subprocess (~20 s).
_QUICK: dict[str, object] = {
    "serialization_format": "pickle",
    "pip_requirements": ["scikit-learn"],
}


def _fitted() -> tuple[object, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    x = np.array([[0.0, 1.0], [1.0, 0.0], [0.9, 0.2], [0.1, 0.8]])
    y = np.array([0, 1, 1, 0])
    return LogisticRegression().fit(x, y), x


def test_sklearn_log_model_load_and_artifacts(
    tracking: str, model_name: str, tmp_path: Path
) -> None:
    """``log_model`` (MLflow 3: a logged model and its files through the
    artifact proxy), loading it back by ``models:/m-...``, run artifacts up
    and down, metric history."""
    model, x = _fitted()
    mlflow.set_experiment(f"sk-{model_name}")
    with mlflow.start_run() as run:
        mlflow.log_params({"C": 1.0})
        mlflow.log_metrics({"train_acc": 1.0})
        info = mlflow.sklearn.log_model(model, name="model", **_QUICK)
    client = MlflowClient()
    logged = client.get_logged_model(info.model_id)
    assert logged.source_run_id == run.info.run_id and logged.name == "model"
    assert str(logged.status) == "READY"  # finalized by the client once its files are up
    found = client.search_logged_models([run.info.experiment_id], filter_string="name = 'model'")
    assert [m.model_id for m in found] == [info.model_id]
    assert [o.model_id for o in client.get_run(run.info.run_id).outputs.model_outputs] == [
        info.model_id
    ]

    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert np.allclose(np.asarray(loaded.predict(x)), model.predict(x))  # type: ignore[attr-defined]
    out = mlflow.artifacts.download_artifacts(
        artifact_uri=info.model_uri, dst_path=str(tmp_path / "dl")
    )
    assert {"MLmodel", "model.pkl"} <= set(os.listdir(out))

    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_artifact(str(Path(out) / "MLmodel"), artifact_path="copies")
    listed = client.list_artifacts(run.info.run_id, "copies")
    assert [a.path for a in listed] == ["copies/MLmodel"]
    dl = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="copies/MLmodel", dst_path=str(tmp_path / "one")
    )
    assert Path(dl).read_bytes() == (Path(out) / "MLmodel").read_bytes()
    hist = client.get_metric_history(run.info.run_id, "train_acc")
    assert [m.value for m in hist] == [1.0]
    # Paths outside a run's or model's tree are refused, never opened.
    for bad in ("../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "1/x/..%2f..%2fetc"):
        r = httpx.get(f"{tracking}/api/2.0/mlflow-artifacts/artifacts/{bad}")
        assert r.status_code in (400, 404) and "error_code" in r.json()


def test_sklearn_log_register_load(tracking: str, model_name: str, tmp_path: Path) -> None:
    """``log_model(registered_model_name=...)``, ``register_model("runs:/...")``
    and ``pyfunc.load_model("models:/name/1")``: the versions own the files."""
    model, x = _fitted()
    mlflow.set_experiment(f"skr-{model_name}")
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=model_name, **_QUICK
        )
    assert int(info.registered_model_version) == 1
    r1 = httpx.get(f"{tracking}/api/v1/models/default/{model_name}/versions/1").json()
    assert {"MLmodel", "model.pkl"} <= {f["path"] for f in r1["files"]}
    assert r1["lineage"]["source_run"] == run.info.run_id
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", model_name)
    assert int(mv.version) == 2
    r2 = httpx.get(f"{tracking}/api/v1/models/default/{model_name}/versions/2").json()
    assert {f["digest"] for f in r2["files"]} == {f["digest"] for f in r1["files"]}
    loaded = mlflow.pyfunc.load_model(f"models:/{model_name}/1")
    assert np.allclose(np.asarray(loaded.predict(x)), model.predict(x))  # type: ignore[attr-defined]
    MlflowClient().set_registered_model_alias(model_name, "champion", "2")
    champion = mlflow.pyfunc.load_model(f"models:/{model_name}@champion")
    assert np.allclose(np.asarray(champion.predict(x)), model.predict(x))  # type: ignore[attr-defined]
    out = mlflow.artifacts.download_artifacts(f"models:/{model_name}/2", dst_path=str(tmp_path))
    assert (Path(out) / "MLmodel").exists()
