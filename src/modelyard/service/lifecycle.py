"""Lifecycle use cases: publish, archive, restore a version, gated by the
production policy (see ``domain/lifecycle.py`` for which state may follow which)."""

from __future__ import annotations

from typing import Any

from modelyard.domain import identity as auth
from modelyard.domain.entities import Version, VersionState
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.lifecycle import check_transition
from modelyard.domain.references import Reference
from modelyard.service import pending_versions, policy_gate
from modelyard.service.core import RegistryCore, parse_state, version_payload
from modelyard.store.metadata.ports import RegistryTx


class LifecycleUseCases(RegistryCore):
    """Transitions of a version's state, with their events."""

    def transition_version(
        self,
        ref: str | Reference,
        target: VersionState | str,
        *,
        actor: Principal,
        archive_previous: bool = False,
    ) -> Version:
        """Move a version to another lifecycle state (publish, archive, restore).

        With ``archive_previous``, publishing also archives the model's other
        published versions in the same transaction. Publishing is gated by the
        model's production policy (``POLICY_VIOLATION``, or ``APPROVAL_REQUIRED``
        when only approvals are missing: see ``ApprovalService``), and no
        transition may leave a protected alias on an unpublished version
        (``ALIAS_PROTECTED``).

        Requires: write on the namespace.
        """
        target = parse_state(target)
        r = self.resolve(ref)
        auth.require(actor, Permission.WRITE, r.namespace)

        def op(tx: RegistryTx) -> Version:
            after = self.transition_in_tx(
                tx, r, target, actor=actor, archive_previous=archive_previous
            )
            mid = self.model_id(tx, after.namespace, after.model)
            policy_gate.check_protected_targets(tx, mid)
            return after

        return self.run_in_transaction(op)

    def transition_in_tx(
        self,
        tx: RegistryTx,
        r: Reference,
        target: VersionState,
        *,
        actor: Principal,
        archive_previous: bool = False,
        approval_id: int | None = None,
        change: dict[str, Any] | None = None,
    ) -> Version:
        """The body of :meth:`transition_version` inside an open transaction.

        ``approval_id`` names the approved request being applied: the policy's
        approval rule then counts as met (its other rules are still checked).
        ``change`` marks the event as one part of a larger change (a family
        promotion: ``{"id", "type"}``), so the audit log can show them together.
        Requires: nothing checked here; the caller checked its own permission
        (write for a transition, review for an approval that applies one).
        """
        # Lock the model first: concurrent transitions of its versions (two
        # approvals, two publishers) then queue, and each sees the state the
        # previous one committed rather than a stale one.
        self.model_id(tx, r.namespace, r.name, for_update=True)
        vid = self.version_id(tx, r)
        current = tx.load_versions([vid])[0]
        mid = tx.version_keys(vid).model_id
        # A draft waiting for its blobs' verification moves by itself (issue 13).
        pending_versions.check_not_waiting(tx, current)
        check_transition(current.state, target, ref=current.ref)
        if target is VersionState.PUBLISHED:
            policy_gate.check_publish(tx, current, mid, approved=approval_id is not None)
        archived: list[int] = []
        if target is VersionState.PUBLISHED and archive_previous:
            for other in tx.list_version_ids(
                mid, limit=100_000, before=None, states=[VersionState.PUBLISHED.value]
            ):
                tx.update_version(other, state=VersionState.ARCHIVED.value)
                archived.append(other)
        tx.update_version(vid, state=target.value)
        after = tx.load_versions([vid])[0]
        event = {
            VersionState.PUBLISHED: "version.published",
            VersionState.ARCHIVED: "version.archived",
            VersionState.READY: "version.restored",
        }.get(target, "version.updated")
        payload = version_payload(after)
        payload["from_state"] = current.state.value
        payload["before"] = {"state": current.state.value}
        payload["after"] = {"state": after.state.value}
        if archived:
            payload["archived_versions"] = [x.number for x in tx.load_versions(archived)]
        if approval_id is not None:
            payload["approval_id"] = approval_id
        if change is not None:
            payload["change"] = change
        tx.append_event(
            event, actor=actor.name, namespace=after.namespace, subject=after.ref, payload=payload
        )
        return after
