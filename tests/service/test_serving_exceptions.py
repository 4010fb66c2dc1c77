"""Serving exceptions (issue 12): an admin records, with a reason, that the
model server may unpickle one version; audited; a consumer (the model
server's token) reads them for versions it can see; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import InvalidInput, NotFound, PermissionDenied
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ROOT = Principal.local("ops")
ADMIN = Principal("a", roles={"default": frozenset({Role.ADMIN})})
WRITER = Principal("w", roles={"default": frozenset({Role.WRITER})})
CONSUMER = Principal("server", roles={"default": frozenset({Role.CONSUMER})})
OUTSIDER = Principal("x", roles={"other": frozenset({Role.ADMIN})})


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def svc(services: Services) -> RegistryService:
    """m/1 published, m/2 ready (outside the production view)."""
    registry = services.registry
    registry.create_model("m", actor=ROOT)
    for _ in (1, 2):
        registry.create_version("m", VersionSpec(), actor=ROOT)
    registry.transition_version("m/1", "published", actor=ROOT)
    return registry


def test_grant_read_revoke_and_audit(services: Services, svc: RegistryService) -> None:
    assert svc.serving_exceptions("m/1", actor=CONSUMER) == []
    made = svc.grant_serving_exception("m/1", "pickle", reason=" legacy model ", actor=ADMIN)
    assert (made.kind, made.reason, made.granted_by) == ("pickle", "legacy model", "a")
    [seen] = svc.serving_exceptions("m/1", actor=CONSUMER)
    assert seen == made
    # Granting again replaces it (one per kind); aliases resolve.
    svc.set_alias("m/1", "production", actor=ROOT)
    svc.grant_serving_exception("m@production", "pickle", reason="re-reviewed", actor=ADMIN)
    assert [e.reason for e in svc.serving_exceptions("m/1", actor=WRITER)] == ["re-reviewed"]
    svc.revoke_serving_exception("m/1", "pickle", actor=ADMIN)
    assert svc.serving_exceptions("m/1", actor=CONSUMER) == []
    with pytest.raises(NotFound) as none:
        svc.revoke_serving_exception("m/1", "pickle", actor=ADMIN)
    assert none.value.code == "SERVING_EXCEPTION_NOT_FOUND"
    events = [
        e
        for e in services.governance.audit(actor=ROOT, action="version.").items
        if e["type"].startswith("version.serving_exception")
    ]
    assert [(e["type"], e["actor"], e["subject"]) for e in reversed(events)] == [
        ("version.serving_exception_granted", "a", "default/m/1"),
        ("version.serving_exception_granted", "a", "default/m/1"),
        ("version.serving_exception_revoked", "a", "default/m/1"),
    ]
    assert events[-1]["payload"] == {"version": 1, "kind": "pickle", "reason": "legacy model"}


def test_who_may_grant_and_read(svc: RegistryService) -> None:
    for who in (WRITER, CONSUMER, OUTSIDER):
        with pytest.raises(PermissionDenied):
            svc.grant_serving_exception("m/1", "pickle", reason="x", actor=who)
    svc.grant_serving_exception("m/2", "pickle", reason="x", actor=ADMIN)
    with pytest.raises(PermissionDenied):
        svc.revoke_serving_exception("m/2", "pickle", actor=WRITER)
    # m/2 is outside the production view: a consumer does not see it at all.
    with pytest.raises(NotFound) as hidden:
        svc.serving_exceptions("m/2", actor=CONSUMER)
    assert hidden.value.code == "VERSION_NOT_FOUND"
    assert len(svc.serving_exceptions("m/2", actor=WRITER)) == 1
    with pytest.raises(PermissionDenied):
        svc.serving_exceptions("m/1", actor=OUTSIDER)


@pytest.mark.parametrize(
    ("kind", "reason"), [("pickle", ""), ("pickle", "   "), ("torch", "x"), ("pickle", "x" * 5000)]
)
def test_bad_grants(svc: RegistryService, kind: str, reason: str) -> None:
    with pytest.raises(InvalidInput):
        svc.grant_serving_exception("m/1", kind, reason=reason, actor=ADMIN)


def test_unknown_versions(svc: RegistryService) -> None:
    with pytest.raises(NotFound):
        svc.grant_serving_exception("m/9", "pickle", reason="x", actor=ADMIN)
    with pytest.raises(NotFound):
        svc.serving_exceptions("ghost/1", actor=ADMIN)


@pytest.mark.parametrize(
    ("namespace", "model", "allowed"),
    [
        (None, None, False),
        (True, None, True),
        (True, False, False),
        (None, True, False),  # a model policy cannot grant it
        (False, True, False),
    ],
)
def test_custom_code_is_the_namespace_policys_to_allow(
    svc: RegistryService,
    services: Services,
    namespace: bool | None,
    model: bool | None,
    allowed: bool,
) -> None:
    gov = services.governance
    if namespace is not None:
        gov.set_policy("default", {"allow_custom_code": namespace}, actor=ADMIN)
    if model is not None:
        gov.set_policy("default", {"allow_custom_code": model}, model="m", actor=ADMIN)
    assert svc.custom_code_allowed("m/1", actor=CONSUMER) is allowed
    with pytest.raises(NotFound):
        svc.custom_code_allowed("m/2", actor=CONSUMER)  # outside the production view


def test_custom_code_knob_must_be_a_boolean(services: Services) -> None:
    with pytest.raises(InvalidInput) as bad:
        services.governance.set_policy("default", {"allow_custom_code": "yes"}, actor=ADMIN)
    assert bad.value.code == "INVALID_POLICY"
