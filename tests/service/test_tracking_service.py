"""Tracking use cases (issue 10) on SQLite and PostgreSQL: experiments in
namespaces, runs with params / metric history / tags, MLflow's run search
grammar, logged models, permissions, events, the artifact index and the
resolution of a version's MLflow source into its manifest."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from modelyard.domain.identity import Principal, Role
from modelyard.domain.tracking import LoggedModelStatus, Metric, ModelOutput, RunStatus
from modelyard.service.tracking import LogBatch
from modelyard.service.versions import VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("admin")


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    with build_services(Settings(data_dir=tmp_path, db=db_url, dispatcher=False)) as s:
        yield s


def _event_types(services: Services) -> list[str]:
    with services.metadata.read() as tx:
        return [e["type"] for e in tx.list_events(limit=1000)]


def _user(name: str, **roles: Role) -> Principal:
    return Principal(name, {ns: frozenset({r}) for ns, r in roles.items()})


def test_experiments_live_in_a_namespace(services: Services) -> None:
    tr = services.tracking
    default = tr.get_experiment("0", actor=ADMIN)
    assert (default.name, default.namespace) == ("Default", "default")
    services.registry.create_namespace("risk", actor=ADMIN)
    exp = tr.create_experiment("fraud", tags={"modelyard.namespace": "risk"}, actor=ADMIN)
    assert exp.namespace == "risk"
    assert exp.artifact_location == f"mlflow-artifacts:/{exp.id}"
    assert tr.get_experiment_by_name("fraud", actor=ADMIN).id == exp.id
    with pytest.raises(AlreadyExists) as dup:
        tr.create_experiment("fraud", actor=ADMIN)
    assert dup.value.code == "EXPERIMENT_ALREADY_EXISTS"
    with pytest.raises(NotFound) as missing_ns:
        tr.create_experiment("x", tags={"modelyard.namespace": "nope"}, actor=ADMIN)
    assert missing_ns.value.code == "NAMESPACE_NOT_FOUND"
    with pytest.raises(InvalidInput):
        tr.create_experiment("y", artifact_location="file:///etc", actor=ADMIN)

    reader = _user("r", risk=Role.READER)
    writer_default = _user("w", default=Role.WRITER)
    assert tr.get_experiment(exp.id, actor=reader).name == "fraud"
    with pytest.raises(PermissionDenied):
        tr.get_experiment(exp.id, actor=writer_default)
    with pytest.raises(PermissionDenied):
        tr.create_run(exp.id, actor=reader)
    with pytest.raises(PermissionDenied):
        tr.set_experiment_tag(exp.id, "k", "v", actor=reader)
    # A consumer sees production versions, never tracking data.
    with pytest.raises(PermissionDenied):
        tr.get_experiment(exp.id, actor=_user("c", risk=Role.CONSUMER))
    # Searches list only what the caller may read.
    names = {e.name for e in tr.search_experiments(actor=reader).items}
    assert names == {"fraud"}
    assert {e.name for e in tr.search_experiments(actor=ADMIN).items} == {"fraud", "Default"}

    tr.rename_experiment(exp.id, "fraud-v2", actor=ADMIN)
    kept = tr.create_run(exp.id, actor=ADMIN)
    gone = tr.create_run(exp.id, actor=ADMIN)
    tr.delete_run(gone.id, actor=ADMIN)
    tr.delete_experiment(exp.id, actor=ADMIN)
    assert tr.get_run(kept.id, actor=ADMIN).lifecycle_stage.value == "deleted"
    with pytest.raises(Conflict):
        tr.rename_experiment(exp.id, "x", actor=ADMIN)
    assert [e.name for e in tr.search_experiments(view="deleted", actor=ADMIN).items] == [
        "fraud-v2"
    ]
    with pytest.raises(Conflict):
        tr.create_run(exp.id, actor=ADMIN)
    tr.restore_experiment(exp.id, actor=ADMIN)
    # Runs deleted with the experiment come back; one deleted before stays deleted.
    assert tr.get_run(kept.id, actor=ADMIN).lifecycle_stage.value == "active"
    assert tr.get_run(gone.id, actor=ADMIN).lifecycle_stage.value == "deleted"
    page = tr.search_experiments(filter_string="name LIKE 'fraud%'", actor=ADMIN)
    assert [e.name for e in page.items] == ["fraud-v2"]
    with pytest.raises(InvalidInput):
        tr.delete_experiment("0", actor=ADMIN)

    types = _event_types(services)
    for t in ("experiment.created", "experiment.updated", "experiment.deleted"):
        assert t in types
    assert "experiment.restored" in types


def test_runs_params_metrics_tags(services: Services) -> None:
    tr = services.tracking
    run = tr.create_run("0", start_time=1_000_000, tags={"mlflow.user": "ann"}, actor=ADMIN)
    assert run.status is RunStatus.RUNNING and run.user == "ann"
    assert run.tags["mlflow.runName"] == run.name
    assert run.artifact_uri == f"mlflow-artifacts:/0/{run.id}/artifacts"
    tr.log_batch(
        run.id,
        LogBatch(
            metrics=[
                Metric("loss", 0.9, 10, 0),
                Metric("loss", 0.5, 20, 1),
                Metric("loss", 0.7, 15, 1),  # same step, older: not the latest
                Metric("nan", math.nan, 10, 0),
            ],
            params={"lr": "0.1"},
            tags={"team": "risk"},
        ),
        actor=ADMIN,
    )
    tr.log_batch(run.id, LogBatch(params={"lr": "0.1"}), actor=ADMIN)  # same value: fine
    with pytest.raises(InvalidInput) as changed:
        tr.log_batch(run.id, LogBatch(params={"lr": "0.2"}), actor=ADMIN)
    assert changed.value.code == "PARAM_ALREADY_LOGGED"
    got = tr.get_run(run.id, actor=ADMIN)
    assert got.params == {"lr": "0.1"}
    assert got.metrics["loss"].value == 0.5
    assert math.isnan(got.metrics["nan"].value)
    assert got.tags["team"] == "risk"
    history = tr.get_metric_history(run.id, "loss", actor=ADMIN).items
    assert [(m.step, m.timestamp, m.value) for m in history] == [
        (0, 10, 0.9),
        (1, 15, 0.7),
        (1, 20, 0.5),
    ]
    page = tr.get_metric_history(run.id, "loss", max_results=2, actor=ADMIN)
    assert len(page.items) == 2 and page.next_page_token
    rest = tr.get_metric_history(run.id, "loss", page_token=page.next_page_token, actor=ADMIN)
    assert [m.value for m in rest.items] == [0.5]

    tr.delete_run_tag(run.id, "team", actor=ADMIN)
    with pytest.raises(NotFound):
        tr.delete_run_tag(run.id, "team", actor=ADMIN)
    done = tr.update_run(run.id, status="FINISHED", end_time=2_000_000, actor=ADMIN)
    assert done.status is RunStatus.FINISHED and done.end_time == 2_000_000
    with pytest.raises(InvalidInput):
        tr.update_run(run.id, status="DONE", actor=ADMIN)
    tr.delete_run(run.id, actor=ADMIN)
    with pytest.raises(Conflict):
        tr.log_batch(run.id, LogBatch(tags={"a": "b"}), actor=ADMIN)
    tr.restore_run(run.id, actor=ADMIN)
    with pytest.raises(InvalidInput):
        tr.get_run("../../etc/passwd", actor=ADMIN)
    with pytest.raises(NotFound):
        tr.get_run("0" * 32, actor=ADMIN)
    types = _event_types(services)
    assert {"run.created", "run.updated", "run.deleted", "run.restored"} <= set(types)


def test_run_search_grammar(services: Services) -> None:
    tr = services.tracking
    exp = tr.create_experiment("search", actor=ADMIN)
    ids = {}
    for i, (model, acc) in enumerate([("tree", 0.9), ("tree", 0.6), ("linear", 0.8)]):
        r = tr.create_run(exp.id, name=f"r{i}", start_time=1000 * (i + 1), actor=ADMIN)
        tr.log_batch(
            r.id,
            LogBatch(
                metrics=[Metric("acc", acc, 1, 0)],
                params={"model": model},
                tags={"team name": "a" if i else "B"},
            ),
            actor=ADMIN,
        )
        ids[f"r{i}"] = r.id
    tr.update_run(ids["r2"], status="FINISHED", actor=ADMIN)

    def names(f: str | None = None, order: list[str] | None = None) -> list[str]:
        return [
            r.name
            for r in tr.search_runs([exp.id], filter_string=f, order_by=order, actor=ADMIN).items
        ]

    assert names() == ["r2", "r1", "r0"]  # newest start first
    assert names("metrics.acc > 0.7") == ["r2", "r0"]
    assert names("metrics.acc > 0.7 AND params.model = 'tree'") == ["r0"]
    assert names("tags.`team name` = 'a'") == ["r2", "r1"]
    assert names("tags.\"team name\" LIKE 'b'") == []  # LIKE is case-sensitive
    assert names("tags.`team name` ILIKE 'b'") == ["r0"]
    assert names("attributes.status = 'FINISHED'") == ["r2"]
    assert names("attributes.status != 'FINISHED'") == ["r1", "r0"]
    assert names(f"attributes.run_id IN ('{ids['r1']}', '{ids['r0']}')") == ["r1", "r0"]
    assert names("attributes.start_time >= 2") == ["r2", "r1"]  # milliseconds
    assert names("tags.mlflow.runName = 'r1'") == ["r1"]
    assert names(order=["metrics.acc DESC"]) == ["r0", "r2", "r1"]
    assert names(order=["params.model", "attributes.run_name DESC"]) == ["r2", "r1", "r0"]
    assert names(order=["attributes.start_time ASC"]) == ["r0", "r1", "r2"]
    page = tr.search_runs([exp.id], max_results=2, actor=ADMIN)
    assert len(page.items) == 2 and page.next_page_token == "2"
    last = tr.search_runs([exp.id], max_results=2, page_token="2", actor=ADMIN)
    assert [r.name for r in last.items] == ["r0"] and last.next_page_token is None
    for bad in (
        "metrics.acc > 'x'",
        "params.model > 1",
        "acc > 1",
        "metrics.acc > 1 OR metrics.acc < 0",
        "attributes.nope = 'x'",
        "tags.t = 'unterminated",
        "params.p IN ('a')",
    ):
        with pytest.raises(InvalidInput) as exc:
            tr.search_runs([exp.id], filter_string=bad, actor=ADMIN)
        assert exc.value.code == "INVALID_FILTER", bad


def test_logged_models_and_source_resolution(services: Services) -> None:
    tr, art, reg = services.tracking, services.artifacts, services.registry
    services.registry.create_namespace("risk", actor=ADMIN)
    exp = tr.create_experiment("lm", tags={"modelyard.namespace": "risk"}, actor=ADMIN)
    run = tr.create_run(exp.id, actor=ADMIN)
    model = tr.create_logged_model(
        exp.id, name="model", source_run_id=run.id, params={"a": "1"}, actor=ADMIN
    )
    assert model.id.startswith("m-") and model.status is LoggedModelStatus.PENDING
    assert model.artifact_location == f"mlflow-artifacts:/{exp.id}/models/{model.id}/artifacts"
    tr.log_outputs(run.id, [ModelOutput(model.id, 0)], actor=ADMIN)
    tr.log_batch(
        run.id, LogBatch(metrics=[Metric("acc", 0.9, 5, 0, model_id=model.id)]), actor=ADMIN
    )
    tr.set_logged_model_tags(model.id, {"mlflow.modelVersions": "[]"}, actor=ADMIN)
    tr.finalize_logged_model(model.id, "READY", actor=ADMIN)
    got = tr.get_logged_model(model.id, actor=ADMIN)
    assert got.status is LoggedModelStatus.READY and got.params == {"a": "1"}
    assert [(m.key, m.value) for m in got.metrics] == [("acc", 0.9)]
    assert tr.get_run(run.id, actor=ADMIN).outputs == [ModelOutput(model.id, 0)]
    found = tr.search_logged_models([exp.id], name="model", actor=ADMIN).items
    assert [m.id for m in found] == [model.id]

    # Artifacts: uploaded bytes become blobs, indexed per owner and path.
    root = f"{exp.id}/models/{model.id}/artifacts"
    body = b"pickled bytes, stored and served, never loaded"
    art.upload(f"{root}/model.pkl", iter([body]), actor=ADMIN)
    art.upload(f"{root}/MLmodel", iter([b"flavors: {}\n"]), actor=ADMIN)
    art.upload(f"{exp.id}/{run.id}/artifacts/plots/a.txt", iter([body]), actor=ADMIN)
    entry, chunks = art.open(f"{root}/model.pkl", actor=ADMIN)
    assert b"".join(chunks) == body and entry.digest == hashlib.sha256(body).hexdigest()
    assert [(x.name, x.is_dir) for x in art.list(f"{exp.id}/{run.id}/artifacts", actor=ADMIN)] == [
        ("plots", True)
    ]
    assert [x.name for x in art.list(root, actor=ADMIN)] == ["MLmodel", "model.pkl"]
    for bad in (f"{root}/../x", "/etc/passwd", f"{root}/%2e%2e/x", f"{root}/a\\b", "1/x"):
        with pytest.raises(InvalidInput):
            art.upload(bad, iter([b"x"]), actor=ADMIN)
    with pytest.raises(NotFound):
        art.upload(f"{exp.id}/{'0' * 32}/artifacts/x", iter([b"x"]), actor=ADMIN)
    with pytest.raises(PermissionDenied):
        art.upload(f"{root}/y", iter([b"x"]), actor=_user("r", risk=Role.READER))

    # A version created from a model source owns the files, by digest.
    reg.create_model("fraud", namespace="risk", actor=ADMIN)
    v1 = reg.create_version(
        "fraud", VersionSpec(source=f"models:/{model.id}"), namespace="risk", actor=ADMIN
    )
    assert sorted((f.path, f.size) for f in v1.files or []) == [
        ("MLmodel", 12),
        ("model.pkl", len(body)),
    ]
    assert v1.source_run == run.id and v1.metadata["mlflow.source"] == f"models:/{model.id}"
    # runs:/<run>/model falls back to the run's logged model named "model".
    v2 = reg.create_version(
        "fraud", VersionSpec(source=f"runs:/{run.id}/model"), namespace="risk", actor=ADMIN
    )
    assert {f.digest for f in v2.files or []} == {f.digest for f in v1.files or []}
    v3 = reg.create_version(
        "fraud",
        VersionSpec(source=f"mlflow-artifacts:/{exp.id}/{run.id}/artifacts/plots"),
        namespace="risk",
        actor=ADMIN,
    )
    assert [f.path for f in v3.files or []] == ["a.txt"]
    # Not ours: kept as text, no files, nothing read.
    v4 = reg.create_version(
        "fraud", VersionSpec(source="file:///etc/passwd"), namespace="risk", actor=ADMIN
    )
    assert v4.files == [] and v4.metadata["mlflow.source"] == "file:///etc/passwd"
    with pytest.raises(NotFound) as none:
        reg.create_version(
            "fraud", VersionSpec(source=f"runs:/{run.id}/nothing"), namespace="risk", actor=ADMIN
        )
    assert none.value.code == "SOURCE_NOT_FOUND"
    with pytest.raises(InvalidInput):
        reg.create_version(
            "fraud", VersionSpec(source=f"runs:/{run.id}/../x"), namespace="risk", actor=ADMIN
        )
    # Reading the run's namespace is needed to register its files elsewhere.
    reg.create_model("other", actor=ADMIN)
    with pytest.raises(PermissionDenied):
        reg.create_version(
            "other",
            VersionSpec(source=f"models:/{model.id}"),
            actor=_user("w", default=Role.WRITER),
        )
