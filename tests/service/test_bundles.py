"""Bundles (issue 14): versions pin concrete versions after the edges and the
signature change rules are checked; events; the consumer's view; pinned
versions cannot be deleted; on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("t")
CONSUMER = Principal("c", roles={"default": frozenset({Role.CONSUMER})})

DET = {
    "inputs": [{"name": "image", "dtype": "uint8", "shape": [-1, 224, 224, 3]}],
    "outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}],
}
CLS = {
    "inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "label", "dtype": "int64", "shape": [-1]}],
}
EMB = {
    "inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "vector", "dtype": "float32", "shape": [-1, 128]}],
}
EDGES = [
    {"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}},
    {"from": "detector", "to": "embedder", "mapping": {"boxes": "rois"}},
]


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        yield built
    finally:
        built.close()


def version(svc: RegistryService, name: str, signature: dict[str, Any], **kw: Any) -> str:
    with contextlib.suppress(AlreadyExists):
        svc.create_model(name, actor=ADMIN)
    return svc.create_version(name, VersionSpec(signature=signature, **kw), actor=ADMIN).ref


@pytest.fixture
def svc(services: Services) -> RegistryService:
    registry = services.registry
    for name, sig in (("det", DET), ("cls", CLS), ("emb", EMB)):
        ref = version(registry, name, sig)
        registry.transition_version(ref, "published", actor=ADMIN)
        registry.set_alias(ref, "production", actor=ADMIN)
    registry.create_bundle(
        "shelf",
        roles={
            "detector": "det@production",
            "classifier": "cls@production",
            "embedder": "emb/1",
        },
        edges=EDGES,
        actor=ADMIN,
    )
    return registry


def test_a_bundle_version_pins_concrete_versions(svc: RegistryService) -> None:
    bundle = svc.get_bundle("shelf", actor=ADMIN)
    assert bundle.roles["detector"] == "default/det@production"
    assert bundle.latest_version == 0
    bv = svc.create_bundle_version("shelf", actor=ADMIN)
    assert bv.number == 1 and {r: v.ref for r, v in bv.members.items()} == {
        "detector": "default/det/1",
        "classifier": "default/cls/1",
        "embedder": "default/emb/1",
    }
    # The alias moves on; the pinned version keeps its answer.
    svc.set_alias(version(svc, "det", DET), "production", actor=ADMIN)
    got = svc.get_bundle_version("shelf", number=1, actor=ADMIN)
    assert got.members["detector"].ref == "default/det/1"
    assert got.members["detector"].files is not None
    again = svc.create_bundle_version("shelf", actor=ADMIN)
    assert again.number == 2 and again.members["detector"].ref == "default/det/2"
    assert svc.get_bundle_version("shelf", actor=ADMIN).number == 2
    with pytest.raises(NotFound) as err:
        svc.get_bundle_version("shelf", number=9, actor=ADMIN)
    assert err.value.code == "BUNDLE_VERSION_NOT_FOUND"


def test_an_incompatible_member_is_refused_with_the_field(svc: RegistryService) -> None:
    svc.create_bundle_version("shelf", actor=ADMIN)
    retyped = {**DET, "outputs": [{"name": "boxes", "dtype": "float16", "shape": [-1, 4]}]}
    svc.set_alias(version(svc, "det", retyped), "production", actor=ADMIN, force=True)
    with pytest.raises(Conflict) as err:
        svc.create_bundle_version("shelf", actor=ADMIN)
    assert err.value.code == "BUNDLE_INCOMPATIBLE"
    mismatches = err.value.details["mismatches"]
    assert {
        "kind": "edge",
        "role": "classifier",
        "field": "rois",
        "problem": "detector.boxes is float16 but classifier.rois takes float32",
    } in mismatches
    assert any(m["kind"] == "change" and m["field"] == "boxes" for m in mismatches)
    # accept_breaking lets a signature change through, never a broken edge.
    with pytest.raises(Conflict):
        svc.create_bundle_version("shelf", accept_breaking=True, actor=ADMIN)
    assert svc.get_bundle("shelf", actor=ADMIN).latest_version == 1


def test_breaking_change_without_a_broken_edge_needs_acceptance(svc: RegistryService) -> None:
    svc.create_bundle_version("shelf", actor=ADMIN)
    # The classifier drops its output: no edge reads it, but it is breaking.
    svc.set_alias(
        version(svc, "cls", {**CLS, "outputs": []}), "production", actor=ADMIN, force=True
    )
    with pytest.raises(Conflict) as err:
        svc.create_bundle_version("shelf", actor=ADMIN)
    assert [m["field"] for m in err.value.details["mismatches"]] == ["label"]
    assert svc.create_bundle_version("shelf", accept_breaking=True, actor=ADMIN).number == 2
    # An added optional input is fine.
    optional = {**CLS, "inputs": [*CLS["inputs"], {"name": "hint", "optional": True}]}
    svc.set_alias(version(svc, "cls", optional), "production", actor=ADMIN)
    assert svc.create_bundle_version("shelf", actor=ADMIN).number == 3


def test_members_must_be_ready(svc: RegistryService) -> None:
    svc.create_bundle("drafty", roles={"detector": "det/2"}, actor=ADMIN)
    version(svc, "det", DET, draft=True)
    with pytest.raises(Conflict) as err:
        svc.create_bundle_version("drafty", actor=ADMIN)
    assert err.value.details["mismatches"][0]["kind"] == "member"


def test_bad_bundles(svc: RegistryService) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"roles": {}}, "INVALID_BUNDLE"),
        ({"roles": {"Bad Role": "det/1"}}, "INVALID_BUNDLE"),
        ({"roles": {"a": "det@@x"}}, "INVALID_REFERENCE"),
        (
            {"roles": {"a": "det/1"}, "edges": [{"from": "a", "to": "b", "mapping": {"x": "y"}}]},
            "INVALID_BUNDLE",
        ),
    ]
    for kw, code in cases:
        with pytest.raises(InvalidInput) as err:
            svc.create_bundle("x", actor=ADMIN, **kw)
        assert err.value.code == code, kw
    with pytest.raises(AlreadyExists) as dup:
        svc.create_bundle("shelf", roles={"a": "det/1"}, actor=ADMIN)
    assert dup.value.code == "BUNDLE_ALREADY_EXISTS"
    with pytest.raises(NotFound) as missing:
        svc.create_bundle_version("nope", actor=ADMIN)
    assert missing.value.code == "BUNDLE_NOT_FOUND"
    with pytest.raises(NotFound):
        svc.get_bundle("nope", actor=ADMIN)


def test_events_and_audit(services: Services, svc: RegistryService) -> None:
    svc.create_bundle_version("shelf", actor=ADMIN)
    entries = services.governance.audit(actor=ADMIN, action="bundle.").items
    assert [e["type"] for e in entries] == ["bundle.version_created", "bundle.created"]
    assert entries[0]["subject"] == "bundle:default/shelf/1"
    assert entries[0]["payload"]["members"]["detector"] == "default/det/1"


def test_pinned_models_cannot_be_deleted(svc: RegistryService) -> None:
    svc.create_bundle_version("shelf", actor=ADMIN)
    with pytest.raises(Conflict) as err:
        svc.delete_model("emb", force=True, actor=ADMIN)
    assert err.value.code == "MODEL_IN_BUNDLE"
    assert err.value.details["bundle_versions"] == ["default/shelf/1"]


def test_consumers_see_a_bundle_version_only_if_every_member_is_visible(
    services: Services, svc: RegistryService
) -> None:
    svc.create_bundle_version("shelf", actor=ADMIN)
    assert svc.get_bundle_version("shelf", actor=CONSUMER).number == 1
    services.governance.set_policy("default", {"required_tags": {"ok": "1"}}, actor=ADMIN)
    with pytest.raises(NotFound) as err:
        svc.get_bundle_version("shelf", actor=CONSUMER)
    assert err.value.code == "BUNDLE_VERSION_NOT_FOUND"
    assert svc.get_bundle_version("shelf", actor=ADMIN).number == 1
