"""A version's ``source`` never makes the server read anything (issue 10's
security corpus, from MLflow's own CVE history): sources naming the server's
file system or climbing out of a path are refused with 400, the rest are
recorded as text only, and a canary file outside the data directory is never
read."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

SRC = Path(__file__).resolve().parents[2] / "src" / "modelyard"

REFUSED = [
    "file:///etc/passwd",
    "FILE:///etc/passwd",
    "file:/etc/passwd",
    "/abs/path",
    "/etc/passwd",
    "../x",
    "..",
    "model/../../etc/passwd",
    "http:///#/../../",
    "http://host/a/../../b",
    "//proc/self/root",
    "//proc/self/root/etc/passwd",
    "%2e%2e/%2e%2e/etc/passwd",
    "runs:/abc/%2e%2e/%2e%2e/etc",
    "runs:/abc/%252e%252e/%252e%252e/etc",
    "runs:/abc/%25252e%25252e/x",
    "runs:/abc/..%2f..%2fetc",
    "mlflow-artifacts:/../../etc/passwd",
    "s3://bucket/a\\..\\b",
    "C:\\Windows\\system.ini",
    "C:/Windows/system.ini",
    "runs:/abc/model\x00.txt",
    "runs:/abc/%00",
    "runs:/abc/model\n",
]
# Sources naming another server's artifacts: recorded as text, never fetched.
# (``runs:/``, ``models:/m-<32 hex>`` and ``mlflow-artifacts:/`` name this
# server's own runs and logged models: they resolve into files, or are refused
# when they name nothing; see tests/mlflow_door/test_tracking_flows.py.)
RECORDED = [
    "models:/m-0123456789abcdef",
    "s3://bucket/path/model",
    "http://artifacts.example.invalid/model",
]


# The one module that unpickles: the model server's pickle flavor, used only
# under an admin's audited exception on the version (issue 12). It lives in
# serving/, which the registry server never imports (tests/system layering).
UNPICKLING_MODULE = SRC / "serving" / "flavors" / "pickled.py"


def test_the_server_never_unpickles() -> None:
    loaders = ("import pickle", "import cloudpickle", "pickle.load", "joblib.load", "torch.load")
    unpickling = [file for file in SRC.rglob("*.py") if any(x in file.read_text() for x in loaders)]
    assert unpickling == [UNPICKLING_MODULE]


@pytest.mark.parametrize("source", REFUSED)
def test_dangerous_sources_are_refused(
    mlflow_client: MlflowClient, mlflow_server: str, model_name: str, source: str
) -> None:
    mlflow_client.create_registered_model(model_name)
    r = httpx.post(
        f"{mlflow_server}/api/2.0/mlflow/model-versions/create",
        json={"name": model_name, "source": source},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "INVALID_SOURCE" in r.json()["message"]
    assert mlflow_client.search_model_versions(f"name = '{model_name}'") == []


def test_a_canary_outside_the_data_dir_is_never_read(
    mlflow_client: MlflowClient,
    mlflow_server: str,
    model_name: str,
    tmp_path: Path,
) -> None:
    secret = f"canary-{uuid.uuid4().hex}"
    canary = tmp_path / "canary.txt"
    canary.write_text(secret)
    mlflow_client.create_registered_model(model_name)
    answers: list[str] = []
    for source in (
        f"file://{canary}",
        str(canary),
        f"runs:/abc/../../../../..{canary}",
        f"mlflow-artifacts:/%2e%2e/%2e%2e{canary}",
    ):
        with pytest.raises(MlflowException) as refused:
            mlflow_client.create_model_version(model_name, source)
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
        answers.append(refused.value.message)
    for source in RECORDED:
        v = mlflow_client.create_model_version(model_name, source)
        # Recorded as text, handed back as text: nothing was fetched or read.
        assert mlflow_client.get_model_version_download_uri(model_name, v.version) == source
        assert mlflow_client.get_model_version(model_name, v.version).source == source
        r = httpx.get(f"{mlflow_server}/api/v1/models/default/{model_name}/versions/{v.version}")
        answers.append(r.text)
        assert r.json()["file_count"] == 0
    assert all(secret not in a for a in answers)
