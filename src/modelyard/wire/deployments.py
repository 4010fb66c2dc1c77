"""JSON shape of deployments, their replicas and history (issue 12), shared
by REST v1 and the SDK's embedded backend."""

from __future__ import annotations

from typing import Any

from modelyard.domain.deployments import Deployment, HistoryEntry, Replica
from modelyard.domain.policies import Policy
from modelyard.wire.render import iso


def replica(r: Replica) -> dict[str, Any]:
    """Wire shape of one replica's last heartbeat; ``status`` is ``stale`` when
    the heartbeat is older than the server's timeout (``reported_status`` keeps
    what the replica said); ``measures`` its monitoring window at that
    heartbeat (None if it sent none)."""
    return {
        "replica": r.replica,
        "status": r.live_status,
        "reported_status": r.status.value,
        "stale": r.stale,
        "version": r.version,
        "endpoint": r.endpoint,
        "error": r.error,
        "started_at": iso(r.started_at),
        "heartbeat_at": iso(r.heartbeat_at),
        "measures": r.measures,
    }


def deployment(d: Deployment) -> dict[str, Any]:
    """Wire shape of a deployment with its replicas: ``version``/``resolved``
    is what its replicas run, ``desired_version``/``desired`` what its
    reference names now, ``drift`` whether the two differ."""
    return {
        "environment": d.environment,
        "reference": d.reference,
        "namespace": d.namespace,
        "model": d.model,
        "alias": d.alias,
        "version": d.version,
        "resolved": d.resolved,
        "desired_version": d.desired_version,
        "desired": d.desired,
        "drift": d.drift,
        "status": d.status.value,
        "replicas": d.replicas,
        "endpoint": d.endpoint,
        "instances": [replica(r) for r in d.instances],
        "monitoring": d.monitoring.to_dict(),
        "created_by": d.created_by,
        "created_at": iso(d.created_at),
        "updated_by": d.updated_by,
        "updated_at": iso(d.updated_at),
    }


def history_entry(h: HistoryEntry) -> dict[str, Any]:
    """Wire shape of one entry of an environment's deployment history."""
    return {
        "id": h.id,
        "environment": h.environment,
        "reference": h.reference,
        "kind": h.kind.value,
        "version": h.version,
        "previous_version": h.previous_version,
        "replica": h.replica,
        "actor": h.actor,
        "at": iso(h.at),
        "detail": h.detail,
    }


def serving_policy(policy: Policy) -> dict[str, Any]:
    """What a model server takes from its model's effective production policy."""
    drift = policy.drift_thresholds
    return {
        "custom_code_allowed": policy.allow_custom_code is True,
        "drift_thresholds": None if drift is None else dict(drift),
    }
