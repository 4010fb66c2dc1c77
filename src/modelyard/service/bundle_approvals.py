"""Approval requests for bundle aliases (issue 14): the approval flow of
model versions (``service/approvals.py``), for moving ``pipe@production``.

A writer asks to move bundle alias ``alias`` to bundle version ``N``; the
request is refused at once (``POLICY_VIOLATION``) when a member fails its
model's production policy, so reviewers only see requests that can apply.
Reviewers of the bundle's namespace approve or reject; the requester cannot
review (``SELF_APPROVAL``), nobody reviews twice (``ALREADY_REVIEWED``). At
the N-th distinct approval (N: the namespace policy's ``required_approvals``)
the move applies in the approving transaction through the same code as a
direct move, with the approval rule met for the members in the bundle's own
namespace (its reviewers approved the bundle version, members included);
members from other namespaces still need their own ``@alias`` there, and
every other rule is checked again. Like model requests, an approved move is
a compare-and-set: if the alias moved since the request was made, it is
refused (``ALIAS_CHANGED``) and stays pending.

Events (subject ``bundle:NS/NAME/N``, in the audit log and webhooks):
``bundle.approval_requested``, ``bundle.approval_approved``,
``bundle.approval_applied`` (after the ``bundle.alias_moved`` it caused,
which carries ``approval_id``), ``bundle.approval_rejected``,
``bundle.approval_cancelled``. Deleting the bundle deletes its requests.
"""

from __future__ import annotations

from typing import Any

from modelyard.domain import identity as auth
from modelyard.domain.approvals import ApprovalState
from modelyard.domain.bundles import BundleApproval
from modelyard.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import validate_name
from modelyard.domain.references import DEFAULT_NAMESPACE
from modelyard.service import policy_gate
from modelyard.service import validation as v
from modelyard.service.bundle_aliases import BundleAliasUseCases, check_bundle_alias
from modelyard.service.bundles import bundle_not_found
from modelyard.store.metadata.ports import BundleRow, RegistryTx, now_us

# A bundle rarely has more than a handful of open requests; a listing is
# bounded all the same.
MAX_LISTED = 500
_STATES = frozenset(s.value for s in ApprovalState)


def _payload(a: BundleApproval) -> dict[str, Any]:
    return {
        "id": a.id,
        "ref": a.ref,
        "name": a.bundle,
        "version": a.version,
        "alias": a.alias,
        "alias_from": a.alias_from,
        "requested_by": a.requested_by,
        "request_comment": a.comment,
        "state": a.state.value,
    }


def _subject(a: BundleApproval) -> str:
    return f"bundle:{a.ref}"


def _not_found(approval_id: int) -> NotFound:
    return NotFound(
        f"bundle approval request {approval_id} not found",
        code="APPROVAL_NOT_FOUND",
        details={"id": approval_id},
    )


