"""The governance and outbox queries bound to one open transaction.

The objects behind ``RegistryTx.governance`` and ``RegistryTx.outbox``
(see :mod:`~modelyard.store.metadata.ports`): each method passes the
transaction (or its connection) to the query function of the same name in
:mod:`~modelyard.store.metadata.governance` or
:mod:`~modelyard.store.metadata.outbox`, where the SQL lives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from modelyard.domain.approvals import ApprovalAction, ApprovalState
from modelyard.domain.entities import AliasMove
from modelyard.store.metadata import governance as gov
from modelyard.store.metadata import outbox
from modelyard.store.metadata.ports import ApprovalRow, AuditQuery, StoredPolicy

if TYPE_CHECKING:
    from modelyard.store.metadata.repository import Tx


class BoundGovernance:
    """Governance queries (policies, approvals, audit) in one transaction."""

    __slots__ = ("_tx",)

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def get_policy(
        self, namespace_id: int, model_id: int | None, purpose: str
    ) -> StoredPolicy | None:
        return gov.get_policy(self._tx, namespace_id, model_id, purpose)

    def policies_of_model(
        self, model_id: int, purpose: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        return gov.policies_of_model(self._tx, model_id, purpose)

    def model_policies_of_namespace(
        self, namespace_id: int, purpose: str
    ) -> list[tuple[str, dict[str, Any]]]:
        return gov.model_policies_of_namespace(self._tx, namespace_id, purpose)

    def put_policy(
        self,
        namespace_id: int,
        model_id: int | None,
        purpose: str,
        rules: dict[str, Any],
        actor: str,
    ) -> None:
        return gov.put_policy(self._tx, namespace_id, model_id, purpose, rules, actor)

    def delete_policy(self, namespace_id: int, model_id: int | None, purpose: str) -> bool:
        return gov.delete_policy(self._tx, namespace_id, model_id, purpose)

    def lock_namespace(self, namespace_id: int) -> None:
        return gov.lock_namespace(self._tx, namespace_id)

    def insert_approval(
        self,
        *,
        namespace_id: int,
        model_id: int,
        version_id: int,
        action: ApprovalAction,
        alias: str | None,
        alias_from: int | None,
        archive_previous: bool,
        actor: str,
        comment: str,
    ) -> int:
        return gov.insert_approval(
            self._tx,
            namespace_id=namespace_id,
            model_id=model_id,
            version_id=version_id,
            action=action,
            alias=alias,
            alias_from=alias_from,
            archive_previous=archive_previous,
            actor=actor,
            comment=comment,
        )

    def find_pending(
        self, version_id: int, action: ApprovalAction, alias: str | None
    ) -> int | None:
        return gov.find_pending(self._tx, version_id, action, alias)

    def load_approvals(self, ids: Sequence[int], *, for_update: bool = False) -> list[ApprovalRow]:
        return gov.load_approvals(self._tx, ids, for_update=for_update)

    def add_vote(self, approval_id: int, actor: str, decision: str, comment: str) -> None:
        return gov.add_vote(self._tx, approval_id, actor, decision, comment)

    def set_approval_state(self, approval_id: int, state: ApprovalState, actor: str) -> None:
        return gov.set_approval_state(self._tx, approval_id, state, actor)

    def list_approval_ids(
        self, namespace_id: int, *, state: str | None, before: int | None, limit: int
    ) -> list[int]:
        return gov.list_approval_ids(
            self._tx, namespace_id, state=state, before=before, limit=limit
        )

    def alias_move_at(
        self, model_id: int, namespace: str, model: str, alias: str, at: int
    ) -> AliasMove | None:
        return gov.alias_move_at(self._tx, model_id, namespace, model, alias, at)

    def last_alias_move(
        self, model_id: int, namespace: str, model: str, alias: str
    ) -> AliasMove | None:
        return gov.last_alias_move(self._tx, model_id, namespace, model, alias)

    def audit_events(self, q: AuditQuery, limit: int) -> list[dict[str, Any]]:
        return gov.audit_events(self._tx, q, limit)


class BoundOutbox:
    """Outbox queries (events, webhooks, deliveries) in one transaction."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def list_events(
        self,
        *,
        after: int,
        limit: int,
        types: Sequence[str] = (),
        namespace: str | None = None,
        model: str | None = None,
        subject: str | None = None,
        namespaces: Sequence[str] | None = None,
        consumed: Sequence[str] | None = (),
        consumer_types: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        return outbox.list_events(
            self._conn,
            after=after,
            limit=limit,
            types=types,
            namespace=namespace,
            model=model,
            subject=subject,
            namespaces=namespaces,
            consumed=consumed,
            consumer_types=consumer_types,
        )

    def events_by_id(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        return outbox.events_by_id(self._conn, ids)

    def max_event_id(self) -> int:
        return outbox.max_event_id(self._conn)

    def lock_cursor(self, name: str) -> int | None:
        return outbox.lock_cursor(self._conn, name)

    def set_cursor(self, name: str, value: int, at: int) -> None:
        return outbox.set_cursor(self._conn, name, value, at)

    def read_cursor(self, name: str) -> int:
        return outbox.read_cursor(self._conn, name)

    def insert_webhook(self, values: dict[str, Any]) -> int:
        return outbox.insert_webhook(self._conn, values)

    def webhook_row(self, webhook_id: int, *, for_update: bool = False) -> Any:
        return outbox.webhook_row(self._conn, webhook_id, for_update=for_update)

    def webhook_rows(self, *, active_only: bool = False) -> list[Any]:
        return outbox.webhook_rows(self._conn, active_only=active_only)

    def update_webhook(self, webhook_id: int, values: dict[str, Any]) -> None:
        return outbox.update_webhook(self._conn, webhook_id, values)

    def delete_webhook(self, webhook_id: int) -> None:
        return outbox.delete_webhook(self._conn, webhook_id)

    def insert_deliveries(self, rows: list[dict[str, Any]]) -> None:
        return outbox.insert_deliveries(self._conn, rows)

    def insert_delivery(self, values: dict[str, Any]) -> int:
        return outbox.insert_delivery(self._conn, values)

    def has_due(self, now: int) -> bool:
        return outbox.has_due(self._conn, now)

    def claim_due(self, *, now: int, lease_until: int, worker: str, limit: int) -> list[Any]:
        return outbox.claim_due(
            self._conn, now=now, lease_until=lease_until, worker=worker, limit=limit
        )

    def delivery_row(self, delivery_id: int, *, for_update: bool = False) -> Any:
        return outbox.delivery_row(self._conn, delivery_id, for_update=for_update)

    def update_delivery(self, delivery_id: int, values: dict[str, Any]) -> None:
        return outbox.update_delivery(self._conn, delivery_id, values)

    def insert_attempt(self, values: dict[str, Any]) -> None:
        return outbox.insert_attempt(self._conn, values)

    def delivery_rows(
        self, webhook_id: int, *, limit: int, before: int | None, status: str | None
    ) -> list[Any]:
        return outbox.delivery_rows(
            self._conn, webhook_id, limit=limit, before=before, status=status
        )

    def attempt_rows(self, delivery_ids: Sequence[int]) -> dict[int, list[Any]]:
        return outbox.attempt_rows(self._conn, delivery_ids)

    def prune_deliveries(self, *, before: int, limit: int) -> int:
        return outbox.prune_deliveries(self._conn, before=before, limit=limit)
