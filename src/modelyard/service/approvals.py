"""Approvals (issue 3): request a gated transition, review it, apply it.

A request names a version and a transition (publish, optionally then an alias;
or a move of an alias). Reviewers approve or reject; at the N-th distinct
approval the transition applies in the approving transaction, through the
same in-transaction code of ``RegistryService`` that direct calls use, with
the policy's approval rule counted as met and every other rule checked again.
"""

from __future__ import annotations

from typing import Any

from modelyard.domain import identity as auth
from modelyard.domain.approvals import Approval, ApprovalAction, ApprovalState
from modelyard.domain.entities import Version, VersionState
from modelyard.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.lifecycle import check_transition
from modelyard.domain.names import validate_name
from modelyard.domain.policies import Policy, evaluate
from modelyard.domain.references import Reference
from modelyard.service import policy_gate
from modelyard.service.core import Page, check_page_size
from modelyard.service.governance import (
    check_alias_name,
    check_comment,
    parse_action,
    parse_cursor,
)
from modelyard.service.registry import RegistryService
from modelyard.store.metadata.ports import ApprovalRow, RegistryTx


class ApprovalService:
    """Approval requests and their reviews."""

    def __init__(self, registry: RegistryService) -> None:
        self.reg = registry
        self.db = registry.db

    def request_approval(
        self,
        ref: str | Reference,
        *,
        action: str = "publish",
        alias: str | None = None,
        archive_previous: bool = False,
        comment: str = "",
        actor: Principal,
    ) -> Approval:
        """Ask reviewers for a gated transition.

        ``publish`` (optionally then pointing ``alias`` at the version) or
        ``alias`` (move ``alias`` to an already published version). Refused
        with ``POLICY_VIOLATION`` when the version fails the policy's other
        rules, so reviewers only see requests that can apply; refused with
        ``APPROVAL_ALREADY_PENDING`` when the same request is open.
        Requires: write on the namespace.
        """
        act = parse_action(action)
        if act is ApprovalAction.ALIAS or alias is not None:
            alias = check_alias_name(alias)
        comment = check_comment(comment)
        r = self.reg.resolve(ref)
        auth.require(actor, Permission.WRITE, r.namespace)

        def op(tx: RegistryTx) -> Approval:
            vid = self.reg.version_id(tx, r)
            version = tx.load_versions([vid])[0]
            row = tx.version_keys(vid)
            mid = self.reg.model_id(tx, version.namespace, version.model, for_update=True)
            nid = self.reg.namespace_id(tx, version.namespace)
            if act is ApprovalAction.PUBLISH:
                check_transition(version.state, VersionState.PUBLISHED, ref=version.ref)
            elif alias is not None:
                policy_gate.check_aliasable(version, alias)
            policy = policy_gate.effective_policy(tx, row.model_id)
            self._precheck(policy, version, act, alias)
            if tx.governance.find_pending(vid, act, alias) is not None:
                raise Conflict(
                    "the same request is already pending",
                    code="APPROVAL_ALREADY_PENDING",
                    details={"ref": version.ref, "action": act.value, "alias": alias},
                )
            alias_from = None
            if alias is not None:
                current = tx.get_alias(mid, alias)
                alias_from = None if current is None else tx.version_keys(current).number
            aid = tx.governance.insert_approval(
                namespace_id=nid,
                model_id=mid,
                version_id=vid,
                action=act,
                alias=alias,
                alias_from=alias_from,
                archive_previous=archive_previous,
                actor=actor.name,
                comment=comment,
            )
            approval = tx.governance.load_approvals([aid])[0].approval
            tx.append_event(
                "approval.requested",
                actor=actor.name,
                namespace=version.namespace,
                subject=version.ref,
                payload={
                    **_approval_payload(approval),
                    "required_approvals": policy.approvals_needed,
                },
            )
            return approval

        return self.reg.run_in_transaction(op)

    @staticmethod
    def _precheck(policy: Policy, version: Version, act: ApprovalAction, alias: str | None) -> None:
        """The policy minus the approval rule, for the transition a request asks."""
        if act is ApprovalAction.PUBLISH:
            policy_gate.enforce(evaluate(policy, version, approvals=None), version, "publish")
        elif alias is not None and policy.protects(alias):
            ev = evaluate(policy, version, approvals=None, require_published=True)
            policy_gate.enforce(ev, version, "alias", alias)

    def _pending(
        self, tx: RegistryTx, approval_id: int, actor: Principal, permission: Permission
    ) -> ApprovalRow:
        """The request, locked, if ``actor`` holds ``permission`` in its namespace
        and it is still pending. In a namespace the actor cannot read it answers
        ``APPROVAL_NOT_FOUND``, as if it did not exist."""
        row = self._row(tx, approval_id, for_update=True)
        if not actor.can(Permission.READ, row.approval.namespace):
            raise _not_found(approval_id)
        auth.require(actor, permission, row.approval.namespace)
        if row.approval.state is not ApprovalState.PENDING:
            raise Conflict(
                f"approval request {approval_id} is {row.approval.state.value}, not pending",
                code="APPROVAL_NOT_PENDING",
                details={"id": approval_id, "state": row.approval.state.value},
            )
        return row

    def _row(self, tx: RegistryTx, approval_id: int, *, for_update: bool = False) -> ApprovalRow:
        if isinstance(approval_id, bool) or not isinstance(approval_id, int):
            raise InvalidInput("approval id must be an integer", code="INVALID_INPUT")
        if not 1 <= approval_id < 2**63:
            # No id in the details: JSON encoders refuse integers beyond 64 bits.
            raise NotFound("approval request not found", code="APPROVAL_NOT_FOUND")
        found = tx.governance.load_approvals([approval_id], for_update=for_update)
        if not found:
            raise _not_found(approval_id)
        return found[0]

    def approve(self, approval_id: int, *, actor: Principal, comment: str = "") -> Approval:
        """Approve a pending request; at the N-th distinct approval it applies.

        The requester cannot approve (``SELF_APPROVAL``), nor can anyone twice
        (``ALREADY_REVIEWED``). The policy minus its approval rule must still
        hold, else ``POLICY_VIOLATION`` and nothing changes (the request stays
        pending). The transition, the vote and the request's new state commit
        in one transaction; of two concurrent last approvals exactly one
        applies and the other gets ``APPROVAL_NOT_PENDING``.
        Requires: review on the namespace.
        """
        comment = check_comment(comment)

        def op(tx: RegistryTx) -> Approval:
            row = self._pending(tx, approval_id, actor, Permission.REVIEW)
            a = row.approval
            if actor.name == a.requested_by:
                raise PermissionDenied(
                    "the requester cannot approve their own request",
                    code="SELF_APPROVAL",
                    details={"id": approval_id},
                )
            if any(vote.actor == actor.name for vote in a.votes):
                raise Conflict(
                    f"{actor.name} has already reviewed request {approval_id}",
                    code="ALREADY_REVIEWED",
                    details={"id": approval_id},
                )
            version = tx.load_versions([row.version_id])[0]
            policy = policy_gate.effective_policy(tx, row.model_id)
            self._precheck(policy, version, a.action, a.alias)
            tx.governance.add_vote(approval_id, actor.name, "approve", comment)
            count = len(a.approvers) + 1
            tx.append_event(
                "approval.approved",
                actor=actor.name,
                namespace=a.namespace,
                subject=a.ref,
                payload={
                    **_approval_payload(a),
                    "comment": comment,
                    "approvals": count,
                    "required_approvals": policy.approvals_needed,
                    "before": {"approvals": count - 1},
                    "after": {"approvals": count},
                },
            )
            if count >= policy.approvals_needed:
                self._apply(tx, row, actor)
            return self._row(tx, approval_id).approval

        return self.reg.run_in_transaction(op)

    def _apply(self, tx: RegistryTx, row: ApprovalRow, actor: Principal) -> None:
        a = row.approval
        ref = Reference(a.namespace, a.model, version=a.version)
        before = tx.load_versions([row.version_id])[0]
        if a.alias is not None:
            # The reviewers approved moving the alias from where it was then:
            # if it moved since (another approved move, a rollback), this one
            # must not silently undo that. Locked, so two approved moves of one
            # alias cannot both apply.
            self.reg.model_id(tx, a.namespace, a.model, for_update=True)
            current = tx.get_alias(row.model_id, a.alias)
            now = None if current is None else tx.version_keys(current).number
            if now != a.alias_from:
                raise Conflict(
                    f"alias @{a.alias} moved since request {a.id} was made (from "
                    f"{a.alias_from} to {now}); cancel it and request again",
                    code="ALIAS_CHANGED",
                    details={"id": a.id, "alias": a.alias, "expected": a.alias_from, "actual": now},
                )
        if a.action is ApprovalAction.PUBLISH:
            self.reg.transition_in_tx(
                tx,
                ref,
                VersionState.PUBLISHED,
                actor=actor,
                archive_previous=a.archive_previous,
                approval_id=a.id,
            )
        if a.alias is not None:
            self.reg.move_alias_in_tx(
                tx,
                ref,
                a.alias,
                actor=actor,
                reason=f"approval #{a.id}" + (f": {a.comment}" if a.comment else ""),
                approval_id=a.id,
            )
        policy_gate.check_protected_targets(tx, row.model_id)
        tx.governance.set_approval_state(a.id, ApprovalState.APPLIED, actor.name)
        after = self._row(tx, a.id).approval
        tx.append_event(
            "approval.applied",
            actor=actor.name,
            namespace=a.namespace,
            subject=a.ref,
            payload={
                **_approval_payload(after),
                "approvers": after.approvers,
                "before": {"state": before.state.value, "request": "pending"},
                "after": {
                    "state": tx.load_versions([row.version_id])[0].state.value,
                    "request": "applied",
                },
            },
        )

    def reject(self, approval_id: int, *, actor: Principal, comment: str = "") -> Approval:
        """Reject a pending request (final). The requester cancels instead.

        Requires: review on the namespace.
        """
        comment = check_comment(comment)

        def op(tx: RegistryTx) -> Approval:
            a = self._pending(tx, approval_id, actor, Permission.REVIEW).approval
            if actor.name == a.requested_by:
                raise PermissionDenied(
                    "the requester cannot review their own request; cancel it instead",
                    code="SELF_APPROVAL",
                    details={"id": approval_id},
                )
            tx.governance.add_vote(approval_id, actor.name, "reject", comment)
            return self._close(tx, a, ApprovalState.REJECTED, actor, comment=comment)

        return self.reg.run_in_transaction(op)

    def cancel(self, approval_id: int, *, actor: Principal) -> Approval:
        """Withdraw one's own pending request (``NOT_REQUESTER`` for anyone else).

        Requires: write on the namespace.
        """

        def op(tx: RegistryTx) -> Approval:
            a = self._pending(tx, approval_id, actor, Permission.WRITE).approval
            if actor.name != a.requested_by:
                raise PermissionDenied(
                    "only the requester can cancel a request",
                    code="NOT_REQUESTER",
                    details={"id": approval_id},
                )
            return self._close(tx, a, ApprovalState.CANCELLED, actor)

        return self.reg.run_in_transaction(op)

    def _close(
        self, tx: RegistryTx, a: Approval, state: ApprovalState, actor: Principal, **extra: Any
    ) -> Approval:
        """End pending request ``a`` as ``state`` (rejected or cancelled) and
        write its ``approval.<state>`` event, ``extra`` added to the payload."""
        tx.governance.set_approval_state(a.id, state, actor.name)
        tx.append_event(
            f"approval.{state.value}",
            actor=actor.name,
            namespace=a.namespace,
            subject=a.ref,
            payload={
                **_approval_payload(a),
                **extra,
                "before": {"request": "pending"},
                "after": {"request": state.value},
            },
        )
        return self._row(tx, a.id).approval

    def get_approval(self, approval_id: int, *, actor: Principal) -> Approval:
        """One request with its reviews.

        Requires: read on the request's namespace (else ``APPROVAL_NOT_FOUND``).
        """
        with self.db.read() as tx:
            found = self._row(tx, approval_id).approval
        if not actor.can(Permission.READ, found.namespace):
            raise _not_found(approval_id)
        return found

    def list_approvals(
        self,
        namespace: str,
        *,
        state: str | None = "pending",
        page_size: int = 100,
        page_token: str | None = None,
        actor: Principal,
    ) -> Page[Approval]:
        """A namespace's requests, newest first (pending ones by default).

        Requires: read on the namespace.
        """
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.READ, namespace)
        if state is not None:
            try:
                state = ApprovalState(state).value
            except ValueError:
                raise InvalidInput(
                    f"unknown approval state {state!r}",
                    code="INVALID_STATE",
                    details={"allowed": [s.value for s in ApprovalState]},
                ) from None
        limit = check_page_size(page_size)
        before = parse_cursor(page_token)
        with self.db.read() as tx:
            nid = self.reg.namespace_id(tx, namespace)
            ids = tx.governance.list_approval_ids(nid, state=state, before=before, limit=limit + 1)
            items = [r.approval for r in tx.governance.load_approvals(ids[:limit])]
        token = str(items[-1].id) if len(ids) > limit else None
        return Page(items, token)


def _not_found(approval_id: int) -> NotFound:
    return NotFound(
        f"approval request {approval_id} not found",
        code="APPROVAL_NOT_FOUND",
        details={"id": approval_id},
    )


def _approval_payload(a: Approval) -> dict[str, Any]:
    return {
        "id": a.id,
        "ref": a.ref,
        "action": a.action.value,
        "alias": a.alias,
        "alias_from": a.alias_from,
        "archive_previous": a.archive_previous,
        "requested_by": a.requested_by,
        "request_comment": a.comment,
        "state": a.state.value,
    }
