"""Deployment queries (issue 12) bound to one open transaction: the object
behind ``RegistryTx.deployments`` (see :mod:`~modelyard.store.metadata.ports`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from modelyard.domain.deployments import HistoryEntry, HistoryKind
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.ports import DeploymentRow, ReplicaRow
from modelyard.store.metadata.prepared import json_value

_D = t.deployments
_R = t.deployment_replicas
_H = t.deployment_history


def _deployment(r: Any) -> DeploymentRow:
    return DeploymentRow(
        id=int(r.id),
        environment=r.environment,
        reference=r.reference,
        namespace=r.namespace,
        model=r.model,
        alias=r.alias,
        version=None if r.version is None else int(r.version),
        replicas=int(r.replicas),
        endpoint=r.endpoint,
        created_by=r.created_by,
        created_at=int(r.created_at),
        updated_by=r.updated_by,
        updated_at=int(r.updated_at),
        monitoring=json_value(r.monitoring),
        deleted_at=None if r.deleted_at is None else int(r.deleted_at),
    )


def _replica(r: Any) -> ReplicaRow:
    return ReplicaRow(
        deployment_id=int(r.deployment_id),
        replica=r.replica,
        status=r.status,
        version=None if r.version is None else int(r.version),
        endpoint=r.endpoint,
        error=r.error,
        started_at=int(r.started_at),
        heartbeat_at=int(r.heartbeat_at),
        measures=r.measures,
    )


def _entry(r: Any) -> HistoryEntry:
    return HistoryEntry(
        id=int(r.id),
        environment=r.environment,
        reference=r.reference,
        kind=HistoryKind(r.kind),
        version=None if r.version is None else int(r.version),
        previous_version=None if r.previous_version is None else int(r.previous_version),
        replica=r.replica,
        actor=r.actor,
        at=int(r.at),
        detail=json_value(r.detail) or {},
    )


class BoundDeployments:
    """Deployments, their replicas' heartbeats and their history, in one transaction."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def get(self, environment: str, reference: str) -> DeploymentRow | None:
        """The deployment of ``reference`` in ``environment``, or None (a deleted
        one is returned, ``deleted_at`` set: the caller decides what it means)."""
        row = self._conn.execute(
            sa.select(_D).where(_D.c.environment == environment, _D.c.reference == reference)
        ).one_or_none()
        return None if row is None else _deployment(row)

    def find(
        self,
        *,
        environment: str | None = None,
        namespaces: Sequence[str] | None = None,
        model: str | None = None,
        alias: str | None = None,
        version: int | None = None,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> list[DeploymentRow]:
        """Deployments matching every given filter, by environment then reference;
        deleted ones are left out. ``after`` (environment, reference) and
        ``limit`` page through them on the unique (environment, reference).

        ``namespaces`` None means any; an empty list matches nothing.
        """
        q = sa.select(_D).where(_D.c.deleted_at.is_(None))
        if environment is not None:
            q = q.where(_D.c.environment == environment)
        if namespaces is not None:
            if not namespaces:
                return []
            q = q.where(_D.c.namespace.in_(list(namespaces)))
        if model is not None:
            q = q.where(_D.c.model == model)
        if alias is not None:
            q = q.where(_D.c.alias == alias)
        if version is not None:
            q = q.where(_D.c.version == version)
        if after is not None:
            env, ref = after
            q = q.where(
                sa.or_(
                    _D.c.environment > env, sa.and_(_D.c.environment == env, _D.c.reference > ref)
                )
            )
        q = q.order_by(_D.c.environment, _D.c.reference)
        if limit is not None:
            q = q.limit(limit)
        rows = self._conn.execute(q).all()
        return [_deployment(r) for r in rows]

    def insert(self, values: Mapping[str, Any]) -> DeploymentRow:
        """Insert a deployment; the stored row."""
        row = self._conn.execute(_D.insert().values(dict(values)).returning(*_D.c)).one()
        return _deployment(row)

    def update(self, deployment_id: int, values: Mapping[str, Any]) -> None:
        """Change columns of a deployment."""
        self._conn.execute(_D.update().where(_D.c.id == deployment_id).values(dict(values)))

    def replicas(self, deployment_ids: Sequence[int]) -> list[ReplicaRow]:
        """The replicas of these deployments, by replica id."""
        if not deployment_ids:
            return []
        rows = self._conn.execute(
            sa.select(_R)
            .where(_R.c.deployment_id.in_(list(deployment_ids)))
            .order_by(_R.c.deployment_id, _R.c.replica)
        ).all()
        return [_replica(r) for r in rows]

    def replica(self, deployment_id: int, replica: str) -> ReplicaRow | None:
        """One replica's last heartbeat, or None."""
        row = self._conn.execute(
            sa.select(_R).where(_R.c.deployment_id == deployment_id, _R.c.replica == replica)
        ).one_or_none()
        return None if row is None else _replica(row)

    def upsert_replica(self, row: ReplicaRow, *, exists: bool) -> None:
        """Write a replica's heartbeat (``exists``: the caller read it in this transaction)."""
        values = {
            "status": row.status,
            "version": row.version,
            "endpoint": row.endpoint,
            "error": row.error,
            "started_at": row.started_at,
            "heartbeat_at": row.heartbeat_at,
            "measures": row.measures,
        }
        if exists:
            self._conn.execute(
                _R.update()
                .where(_R.c.deployment_id == row.deployment_id, _R.c.replica == row.replica)
                .values(values)
            )
        else:
            self._conn.execute(
                _R.insert().values(deployment_id=row.deployment_id, replica=row.replica, **values)
            )

    def delete_replicas(self, deployment_id: int) -> None:
        """Forget every replica's heartbeat of a deployment (it was deleted)."""
        self._conn.execute(_R.delete().where(_R.c.deployment_id == deployment_id))

    def add_history(self, deployment_id: int, entry: HistoryEntry) -> int:
        """Append a history entry (its ``id`` is ignored); the new id."""
        return int(
            self._conn.execute(
                _H.insert()
                .values(
                    deployment_id=deployment_id,
                    environment=entry.environment,
                    reference=entry.reference,
                    kind=entry.kind.value,
                    version=entry.version,
                    previous_version=entry.previous_version,
                    replica=entry.replica,
                    actor=entry.actor,
                    at=entry.at,
                    detail=entry.detail,
                )
                .returning(_H.c.id)
            ).scalar_one()
        )

    def rolled_back_from(self, deployment_id: int, version: int) -> bool:
        """True if an automatic rollback of this deployment ever left ``version``."""
        row = self._conn.execute(
            sa.select(_H.c.id)
            .where(
                _H.c.deployment_id == deployment_id,
                _H.c.kind == HistoryKind.ROLLED_BACK.value,
                _H.c.previous_version == version,
            )
            .limit(1)
        ).first()
        return row is not None

    def history(
        self,
        environment: str,
        *,
        namespaces: Sequence[str] | None = None,
        reference: str | None = None,
        before: int | None = None,
        limit: int = 100,
        kinds: Sequence[str] | None = None,
    ) -> list[HistoryEntry]:
        """An environment's history, newest first (``before``: ids below it;
        ``kinds``: only entries of those kinds). One deployment's is read
        backwards on ``(environment, reference, id)``."""
        q = sa.select(_H).where(_H.c.environment == environment)
        if reference is not None:
            q = q.where(_H.c.reference == reference)
        if kinds is not None:
            q = q.where(_H.c.kind.in_(list(kinds)))
        if before is not None:
            q = q.where(_H.c.id < before)
        if namespaces is not None:
            if not namespaces:
                return []
            q = q.where(
                _H.c.deployment_id.in_(
                    sa.select(_D.c.id).where(_D.c.namespace.in_(list(namespaces)))
                )
            )
        rows = self._conn.execute(q.order_by(_H.c.id.desc()).limit(limit)).all()
        return [_entry(r) for r in rows]
