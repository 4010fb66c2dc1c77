"""Deployments (issue 12): what runs where, as the registry knows it.

A deployment is one reference (``fraud@production``, ``team/fraud/7``)
followed in one environment (``prod-eu``). Its model servers (replicas)
report on it: each heartbeat carries the replica's status and the version
it has loaded. The deployment's *resolved version* is the version its
replicas last reported loading; a change of it is a swap, recorded in the
history of the environment.

Staleness is computed when read, never stored: a replica whose last
heartbeat is older than the configured timeout shows as ``stale`` (no
background job marks it). The deployment's status is derived from its live
replicas::

    no replica reported yet           -> pending
    every replica stale               -> stale
    any live replica failed/degraded  -> degraded
    every live replica ready          -> ready
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from modelyard.domain.errors import InvalidInput
from modelyard.domain.monitoring import MonitorSettings

_ENV_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")
_REPLICA_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_ENDPOINT: Final = 2048
MAX_ERROR: Final = 4096
MAX_REPLICAS: Final = 10_000


class ReplicaStatus(StrEnum):
    """What a model server says about itself in a heartbeat."""

    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"
    FAILED = "failed"


class DeploymentStatus(StrEnum):
    """A deployment's status, derived at read time from its replicas."""

    PENDING = "pending"
    READY = "ready"
    DEGRADED = "degraded"
    STALE = "stale"


class HistoryKind(StrEnum):
    """What an entry of a deployment's history records (one event type each)."""

    CREATED = "created"
    UPDATED = "updated"
    SWAPPED = "swapped"
    LOAD_FAILED = "load_failed"
    REPLICA = "replica"
    """A replica joined, or its status changed."""
    DRIFT = "drift"
    """A model server saw its inputs drift from the version's reference statistics."""
    DEGRADED = "degraded"
    """A model server saw errors or latency cross the deployment's thresholds."""
    ROLLED_BACK = "rolled_back"
    """The followed alias was rolled back automatically (see ``MonitorSettings``)."""
    DELETED = "deleted"
    """The deployment was deleted (its history stays)."""


def validate_environment(value: Any) -> str:
    """Return ``value`` if it is a valid environment name (``prod-eu``), else raise."""
    if not isinstance(value, str) or not _ENV_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid environment {value!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter",
            code="INVALID_ENVIRONMENT",
            details={"value": value if isinstance(value, str) else None},
        )
    return value


def validate_replica(value: Any) -> str:
    """Return ``value`` if it is a valid replica id (``host-1234``, ``pod:abc``), else raise."""
    if not isinstance(value, str) or not _REPLICA_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid replica id {value!r}",
            code="INVALID_DEPLOYMENT",
            details={"field": "replica"},
        )
    return value


def validate_endpoint(value: Any) -> str | None:
    """An endpoint URL (http or https), or None."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or len(value) > MAX_ENDPOINT
        or not value.startswith(("http://", "https://"))
        or any(c.isspace() for c in value)
    ):
        raise InvalidInput(
            "endpoint must be an http(s) URL of at most 2048 characters",
            code="INVALID_DEPLOYMENT",
            details={"field": "endpoint"},
        )
    return value


def validate_replicas(value: Any) -> int:
    """The desired replica count (0 to :data:`MAX_REPLICAS`)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_REPLICAS:
        raise InvalidInput(
            f"replicas must be an integer from 0 to {MAX_REPLICAS}",
            code="INVALID_DEPLOYMENT",
            details={"field": "replicas"},
        )
    return value


def parse_replica_status(value: Any) -> ReplicaStatus:
    """A heartbeat's status."""
    try:
        return ReplicaStatus(value)
    except ValueError:
        raise InvalidInput(
            f"invalid replica status {value!r}: use " + ", ".join(s.value for s in ReplicaStatus),
            code="INVALID_DEPLOYMENT",
            details={"field": "status"},
        ) from None


@dataclass(frozen=True, slots=True)
class Replica:
    """One model server of a deployment, as of its last heartbeat."""

    replica: str
    status: ReplicaStatus
    version: int | None
    endpoint: str | None
    error: str | None
    started_at: int
    heartbeat_at: int
    stale: bool
    measures: dict[str, Any] | None = None
    """The monitoring window as of the last heartbeat (see
    ``serving/monitor.py``'s snapshot): requests, error rate, latency
    percentiles, per-feature PSI and KS, and the thresholds they are judged
    by; None if the server sent none."""

    @property
    def live_status(self) -> str:
        """``stale`` when its heartbeat is too old, else what it reported."""
        return "stale" if self.stale else self.status.value


def is_stale(heartbeat_at: int, now: int, stale_after_us: int) -> bool:
    """True if a heartbeat at ``heartbeat_at`` is older than the timeout at ``now``."""
    return now - heartbeat_at > stale_after_us


def derive_status(replicas: list[Replica]) -> DeploymentStatus:
    """The deployment status rule of the module docstring."""
    if not replicas:
        return DeploymentStatus.PENDING
    live = [r for r in replicas if not r.stale]
    if not live:
        return DeploymentStatus.STALE
    if all(r.status is ReplicaStatus.READY for r in live):
        return DeploymentStatus.READY
    if all(r.status is ReplicaStatus.STARTING for r in live):
        return DeploymentStatus.PENDING
    return DeploymentStatus.DEGRADED


@dataclass(frozen=True, slots=True)
class Deployment:
    """A reference followed in an environment, with its replicas' heartbeats."""

    environment: str
    reference: str
    namespace: str
    model: str
    alias: str | None
    version: int | None
    replicas: int
    endpoint: str | None
    created_by: str
    created_at: int
    updated_by: str
    updated_at: int
    instances: list[Replica] = field(default_factory=list)
    monitoring: MonitorSettings = field(default_factory=MonitorSettings)
    """How its model servers watch it, and whether they may roll it back."""
    desired_version: int | None = None
    """The version the reference resolves to now (None: it resolves to none,
    e.g. an alias not set); what the replicas should be running."""

    @property
    def drift(self) -> bool:
        """True when what runs differs from what the reference names now: the
        recorded version or a live replica's version is not the desired one
        (an alias moved and the servers have not followed, or cannot)."""
        want = self.desired_version
        if want is None:
            return False
        if self.version is not None and self.version != want:
            return True
        return any(not r.stale and r.version not in (None, want) for r in self.instances)

    @property
    def desired(self) -> str | None:
        """``ns/model/N`` of the desired version, if the reference resolves."""
        if self.desired_version is None:
            return None
        return f"{self.namespace}/{self.model}/{self.desired_version}"

    @property
    def status(self) -> DeploymentStatus:
        """Derived from the replicas (see :func:`derive_status`)."""
        return derive_status(self.instances)

    @property
    def resolved(self) -> str | None:
        """``ns/model/N`` of the resolved version, if any replica reported one."""
        if self.version is None:
            return None
        return f"{self.namespace}/{self.model}/{self.version}"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change of a deployment: what, who, when, from which version to which."""

    id: int
    environment: str
    reference: str
    kind: HistoryKind
    version: int | None
    previous_version: int | None
    replica: str | None
    actor: str
    at: int
    detail: dict[str, Any]
