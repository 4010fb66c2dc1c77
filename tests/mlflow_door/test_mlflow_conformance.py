"""MLflow's own model-registry integration tests (``tests/tracking/
test_model_registry.py`` of MLflow 3.17), their behaviours ported to a live
modelyard server and the real client (the tests themselves start MLflow's
server in-process and cannot be pointed elsewhere).

Ported as they are, with two adaptations: servers are shared by the
session, so names carry a unique prefix and filters are scoped to it; and a
``runs:/`` source must name a run of this server that has the files (MLflow
stores any text; modelyard resolves the source into the version's files, see
docs), so the flows log a real run first. Deviations are listed in
``docs/mlflow-tracking.md`` ("Conformance")."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)


def now_ms() -> int:
    return int(time.time() * 1000)


def between(start: int, end: int, at: int) -> None:
    assert start <= at <= end, (start, at, end)


@pytest.fixture
def client(mlflow_client: MlflowClient) -> MlflowClient:
    return mlflow_client


@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


@pytest.fixture
def run_ids(client: MlflowClient, tmp_path: Path) -> tuple[str, str]:
    """Two runs, each with a ``model`` and an ``another_model`` tree."""
    eid = client.create_experiment(f"conf-{uuid.uuid4().hex}")
    tree = tmp_path / "m"
    tree.mkdir()
    (tree / "MLmodel").write_text("flavors: {}\n")
    ids = []
    for _ in range(2):
        rid = client.create_run(eid).info.run_id
        client.log_artifacts(rid, str(tree), "model")
        client.log_artifacts(rid, str(tree), "another_model")
        ids.append(rid)
    return ids[0], ids[1]


def missing(call: Callable[[], Any]) -> None:
    """MLflow's ``RESOURCE_DOES_NOT_EXIST`` (the wording is modelyard's)."""
    with pytest.raises(MlflowException) as gone:
        call()
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def pages(get: Callable[[str | None], Any]) -> list[Any]:
    out: list[Any] = []
    result = get(None)
    out.extend(result)
    while result.token:
        result = get(result.token)
        out.extend(result)
    return out


def test_create_and_query_registered_model_flow(client: MlflowClient, prefix: str) -> None:
    name = f"{prefix}CreateRMTest"
    start = now_ms()
    rm = client.create_registered_model(name, {"key": "value", "numeric_value": 12345})
    end = now_ms()
    assert isinstance(rm, RegisteredModel) and rm.name == name
    assert rm.tags == {"key": "value", "numeric_value": "12345"}
    got = client.get_registered_model(name)
    assert got.tags == {"key": "value", "numeric_value": "12345"}
    assert str(got.description) == "" and got.latest_versions == []
    between(start, end, got.creation_timestamp)
    between(start, end, got.last_updated_timestamp)
    for flt in (None, "", f"name = '{name}'"):
        found = client.search_registered_models(filter_string=flt, max_results=1000)
        assert name in [m.name for m in found] or (flt is None and len(found) == 1000)


@pytest.mark.parametrize("max_results", [1, 8, 100])
@pytest.mark.parametrize(
    ("filter_suffix", "keep"),
    [
        ("", lambda n: True),
        ("name LIKE '{p}%7'", lambda n: n.endswith("7")),
        ("name ILIKE '{p}%rm%00%'", lambda n: "00" in n),
        ("name LIKE '{p}%rm%00%'", lambda n: False),
        ("name = '{p}badname'", lambda n: False),
        ("name = '{p}CreateRMsearch023'", lambda n: n.endswith("CreateRMsearch023")),
    ],
)
def test_search_registered_model_flow_paginated(
    client: MlflowClient,
    prefix: str,
    max_results: int,
    filter_suffix: str,
    keep: Callable[[str], bool],
) -> None:
    names = [f"{prefix}CreateRMsearch{i:03}" for i in range(29)]
    for n in names:
        client.create_registered_model(n)
    flt = filter_suffix.format(p=prefix) or f"name LIKE '{prefix}%'"
    got = pages(
        lambda tok: client.search_registered_models(
            filter_string=flt, max_results=max_results, page_token=tok
        )
    )
    # keep() judges the name after the random prefix, which may itself hold
    # "00" or end in "7" (a prefix with "00" once made the ILIKE case flaky).
    assert [m.name for m in got] == [n for n in names if keep(n[len(prefix) :])]


def test_update_registered_model_flow(client: MlflowClient, prefix: str) -> None:
    name = f"{prefix}UpdateRMTest"
    start1 = now_ms()
    client.create_registered_model(name)
    end1 = now_ms()
    new_name = f"{prefix}UpdateRMTest_2"
    start2 = now_ms()
    client.rename_registered_model(name=name, new_name=new_name)
    end2 = now_ms()
    missing(lambda: client.get_registered_model(name))
    got = client.get_registered_model(new_name)
    between(start1, end1, got.creation_timestamp)
    between(start2, end2, got.last_updated_timestamp)
    start3 = now_ms()
    client.update_registered_model(name=new_name, description="This is a test")
    end3 = now_ms()
    got = client.get_registered_model(new_name)
    assert got.description == "This is a test"
    between(start3, end3, got.last_updated_timestamp)
    another = f"{prefix}UpdateRMTest_4"
    client.update_registered_model(new_name, "4th update")
    client.rename_registered_model(new_name, another)
    assert client.get_registered_model(another).description == "4th update"
    for old in (name, new_name):
        missing(lambda old=old: client.get_registered_model(old))


def test_delete_registered_model_flow(client: MlflowClient, prefix: str) -> None:
    name = f"{prefix}DeleteRMTest"
    client.create_registered_model(name)
    with pytest.raises(MlflowException) as taken:
        client.create_registered_model(name)
    assert taken.value.error_code == "RESOURCE_ALREADY_EXISTS"
    client.delete_registered_model(name)
    missing(lambda: client.get_registered_model(name))
    missing(lambda: client.rename_registered_model(name=name, new_name=f"{prefix}else"))
    assert client.search_registered_models(f"name = '{name}'") == []
    start = now_ms()
    client.create_registered_model(name)
    end = now_ms()
    between(start, end, client.get_registered_model(name).creation_timestamp)


def test_registered_model_tags_and_empty_values(client: MlflowClient, prefix: str) -> None:
    name = f"{prefix}SetDeleteRMTagTest"
    client.create_registered_model(name)
    assert client.get_registered_model(name).tags == {}
    client.set_registered_model_tag(name, "key", "value")
    client.set_registered_model_tag(name, "numeric_value", 12345)
    client.set_registered_model_tag(name, "tag_key", "")
    assert client.get_registered_model(name).tags == {
        "key": "value",
        "numeric_value": "12345",
        "tag_key": "",
    }
    client.delete_registered_model_tag(name, "key")
    assert client.get_registered_model(name).tags == {"numeric_value": "12345", "tag_key": ""}


def test_search_model_versions_filter_order_and_pages(
    client: MlflowClient, prefix: str, run_ids: tuple[str, str]
) -> None:
    rid = run_ids[0]
    names = [f"{prefix}MV{i:03}" for i in range(12)]
    for n in names:
        client.create_registered_model(n)
    mvs = [client.create_model_version(n, f"runs:/{rid}/model", rid) for n in names + names[:4]]
    assert all(isinstance(mv, ModelVersion) for mv in mvs)
    scope = f"name LIKE '{prefix}MV%'"
    newest_first = mvs[::-1]
    for max_results in (1, 8, 100):
        got = pages(
            lambda tok, m=max_results: client.search_model_versions(
                scope, max_results=m, page_token=tok
            )
        )
        assert [(v.name, v.version) for v in got] == [(v.name, v.version) for v in newest_first]
    got = pages(
        lambda tok: client.search_model_versions(f"name LIKE '{prefix}MV%2'", page_token=tok)
    )
    assert [v.name for v in got] == [v.name for v in newest_first if v.name.endswith("2")]
    by_name = client.search_model_versions(scope, order_by=["name DESC"], max_results=100)
    assert [(v.name, v.version) for v in by_name] == sorted(
        ((v.name, v.version) for v in mvs), reverse=True
    )
    # By number: within one model (across models modelyard refuses it, see docs).
    one = names[0]
    by_number = client.search_model_versions(f"name = '{one}'", order_by=["version_number DESC"])
    assert [v.version for v in by_number] == ["2", "1"]


def test_create_and_query_model_version_flow(
    client: MlflowClient, prefix: str, run_ids: tuple[str, str]
) -> None:
    r1, r2 = run_ids
    name = f"{prefix}CreateMVTest"
    client.create_registered_model(name)
    mv1 = client.create_model_version(
        name, f"runs:/{r1}/model", r1, {"key": "value", "numeric_value": 12345}
    )
    assert (mv1.version, mv1.name) == ("1", name)
    assert mv1.tags == {"key": "value", "numeric_value": "12345"}
    mvd1 = client.get_model_version(name, "1")
    latest = [m.latest_versions for m in client.search_registered_models(f"name = '{name}'")]
    assert latest == [[mvd1]]
    client.create_model_version(name, f"runs:/{r1}/another_model", r1)
    mvd2 = client.get_model_version(name, "2")
    latest = [m.latest_versions for m in client.search_registered_models(f"name = '{name}'")]
    assert latest == [[mvd2]]
    assert {v.version for v in client.search_model_versions(f"name = '{name}'")} == {"1", "2"}
    client.create_model_version(name, f"runs:/{r2}/another_model", r2)
    assert client.search_model_versions(f"run_id = '{r1}'") == [mvd2, mvd1]
    assert client.get_model_version_download_uri(name, "1") == f"runs:/{r1}/model"


def test_get_model_version_with_a_bad_number(
    client: MlflowClient, prefix: str, run_ids: tuple[str, str]
) -> None:
    name = f"{prefix}GetModelVersionTest"
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_ids[0]}/model", run_ids[0])
    assert client.get_model_version(name, "1").version == "1"
    with pytest.raises(MlflowException) as bad:
        client.get_model_version(name=name, version="something not correct")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_update_model_version_flow(
    client: MlflowClient, prefix: str, run_ids: tuple[str, str]
) -> None:
    rid = run_ids[0]
    name = f"{prefix}UpdateMVTest"
    start0 = now_ms()
    client.create_registered_model(name)
    end0 = now_ms()
    start1 = now_ms()
    client.create_model_version(name, f"runs:/{rid}/model", rid)
    end1 = now_ms()
    mvd1 = client.get_model_version(name, "1")
    assert str(mvd1.description) == ""
    between(start1, end1, mvd1.creation_timestamp)
    rmd = client.get_registered_model(name)
    between(start0, end0, rmd.creation_timestamp)
    between(start1, end1, rmd.last_updated_timestamp)
    client.create_model_version(name, f"runs:/{rid}/another_model", rid)
    client.transition_model_version_stage(name=name, version=1, stage="Staging")
    latest = [m.latest_versions for m in client.search_registered_models(f"name = '{name}'")]
    assert {v.version for v in latest[0]} == {"1", "2"}
    start3 = now_ms()
    client.update_model_version(name=name, version=1, description="This is a test model")
    end3 = now_ms()
    mvd1c = client.get_model_version(name, "1")
    assert mvd1c.description == "This is a test model"
    between(start1, end1, mvd1c.creation_timestamp)
    between(start3, end3, mvd1c.last_updated_timestamp)


def test_latest_models(client: MlflowClient, prefix: str, run_ids: tuple[str, str]) -> None:
    rid = run_ids[0]
    name = f"{prefix}LatestVersionTest"
    client.create_registered_model(name)
    for version, stage in (
        ("1", "Archived"),
        ("2", "Production"),
        ("3", "Archived"),
        ("4", "Production"),
        ("5", "Staging"),
        ("6", "Staging"),
        ("7", "None"),
    ):
        mv = client.create_model_version(name, f"runs:/{rid}/model", rid)
        assert mv.version == version
        if stage != "None":
            client.transition_model_version_stage(name, version, stage=stage)
        assert client.get_model_version(name, version).current_stage == stage

    def latest(stages: list[str] | None) -> dict[str, str]:
        return {v.current_stage: v.version for v in client.get_latest_versions(name, stages)}

    assert latest(["None"]) == {"None": "7"}
    assert latest(["Staging"]) == {"Staging": "6"}
    assert latest(["None", "Staging"]) == {"None": "7", "Staging": "6"}
    everything = {"Production": "4", "Staging": "6", "Archived": "3", "None": "7"}
    assert latest(None) == everything
    assert latest([]) == everything


def test_delete_model_version_flow(
    client: MlflowClient, prefix: str, run_ids: tuple[str, str]
) -> None:
    r1, r2 = run_ids
    name = f"{prefix}DeleteMVTest"
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{r1}/model", r1)
    client.create_model_version(name, f"runs:/{r1}/another_model", r1)
    client.create_model_version(name, f"runs:/{r2}/model", r2)
    latest = [m.latest_versions for m in client.search_registered_models(f"name = '{name}'")]
    assert latest[0][0].version == "3"
    client.delete_model_version(name, "1")
    assert {v.version for v in client.search_model_versions(f"name = '{name}'")} == {"2", "3"}
    for call in (
        lambda: client.delete_model_version(name, "1"),
        lambda: client.update_model_version(name=name, version=1, description="x"),
        lambda: client.transition_model_version_stage(name=name, version=1, stage="Staging"),
    ):
        missing(call)
    client.delete_model_version(name, 3)
    mv4 = client.create_model_version(name, f"runs:/{r2}/model", r2)
    assert mv4.version == "4"  # numbers are never reused
    assert {v.version for v in client.search_model_versions(f"name = '{name}'")} == {"2", "4"}


def test_model_version_tags_and_aliases(
    client: MlflowClient, prefix: str, run_ids: tuple[str, str]
) -> None:
    rid = run_ids[0]
    name = f"{prefix}SetDeleteMVTagTest"
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{rid}/model", rid)
    assert client.get_model_version(name, "1").tags == {}
    client.set_model_version_tag(name, "1", "key", "value")
    client.set_model_version_tag(name, "1", "numeric_value", 12345)
    client.set_model_version_tag(name, "1", "tag_key", "")
    client.delete_model_version_tag(name, "1", "key")
    assert client.get_model_version(name, "1").tags == {"numeric_value": "12345", "tag_key": ""}

    assert client.get_registered_model(name).aliases == {}
    assert client.get_model_version(name, "1").aliases == []
    client.set_registered_model_alias(name, "test_alias", "1")
    assert client.get_registered_model(name).aliases == {"test_alias": "1"}
    mv = client.get_model_version(name, "1")
    assert mv.aliases == ["test_alias"]
    assert client.get_model_version_by_alias(name, "test_alias") == mv
    client.delete_registered_model_alias(name, "test_alias")
    assert client.get_registered_model(name).aliases == {}
    assert client.get_model_version(name, "1").aliases == []


def test_copy_model_version_flow(
    client: MlflowClient, prefix: str, run_ids: tuple[str, str]
) -> None:
    rid = run_ids[0]
    name = f"{prefix}CopyMVTest"
    client.create_registered_model(name)
    src = client.create_model_version(
        name, f"runs:/{rid}/model", rid, description="dummy", tags={"hello": "world"}
    )
    client.set_registered_model_alias(name, "test_alias", "1")
    copied = client.copy_model_version(f"models:/{name}@test_alias", name)
    assert (copied.version, copied.name) == ("2", name)
    got = client.get_model_version(name, 2)
    assert got.source == f"models:/{name}/1"
    assert got.description == "dummy" and got.run_id == rid
    assert got.tags == {"hello": "world"}
    # The copy owns the same files, by digest (MLflow answers the source's URI).
    assert client.get_model_version_download_uri(name, 1) == src.source
