"""Approval requests for protected bundle aliases (issue 14), on SQLite and
PostgreSQL: request, review by another user, the move applied at the N-th
approval, compare-and-set against a moved alias, reject and cancel, events
and audit; an approved bundle move stands for the approvals of members in
the bundle's namespace only."""

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
REVIEWER = Principal("r", roles={"default": frozenset({Role.REVIEWER})})
REVIEWER2 = Principal("r2", roles={"default": frozenset({Role.REVIEWER})})
BOTH = Principal("wr", roles={"default": frozenset({Role.WRITER, Role.REVIEWER})})

DET = {"outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}]}
CLS = {"inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}]}
EDGE = {"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}}


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        yield built
    finally:
        built.close()


def published(
    svc: RegistryService, name: str, signature: dict[str, Any], ns: str = "default"
) -> str:
    with contextlib.suppress(AlreadyExists):
        svc.create_model(name, namespace=ns, actor=ADMIN)
    ref = svc.create_version(name, VersionSpec(signature=signature), namespace=ns, actor=ADMIN).ref
    svc.transition_version(ref, "published", actor=ADMIN)
    return ref


@pytest.fixture
def svc(services: Services) -> RegistryService:
    """pipe/1 = det/1 + cls/1 (both their model's @production), pipe/2 = det/2
    + cls/1 (det/2 published, not det@production); pipe@production -> 1; the
    namespace protects @production with one approval."""
    reg = services.registry
    for name, sig in (("det", DET), ("cls", CLS)):
        reg.set_alias(published(reg, name, sig), "production", actor=ADMIN)
    roles = {"detector": "det@production", "classifier": "cls@production"}
    reg.create_bundle("pipe", roles=roles, edges=[EDGE], actor=ADMIN)
    reg.create_bundle_version("pipe", actor=ADMIN)
    reg.set_bundle_alias("pipe", "production", version=1, actor=ADMIN)
    published(reg, "det", DET)
    reg.update_bundle("pipe", roles={**roles, "detector": "det/2"}, actor=ADMIN)
    services.governance.set_policy(
        "default", {"protected_aliases": ["production"], "required_approvals": 1}, actor=ADMIN
    )
    return reg


def test_a_protected_bundle_alias_moves_through_an_approved_request(
    services: Services, svc: RegistryService
) -> None:
    with pytest.raises(Conflict) as direct:
        svc.set_bundle_alias("pipe", "production", version=2, actor=WRITER)
    assert direct.value.code == "APPROVAL_REQUIRED"
    assert "bundle approval request default/pipe@2 production" in direct.value.message
    a = svc.request_bundle_approval(
        "pipe", "production", version=2, comment="new det", actor=WRITER
    )
    assert (a.ref, a.alias, a.alias_from, a.state.value) == (
        "default/pipe/2",
        "production",
        1,
        "pending",
    )
    assert [x.id for x in svc.list_bundle_approvals("pipe", actor=REVIEWER)] == [a.id]
    with pytest.raises(Conflict) as twice:
        svc.request_bundle_approval("pipe", "production", version=2, actor=WRITER)
    assert twice.value.code == "APPROVAL_ALREADY_PENDING"
    with pytest.raises(PermissionDenied):  # writers do not review
        svc.approve_bundle_approval("pipe", a.id, actor=WRITER)
    with pytest.raises(PermissionDenied) as own:
        svc.request_bundle_approval("pipe", "canary", version=2, actor=REVIEWER)
    assert own.value.code == "PERMISSION_DENIED"
    done = svc.approve_bundle_approval("pipe", a.id, comment="ok", actor=REVIEWER)
    assert done.state.value == "applied" and done.approvers == ["r"] and done.decided_by == "r"
    assert svc.get_bundle("pipe", actor=ADMIN).aliases["production"] == 2
    # The model alias did not move: the request was about the bundle's.
    assert svc.get_version("det@production", actor=ADMIN).number == 1
    [last] = svc.bundle_alias_history("pipe", alias="production", actor=ADMIN)[-1:]
    assert (last.from_version, last.to_version, last.actor) == (1, 2, "r")
    assert last.reason == f"approval #{a.id}: new det"
    entries = services.governance.audit(actor=ADMIN, action="bundle.*").items
    kinds = [e["type"] for e in entries[:4]]
    assert kinds == [
        "bundle.approval_applied",
        "bundle.alias_moved",
        "bundle.approval_approved",
        "bundle.approval_requested",
    ]
    assert entries[0]["subject"] == "bundle:default/pipe/2"
    assert entries[1]["payload"]["approval_id"] == a.id
    assert svc.get_bundle_approval("pipe", a.id, actor=WRITER).state.value == "applied"
    with pytest.raises(Conflict) as closed:
        svc.approve_bundle_approval("pipe", a.id, actor=REVIEWER2)
    assert closed.value.code == "APPROVAL_NOT_PENDING"
    assert svc.list_bundle_approvals("pipe", actor=ADMIN) == []
    assert len(svc.list_bundle_approvals("pipe", state=None, actor=ADMIN)) == 1


def test_n_approvals_self_review_reject_cancel_and_a_moved_alias(
    services: Services, svc: RegistryService
) -> None:
    services.governance.set_policy(
        "default", {"protected_aliases": ["production"], "required_approvals": 2}, actor=ADMIN
    )
    a = svc.request_bundle_approval("pipe", "production", version=2, actor=BOTH)
    with pytest.raises(PermissionDenied) as own:
        svc.approve_bundle_approval("pipe", a.id, actor=BOTH)
    assert own.value.code == "SELF_APPROVAL"
    assert svc.approve_bundle_approval("pipe", a.id, actor=REVIEWER2).state.value == "pending"
    with pytest.raises(Conflict) as again:
        svc.approve_bundle_approval("pipe", a.id, actor=REVIEWER2)
    assert again.value.code == "ALREADY_REVIEWED"
    # Another approved request moves the alias meanwhile.
    assert svc.create_bundle_version("pipe", actor=ADMIN).number == 3
    b = svc.request_bundle_approval("pipe", "production", version=3, actor=WRITER)
    svc.approve_bundle_approval("pipe", b.id, actor=REVIEWER2)
    assert svc.approve_bundle_approval("pipe", b.id, actor=ADMIN).state.value == "applied"
    with pytest.raises(Conflict) as moved:
        svc.approve_bundle_approval("pipe", a.id, actor=ADMIN)
    assert moved.value.code == "ALIAS_CHANGED" and moved.value.details["actual"] == 3
    assert svc.get_bundle_approval("pipe", a.id, actor=ADMIN).state.value == "pending"
    with pytest.raises(PermissionDenied) as other:
        svc.cancel_bundle_approval("pipe", a.id, actor=WRITER)
    assert other.value.code == "NOT_REQUESTER"
    assert svc.cancel_bundle_approval("pipe", a.id, actor=BOTH).state.value == "cancelled"
    c = svc.request_bundle_approval("pipe", "production", version=1, actor=WRITER)
    with pytest.raises(PermissionDenied) as self_reject:
        svc.reject_bundle_approval("pipe", c.id, actor=WRITER)
    assert self_reject.value.code == "PERMISSION_DENIED"
    rejected = svc.reject_bundle_approval("pipe", c.id, comment="no", actor=REVIEWER)
    assert rejected.state.value == "rejected" and rejected.votes[0].decision == "reject"
    assert svc.get_bundle("pipe", actor=ADMIN).aliases["production"] == 3
    types = {
        e["type"] for e in services.governance.audit(actor=ADMIN, action="bundle.approval_*").items
    }
    assert {"bundle.approval_cancelled", "bundle.approval_rejected"} <= types


def test_requests_are_checked_and_scoped_to_their_bundle(
    services: Services, svc: RegistryService
) -> None:
    with pytest.raises(NotFound) as nover:
        svc.request_bundle_approval("pipe", "production", version=9, actor=WRITER)
    assert nover.value.code == "BUNDLE_VERSION_NOT_FOUND"
    for bad in ("latest", "Bad Alias"):
        with pytest.raises(InvalidInput):
            svc.request_bundle_approval("pipe", bad, version=2, actor=WRITER)
    with pytest.raises(InvalidInput):
        svc.list_bundle_approvals("pipe", state="open", actor=ADMIN)
    # A member short of its policy: refused at once, not left to reviewers.
    services.governance.set_policy(
        "default",
        {
            "protected_aliases": ["production"],
            "required_approvals": 1,
            "required_tags": {"ok": "1"},
        },
        actor=ADMIN,
    )
    with pytest.raises(PolicyViolation):
        svc.request_bundle_approval("pipe", "production", version=2, actor=WRITER)
    services.governance.set_policy(
        "default", {"protected_aliases": ["production"], "required_approvals": 1}, actor=ADMIN
    )
    a = svc.request_bundle_approval("pipe", "production", version=2, actor=WRITER)
    svc.create_bundle("other", roles={"classifier": "cls/1"}, actor=ADMIN)
    with pytest.raises(NotFound) as elsewhere:
        svc.approve_bundle_approval("other", a.id, actor=REVIEWER)
    assert elsewhere.value.code == "APPROVAL_NOT_FOUND"
    # Deleting the bundle deletes its requests.
    svc.delete_bundle("pipe", force=True, actor=ADMIN)
    with pytest.raises(NotFound):
        svc.get_bundle_approval("pipe", a.id, actor=ADMIN)


def test_members_from_other_namespaces_keep_their_own_approvals(
    services: Services, svc: RegistryService
) -> None:
    svc.create_namespace("vision", actor=ADMIN)
    svc.set_alias(published(svc, "ext", DET, ns="vision"), "production", actor=ADMIN)
    ext2 = published(svc, "ext", DET, ns="vision")
    services.governance.set_policy(
        "vision", {"protected_aliases": ["production"], "required_approvals": 1}, actor=ADMIN
    )
    svc.create_bundle(
        "mixed", roles={"detector": ext2, "classifier": "cls@production"}, edges=[EDGE], actor=ADMIN
    )
    svc.create_bundle_version("mixed", actor=ADMIN)
    a = svc.request_bundle_approval("mixed", "production", version=1, actor=WRITER)
    with pytest.raises(Conflict) as err:
        svc.approve_bundle_approval("mixed", a.id, actor=REVIEWER)
    assert err.value.code == "APPROVAL_REQUIRED"
    assert [v["role"] for v in err.value.details["violations"]] == ["detector"]
    assert svc.get_bundle_approval("mixed", a.id, actor=ADMIN).state.value == "pending"
