"""Endpoints the MLflow 3.17.2 client (and MLflow's UI) call beyond the
registry basics: the capability probe ``/api/3.0/mlflow/server-info``, the
sampled metric history ``metrics/get-history-bulk-interval`` and run inputs
``runs/log-inputs``, driven by the real client where it has a call for them
and in its own request format otherwise."""

from __future__ import annotations

from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset as MlflowDataset
from mlflow.entities import DatasetInput, InputTag, LoggedModelInput, Metric
from mlflow.exceptions import MlflowException
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.server_info import fetch_server_info

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)


def test_server_info_is_what_the_client_reads(mlflow_server: str) -> None:
    answer = fetch_server_info(get_default_host_creds(mlflow_server))
    assert answer.status_code == 200 and answer.data is not None
    assert answer.data["multipart_downloads_enabled"] is False
    # Off unless configured: a single streamed PUT is written and hashed once.
    assert answer.data["multipart_uploads_enabled"] is False
    assert answer.data["workspaces_enabled"] is False
    # MLflow serves it under 3.0 only; the 2.0 door does not grow 3.0 copies.
    with httpx.Client(base_url=mlflow_server) as c:
        assert c.get("/ajax-api/3.0/mlflow/server-info").status_code == 200
        r = c.get("/api/3.0/mlflow/registered-models/search")
        assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_server_info_needs_no_login(mlflow_auth_server: str) -> None:
    with httpx.Client(base_url=mlflow_auth_server) as c:
        info = c.get("/api/3.0/mlflow/server-info")
        assert info.status_code == 200
        # This server is configured to offer multipart uploads (conftest).
        assert info.json()["multipart_uploads_enabled"] is True
        assert c.get("/api/2.0/mlflow/experiments/search").status_code == 401


def _bulk(url: str, **params: object) -> httpx.Response:
    return httpx.get(f"{url}/api/2.0/mlflow/metrics/get-history-bulk-interval", params=params)


def test_history_bulk_interval_samples_like_mlflow(
    mlflow_client: MlflowClient, model_name: str
) -> None:
    exp = mlflow_client.create_experiment(f"bulk-{model_name}")
    a = mlflow_client.create_run(exp).info.run_id
    b = mlflow_client.create_run(exp).info.run_id
    mlflow_client.log_batch(
        a, metrics=[Metric("loss", 1.0 / (s + 1), 1_000 + s, s) for s in range(10)]
    )
    mlflow_client.log_batch(
        b, metrics=[Metric("loss", 5.0, 2_000, 0), Metric("loss", 4.0, 2_001, 7)]
    )
    url = mlflow_client.tracking_uri

    whole = _bulk(url, run_ids=[a, b], metric_key="loss")
    assert whole.status_code == 200, whole.text
    points = whole.json()["metrics"]
    assert [p["step"] for p in points if p["run_id"] == a] == list(range(10))
    assert [(p["step"], p["value"]) for p in points if p["run_id"] == b] == [(0, 5.0), (7, 4.0)]

    # Ten points into four buckets of 3, 3, 2, 2: each bucket's first point,
    # the last point of the run replacing the last sample (MLflow's NTILE rule).
    sampled = _bulk(url, run_ids=[a], metric_key="loss", max_results=4).json()["metrics"]
    assert [p["step"] for p in sampled] == [0, 3, 6, 9]
    assert sampled[0] == {"key": "loss", "value": 1.0, "timestamp": 1_000, "step": 0, "run_id": a}

    ranged = _bulk(url, run_ids=[a], metric_key="loss", start_step=2, end_step=5).json()
    assert [p["step"] for p in ranged["metrics"]] == [2, 3, 4, 5]
    assert _bulk(url, run_ids=[a], metric_key="nope").json() == {"metrics": []}

    for bad in (
        {"run_ids": [a], "metric_key": "loss", "start_step": 2},
        {"run_ids": [a], "metric_key": "loss", "start_step": 5, "end_step": 2},
        {"run_ids": [a], "metric_key": "loss", "max_results": 2501},
        {"run_ids": [a] * 101, "metric_key": "loss"},
        {"run_ids": [a]},
        {"run_ids": ["../x"], "metric_key": "loss"},
    ):
        r = _bulk(url, **bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    missing = _bulk(url, run_ids=["0" * 32], metric_key="loss")
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_log_inputs_records_datasets_and_models_as_lineage(
    mlflow_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_name: str
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    client = MlflowClient()
    eid = client.create_experiment(f"inputs-{model_name}")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    train = mlflow.data.from_pandas(frame, source="s3://bucket/train.parquet", name="train")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    with mlflow.start_run(experiment_id=eid) as run:
        mlflow.log_input(train, context="training")
        mlflow.log_input(train, context="training")  # the same input again: kept once
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
    rid = run.info.run_id
    base = client.create_logged_model(eid, name="base")
    client.log_inputs(
        rid,
        datasets=[
            DatasetInput(
                MlflowDataset("eval", "d1g3st", "http", "https://example.com/eval.csv"),
                tags=[InputTag("mlflow.data.context", "eval")],
            )
        ],
        models=[LoggedModelInput(base.model_id)],
    )

    got = client.get_run(rid).inputs
    assert [(i.dataset.name, i.dataset.digest) for i in got.dataset_inputs] == [
        ("train", train.digest),
        ("eval", "d1g3st"),
    ]
    first = got.dataset_inputs[0]
    assert {t.key: t.value for t in first.tags} == {"mlflow.data.context": "training"}
    assert "s3://bucket/train.parquet" in first.dataset.source
    assert first.dataset.schema and "x" in first.dataset.schema
    assert [m.model_id for m in got.model_inputs] == [base.model_id]

    # Registered from the run, the version lists the run's datasets as lineage.
    mv = mlflow.register_model(f"runs:/{rid}/model", model_name)
    with httpx.Client(base_url=mlflow_server) as v1:
        ver = v1.get(f"/api/v1/models/default/{model_name}/versions/{mv.version}").json()
    lineage = ver["lineage"]["datasets"]
    assert [(d["name"], d.get("context")) for d in lineage] == [
        ("train", "training"),
        ("eval", "eval"),
    ]
    assert lineage[1]["source"] == "https://example.com/eval.csv"

    with pytest.raises(MlflowException) as bad:
        client.log_inputs(rid, datasets=[DatasetInput(MlflowDataset("n", "", "http", "x"))])
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as gone:
        client.log_inputs(rid, models=[LoggedModelInput("m-" + "0" * 32)])
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
