"""Resources (issue 14): attaching components makes the next version, shares
every other file by digest, moves an alias in the same transaction under the
production policy; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import Conflict, InvalidInput, ModelyardError, PolicyViolation
from modelyard.domain.identity import Principal
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("t")


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        yield built
    finally:
        built.close()


def blob(services: Services, data: bytes) -> dict[str, object]:
    """Upload ``data``; its manifest fields."""
    stored = services.blob_service.upload([data], actor=ADMIN, size=len(data))
    assert stored.digest == hashlib.sha256(data).hexdigest()
    return {"digest": stored.digest, "size": len(data)}


@pytest.fixture
def svc(services: Services) -> RegistryService:
    """default/det/1: weights + resources/thresholds.json, tagged, with metrics."""
    registry = services.registry
    registry.create_model("det", actor=ADMIN)
    registry.create_version(
        "det",
        VersionSpec(
            files=[
                {"path": "model.onnx", **blob(services, b"weights" * 1000)},
                {"path": "resources/thresholds.json", **blob(services, b'{"t": 0.5}')},
            ],
            format="onnx",
            metrics={"map": 0.7},
            tags={"reviewed": "yes"},
            signature={"inputs": [{"name": "x", "dtype": "float32"}]},
        ),
        actor=ADMIN,
    )
    return registry


def test_attach_makes_the_next_version_sharing_the_weights(
    services: Services, svc: RegistryService
) -> None:
    before = svc.get_version("det/1", actor=ADMIN)
    new_thr = blob(services, b'{"t": 0.6}')
    labels = blob(services, b"cat\ndog\n")
    v2 = svc.attach_resources(
        "det@latest",
        [{"name": "thresholds.json", **new_thr}, {"name": "labels.csv", **labels}],
        actor=ADMIN,
    )
    assert v2.ref == "default/det/2" and v2.state.value == "ready"
    assert str(v2.parent) == "default/det/1" and str(v2.original) == "default/det/1"
    assert v2.relation == "retuned"
    files = {f.path: f.digest for f in v2.files or []}
    old = {f.path: f.digest for f in before.files or []}
    assert files == {
        "model.onnx": old["model.onnx"],  # shared by digest
        "resources/thresholds.json": new_thr["digest"],
        "resources/labels.csv": labels["digest"],
    }
    assert v2.format == "onnx" and v2.tags == {"reviewed": "yes"}
    assert v2.signature == before.signature and v2.metrics == before.metrics
    # The source did not change.
    again = svc.get_version("det/1", actor=ADMIN)
    assert {f.path: f.digest for f in again.files or []} == old
    # The family shows the retuned step.
    assert [v.ref for v in svc.list_variants("det/1", relation="retuned", actor=ADMIN)] == [v2.ref]


def test_alias_moves_in_the_same_transaction(services: Services, svc: RegistryService) -> None:
    svc.set_alias("det/1", "production", actor=ADMIN)
    v2 = svc.attach_resources(
        "det@production",
        [{"name": "thresholds.json", **blob(services, b"{}")}],
        alias="production",
        reason="new thresholds",
        actor=ADMIN,
    )
    assert "production" in v2.aliases and v2.files is not None
    assert svc.get_version("det@production", actor=ADMIN).number == 2
    with svc.db.read() as tx:
        events = [e for e in tx.list_events(after=0, limit=100)]
    tail = [(e["type"], e["subject"]) for e in events[-2:]]
    assert tail == [("version.created", "default/det/2"), ("alias.moved", "default/det@production")]
    assert events[-1]["payload"]["reason"] == "new thresholds"


def test_a_refused_alias_move_creates_nothing(services: Services, svc: RegistryService) -> None:
    services.governance.set_policy(
        "default",
        {"protected_aliases": ["production"], "required_tags": {"approved": "yes"}},
        actor=ADMIN,
    )
    thr = blob(services, b"{}")
    with pytest.raises(PolicyViolation):
        svc.attach_resources(
            "det/1", [{"name": "thresholds.json", **thr}], alias="production", actor=ADMIN
        )
    assert svc.get_model("det", actor=ADMIN).latest_version == 1
    # Without the alias the version is made (the policy gates the alias only).
    assert svc.attach_resources("det/1", [{"name": "t.json", **thr}], actor=ADMIN).number == 2


def test_bad_requests(services: Services, svc: RegistryService) -> None:
    thr = blob(services, b"{}")
    cases: list[tuple[object, str]] = [
        ([], "INVALID_RESOURCES"),
        ([{"digest": thr["digest"], "size": 2}], "INVALID_RESOURCES"),
        ([{"name": "../x", **thr}], "INVALID_PATH"),
        ([{"name": "a", **thr}, {"name": "resources/a", **thr}], "INVALID_MANIFEST"),
        ([{"name": "a", "digest": "0" * 64, "size": 2}], "BLOB_MISSING"),
    ]
    for resources, code in cases:
        with pytest.raises(ModelyardError) as err:
            svc.attach_resources("det/1", resources, actor=ADMIN)  # type: ignore[arg-type]
        assert err.value.code == code, resources
    with pytest.raises(InvalidInput) as bad:
        svc.attach_resources("det/1", [{"name": "a", **thr}], alias="latest", actor=ADMIN)
    assert bad.value.code == "INVALID_ALIAS"
    svc.create_version("det", VersionSpec(draft=True), actor=ADMIN)
    with pytest.raises(Conflict) as draft:
        svc.attach_resources("det/2", [{"name": "a", **thr}], actor=ADMIN)
    assert draft.value.code == "VERSION_NOT_READY"
    reader = Principal("r", roles={})
    with pytest.raises(ModelyardError) as denied:
        svc.attach_resources("det/1", [{"name": "a", **thr}], actor=reader)
    assert denied.value.code == "PERMISSION_DENIED"