class BundleApprovalUseCases(BundleAliasUseCases):
    """Bundle aliases, and approval requests to move them."""

    def request_bundle_approval(
        self,
        name: str,
        alias: str,
        *,
        version: int,
        namespace: str = DEFAULT_NAMESPACE,
        comment: str = "",
        actor: Principal,
    ) -> BundleApproval:
        """Ask reviewers to move bundle alias ``alias`` to bundle version ``version``.

        Refused with ``POLICY_VIOLATION`` when a member fails its model's
        production policy (for a protected alias), ``APPROVAL_ALREADY_PENDING``
        when the same request is open, ``BUNDLE_VERSION_NOT_FOUND``.
        Requires: write on the namespace.
        """
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.WRITE, namespace)
        validate_name(name)
        check_bundle_alias(alias)
        comment = v.check_description(comment)
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**31:
            raise InvalidInput(
                "version must be a bundle version number",
                code="INVALID_INPUT",
                details={"field": "version"},
            )

        def op(tx: RegistryTx) -> BundleApproval:
            row = tx.bundles.get(namespace, name)
            if row is None:
                raise bundle_not_found(namespace, name)
            tx.bundles.lock(row.id)
            self._precheck(tx, row, alias, version)
            if tx.bundles.find_pending_approval(row.id, version, alias) is not None:
                raise Conflict(
                    "the same request is already pending",
                    code="APPROVAL_ALREADY_PENDING",
                    details={"ref": f"{namespace}/{name}/{version}", "alias": alias},
                )
            aid = tx.bundles.insert_approval(
                row.id,
                version,
                alias,
                alias_from=tx.bundles.get_alias(row.id, alias),
                actor=actor.name,
                comment=comment,
                at=now_us(),
            )
            a = tx.bundles.load_approvals([aid])[0][1]
            policy = policy_gate.namespace_policy(tx, namespace)
            tx.append_event(
                "bundle.approval_requested",
                actor=actor.name,
                namespace=namespace,
                subject=_subject(a),
                payload={**_payload(a), "required_approvals": policy.approvals_needed},
            )
            return a

        return self.run_in_transaction(op)

    def _precheck(self, tx: RegistryTx, row: BundleRow, alias: str, number: int) -> None:
        """The bundle version exists and the policy minus approvals holds."""
        found = tx.bundles.version(row.id, number)
        if found is None:
            raise NotFound(
                f"bundle {row.namespace}/{row.name} has no version {number}",
                code="BUNDLE_VERSION_NOT_FOUND",
                details={"namespace": row.namespace, "name": row.name, "version": number},
            )
        members = dict(
            zip(found.members, tx.load_versions(list(found.members.values())), strict=True)
        )
        self._gate(tx, row, alias, number, members, rollback=False, check_approvals=False)

    def _pending(
        self,
        tx: RegistryTx,
        namespace: str,
        name: str,
        approval_id: int,
        actor: Principal,
        permission: Permission,
    ) -> tuple[BundleRow, BundleApproval]:
        """The bundle and its request, locked, if ``actor`` holds ``permission``
        in the namespace and the request is pending."""
        auth.require(actor, permission, namespace)
        row, a = self._request(tx, namespace, name, approval_id, for_update=True)
        if a.state is not ApprovalState.PENDING:
            raise Conflict(
                f"bundle approval request {approval_id} is {a.state.value}, not pending",
                code="APPROVAL_NOT_PENDING",
                details={"id": approval_id, "state": a.state.value},
            )
        return row, a

    def _request(
        self, tx: RegistryTx, namespace: str, name: str, approval_id: int, *, for_update: bool
    ) -> tuple[BundleRow, BundleApproval]:
        if isinstance(approval_id, bool) or not isinstance(approval_id, int):
            raise InvalidInput("approval id must be an integer", code="INVALID_INPUT")
        if not 1 <= approval_id < 2**63:
            raise NotFound("bundle approval request not found", code="APPROVAL_NOT_FOUND")
        row = tx.bundles.get(namespace, name)
        if row is None:
            raise bundle_not_found(namespace, name)
        found = tx.bundles.load_approvals([approval_id], for_update=for_update)
        if not found or found[0][0] != row.id:
            raise _not_found(approval_id)
        return row, found[0][1]

    def approve_bundle_approval(
        self,
        name: str,
        approval_id: int,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        comment: str = "",
        actor: Principal,
    ) -> BundleApproval:
        """Approve a pending request; at the N-th distinct approval the move
        applies (see the module docstring). Requires: review on the namespace.
        """
        validate_name(namespace, kind="namespace")
        validate_name(name)
        comment = v.check_description(comment)

        def op(tx: RegistryTx) -> BundleApproval:
            row, a = self._pending(tx, namespace, name, approval_id, actor, Permission.REVIEW)
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
            self._precheck(tx, row, a.alias, a.version)
            needed = policy_gate.namespace_policy(tx, namespace).approvals_needed
            tx.bundles.add_approval_vote(approval_id, actor.name, "approve", comment, now_us())
            count = len(a.approvers) + 1
            tx.append_event(
                "bundle.approval_approved",
                actor=actor.name,
                namespace=namespace,
                subject=_subject(a),
                payload={
                    **_payload(a),
                    "comment": comment,
                    "approvals": count,
                    "required_approvals": needed,
                    "before": {"approvals": count - 1},
                    "after": {"approvals": count},
                },
            )
            if count >= needed:
                self._apply(tx, row, a, actor)
            return self._request(tx, namespace, name, approval_id, for_update=False)[1]

        return self.run_in_transaction(op)

    def _apply(self, tx: RegistryTx, row: BundleRow, a: BundleApproval, actor: Principal) -> None:
        now = tx.bundles.get_alias(row.id, a.alias)
        if now != a.alias_from:
            # Reviewers approved a move from where the alias was then.
            raise Conflict(
                f"bundle alias @{a.alias} moved since request {a.id} was made (from "
                f"{a.alias_from} to {now}); cancel it and request again",
                code="ALIAS_CHANGED",
                details={"id": a.id, "alias": a.alias, "expected": a.alias_from, "actual": now},
            )
        self.move_bundle_alias_in_tx(
            tx,
            row,
            a.alias,
            a.version,
            actor=actor,
            reason=f"approval #{a.id}" + (f": {a.comment}" if a.comment else ""),
            approval_id=a.id,
        )
        tx.bundles.set_approval_state(a.id, ApprovalState.APPLIED, actor.name, now_us())
        after = tx.bundles.load_approvals([a.id])[0][1]
        tx.append_event(
            "bundle.approval_applied",
            actor=actor.name,
            namespace=a.namespace,
            subject=_subject(a),
            payload={
                **_payload(after),
                "approvers": after.approvers,
                "before": {"request": "pending", "version": a.alias_from},
                "after": {"request": "applied", "version": a.version},
            },
        )

    def reject_bundle_approval(
        self,
        name: str,
        approval_id: int,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        comment: str = "",
        actor: Principal,
    ) -> BundleApproval:
        """Reject a pending request (final); the requester cancels instead.
        Requires: review on the namespace."""
        validate_name(namespace, kind="namespace")
        validate_name(name)
        comment = v.check_description(comment)

        def op(tx: RegistryTx) -> BundleApproval:
            _, a = self._pending(tx, namespace, name, approval_id, actor, Permission.REVIEW)
            if actor.name == a.requested_by:
                raise PermissionDenied(
                    "the requester cannot review their own request; cancel it instead",
                    code="SELF_APPROVAL",
                    details={"id": approval_id},
                )
            tx.bundles.add_approval_vote(approval_id, actor.name, "reject", comment, now_us())
            return self._close(tx, a, ApprovalState.REJECTED, actor, comment=comment)

        return self.run_in_transaction(op)

    def cancel_bundle_approval(
        self,
        name: str,
        approval_id: int,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: Principal,
    ) -> BundleApproval:
        """Withdraw one's own pending request (``NOT_REQUESTER`` for anyone else).
        Requires: write on the namespace."""
        validate_name(namespace, kind="namespace")
        validate_name(name)

        def op(tx: RegistryTx) -> BundleApproval:
            _, a = self._pending(tx, namespace, name, approval_id, actor, Permission.WRITE)
            if actor.name != a.requested_by:
                raise PermissionDenied(
                    "only the requester can cancel a request",
                    code="NOT_REQUESTER",
                    details={"id": approval_id},
                )
            return self._close(tx, a, ApprovalState.CANCELLED, actor)

        return self.run_in_transaction(op)

    def _close(
        self,
        tx: RegistryTx,
        a: BundleApproval,
        state: ApprovalState,
        actor: Principal,
        **extra: Any,
    ) -> BundleApproval:
        tx.bundles.set_approval_state(a.id, state, actor.name, now_us())
        tx.append_event(
            f"bundle.approval_{state.value}",
            actor=actor.name,
            namespace=a.namespace,
            subject=_subject(a),
            payload={
                **_payload(a),
                **extra,
                "before": {"request": "pending"},
                "after": {"request": state.value},
            },
        )
        return tx.bundles.load_approvals([a.id])[0][1]

    def get_bundle_approval(
        self,
        name: str,
        approval_id: int,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: Principal,
    ) -> BundleApproval:
        """One request with its reviews. Requires: read on the namespace."""
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.READ, namespace)
        validate_name(name)
        with self.db.read() as tx:
            return self._request(tx, namespace, name, approval_id, for_update=False)[1]

    def list_bundle_approvals(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        state: str | None = "pending",
        actor: Principal,
    ) -> list[BundleApproval]:
        """A bundle's requests, newest first (pending ones by default; None:
        all), at most 500. Requires: read on the namespace."""
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.READ, namespace)
        validate_name(name)
        if state is not None and state not in _STATES:
            raise InvalidInput(
                f"state must be one of {', '.join(sorted(_STATES))} or all",
                code="INVALID_INPUT",
                details={"field": "state"},
            )
        with self.db.read() as tx:
            row = tx.bundles.get(namespace, name)
            if row is None:
                raise bundle_not_found(namespace, name)
            ids = tx.bundles.approval_ids(row.id, state=state, limit=MAX_LISTED)
            return [a for _, a in tx.bundles.load_approvals(ids)]
