"""Deployments (issue 12): records, heartbeats, swaps, load failures, history
per environment, stale replicas computed at read time, events in the outbox,
and who may do what; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("ops")
WRITER = Principal("w", roles={"default": frozenset({Role.WRITER})})
READER = Principal("r", roles={"default": frozenset({Role.READER})})
CONSUMER = Principal("server", roles={"default": frozenset({Role.CONSUMER})})
OUTSIDER = Principal("x", roles={"other": frozenset({Role.WRITER})})


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def svc(services: Services) -> RegistryService:
    """fraud/1 and fraud/2 published, fraud/3 a draft; @production -> 1."""
    registry = services.registry
    registry.create_model("fraud", actor=ADMIN)
    for n in (1, 2, 3):
        ref = registry.create_version("fraud", VersionSpec(), actor=ADMIN).ref
        if n < 3:
            registry.transition_version(ref, "published", actor=ADMIN)
    registry.set_alias("fraud/1", "production", actor=ADMIN)
    return registry


def beat(svc: RegistryService, **kw: object) -> object:
    args: dict[str, object] = {"replica": "pod-a", "status": "ready", "version": 1}
    args.update(kw)
    actor = args.pop("actor", CONSUMER)
    env = args.pop("env", "prod-eu")
    ref = args.pop("ref", "fraud@production")
    return svc.report_heartbeat(env, ref, actor=actor, **args)  # type: ignore[arg-type]


def test_a_first_heartbeat_registers_the_deployment(svc: RegistryService) -> None:
    beat(svc, endpoint="http://10.0.0.5:8080")
    d = svc.get_deployment("prod-eu", "fraud@production", actor=READER)
    assert (d.reference, d.namespace, d.model, d.alias) == (
        "default/fraud@production",
        "default",
        "fraud",
        "production",
    )
    assert d.version == 1 and d.resolved == "default/fraud/1"
    assert d.status.value == "ready" and d.created_by == "server"
    [rep] = d.instances
    assert (rep.replica, rep.version, rep.endpoint, rep.stale) == (
        "pod-a",
        1,
        "http://10.0.0.5:8080",
        False,
    )


def test_put_records_desired_state_and_needs_write(svc: RegistryService) -> None:
    d = svc.put_deployment(
        "prod-eu", "fraud@production", replicas=3, endpoint="https://fraud.example", actor=WRITER
    )
    assert (d.replicas, d.endpoint, d.version, d.status.value) == (
        3,
        "https://fraud.example",
        None,
        "pending",
    )
    assert svc.put_deployment("prod-eu", "fraud@production", replicas=2, actor=WRITER).replicas == 2
    for who in (READER, CONSUMER, OUTSIDER):
        with pytest.raises(PermissionDenied):
            svc.put_deployment("prod-eu", "fraud@production", replicas=1, actor=who)
    with pytest.raises(NotFound) as missing:
        svc.put_deployment("prod-eu", "ghost@production", actor=WRITER)
    assert missing.value.code == "MODEL_NOT_FOUND"
    with pytest.raises(InvalidInput) as bad:
        svc.put_deployment("prod eu", "fraud@production", actor=WRITER)
    assert bad.value.code == "INVALID_ENVIRONMENT"
    with pytest.raises(InvalidInput):
        svc.put_deployment("prod-eu", "fraud@production", replicas=-1, actor=WRITER)
    with pytest.raises(InvalidInput):
        svc.put_deployment("prod-eu", "fraud@production", endpoint="ftp://x", actor=WRITER)


def test_swaps_failures_and_history_per_environment(svc: RegistryService) -> None:
    beat(svc)
    beat(svc, replica="pod-b")
    beat(svc)  # nothing changed: no history, no event
    beat(svc, env="staging", ref="fraud/2", version=2)
    svc.set_alias("fraud/2", "production", actor=ADMIN)
    beat(svc, version=2)
    beat(svc, status="degraded", version=2, failed_version=1, error="boom\nValueError: bad")
    d = svc.get_deployment("prod-eu", "fraud@production", actor=READER)
    assert d.version == 2 and d.status.value == "degraded"
    assert {r.replica: (r.status.value, r.version) for r in d.instances} == {
        "pod-a": ("degraded", 2),
        "pod-b": ("ready", 1),
    }
    history = svc.deployment_history("prod-eu", actor=READER)
    assert [(h.kind.value, h.replica, h.version, h.previous_version) for h in history] == [
        ("replica", "pod-a", 2, None),
        ("load_failed", "pod-a", 1, 2),
        ("swapped", "pod-a", 2, 1),
        ("replica", "pod-b", 1, None),
        ("replica", "pod-a", 1, None),
        ("created", None, 1, None),
    ]
    assert history[1].detail["error"].endswith("ValueError: bad")
    assert history[0].detail == {"status": "degraded", "previous_status": "ready"}
    staging = svc.deployment_history("staging", actor=READER)
    assert {h.reference for h in staging} == {"default/fraud/2"}
    page = svc.deployment_history("prod-eu", before=history[1].id, limit=2, actor=READER)
    assert [h.id for h in page] == [history[2].id, history[3].id]
    only = svc.deployment_history("prod-eu", reference="fraud@production", actor=READER)
    assert len(only) == len(history)


def test_which_deployments_follow_an_alias(svc: RegistryService) -> None:
    beat(svc)
    beat(svc, env="prod-us")
    beat(svc, env="staging", ref="fraud@latest", version=3, actor=READER)
    beat(svc, env="pinned", ref="default/fraud/1")
    follows = svc.list_deployments(follows="fraud@production", actor=READER)
    assert [(d.environment, d.reference) for d in follows] == [
        ("prod-eu", "default/fraud@production"),
        ("prod-us", "default/fraud@production"),
    ]
    running_1 = svc.list_deployments(follows="fraud/1", actor=READER)
    assert [d.environment for d in running_1] == ["pinned", "prod-eu", "prod-us"]
    assert len(svc.list_deployments(follows="fraud", actor=READER)) == 4
    assert [d.environment for d in svc.list_deployments(environment="staging", actor=ADMIN)] == [
        "staging"
    ]
    # A bare model name follows its latest version.
    assert svc.get_deployment("staging", "fraud", actor=READER).alias == "latest"
    assert svc.list_deployments(actor=OUTSIDER) == []
    with pytest.raises(PermissionDenied):
        svc.list_deployments(follows="fraud@production", actor=OUTSIDER)


def test_stale_replicas_are_computed_at_read_time(svc: RegistryService) -> None:
    beat(svc)
    beat(svc, replica="pod-b")
    assert svc.get_deployment("prod-eu", "fraud@production", actor=READER).status.value == "ready"
    # Same rows read with a zero timeout: every heartbeat is now too old.
    svc.deployment_stale_seconds = 1e-9
    d = svc.get_deployment("prod-eu", "fraud@production", actor=READER)
    assert d.status.value == "stale"
    assert all(r.stale and r.live_status == "stale" for r in d.instances)
    svc.deployment_stale_seconds = 3600.0
    assert svc.get_deployment("prod-eu", "fraud@production", actor=READER).status.value == "ready"


def test_consumers_report_only_versions_they_can_read(svc: RegistryService) -> None:
    # fraud/3 is a draft: outside the production view, as if it did not exist.
    with pytest.raises(NotFound) as hidden:
        beat(svc, version=3)
    assert hidden.value.code == "VERSION_NOT_FOUND"
    with pytest.raises(NotFound):
        beat(svc, version=1, failed_version=3)
    with pytest.raises(NotFound):
        svc.get_deployment("prod-eu", "fraud@production", actor=READER)  # nothing recorded
    beat(svc, version=3, actor=READER)  # a reader sees drafts
    with pytest.raises(PermissionDenied):
        beat(svc, actor=OUTSIDER)
    # Consumers report, but do not read deployments (they reveal drafts).
    with pytest.raises(PermissionDenied):
        svc.get_deployment("prod-eu", "fraud@production", actor=CONSUMER)
    with pytest.raises(InvalidInput):
        beat(svc, status="sleepy")
    with pytest.raises(InvalidInput):
        beat(svc, replica="bad id")
    with pytest.raises(InvalidInput):
        beat(svc, version=0)


def test_every_change_writes_an_event(services: Services, svc: RegistryService) -> None:
    beat(svc)
    beat(svc)
    svc.put_deployment("prod-eu", "fraud@production", replicas=4, actor=WRITER)
    beat(svc, version=2)
    beat(svc, status="degraded", version=2, failed_version=1, error="no")
    entries = services.governance.audit(actor=ADMIN, action="deployment.").items
    assert [e["type"] for e in reversed(entries)] == [
        "deployment.created",
        "deployment.replica",
        "deployment.updated",
        "deployment.swapped",
        "deployment.load_failed",
        "deployment.replica",
    ]
    swapped = entries[2]
    assert swapped["subject"] == "deployment:prod-eu/default/fraud@production"
    assert swapped["payload"]["version"] == 2 and swapped["payload"]["previous_version"] == 1
    assert entries[1]["payload"]["error"] == "no"


def test_delete_keeps_history_and_refuses_live_replicas(
    services: Services, svc: RegistryService
) -> None:
    beat(svc)
    beat(svc, env="staging")
    with pytest.raises(Conflict) as active:
        svc.delete_deployment("prod-eu", "fraud@production", actor=WRITER)
    assert active.value.code == "DEPLOYMENT_ACTIVE"
    assert active.value.details["replicas"] == ["pod-a"]
    for who in (READER, CONSUMER, OUTSIDER):
        with pytest.raises(PermissionDenied):
            svc.delete_deployment("prod-eu", "fraud@production", force=True, actor=who)
    # Once its replicas are stale, no force is needed.
    svc.deployment_stale_seconds = 1e-9
    gone = svc.delete_deployment("prod-eu", "fraud@production", actor=WRITER)
    svc.deployment_stale_seconds = 3600.0
    assert gone.version == 1 and [r.replica for r in gone.instances] == ["pod-a"]
    with pytest.raises(NotFound) as missing:
        svc.get_deployment("prod-eu", "fraud@production", actor=READER)
    assert missing.value.code == "DEPLOYMENT_NOT_FOUND"
    with pytest.raises(NotFound):
        svc.delete_deployment("prod-eu", "fraud@production", actor=WRITER)
    assert [d.environment for d in svc.list_deployments(actor=READER)] == ["staging"]
    assert svc.list_deployments(follows="fraud@production", actor=READER)[0].environment == (
        "staging"
    )
    history = svc.deployment_history("prod-eu", actor=READER)
    assert [(h.kind.value, h.actor) for h in history] == [
        ("deleted", "w"),
        ("replica", "server"),
        ("created", "server"),
    ]
    assert history[0].detail == {"forced": False, "live_replicas": []}
    # Forced while alive: recorded as such.
    svc.delete_deployment("staging", "fraud@production", force=True, actor=WRITER)
    [forced] = svc.deployment_history("staging", limit=1, actor=READER)
    assert forced.detail == {"forced": True, "live_replicas": ["pod-a"]}
    assert svc.list_deployments(actor=READER) == []
    # Recorded again: the same history reads on, the replicas start afresh.
    beat(svc, replica="pod-b", version=1)
    again = svc.get_deployment("prod-eu", "fraud@production", actor=READER)
    assert [r.replica for r in again.instances] == ["pod-b"] and again.created_by == "server"
    kinds = [h.kind.value for h in svc.deployment_history("prod-eu", actor=READER)]
    assert kinds == ["replica", "created", "deleted", "replica", "created"]
    recreated = svc.deployment_history("prod-eu", actor=READER)[1]
    assert recreated.detail["recreated"] is True
    svc.put_deployment("staging", "fraud@production", replicas=2, actor=WRITER)
    assert svc.get_deployment("staging", "fraud@production", actor=READER).replicas == 2
    types = [
        e["type"] for e in services.governance.audit(actor=ADMIN, action="deployment.deleted").items
    ]
    assert types == ["deployment.deleted", "deployment.deleted"]


def test_desired_version_beside_the_running_one(svc: RegistryService) -> None:
    beat(svc)
    d = svc.get_deployment("prod-eu", "fraud@production", actor=READER)
    assert (d.version, d.desired_version, d.desired, d.drift) == (1, 1, "default/fraud/1", False)
    # The alias moves; the servers have not followed yet: drift.
    svc.set_alias("fraud/2", "production", actor=ADMIN)
    d = svc.get_deployment("prod-eu", "fraud@production", actor=READER)
    assert (d.version, d.desired_version, d.drift) == (1, 2, True)
    assert [x.drift for x in svc.list_deployments(actor=READER)] == [True]
    beat(svc, version=2)
    d = svc.get_deployment("prod-eu", "fraud@production", actor=READER)
    assert (d.version, d.desired_version, d.drift) == (2, 2, False)
    # One replica left behind is drift too.
    beat(svc, replica="pod-b", version=1)
    assert svc.get_deployment("prod-eu", "fraud@production", actor=READER).drift is True
    # A pinned reference names its own number; latest the newest ready or published.
    beat(svc, env="pinned", ref="fraud/1")
    assert svc.get_deployment("pinned", "fraud/1", actor=READER).desired_version == 1
    beat(svc, env="edge", ref="fraud", version=1)
    latest = svc.get_deployment("edge", "fraud", actor=READER)
    assert (latest.desired_version, latest.drift) == (3, True)
    # An alias that names nothing: no desired version, no drift claimed.
    svc.put_deployment("prod-eu", "fraud@canary", actor=WRITER)
    canary = svc.get_deployment("prod-eu", "fraud@canary", actor=READER)
    assert (canary.desired_version, canary.drift) == (None, False)
