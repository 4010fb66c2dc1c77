"""Monitoring alerts and automatic rollback (issue 12).

A model server watches what it serves (input drift against the version's
reference statistics, error rate and latency over a rolling window) and,
when a threshold is crossed, reports it here (``report_alert``): the
deployment's history gets a ``drift`` or ``degraded`` entry and the outbox a
``deployment.drift`` / ``deployment.degraded`` event, so webhooks, the audit
log and the UI carry the alert like any other change.

Automatic rollback. An operator opts a deployment of an alias in
(``monitoring.rollback``, recorded with ``put_deployment``, which needs
write). From then on, a ``degraded`` report that says the condition has
held for ``rollback_after_seconds`` rolls the alias back through the same
transaction body as ``GovernanceService.rollback_alias`` (the policy gate,
the ``alias.moved`` event with ``rollback: true``, the restore of an
archived target), and the model servers then follow the alias as they follow
any move. A model server usually holds only a consumer token: the opt-in is
the writer's delegation of that one alias move to the deployment's servers,
bounded so a report cannot do more than undo the version it is about:

- only the version the alias names now is rolled back
  (``expected_version``: a second report, or one about an older version,
  finds the alias moved and changes nothing);
- never onto a version an automatic rollback of this deployment already
  left (no flapping between two bad versions);
- a refused rollback (no previous target, the policy, the alias moved) is
  recorded in the ``deployment.degraded`` event and changes nothing else.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from modelyard.domain import identity as auth
from modelyard.domain.deployments import (
    HistoryKind,
    validate_environment,
    validate_replica,
)
from modelyard.domain.errors import Conflict, InvalidInput, ModelyardError
from modelyard.domain.identity import Principal
from modelyard.domain.monitoring import MonitorSettings, parse_monitor_settings
from modelyard.domain.names import RESERVED_ALIASES
from modelyard.domain.references import Reference
from modelyard.service.deployments import (
    DeploymentUseCases,
    _check_number,
    check_json_object,
    deployment_not_found,
    parse_deployed_reference,
)
from modelyard.service.views import ProductionView
from modelyard.store.metadata.ports import RegistryTx, now_us

if TYPE_CHECKING:
    from modelyard.domain.entities import Version

ALERT_KINDS = frozenset({"drift", "degraded"})


def _bad(message: str, field: str) -> InvalidInput:
    return InvalidInput(message, code="INVALID_ALERT", details={"field": field})


def _check_detail(detail: Any) -> dict[str, Any]:
    if detail is None:
        return {}
    return check_json_object(detail, "detail", "INVALID_ALERT")


def _check_seconds(value: Any) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise _bad("sustained_seconds must be a non-negative number", "sustained_seconds")
    return float(value)


class MonitoringUseCases(DeploymentUseCases):
    """Alerts from model servers, and the automatic rollback they may trigger."""

    if TYPE_CHECKING:

        def rollback_alias_in_tx(
            self,
            tx: RegistryTx,
            model: Reference,
            alias: str,
            *,
            actor: Principal,
            reason: str,
            expected_version: int | None = None,
            payload: dict[str, Any] | None = None,
        ) -> Version: ...

    def report_alert(
        self,
        environment: str,
        reference: str,
        *,
        replica: str,
        kind: str,
        version: int,
        sustained_seconds: float | None = None,
        detail: dict[str, Any] | None = None,
        actor: Principal,
    ) -> dict[str, Any]:
        """A model server's alert on the deployment of ``reference`` in
        ``environment``: ``kind`` ``drift`` or ``degraded`` about ``version``
        (the one it serves), the measures in ``detail``; ``sustained_seconds``:
        how long a degradation has held.

        The deployment must be recorded (a server registers it with its first
        heartbeat). Returns ``{"kind", "history_id", "rollback"}`` where
        ``rollback`` is None when none was due, else ``{"done": true,
        "from_version", "to_version"}`` or ``{"done": false, "code", "message"}``.
        Requires: consume on the model's namespace and ``version`` readable by
        the caller, as a heartbeat. Events: ``deployment.drift`` or
        ``deployment.degraded``; with a rollback also ``alias.moved``
        (``rollback: true``, ``automatic: true``) and ``deployment.rolled_back``.
        """
        env = validate_environment(environment)
        ref = parse_deployed_reference(reference)
        auth.require_readable(actor, ref.namespace)
        rid = validate_replica(replica)
        if kind not in ALERT_KINDS:
            raise _bad("kind must be drift or degraded", "kind")
        number = _check_number(version, "version")
        if number is None:
            raise _bad("version is required", "version")
        held = _check_seconds(sustained_seconds)
        measures = _check_detail(detail)

        def record(tx: RegistryTx, rollback: dict[str, Any] | None) -> int:
            self._require_visible(tx, ProductionView(tx), actor, ref, number)
            row = tx.deployments.get(env, str(ref))
            if row is None or row.deleted_at is not None:
                raise deployment_not_found(env, str(ref))
            entry_detail = {**measures, "sustained_seconds": held}
            if rollback is not None:
                entry_detail["rollback"] = rollback
            return self._record(
                tx,
                row,
                HistoryKind(kind),
                actor,
                now_us(),
                version=number,
                replica=rid,
                detail=entry_detail,
            )

        rollback: dict[str, Any] | None = None
        if kind == "degraded" and held is not None:
            rollback = self._try_rollback(env, ref, rid, number, held, measures, actor, record)
            if rollback is not None and rollback["done"]:
                history_id = rollback.pop("history_id")
                return {"kind": kind, "history_id": history_id, "rollback": rollback}
        history_id = self.run_in_transaction(lambda tx: record(tx, rollback))
        return {"kind": kind, "history_id": history_id, "rollback": rollback}

    def _try_rollback(
        self,
        env: str,
        ref: Reference,
        replica: str,
        version: int,
        held: float,
        measures: dict[str, Any],
        actor: Principal,
        record: Any,
    ) -> dict[str, Any] | None:
        """Roll the alias back if the deployment opted in and it is due (see the
        module docstring); None when not due. A refusal rolls the whole
        attempt back and is returned for the alert to record."""
        with self.db.read() as tx:
            row = tx.deployments.get(env, str(ref))
        if (
            row is None
            or row.deleted_at is not None
            or row.alias is None
            or row.alias in RESERVED_ALIASES
        ):
            return None
        settings = (
            MonitorSettings() if row.monitoring is None else parse_monitor_settings(row.monitoring)
        )
        if not settings.rollback or held < settings.rollback_after_seconds:
            return None
        alias = row.alias
        deployment = f"{env}/{row.reference}"
        reason = (
            f"automatic rollback: deployment {deployment} degraded for {held:.1f} s "
            f"on version {version} (replica {replica})"
        )

        def op(tx: RegistryTx) -> dict[str, Any]:
            self._require_visible(tx, ProductionView(tx), actor, ref, version)
            mid = self.model_id(tx, ref.namespace, ref.name, for_update=True)
            current_id = tx.get_alias(mid, alias)
            current = None if current_id is None else tx.load_versions([current_id])[0].number
            if current != version:
                # Checked before the loop guard: a late report about the version
                # just rolled back from is "moved meanwhile", not a loop.
                raise Conflict(
                    f"{ref.namespace}/{ref.name}@{alias} no longer points at version "
                    f"{version} (it points at {current})",
                    code="ALIAS_CHANGED",
                )
            last = tx.governance.last_alias_move(mid, ref.namespace, ref.name, alias)
            target = None if last is None else last.from_version
            if target is not None and tx.deployments.rolled_back_from(row.id, target):
                raise _refused(
                    f"version {target} was left by an automatic rollback of {deployment}; "
                    "it is not rolled back onto again",
                    "ROLLBACK_LOOP",
                )
            moved = self.rollback_alias_in_tx(
                tx,
                Reference(ref.namespace, ref.name),
                alias,
                actor=actor,
                reason=reason,
                expected_version=version,
                payload={"automatic": True, "deployment": deployment, "replica": replica},
            )
            at = now_us()
            outcome = {"done": True, "from_version": version, "to_version": moved.number}
            history_id = record(tx, outcome)
            self._record(
                tx,
                row,
                HistoryKind.ROLLED_BACK,
                actor,
                at,
                version=moved.number,
                previous=version,
                replica=replica,
                detail={"alias": alias, "reason": reason, "measures": measures},
            )
            return {**outcome, "history_id": history_id}

        try:
            return self.run_in_transaction(op)
        except ModelyardError as exc:
            return {"done": False, "code": exc.code, "message": exc.message}


def _refused(message: str, code: str) -> Conflict:
    return Conflict(message, code=code)
