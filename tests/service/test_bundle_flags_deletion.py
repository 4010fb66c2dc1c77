"""Bundle policy on breaking moves and bundle deletion (issue 14), on SQLite
and PostgreSQL: ``bundle_breaks: flag`` lets a model alias move that breaks a
bundle through and records it on the bundle (event, audit, ``incompatible``
until the next pin); deleting a bundle takes its versions and aliases, keeps
the member versions, and is refused while an alias names it unless forced."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("t")
WRITER = Principal("w", roles={"default": frozenset({Role.WRITER})})

DET = {
    "inputs": [{"name": "image", "dtype": "uint8", "shape": [-1, 224, 224, 3]}],
    "outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}],
}
CLS = {
    "inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "label", "dtype": "int64", "shape": [-1]}],
}
EDGE = {"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}}
RETYPED = {**DET, "outputs": [{"name": "boxes", "dtype": "float16", "shape": [-1, 4]}]}


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        yield built
    finally:
        built.close()


def version(svc: RegistryService, name: str, signature: dict[str, Any]) -> str:
    with contextlib.suppress(AlreadyExists):
        svc.create_model(name, actor=ADMIN)
    return svc.create_version(name, VersionSpec(signature=signature), actor=ADMIN).ref


@pytest.fixture
def svc(services: Services) -> RegistryService:
    registry = services.registry
    for name, sig in (("det", DET), ("cls", CLS)):
        ref = version(registry, name, sig)
        registry.transition_version(ref, "published", actor=ADMIN)
        registry.set_alias(ref, "production", actor=ADMIN)
    registry.create_bundle(
        "pipe",
        roles={"detector": "det@production", "classifier": "cls@production"},
        edges=[EDGE],
        actor=ADMIN,
    )
    registry.create_bundle_version("pipe", actor=ADMIN)
    return registry


def test_flag_mode_lets_a_breaking_move_through_and_records_it_on_the_bundle(
    services: Services, svc: RegistryService
) -> None:
    gov = services.governance
    retyped = version(svc, "det", RETYPED)
    # Default (no policy, then an explicit "refuse"): refused.
    for rules in ({}, {"bundle_breaks": "refuse"}):
        if rules:
            gov.set_policy("default", rules, actor=ADMIN)
        with pytest.raises(Conflict) as err:
            svc.set_alias(retyped, "production", actor=WRITER)
        assert err.value.code == "BUNDLE_INCOMPATIBLE"
        assert err.value.details["bundles"][0]["mode"] == "refuse"
    assert svc.get_bundle("pipe", actor=ADMIN).incompatible == []
    gov.set_policy("default", {"bundle_breaks": "flag"}, actor=ADMIN)
    assert gov.get_policy("default", actor=ADMIN).policy.to_dict()["bundle_breaks"] == "flag"
    # A writer's move applies: flagged, not refused.
    moved = svc.set_alias(retyped, "production", actor=WRITER, reason="new det")
    assert moved.ref == retyped == "default/det/2"
    [flag] = svc.get_bundle("pipe", actor=ADMIN).incompatible
    assert flag["alias"] == "default/det@production" and flag["ref"] == "default/det/2"
    assert (flag["from_version"], flag["to_version"], flag["actor"]) == (1, 2, "w")
    assert flag["mode"] == "flag" and flag["forced"] is False
    [role] = flag["roles"]
    assert role["role"] == "detector"
    assert {
        "kind": "edge",
        "role": "classifier",
        "field": "rois",
        "problem": "detector.boxes is float16 but classifier.rois takes float32",
        "edge": "detector->classifier",
    } in role["mismatches"]
    # The event in the bundle's namespace (audit), and the alias move saying so.
    [incompatible] = gov.audit(actor=ADMIN, action="bundle.incompatible").items
    assert incompatible["subject"] == "bundle:default/pipe" and incompatible["actor"] == "w"
    assert incompatible["payload"]["roles"] == flag["roles"]
    alias_moved = gov.audit(actor=ADMIN, action="alias.moved").items[0]
    assert alias_moved["payload"]["flagged_bundles"][0]["bundle"] == "default/pipe"
    assert "forced_bundles" not in alias_moved["payload"]
    # Pinning checks the bundle fits: it does not, until the bundle is fixed.
    with pytest.raises(Conflict):
        svc.create_bundle_version("pipe", actor=ADMIN)
    assert len(svc.get_bundle("pipe", actor=ADMIN).incompatible) == 1
    # Moved back: the bundle takes det/1, so the alias's entry goes (evented).
    svc.set_alias("det/1", "production", actor=WRITER)
    assert svc.get_bundle("pipe", actor=ADMIN).incompatible == []
    [mended] = gov.audit(actor=ADMIN, action="bundle.compatible").items
    assert mended["subject"] == "bundle:default/pipe" and mended["actor"] == "w"
    assert mended["payload"]["alias"] == "default/det@production"
    assert (mended["payload"]["cleared"], mended["payload"]["remaining"]) == (1, 0)
    # Broken again, then pinned once the bundle is fixed: a pin clears the list.
    svc.set_alias(retyped, "production", actor=WRITER)
    assert len(svc.get_bundle("pipe", actor=ADMIN).incompatible) == 1
    # Fixed (no edge any more) and pinned: the pin clears the list.
    svc.update_bundle("pipe", edges=[], accept_breaking=True, actor=ADMIN)
    assert svc.get_bundle("pipe", actor=ADMIN).incompatible == []
    # A move that breaks nothing and finds nothing flagged records nothing.
    svc.set_alias("det/1", "production", actor=WRITER)
    assert len(gov.audit(actor=ADMIN, action="bundle.compatible").items) == 1


def test_each_bundle_follows_its_own_namespace_policy(
    services: Services, svc: RegistryService
) -> None:
    gov = services.governance
    svc.create_namespace("vision", actor=ADMIN)
    svc.create_bundle(
        "shelf",
        namespace="vision",
        roles={"detector": "default/det@production", "classifier": "default/cls/1"},
        edges=[EDGE],
        actor=ADMIN,
    )
    gov.set_policy("vision", {"bundle_breaks": "flag"}, actor=ADMIN)
    retyped = version(svc, "det", RETYPED)
    # default/pipe refuses (its namespace's default): only it is named.
    with pytest.raises(Conflict) as err:
        svc.set_alias(retyped, "production", actor=WRITER)
    assert [b["bundle"] for b in err.value.details["bundles"]] == ["default/pipe"]
    assert svc.get_bundle("shelf", namespace="vision", actor=ADMIN).incompatible == []
    # An admin forces it: both bundles record the break; pipe's as forced.
    svc.set_alias(retyped, "production", actor=ADMIN, force=True)
    [forced] = svc.get_bundle("pipe", actor=ADMIN).incompatible
    [flagged] = svc.get_bundle("shelf", namespace="vision", actor=ADMIN).incompatible
    assert (forced["mode"], forced["forced"]) == ("refuse", True)
    assert (flagged["mode"], flagged["forced"]) == ("flag", False)
    events = gov.audit(actor=ADMIN, action="bundle.incompatible").items
    assert {(e["namespace"], e["subject"]) for e in events} == {
        ("default", "bundle:default/pipe"),
        ("vision", "bundle:vision/shelf"),
    }
    payload = gov.audit(actor=ADMIN, action="alias.moved").items[0]["payload"]
    assert [b["bundle"] for b in payload["forced_bundles"]] == ["default/pipe"]
    assert [b["bundle"] for b in payload["flagged_bundles"]] == ["vision/shelf"]


def test_bundle_breaks_is_a_namespace_rule_with_two_modes(services: Services) -> None:
    gov, reg = services.governance, services.registry
    reg.create_model("det", actor=ADMIN)
    with pytest.raises(InvalidInput) as bad:
        gov.set_policy("default", {"bundle_breaks": "warn"}, actor=ADMIN)
    assert bad.value.code == "INVALID_POLICY"
    with pytest.raises(InvalidInput) as on_model:
        gov.set_policy("default", {"bundle_breaks": "flag"}, model="det", actor=ADMIN)
    assert on_model.value.details == {"rule": "bundle_breaks"}
    with pytest.raises(PermissionDenied):
        gov.set_policy("default", {"bundle_breaks": "flag"}, actor=WRITER)


def test_deleting_a_bundle_takes_its_versions_and_aliases_not_its_members(
    services: Services, svc: RegistryService
) -> None:
    gov = services.governance
    svc.set_bundle_alias("pipe", "production", version=1, actor=ADMIN)
    gov.set_policy("default", {"protected_aliases": ["production"]}, actor=ADMIN)
    with pytest.raises(PermissionDenied):
        svc.delete_bundle("pipe", actor=WRITER)
    with pytest.raises(Conflict) as err:
        svc.delete_bundle("pipe", actor=ADMIN)
    assert err.value.code == "BUNDLE_HAS_ALIASES"
    assert err.value.details["aliases"] == {"production": 1}
    assert "@production -> 1" in err.value.message
    # A pinned member's model cannot be deleted while the bundle holds it.
    with pytest.raises(Conflict) as pinned:
        svc.delete_model("cls", force=True, actor=ADMIN)
    assert pinned.value.code == "MODEL_IN_BUNDLE"
    svc.delete_bundle("pipe", force=True, reason="retired", actor=ADMIN)
    with pytest.raises(NotFound) as gone:
        svc.get_bundle("pipe", actor=ADMIN)
    assert gone.value.code == "BUNDLE_NOT_FOUND"
    assert svc.list_bundles(actor=ADMIN) == []
    with pytest.raises(NotFound):
        svc.get_bundle_version("pipe", alias="production", actor=ADMIN)
    with pytest.raises(NotFound):
        svc.delete_bundle("pipe", actor=ADMIN)
    [deleted] = gov.audit(actor=ADMIN, action="bundle.deleted").items
    assert deleted["subject"] == "bundle:default/pipe" and deleted["actor"] == "t"
    p = deleted["payload"]
    assert (p["forced"], p["reason"], p["after"]) == (True, "retired", None)
    assert p["before"]["aliases"] == {"production": 1} and p["before"]["latest_version"] == 1
    assert p["before"]["roles"] == {
        "detector": "default/det@production",
        "classifier": "default/cls@production",
    }
    # The members stay; the followed aliases no longer guard anything; the
    # models are free to go; the name can be reused from scratch.
    assert svc.get_version("det/1", actor=ADMIN).state.value == "published"
    gov.delete_policy("default", actor=ADMIN)
    svc.set_alias(version(svc, "det", RETYPED), "production", actor=ADMIN)
    svc.create_bundle("pipe", roles={"classifier": "cls@production"}, actor=ADMIN)
    assert svc.get_bundle("pipe", actor=ADMIN).latest_version == 0
    assert svc.get_bundle("pipe", actor=ADMIN).aliases == {}
    svc.delete_bundle("pipe", actor=ADMIN)  # no aliases: no force needed
    svc.delete_model("cls", force=True, actor=ADMIN)
