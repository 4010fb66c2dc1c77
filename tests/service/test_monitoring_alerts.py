"""Monitoring alerts and the automatic rollback (issue 12), on SQLite and
PostgreSQL: drift and degradation alerts become history entries and events;
a deployment that opted in has its alias rolled back through the governed
rollback (policy, audit, events), once, never onto a version an automatic
rollback left; who may do what."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import InvalidInput, NotFound, PermissionDenied
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("ops")
WRITER = Principal("w", roles={"default": frozenset({Role.WRITER})})
CONSUMER = Principal("server", roles={"default": frozenset({Role.CONSUMER})})
OUTSIDER = Principal("x", roles={"other": frozenset({Role.WRITER})})
ENV, REF = "prod-eu", "fraud@production"
ROLLBACK = {"rollback": True, "rollback_after_seconds": 30, "error_rate": 0.1}
BAD = {"reasons": ["error_rate"], "error_rate": 0.6, "requests": 50}


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def svc(services: Services) -> RegistryService:
    """fraud/1..3 published; @production moved 1 -> 2; a server reported on it."""
    registry = services.registry
    registry.create_model("fraud", actor=ADMIN)
    for _ in range(3):
        ref = registry.create_version("fraud", VersionSpec(), actor=ADMIN).ref
        registry.transition_version(ref, "published", actor=ADMIN)
    registry.set_alias("fraud/1", "production", actor=ADMIN)
    registry.set_alias("fraud/2", "production", actor=ADMIN)
    registry.report_heartbeat(ENV, REF, replica="pod-a", status="ready", version=2, actor=CONSUMER)
    return registry


def alert(svc: RegistryService, kind: str = "degraded", **kw: object) -> dict[str, object]:
    args: dict[str, object] = {"replica": "pod-a", "version": 2, "detail": BAD}
    args.update(kw)
    actor = args.pop("actor", CONSUMER)
    return svc.report_alert(ENV, REF, kind=kind, actor=actor, **args)  # type: ignore[arg-type]


def production(svc: RegistryService) -> int:
    return svc.get_version("fraud@production", actor=ADMIN).number


def test_drift_alert_is_history_and_an_event(services: Services, svc: RegistryService) -> None:
    detail = {"features": {"age": {"psi": 0.9, "ks": 0.4, "count": 100}}}
    out = alert(svc, "drift", detail=detail)
    assert out["kind"] == "drift" and out["rollback"] is None
    [entry] = svc.deployment_history(ENV, limit=1, actor=ADMIN)
    assert (entry.kind.value, entry.version, entry.replica, entry.actor) == (
        "drift",
        2,
        "pod-a",
        "server",
    )
    assert entry.detail["features"]["age"]["psi"] == 0.9
    [event] = services.governance.audit(actor=ADMIN, action="deployment.drift").items
    assert event["subject"] == "deployment:prod-eu/default/fraud@production"
    assert production(svc) == 2


def test_degraded_without_opt_in_changes_no_alias(svc: RegistryService) -> None:
    out = alert(svc, sustained_seconds=3600)
    assert out["rollback"] is None
    assert production(svc) == 2


def test_opted_in_rollback_is_governed_audited_and_once(
    services: Services, svc: RegistryService
) -> None:
    svc.put_deployment(ENV, REF, monitoring=ROLLBACK, actor=WRITER)
    # Not held long enough yet: an alert, no rollback.
    assert alert(svc, sustained_seconds=5)["rollback"] is None
    assert production(svc) == 2
    out = alert(svc, sustained_seconds=31)
    assert out["rollback"] == {"done": True, "from_version": 2, "to_version": 1}
    assert production(svc) == 1
    [moved] = services.governance.audit(actor=ADMIN, action="alias.moved").items[:1]
    payload = moved["payload"]
    assert (payload["from_version"], payload["to_version"], payload["rollback"]) == (2, 1, True)
    assert payload["automatic"] is True and payload["replica"] == "pod-a"
    assert payload["deployment"] == "prod-eu/default/fraud@production"
    assert moved["actor"] == "server"
    kinds = [
        (h.kind.value, h.version, h.previous_version)
        for h in svc.deployment_history(ENV, actor=ADMIN)
    ]
    assert kinds[:2] == [("rolled_back", 1, 2), ("degraded", 2, None)]
    [rolled] = services.governance.audit(actor=ADMIN, action="deployment.rolled_back").items
    assert rolled["payload"]["alias"] == "production"
    # A second replica's report about version 2 finds the alias moved: nothing more.
    again = alert(svc, replica="pod-b", sustained_seconds=40)
    assert again["rollback"]["done"] is False  # type: ignore[index]
    assert again["rollback"]["code"] == "ALIAS_CHANGED"  # type: ignore[index]
    assert production(svc) == 1


def test_never_rolls_back_onto_a_version_it_left(svc: RegistryService) -> None:
    svc.put_deployment(ENV, REF, monitoring=ROLLBACK, actor=WRITER)
    assert alert(svc, sustained_seconds=60)["rollback"]["done"] is True  # type: ignore[index]
    # Version 1 degrades too: rolling back would return to 2, which an
    # automatic rollback just left.
    out = alert(svc, version=1, sustained_seconds=60)
    assert out["rollback"]["code"] == "ROLLBACK_LOOP"  # type: ignore[index]
    assert production(svc) == 1
    # An operator's own moves are not limited by it.
    svc.set_alias("fraud/3", "production", actor=WRITER)
    assert production(svc) == 3


def test_rollback_refused_by_the_policy_changes_nothing(
    services: Services, svc: RegistryService
) -> None:
    svc.put_deployment(ENV, REF, monitoring=ROLLBACK, actor=WRITER)
    svc.update_version("fraud/1", set_tags={"scan": "failed"}, actor=ADMIN)
    svc.update_version("fraud/2", set_tags={"scan": "clean"}, actor=ADMIN)
    services.governance.set_policy(
        "default",
        {"protected_aliases": ["production"], "required_tags": {"scan": "clean"}},
        actor=ADMIN,
    )
    out = alert(svc, sustained_seconds=60)
    assert out["rollback"]["done"] is False  # type: ignore[index]
    assert out["rollback"]["code"] == "POLICY_VIOLATION"  # type: ignore[index]
    assert production(svc) == 2
    [entry] = svc.deployment_history(ENV, limit=1, actor=ADMIN)
    assert entry.kind.value == "degraded" and entry.detail["rollback"]["done"] is False


def test_permissions_and_validation(svc: RegistryService) -> None:
    with pytest.raises(PermissionDenied):
        alert(svc, actor=OUTSIDER)
    # Version 3 is published, so a consumer may report it; a draft is invisible.
    svc.create_version("fraud", VersionSpec(), actor=ADMIN)
    with pytest.raises(NotFound) as err:
        alert(svc, version=4)
    assert err.value.code == "VERSION_NOT_FOUND"
    with pytest.raises(InvalidInput) as bad:
        alert(svc, kind="boom")
    assert bad.value.code == "INVALID_ALERT"
    for detail in ({"x": "nul\x00"}, {"x": "\ud800"}, {"x": 2**70}, {"x": "y" * 20000}):
        with pytest.raises(InvalidInput) as bad:
            alert(svc, detail=detail)
        assert bad.value.code == "INVALID_ALERT"
    with pytest.raises(NotFound) as missing:
        svc.report_alert("staging", REF, replica="a", kind="drift", version=2, actor=CONSUMER)
    assert missing.value.code == "DEPLOYMENT_NOT_FOUND"
    # Opting in needs write: a consumer cannot record settings.
    with pytest.raises(PermissionDenied):
        svc.put_deployment(ENV, REF, monitoring=ROLLBACK, actor=CONSUMER)
    with pytest.raises(InvalidInput) as settings:
        svc.put_deployment(ENV, REF, monitoring={"rollback": "yes"}, actor=WRITER)
    assert settings.value.code == "INVALID_DEPLOYMENT"
    with pytest.raises(InvalidInput):
        svc.put_deployment(ENV, REF, monitoring={"window_seconds": 0.5}, actor=WRITER)
    with pytest.raises(InvalidInput):
        svc.put_deployment(ENV, REF, monitoring={"nope": 1}, actor=WRITER)
    d = svc.put_deployment(ENV, REF, monitoring={"window_seconds": 2}, actor=WRITER)
    assert d.monitoring.window_seconds == 2.0 and d.monitoring.rollback is False
