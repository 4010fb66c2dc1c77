"""Bundle aliases, bundle edits and the guard on followed model aliases
(issue 14), on SQLite and PostgreSQL: history, the production policy on
protected bundle aliases, events, edits pinning a new version while old ones
stay, and a model alias move refused (or forced by an admin) when it breaks
a bundle that follows it."""

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
    PolicyViolation,
)
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("t")
WRITER = Principal("w", roles={"default": frozenset({Role.WRITER})})
CONSUMER = Principal("c", roles={"default": frozenset({Role.CONSUMER})})

DET = {
    "inputs": [{"name": "image", "dtype": "uint8", "shape": [-1, 224, 224, 3]}],
    "outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}],
}
CLS = {
    "inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "label", "dtype": "int64", "shape": [-1]}],
}
EDGE = {"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}}


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


# -- bundle aliases ------------------------------------------------------------


def test_bundle_alias_moves_are_kept_in_history_and_resolve(
    services: Services, svc: RegistryService
) -> None:
    svc.set_alias(version(svc, "det", DET), "production", actor=ADMIN)
    assert svc.create_bundle_version("pipe", actor=ADMIN).number == 2
    got = svc.set_bundle_alias("pipe", "production", version=1, reason="first", actor=WRITER)
    assert got.number == 1 and got.members["detector"].ref == "default/det/1"
    assert [e.to_dict() for e in got.edges] == [EDGE]
    assert svc.get_bundle_version("pipe", alias="production", actor=ADMIN).number == 1
    svc.set_bundle_alias("pipe", "production", version=2, expected_version=1, actor=WRITER)
    with pytest.raises(Conflict) as err:
        svc.set_bundle_alias("pipe", "production", version=1, expected_version=1, actor=WRITER)
    assert err.value.code == "ALIAS_CHANGED" and err.value.details["actual"] == 2
    assert svc.get_bundle("pipe", actor=ADMIN).aliases == {"production": 2}
    svc.set_bundle_alias("pipe", "staging", version=2, actor=WRITER)
    svc.delete_bundle_alias("pipe", "staging", reason="done", actor=WRITER)
    moves = [
        (m.alias, m.from_version, m.to_version, m.actor, m.reason)
        for m in svc.bundle_alias_history("pipe", actor=ADMIN)
    ]
    assert moves == [
        ("production", None, 1, "w", "first"),
        ("production", 1, 2, "w", ""),
        ("staging", None, 2, "w", ""),
        ("staging", 2, None, "w", "done"),
    ]
    assert [
        m.to_version for m in svc.bundle_alias_history("pipe", alias="staging", actor=ADMIN)
    ] == [2, None]
    entries = services.governance.audit(actor=ADMIN, action="bundle.*").items
    assert [(e["type"], e["subject"]) for e in entries][:2] == [
        ("bundle.alias_deleted", "bundle:default/pipe@staging"),
        ("bundle.alias_moved", "bundle:default/pipe@staging"),
    ]
    moved = next(e for e in entries if e["payload"].get("to_version") == 1)
    assert moved["payload"]["members"] == {
        "detector": "default/det/1",
        "classifier": "default/cls/1",
    }
    with pytest.raises(NotFound) as missing:
        svc.get_bundle_version("pipe", alias="canary", actor=ADMIN)
    assert missing.value.code == "ALIAS_NOT_FOUND"
    with pytest.raises(NotFound) as nover:
        svc.set_bundle_alias("pipe", "canary", version=9, actor=ADMIN)
    assert nover.value.code == "BUNDLE_VERSION_NOT_FOUND"
    for bad in ("latest", "Bad Alias"):
        with pytest.raises(InvalidInput):
            svc.set_bundle_alias("pipe", bad, version=1, actor=ADMIN)
    with pytest.raises(PermissionDenied):
        svc.set_bundle_alias("pipe", "canary", version=1, actor=CONSUMER)


def test_protected_bundle_alias_needs_every_member_to_meet_its_policy(
    services: Services, svc: RegistryService
) -> None:
    gov = services.governance
    gov.set_policy(
        "default",
        {"protected_aliases": ["production"], "required_tags": {"scanned": "yes"}},
        actor=ADMIN,
    )
    with pytest.raises(PolicyViolation) as err:
        svc.set_bundle_alias("pipe", "production", version=1, actor=WRITER)
    roles = {v["role"] for v in err.value.details["violations"]}
    assert roles == {"detector", "classifier"}
    assert "detector (default/det/1): tag 'scanned' must be 'yes'" in err.value.message
    # Unprotected aliases are not gated.
    svc.set_bundle_alias("pipe", "staging", version=1, actor=WRITER)
    for name in ("det", "cls"):
        svc.update_version(f"{name}/1", set_tags={"scanned": "yes"}, actor=ADMIN)
    svc.set_bundle_alias("pipe", "production", version=1, actor=WRITER)
    with pytest.raises(Conflict) as protected:
        svc.delete_bundle_alias("pipe", "production", actor=ADMIN)
    assert protected.value.code == "ALIAS_PROTECTED"
    # A member that is only ready (not published) cannot be behind it.
    ready = version(svc, "cls", CLS, tags={"scanned": "yes"})
    svc.update_bundle("pipe", roles={"detector": "det/1", "classifier": ready}, actor=ADMIN)
    with pytest.raises(PolicyViolation) as unpublished:
        svc.set_bundle_alias("pipe", "production", version=2, actor=ADMIN)
    assert [v["rule"] for v in unpublished.value.details["violations"]] == ["published"]
    assert unpublished.value.details["violations"][0]["role"] == "classifier"


def test_protected_bundle_alias_takes_the_approvals_of_its_members(
    services: Services, svc: RegistryService
) -> None:
    det2 = version(svc, "det", DET)
    svc.transition_version(det2, "published", actor=ADMIN)
    svc.set_alias(det2, "production", actor=ADMIN)
    assert svc.create_bundle_version("pipe", actor=ADMIN).number == 2  # det/2, cls/1
    roles = {"detector": "det/1", "classifier": "cls@production"}
    assert svc.update_bundle("pipe", roles=roles, actor=ADMIN).number == 3  # det/1, cls/1
    roles["detector"] = "det@production"
    assert svc.update_bundle("pipe", roles=roles, actor=ADMIN).number == 4  # det/2, cls/1
    svc.set_bundle_alias("pipe", "production", version=3, actor=ADMIN)
    svc.set_bundle_alias("pipe", "production", version=4, actor=ADMIN)
    services.governance.set_policy(
        "default", {"protected_aliases": ["production"], "required_approvals": 1}, actor=ADMIN
    )
    # det/1 is not what det@production runs: that move would need an approval.
    with pytest.raises(Conflict) as err:
        svc.set_bundle_alias("pipe", "production", version=1, actor=ADMIN)
    e = err.value
    assert e.code == "APPROVAL_REQUIRED" and e.details["ref"] == "default/pipe/1"
    assert [(v["role"], v["rule"]) for v in e.details["violations"]] == [("detector", "approvals")]
    assert "default/det@production does not point at default/det/1" in e.message
    # A rollback (back to where the alias pointed just before) is allowed.
    svc.set_bundle_alias("pipe", "production", version=3, actor=ADMIN)
    last = services.governance.audit(actor=ADMIN, action="bundle.alias_moved").items[0]
    assert last["payload"]["rollback"] is True and last["payload"]["to_version"] == 3
    # Every member is its model's @production (approved one by one): it moves.
    svc.set_bundle_alias("pipe", "production", version=2, actor=ADMIN)
    assert svc.get_bundle("pipe", actor=ADMIN).aliases["production"] == 2


def test_consumers_resolve_bundle_aliases_only_in_the_production_view(
    services: Services, svc: RegistryService
) -> None:
    svc.set_bundle_alias("pipe", "production", version=1, actor=ADMIN)
    assert svc.get_bundle_version("pipe", alias="production", actor=CONSUMER).number == 1
    services.governance.set_policy("default", {"required_tags": {"ok": "1"}}, actor=ADMIN)
    with pytest.raises(NotFound) as err:
        svc.get_bundle_version("pipe", alias="production", actor=CONSUMER)
    assert err.value.code == "BUNDLE_VERSION_NOT_FOUND"
    with pytest.raises(PermissionDenied):
        svc.bundle_alias_history("pipe", actor=CONSUMER)


# -- editing roles and edges ------------------------------------------------------


def test_editing_roles_and_edges_pins_a_new_version_and_keeps_the_old(
    services: Services, svc: RegistryService
) -> None:
    emb = version(svc, "emb", {"inputs": [{"name": "rois", "dtype": "float32"}]})
    edges = [EDGE, {"from": "detector", "to": "embedder", "mapping": {"boxes": "rois"}}]
    bv = svc.update_bundle(
        "pipe",
        roles={"detector": "det@production", "classifier": "cls/1", "embedder": emb},
        edges=edges,
        description="three stages",
        actor=ADMIN,
    )
    assert bv.number == 2 and set(bv.members) == {"detector", "classifier", "embedder"}
    bundle = svc.get_bundle("pipe", actor=ADMIN)
    assert bundle.roles["classifier"] == "default/cls/1" and len(bundle.edges) == 2
    assert bundle.description == "three stages" and bundle.latest_version == 2
    old = svc.get_bundle_version("pipe", number=1, actor=ADMIN)
    assert set(old.members) == {"detector", "classifier"}
    assert [e.to_dict() for e in old.edges] == [EDGE]
    assert len(svc.get_bundle_version("pipe", number=2, actor=ADMIN).edges) == 2
    # Only the edges change; the roles stay.
    assert svc.update_bundle("pipe", edges=[], actor=ADMIN).edges == []
    # An edit that does not fit changes nothing.
    with pytest.raises(Conflict) as err:
        svc.update_bundle(
            "pipe",
            edges=[{"from": "classifier", "to": "embedder", "mapping": {"label": "rois"}}],
            actor=ADMIN,
        )
    assert err.value.code == "BUNDLE_INCOMPATIBLE"
    assert "classifier.label is int64 but embedder.rois takes float32" in err.value.message
    after = svc.get_bundle("pipe", actor=ADMIN)
    assert after.edges == [] and after.latest_version == 3
    with pytest.raises(InvalidInput):
        svc.update_bundle("pipe", edges=[{"from": "nobody", "to": "detector"}], actor=ADMIN)
    # Nothing to change: the same as a pin (no bundle.updated event).
    assert svc.update_bundle("pipe", actor=ADMIN).number == 4
    with pytest.raises(NotFound):
        svc.update_bundle("nope", edges=[], actor=ADMIN)
    types = [e["type"] for e in services.governance.audit(actor=ADMIN, action="bundle.").items]
    assert types[:5] == [
        "bundle.version_created",
        "bundle.version_created",
        "bundle.updated",
        "bundle.version_created",
        "bundle.updated",
    ]


# -- the guard on followed model aliases -----------------------------------------


def test_a_move_that_breaks_a_following_bundle_is_refused_naming_it(
    services: Services, svc: RegistryService
) -> None:
    retyped = version(
        svc, "det", {**DET, "outputs": [{"name": "boxes", "dtype": "float16", "shape": [-1, 4]}]}
    )
    with pytest.raises(Conflict) as err:
        svc.set_alias(retyped, "production", actor=ADMIN)
    e = err.value
    assert e.code == "BUNDLE_INCOMPATIBLE"
    assert "bundle default/pipe role detector" in e.message
    assert "edge detector->classifier: detector.boxes is float16" in e.message
    [hit] = e.details["bundles"]
    assert hit["bundle"] == "default/pipe" and hit["role"] == "detector"
    assert {
        "kind": "edge",
        "role": "classifier",
        "field": "rois",
        "problem": "detector.boxes is float16 but classifier.rois takes float32",
        "edge": "detector->classifier",
    } in hit["mismatches"]
    assert svc.get_version("det@production", actor=ADMIN).number == 1
    # Other aliases of the model are not followed: free to move.
    svc.set_alias(retyped, "staging", actor=ADMIN)
    # A compatible version moves freely.
    svc.set_alias(version(svc, "det", DET), "production", actor=ADMIN)
    # Writers cannot force; admins can, and the event says what broke.
    with pytest.raises(PermissionDenied):
        svc.set_alias(retyped, "production", actor=WRITER, force=True)
    svc.set_alias(retyped, "production", actor=ADMIN, force=True, reason="hotfix")
    moved = services.governance.audit(actor=ADMIN, action="alias.moved").items[0]
    assert moved["payload"]["forced_bundles"][0]["bundle"] == "default/pipe"


def test_guard_checks_signature_changes_and_bundles_in_other_namespaces(
    services: Services, svc: RegistryService
) -> None:
    svc.create_namespace("vision", actor=ADMIN)
    # Never pinned; follows cls@production from another namespace.
    svc.create_bundle(
        "shelf", namespace="vision", roles={"classifier": "default/cls@production"}, actor=ADMIN
    )
    dropped = version(svc, "cls", {**CLS, "outputs": []})
    with pytest.raises(Conflict) as err:
        svc.set_alias(dropped, "production", actor=ADMIN)
    bundles = {(b["bundle"], b["role"]) for b in err.value.details["bundles"]}
    assert bundles == {("default/pipe", "classifier"), ("vision/shelf", "classifier")}
    kinds = {m["kind"] for b in err.value.details["bundles"] for m in b["mismatches"]}
    assert kinds == {"change"}
    # After an edit binds the role to a number, the bundle no longer follows the alias.
    svc.update_bundle(
        "pipe", roles={"detector": "det@production", "classifier": "cls/1"}, actor=ADMIN
    )
    svc.update_bundle(
        "shelf", namespace="vision", roles={"classifier": "default/cls/1"}, actor=ADMIN
    )
    svc.set_alias(dropped, "production", actor=ADMIN)
    # An optional input added to a followed role is no break.
    svc.set_alias("cls/1", "staging", actor=ADMIN)
    svc.update_bundle(
        "pipe", roles={"detector": "det@production", "classifier": "cls@staging"}, actor=ADMIN
    )
    hint = {"name": "hint", "optional": True}
    optional = version(svc, "cls", {**CLS, "inputs": [*CLS["inputs"], hint]})
    svc.set_alias(optional, "staging", actor=ADMIN)
    assert svc.get_version("cls@staging", actor=ADMIN).ref == optional
    required = version(svc, "cls", {**CLS, "inputs": [*CLS["inputs"], {"name": "hint"}]})
    with pytest.raises(Conflict) as err2:
        svc.set_alias(required, "staging", actor=ADMIN)
    assert "added input 'hint' is required" in err2.value.message


def test_consumer_visibility_of_members_across_namespaces(
    services: Services, svc: RegistryService
) -> None:
    """The members' visibility is checked in one query over every namespace's
    production rule: each rule must still hold for its own namespace only."""
    svc.create_namespace("vision", actor=ADMIN)
    svc.create_model("ocr", namespace="vision", actor=ADMIN)
    ocr = svc.create_version(
        "ocr", VersionSpec(signature=CLS, tags={"ok": "1"}), namespace="vision", actor=ADMIN
    ).ref
    svc.transition_version(ocr, "published", actor=ADMIN)
    svc.create_bundle("mixed", roles={"detector": "det/1", "reader": ocr}, actor=ADMIN)
    svc.create_bundle_version("mixed", actor=ADMIN)
    both = Principal(
        "c2",
        roles={"default": frozenset({Role.CONSUMER}), "vision": frozenset({Role.CONSUMER})},
    )
    assert set(svc.get_bundle_version("mixed", actor=both).members) == {"detector", "reader"}
    # Only vision's rule asks for the tag, which ocr has and det lacks: det,
    # judged by default's rule, stays visible.
    services.governance.set_policy("vision", {"required_tags": {"ok": "1"}}, actor=ADMIN)
    assert svc.get_bundle_version("mixed", actor=both).number == 1
    # default's rule now hides det/1: the whole bundle version is hidden.
    services.governance.set_policy("default", {"required_tags": {"ok": "1"}}, actor=ADMIN)
    with pytest.raises(NotFound):
        svc.get_bundle_version("mixed", actor=both)
    svc.update_version("det/1", set_tags={"ok": "1"}, actor=ADMIN)
    assert svc.get_bundle_version("mixed", actor=both).number == 1
    # Consume on default only: the vision member is not visible at all.
    with pytest.raises(NotFound):
        svc.get_bundle_version("mixed", actor=CONSUMER)


def test_a_member_behind_a_protected_bundle_alias_stays_published(
    services: Services, svc: RegistryService
) -> None:
    services.governance.set_policy("default", {"protected_aliases": ["live"]}, actor=ADMIN)
    svc.set_bundle_alias("pipe", "live", version=1, actor=ADMIN)
    with pytest.raises(Conflict) as err:
        svc.transition_version("cls/1", "archived", actor=ADMIN)
    e = err.value
    assert e.code == "ALIAS_PROTECTED"
    assert e.details["bundle"] == "default/pipe" and e.details["role"] == "classifier"
    assert svc.get_version("cls/1", actor=ADMIN).state.value == "published"
    # Unprotected, the alias does not hold the member back.
    services.governance.set_policy("default", {}, actor=ADMIN)
    assert svc.transition_version("cls/1", "archived", actor=ADMIN).state.value == "archived"
