"""Every registry call of ``MlflowClient`` against a live modelyard server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from modelyard.client import Registry

# Stages are deprecated in MLflow (the client warns); the door still serves them.
pytestmark = pytest.mark.filterwarnings("ignore:.*Model registry stages.*:FutureWarning")


def _codes(exc: pytest.ExceptionInfo[MlflowException]) -> str:
    return exc.value.error_code


def test_registered_model_lifecycle(mlflow_client: MlflowClient, model_name: str) -> None:
    c = mlflow_client
    c.create_registered_model(model_name, tags={"a": "1"}, description="first")
    c.update_registered_model(model_name, description="second")
    c.set_registered_model_tag(model_name, "b", "2")
    c.delete_registered_model_tag(model_name, "a")
    got = c.get_registered_model(model_name)
    assert got.description == "second" and got.tags == {"b": "2"}
    assert got.last_updated_timestamp >= got.creation_timestamp
    c.rename_registered_model(model_name, f"{model_name}x")
    assert c.get_registered_model(f"{model_name}x").tags == {"b": "2"}
    with pytest.raises(MlflowException) as gone:
        c.get_registered_model(model_name)
    assert _codes(gone) == "RESOURCE_DOES_NOT_EXIST"
    c.delete_registered_model(f"{model_name}x")
    with pytest.raises(MlflowException) as deleted:
        c.get_registered_model(f"{model_name}x")
    assert _codes(deleted) == "RESOURCE_DOES_NOT_EXIST"


def test_model_versions_tags_aliases(mlflow_client: MlflowClient, model_name: str) -> None:
    c = mlflow_client
    c.create_registered_model(model_name)
    v1 = c.create_model_version(
        model_name,
        "s3://bucket/0123abcd/model",
        run_id="0123abcd",
        tags={"t": "x"},
        description="d",
    )
    assert (v1.version, v1.source, v1.run_id, v1.tags) == (
        "1",
        "s3://bucket/0123abcd/model",
        "0123abcd",
        {"t": "x"},
    )
    assert v1.status == "READY" and v1.current_stage == "None"
    v2 = c.create_model_version(model_name, "models:/m-abc123")
    assert v2.version == "2" and v2.run_id in (None, "")
    c.update_model_version(model_name, "1", description="better")
    c.set_model_version_tag(model_name, "1", "k", "v")
    c.delete_model_version_tag(model_name, "1", "t")
    got = c.get_model_version(model_name, "1")
    assert got.description == "better" and got.tags == {"k": "v"}
    c.set_registered_model_alias(model_name, "champion", "1")
    c.set_registered_model_alias(model_name, "challenger", 2)
    assert c.get_model_version_by_alias(model_name, "champion").version == "1"
    model = c.get_registered_model(model_name)
    assert model.aliases == {"champion": "1", "challenger": "2"}
    assert c.get_model_version(model_name, "1").aliases == ["champion"]
    c.delete_registered_model_alias(model_name, "champion")
    with pytest.raises(MlflowException) as no_alias:
        c.get_model_version_by_alias(model_name, "champion")
    assert _codes(no_alias) == "RESOURCE_DOES_NOT_EXIST"
    assert c.get_model_version_download_uri(model_name, "2") == "models:/m-abc123"
    c.delete_model_version(model_name, "2")
    with pytest.raises(MlflowException) as no_version:
        c.get_model_version(model_name, "2")
    assert _codes(no_version) == "RESOURCE_DOES_NOT_EXIST"
    assert c.get_registered_model(model_name).aliases == {}
    with pytest.raises(MlflowException) as bad_version:
        c.get_model_version(model_name, "x")
    assert _codes(bad_version) == "INVALID_PARAMETER_VALUE"


def test_stages_and_latest_versions(mlflow_client: MlflowClient, model_name: str) -> None:
    c = mlflow_client
    c.create_registered_model(model_name)
    for _ in range(4):
        c.create_model_version(model_name, "s3://bucket/r/model")
    c.transition_model_version_stage(model_name, "1", "Production")
    staged = c.transition_model_version_stage(model_name, "2", "staging")
    assert staged.current_stage == "Staging"
    c.transition_model_version_stage(model_name, "3", "Archived")
    latest = {v.current_stage: v.version for v in c.get_latest_versions(model_name)}
    assert latest == {"None": "4", "Staging": "2", "Production": "1", "Archived": "3"}
    prod = c.transition_model_version_stage(
        model_name, "4", "Production", archive_existing_versions=True
    )
    assert prod.current_stage == "Production"
    assert c.get_model_version(model_name, "1").current_stage == "Archived"
    only = c.get_latest_versions(model_name, stages=["Production"])
    assert [v.version for v in only] == ["4"]
    assert [v.version for v in c.get_registered_model(model_name).latest_versions] == [
        "2",
        "4",
        "3",
    ]
    with pytest.raises(MlflowException) as bad:
        c.transition_model_version_stage(model_name, "2", "Shipping")
    assert _codes(bad) == "INVALID_PARAMETER_VALUE"
    # Production is "published": deleting it (or the model) is refused.
    with pytest.raises(MlflowException) as published:
        c.delete_model_version(model_name, "4")
    assert _codes(published) == "RESOURCE_CONFLICT"


def test_search_filters_order_and_pages(mlflow_client: MlflowClient, model_name: str) -> None:
    c = mlflow_client
    names = [f"{model_name}{s}" for s in ("a", "b", "c")]
    for i, n in enumerate(names):
        c.create_registered_model(n, tags={"team": "risk" if i < 2 else "ops", "i": str(i)})
        for _ in range(i + 1):
            c.create_model_version(
                n, f"s3://bucket/run{i}/model", run_id=f"run{i}", tags={"i": str(i)}
            )
    found = c.search_registered_models(f"name LIKE '{model_name}%'")
    assert [m.name for m in found] == names
    assert found[0].latest_versions[0].version == "1"
    risk = c.search_registered_models(f"name LIKE '{model_name}%' AND tags.team = 'risk'")
    assert [m.name for m in risk] == names[:2]
    backticks = c.search_registered_models(
        f"name ILIKE '{model_name.upper()}%' AND tag.`team` != 'risk'"
    )
    assert [m.name for m in backticks] == names[2:]
    listed = c.search_registered_models(
        f"name IN ('{names[0]}', '{names[2]}')", order_by=["name DESC"]
    )
    assert [m.name for m in listed] == [names[2], names[0]]
    # Pages: max_results and page tokens as MLflow does them.
    first = c.search_registered_models(f"name LIKE '{model_name}%'", max_results=2)
    assert [m.name for m in first] == names[:2] and first.token
    second = c.search_registered_models(
        f"name LIKE '{model_name}%'", max_results=2, page_token=first.token
    )
    assert [m.name for m in second] == names[2:] and not second.token

    versions = c.search_model_versions(f"name = '{names[2]}'", order_by=["version_number DESC"])
    assert [v.version for v in versions] == ["3", "2", "1"]
    by_run = c.search_model_versions(f"run_id = 'run1' AND name LIKE '{model_name}%'")
    assert {(v.name, v.version) for v in by_run} == {(names[1], "1"), (names[1], "2")}
    by_source = c.search_model_versions(
        f"source_path = 's3://bucket/run0/model' AND name LIKE '{model_name}%'"
    )
    assert [(v.name, v.version) for v in by_source] == [(names[0], "1")]
    by_tag = c.search_model_versions(
        f"tags.i = '2' AND version_number >= 2 AND name LIKE '{model_name}%'"
    )
    assert sorted(v.version for v in by_tag) == ["2", "3"]
    paged = c.search_model_versions(
        f"name = '{names[2]}'", max_results=2, order_by=["version_number ASC"]
    )
    assert [v.version for v in paged] == ["1", "2"] and paged.token
    rest = c.search_model_versions(
        f"name = '{names[2]}'",
        max_results=2,
        order_by=["version_number ASC"],
        page_token=paged.token,
    )
    assert [v.version for v in rest] == ["3"] and not rest.token


@pytest.mark.parametrize(
    ("target", "filter_text"),
    [
        ("models", "name = 'x' OR name = 'y'"),
        ("models", "metrics.acc > 0.5"),
        ("models", "tags.k IN ('a', 'b')"),
        ("models", "name = 'unterminated"),
        ("models", "creation_timestamp > 5"),
        ("versions", "version_number = 'one'"),
        ("versions", "tags.k LIKE 'a\\b'"),
        ("versions", "params.x = '1'"),
    ],
)
def test_search_refuses_what_it_cannot_express(
    mlflow_client: MlflowClient, target: str, filter_text: str
) -> None:
    search = (
        mlflow_client.search_registered_models
        if target == "models"
        else mlflow_client.search_model_versions
    )
    with pytest.raises(MlflowException) as refused:
        search(filter_text)
    assert _codes(refused) == "INVALID_PARAMETER_VALUE"


def test_search_refuses_orders_it_cannot_serve(mlflow_client: MlflowClient) -> None:
    for order in (["name ASC"], ["version_number DESC"], ["bogus"], ["name", "name"]):
        with pytest.raises(MlflowException) as refused:
            mlflow_client.search_model_versions("name LIKE 'zz%'", order_by=order)
        assert _codes(refused) == "INVALID_PARAMETER_VALUE", order
    with pytest.raises(MlflowException) as too_many:
        mlflow_client.search_registered_models(max_results=1001)
    assert _codes(too_many) == "INVALID_PARAMETER_VALUE"


def test_both_directions_with_rest_v1_and_the_sdk(
    mlflow_client: MlflowClient, mlflow_server: str, model_name: str, tmp_path: Path
) -> None:
    # MLflow -> REST v1 and SDK: the same version, with its source and run recorded.
    mlflow_client.create_registered_model(model_name)
    mlflow_client.create_model_version(model_name, "s3://bucket/abc123/model", run_id="abc123")
    mlflow_client.set_registered_model_alias(model_name, "champion", "1")
    r = httpx.get(f"{mlflow_server}/api/v1/models/default/{model_name}/versions/1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lineage"]["source_run"] == "abc123"
    assert body["metadata"]["mlflow.source"] == "s3://bucket/abc123/model"
    assert body["aliases"] == ["champion"]
    other = f"{model_name}sdk"
    (tmp_path / "weights.bin").write_bytes(b"weights")
    with Registry(mlflow_server) as reg:
        assert reg.get_version(f"{model_name}@champion").version == 1
        # SDK -> MLflow.
        reg.create_model(other, tags={"origin": "sdk"})
        reg.push(other, tmp_path, tags={"k": "v"}, create_model=False)
    got = mlflow_client.get_registered_model(other)
    assert got.tags == {"origin": "sdk"}
    versions = mlflow_client.search_model_versions(f"name = '{other}'")
    assert [(v.version, v.tags, v.current_stage) for v in versions] == [("1", {"k": "v"}, "None")]
    # Events reached the outbox (audit log, webhooks) whichever door wrote them.
    events = httpx.get(
        f"{mlflow_server}/api/v1/events", params={"limit": 1000, "model": model_name}
    ).json()["events"]
    seen = {(e["type"], e["subject"]) for e in events}
    assert ("version.created", f"default/{model_name}/1") in seen
    assert ("alias.moved", f"default/{model_name}@champion") in seen


def test_repeated_searches_follow_every_write(mlflow_client: MlflowClient, model_name: str) -> None:
    """Search answers are kept per data revision (``answer_at_revision``):
    each search below runs twice, the second from what was kept, and every
    kind of write in between shows at once."""
    c = mlflow_client
    team = f"team-{model_name}"

    def models(flt: str) -> list[tuple[str, dict[str, str], list[str]]]:
        out = []
        for _ in range(2):
            found = c.search_registered_models(flt, max_results=100)
            out.append(
                sorted(
                    (m.name, dict(m.aliases), sorted(v.version for v in m.latest_versions or []))
                    for m in found
                )
            )
        assert out[0] == out[1]
        return out[0]

    def versions(flt: str) -> list[tuple[str, dict[str, str]]]:
        out = []
        for _ in range(2):
            found = c.search_model_versions(flt, max_results=100)
            out.append(sorted((v.version, dict(v.tags)) for v in found))
        assert out[0] == out[1]
        return out[0]

    c.create_registered_model(model_name, tags={"team": team})
    c.create_model_version(model_name, "s3://b/x", tags={"k": "1"})
    assert models(f"tags.team = '{team}'") == [(model_name, {}, ["1"])]
    c.create_model_version(model_name, "s3://b/x", tags={"k": "2"})
    assert models(f"tags.team = '{team}'") == [(model_name, {}, ["2"])]
    c.set_registered_model_alias(model_name, "champion", "1")
    assert models(f"tags.team = '{team}'") == [(model_name, {"champion": "1"}, ["2"])]
    c.set_registered_model_tag(model_name, "team", "other")
    assert models(f"tags.team = '{team}'") == []
    assert versions(f"name = '{model_name}'") == [("1", {"k": "1"}), ("2", {"k": "2"})]
    c.set_model_version_tag(model_name, "2", "k", "two")
    assert versions(f"name = '{model_name}'") == [("1", {"k": "1"}), ("2", {"k": "two"})]
    c.delete_model_version(model_name, "1")
    assert versions(f"name = '{model_name}'") == [("2", {"k": "two"})]
