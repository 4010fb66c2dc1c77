"""With auth on, the MLflow door applies roles, the consumer's production view,
policies and approvals exactly as REST v1 does (they live in the service)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.auth_helpers import ADMIN_TOKEN, bearer, make_user

pytestmark = pytest.mark.filterwarnings("ignore:.*Model registry stages.*:FutureWarning")

As = Callable[[str], MlflowClient]


@pytest.fixture
def as_user(mlflow_auth_server: str, monkeypatch: pytest.MonkeyPatch) -> As:
    """``as_user(token)``: the MLflow client, now sending ``token``."""

    def switch(token: str) -> MlflowClient:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
        return MlflowClient(tracking_uri=mlflow_auth_server, registry_uri=mlflow_auth_server)

    return switch


def _users(server: str, prefix: str, **roles: str) -> dict[str, str]:
    with httpx.Client(base_url=server) as admin:
        return {
            role: make_user(admin, f"{prefix}{role}", {"default": role})  # type: ignore[arg-type]
            for role in roles.values()
        }


def test_consumer_sees_only_the_production_view(
    mlflow_auth_server: str, as_user: As, model_name: str
) -> None:
    tokens = _users(mlflow_auth_server, model_name, w="writer", c="consumer")
    writer = as_user(tokens["writer"])
    writer.create_registered_model(model_name)
    for _ in range(3):
        writer.create_model_version(model_name, "s3://bucket/r/model")
    writer.transition_model_version_stage(model_name, "2", "Production")
    writer.set_registered_model_alias(model_name, "candidate", "3")

    consumer = as_user(tokens["consumer"])
    found = consumer.search_model_versions(f"name = '{model_name}'")
    assert [v.version for v in found] == ["2"]
    with pytest.raises(MlflowException) as hidden:
        consumer.get_model_version(model_name, "1")
    assert hidden.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as hidden_alias:
        consumer.get_model_version_by_alias(model_name, "candidate")
    assert hidden_alias.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert [v.version for v in consumer.get_latest_versions(model_name)] == ["2"]
    model = consumer.get_registered_model(model_name)
    assert [v.version for v in model.latest_versions] == ["2"] and model.aliases == {}
    assert [m.name for m in consumer.search_registered_models(f"name = '{model_name}'")] == [
        model_name
    ]
    with pytest.raises(MlflowException) as denied:
        consumer.set_model_version_tag(model_name, "2", "k", "v")
    assert denied.value.error_code == "PERMISSION_DENIED"


def test_policies_and_approvals_read_as_clear_mlflow_errors(
    mlflow_auth_server: str, as_user: As, model_name: str
) -> None:
    tokens = _users(mlflow_auth_server, model_name, w="writer")
    writer = as_user(tokens["writer"])
    writer.create_registered_model(model_name)
    writer.create_model_version(model_name, "s3://bucket/r/model", tags={"encrypted": "true"})
    writer.create_model_version(model_name, "s3://bucket/r/model")
    r = httpx.put(
        f"{mlflow_auth_server}/api/v1/models/default/{model_name}/policy",
        json={
            "required_tags": {"encrypted": "true"},
            "protected_aliases": ["production"],
            "required_approvals": 1,
        },
        headers=bearer(ADMIN_TOKEN),
    )
    assert r.status_code == 200, r.text
    # A policy violation: version 2 lacks the tag.
    with pytest.raises(MlflowException) as violation:
        writer.transition_model_version_stage(model_name, "2", "Production")
    assert violation.value.error_code == "INVALID_STATE"
    assert "encrypted" in violation.value.message
    assert "POLICY_VIOLATION" in violation.value.message
    assert writer.get_model_version(model_name, "2").current_stage == "None"
    # Publishing the compliant version still needs its approval.
    with pytest.raises(MlflowException) as unapproved:
        writer.transition_model_version_stage(model_name, "1", "Production")
    assert unapproved.value.error_code == "RESOURCE_CONFLICT"
    assert "requires approval" in unapproved.value.message
    assert "APPROVAL_REQUIRED" in unapproved.value.message
    # A protected alias moved without an approval is refused, saying why.
    with pytest.raises(MlflowException) as protected:
        writer.set_registered_model_alias(model_name, "production", "1")
    assert protected.value.error_code in ("INVALID_STATE", "RESOURCE_CONFLICT")
    assert "@production" in protected.value.message
    assert "approval" in protected.value.message
    assert writer.get_registered_model(model_name).aliases == {}
