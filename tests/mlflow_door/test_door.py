"""The MLflow door's plumbing, driven by the real client: errors, unknown paths, auth."""

from __future__ import annotations

import base64

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.auth_helpers import ADMIN_TOKEN, bearer, make_user

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error_code", "message"}, body
    assert body["error_code"] == code, body
    message: str = body["message"]
    assert message
    return message


def test_create_and_get_through_the_client_and_rest_v1(
    mlflow_client: MlflowClient, mlflow_server: str, model_name: str
) -> None:
    created = mlflow_client.create_registered_model(
        model_name, tags={"team": "risk"}, description="fraud scorer"
    )
    assert created.name == model_name and created.tags == {"team": "risk"}
    got = mlflow_client.get_registered_model(model_name)
    assert got.description == "fraud scorer" and got.creation_timestamp > 0
    # The same model REST v1 sees, in the door's namespace.
    r = httpx.get(f"{mlflow_server}/api/v1/models/default/{model_name}")
    assert r.status_code == 200 and r.json()["tags"] == {"team": "risk"}


def test_client_exceptions_carry_mlflow_codes(mlflow_client: MlflowClient, model_name: str) -> None:
    with pytest.raises(MlflowException) as missing:
        mlflow_client.get_registered_model(model_name)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    mlflow_client.create_registered_model(model_name)
    with pytest.raises(MlflowException) as twice:
        mlflow_client.create_registered_model(model_name)
    assert twice.value.error_code == "RESOURCE_ALREADY_EXISTS"
    assert model_name in twice.value.message


@pytest.mark.parametrize("prefix", PREFIXES)
def test_unknown_paths_and_methods_answer_endpoint_not_found(
    mlflow_server: str, prefix: str
) -> None:
    for method, path in (
        ("GET", "/no-such-endpoint"),
        ("POST", "/experiments/no-such-thing/at/all"),
        ("GET", "/registered-models/create"),
    ):
        r = httpx.request(method, f"{mlflow_server}{prefix}{path}")
        assert r.json()["error_code"] == "ENDPOINT_NOT_FOUND", (method, path, r.text)
        assert r.status_code in (404, 405)
    # REST v1 keeps its own error body.
    r = httpx.get(f"{mlflow_server}/api/v1/no-such-endpoint")
    assert r.status_code == 404 and r.json()["error"]["code"] == "ROUTE_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "'name'"),
        (b'{"name": ""}', "'name'"),
        (b'{"name": {"x": 1}}', "'name'"),
        (b'{"name": "ok", "tags": "x"}', "'tags'"),
        (b'{"name": "ok", "tags": [{"value": "v"}]}', "'tags'"),
        (b'{"name": "has space"}', "name"),
        (b'{"name": "\\u0000"}', "name"),
    ],
)
def test_malformed_requests_are_invalid_parameter_value(
    mlflow_server: str, body: bytes, fragment: str
) -> None:
    r = httpx.post(
        f"{mlflow_server}/api/2.0/mlflow/registered-models/create",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert fragment in _error(r, 400, "INVALID_PARAMETER_VALUE")


def test_auth_bearer_and_basic_tokens(
    mlflow_auth_server: str, monkeypatch: pytest.MonkeyPatch, model_name: str
) -> None:
    url = f"{mlflow_auth_server}/api/2.0/mlflow/registered-models/get?name={model_name}"
    _error(httpx.get(url), 401, "UNAUTHENTICATED")
    _error(httpx.get(url, headers=bearer("not-a-token")), 401, "UNAUTHENTICATED")
    bad_basic = base64.b64encode(b"alice:wrong").decode()
    _error(httpx.get(url, headers={"Authorization": f"Basic {bad_basic}"}), 401, "UNAUTHENTICATED")
    _error(httpx.get(url, headers={"Authorization": "Basic !!!"}), 401, "UNAUTHENTICATED")

    with httpx.Client(base_url=mlflow_auth_server) as admin_http:
        writer = make_user(admin_http, f"w{model_name}", {"default": "writer"})  # type: ignore[arg-type]
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", writer)
    client = MlflowClient(tracking_uri=mlflow_auth_server, registry_uri=mlflow_auth_server)
    client.create_registered_model(model_name)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    # Basic: the password is the token; the user name is not consulted.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "anyone")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_TOKEN)
    assert client.get_registered_model(model_name).name == model_name
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-token")
    with pytest.raises(MlflowException) as denied:
        client.get_registered_model(model_name)
    assert denied.value.error_code == "UNAUTHENTICATED"
    # The model's creator is the token's user, as REST v1 records it.
    r = httpx.get(
        f"{mlflow_auth_server}/api/v1/models/default/{model_name}", headers=bearer(ADMIN_TOKEN)
    )
    assert r.json()["created_by"] == f"w{model_name}"


def test_reader_cannot_write(
    mlflow_auth_server: str, monkeypatch: pytest.MonkeyPatch, model_name: str
) -> None:
    with httpx.Client(base_url=mlflow_auth_server) as admin_http:
        reader = make_user(admin_http, f"r{model_name}", {"default": "reader"})  # type: ignore[arg-type]
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", reader)
    client = MlflowClient(tracking_uri=mlflow_auth_server, registry_uri=mlflow_auth_server)
    with pytest.raises(MlflowException) as denied:
        client.create_registered_model(model_name)
    assert denied.value.error_code == "PERMISSION_DENIED"
