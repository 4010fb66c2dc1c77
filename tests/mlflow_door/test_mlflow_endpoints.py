"""Endpoints the MLflow 3.17.2 client (and MLflow's UI) call beyond the
registry basics: the capability probe ``/api/3.0/mlflow/server-info``, the
sampled metric history ``metrics/get-history-bulk-interval`` and run inputs
``runs/log-inputs``, driven by the real client where it has a call for them
and in its own request format otherwise."""

from __future__ import annotations

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.server_info import fetch_server_info

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)


def test_server_info_is_what_the_client_reads(mlflow_server: str) -> None:
    answer = fetch_server_info(get_default_host_creds(mlflow_server))
    assert answer.status_code == 200 and answer.data is not None
    assert answer.data["multipart_downloads_enabled"] is False
    assert isinstance(answer.data["multipart_uploads_enabled"], bool)
    assert answer.data["workspaces_enabled"] is False
    # MLflow serves it under 3.0 only; the 2.0 door does not grow 3.0 copies.
    with httpx.Client(base_url=mlflow_server) as c:
        assert c.get("/ajax-api/3.0/mlflow/server-info").status_code == 200
        r = c.get("/api/3.0/mlflow/registered-models/search")
        assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_server_info_needs_no_login(mlflow_auth_server: str) -> None:
    with httpx.Client(base_url=mlflow_auth_server) as c:
        assert c.get("/api/3.0/mlflow/server-info").status_code == 200
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
