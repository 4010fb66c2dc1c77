"""Bundle aliases (issue 14): ``pipeline@production`` names a bundle version,
with its history, under the same governance as model aliases.

A bundle alias is *protected* when its bundle's namespace production policy
lists the alias in ``protected_aliases`` (bundles have no policy of their
own: the namespace's is the one its admins set, and it already governs the
models' ``@production``). Moving a protected bundle alias requires what
pointing each member's own ``@production`` at it would:

- every member of the bundle version is published and meets its model's
  production policy (namespace policy extended by the model's), else
  ``POLICY_VIOLATION`` naming each role and rule;
- approvals are those of the members: a member whose model's policy
  protects the same alias name and requires approvals must be that alias's
  target now (``det@production`` got there through its approval), else
  ``APPROVAL_REQUIRED`` naming the role and the move to request. So a
  protected ``pipe@production`` names only what each model's
  ``@production`` already runs (approved one by one), composed and checked
  by the bundle's edges. A return to where the alias pointed just before
  (a rollback) counts that rule as met, as for models.

A protected bundle alias cannot be deleted (``ALIAS_PROTECTED``). Every move
and removal writes a history row and an event (``bundle.alias_moved``,
``bundle.alias_deleted``, subject ``bundle:NS/NAME@ALIAS``) in its
transaction, so the audit log and webhooks see them.
"""

from __future__ import annotations

from typing import Any

from modelyard.domain import identity as auth
from modelyard.domain.bundles import BundleAliasMove, BundleVersion, parse_edges
from modelyard.domain.entities import Version
from modelyard.domain.errors import Conflict, InvalidInput, NotFound, PolicyViolation
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import RESERVED_ALIASES, validate_alias, validate_name
from modelyard.domain.policies import PRODUCTION, Policy, evaluate
from modelyard.domain.references import DEFAULT_NAMESPACE
from modelyard.service import policy_gate
from modelyard.service import validation as v
from modelyard.service.bundles import bundle_not_found
from modelyard.service.core import RegistryCore
from modelyard.store.metadata.ports import BundleRow, RegistryTx, now_us


def _subject(namespace: str, name: str, alias: str) -> str:
    return f"bundle:{namespace}/{name}@{alias}"


def check_bundle_alias(alias: str) -> str:
    """A bundle alias name: valid and not reserved (``INVALID_ALIAS``)."""
    validate_alias(alias)
    if alias in RESERVED_ALIASES:
        raise InvalidInput(f"alias {alias!r} is reserved", code="INVALID_ALIAS")
    return alias


class BundleAliasUseCases(RegistryCore):
    """Bundle aliases: named pointers at bundle versions, with history."""

    def set_bundle_alias(
        self,
        name: str,
        alias: str,
        *,
        version: int,
        namespace: str = DEFAULT_NAMESPACE,
        reason: str = "",
        expected_version: int | None = None,
        actor: Principal,
    ) -> BundleVersion:
        """Point ``alias`` of bundle ``namespace/name`` at its version ``version``.

        ``expected_version`` makes it a compare-and-set (``ALIAS_CHANGED``
        unless the alias names that version now). Protected aliases are gated
        as the module docstring says. Requires: write on the namespace.
        """
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.WRITE, namespace)
        validate_name(name)
        check_bundle_alias(alias)
        reason = v.check_description(reason)
        for value, field in ((version, "version"), (expected_version, "expected_version")):
            if value is None and field == "expected_version":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
                raise InvalidInput(
                    f"{field} must be a bundle version number",
                    code="INVALID_INPUT",
                    details={"field": field},
                )

        def op(tx: RegistryTx) -> BundleVersion:
            row = tx.bundles.get(namespace, name)
            if row is None:
                raise bundle_not_found(namespace, name)
            return self.move_bundle_alias_in_tx(
                tx,
                row,
                alias,
                version,
                actor=actor,
                reason=reason,
                expected_version=expected_version,
            )

        return self.run_in_transaction(op)

    def move_bundle_alias_in_tx(
        self,
        tx: RegistryTx,
        row: BundleRow,
        alias: str,
        version: int,
        *,
        actor: Principal,
        reason: str,
        expected_version: int | None = None,
        approval_id: int | None = None,
    ) -> BundleVersion:
        """The body of :meth:`set_bundle_alias` inside an open transaction.

        ``approval_id`` (an approved bundle request being applied) counts the
        approval rule as met for the members in the bundle's own namespace
        (its reviewers approved the bundle version, members included);
        members from other namespaces still need their own approvals, and
        every other rule is checked again. Requires: nothing checked here.
        """
        namespace, name = row.namespace, row.name
        tx.bundles.lock(row.id)
        prev = tx.bundles.get_alias(row.id, alias)
        if expected_version is not None and prev != expected_version:
            raise Conflict(
                f"bundle alias {namespace}/{name}@{alias} points at "
                f"{prev if prev is not None else 'nothing'}, not {expected_version}: "
                "it was moved meanwhile; re-read and retry",
                code="ALIAS_CHANGED",
                details={"alias": alias, "expected": expected_version, "actual": prev},
            )
        found = tx.bundles.version(row.id, version)
        if found is None:
            raise NotFound(
                f"bundle {namespace}/{name} has no version {version}",
                code="BUNDLE_VERSION_NOT_FOUND",
                details={"namespace": namespace, "name": name, "version": version},
            )
        members = dict(
            zip(
                found.members,
                tx.load_versions(list(found.members.values()), with_files=True),
                strict=True,
            )
        )
        rollback = prev is not None and _previous_target(tx, row.id, alias) == version
        self._gate(
            tx, row, alias, version, members, rollback=rollback, approved=approval_id is not None
        )
        at = now_us()
        tx.bundles.set_alias(
            row.id, alias, version, from_number=prev, actor=actor.name, reason=reason, at=at
        )
        payload: dict[str, Any] = {
            "name": name,
            "alias": alias,
            "from_version": prev,
            "to_version": version,
            "reason": reason,
            "members": {role: m.ref for role, m in members.items()},
            "before": {"version": prev},
            "after": {"version": version},
        }
        if rollback:
            payload["rollback"] = True
        if approval_id is not None:
            payload["approval_id"] = approval_id
        tx.append_event(
            "bundle.alias_moved",
            actor=actor.name,
            namespace=namespace,
            subject=_subject(namespace, name, alias),
            payload=payload,
        )
        edges = parse_edges(
            row.edges if found.edges is None else found.edges,
            row.roles if found.edges is None else found.members,
        )
        return BundleVersion(
            namespace,
            name,
            found.number,
            members,
            found.created_by,
            found.created_at,
            edges=[e for e in edges if e.source in members and e.target in members],
        )

    def _gate(
        self,
        tx: RegistryTx,
        row: BundleRow,
        alias: str,
        number: int,
        members: dict[str, Version],
        *,
        rollback: bool,
        approved: bool = False,
        check_approvals: bool = True,
    ) -> None:
        """Refuse moving protected ``alias`` to bundle version ``number`` unless
        every member meets its model's production policy (and approvals).

        ``approved``: an approved bundle request, which stands for the
        approvals of members in the bundle's namespace. ``check_approvals``
        False checks the rest of the policy only (a request being made or
        reviewed)."""
        policy = _namespace_policy(self, tx, row.namespace)
        if not policy.protects(alias):
            return
        ref = f"{row.namespace}/{row.name}/{number}"
        violations: list[dict[str, Any]] = []
        unapproved: list[dict[str, Any]] = []
        for role, member in members.items():
            model_id = tx.version_keys(member.id).model_id
            model_policy = policy_gate.effective_policy(tx, model_id)
            ev = evaluate(model_policy, member, approvals=None, require_published=True)
            violations.extend(
                {"role": role, "ref": member.ref, **x.to_dict()} for x in ev.violations
            )
            if (
                check_approvals
                and not rollback
                and not (approved and member.namespace == row.namespace)
                and model_policy.protects(alias)
                and model_policy.approvals_needed
                and tx.get_alias(model_id, alias) != member.id
            ):
                unapproved.append(
                    {
                        "role": role,
                        "ref": member.ref,
                        "rule": "approvals",
                        "message": f"{member.namespace}/{member.model}@{alias} does not point "
                        f"at {member.ref}; moving it there needs "
                        f"{model_policy.approvals_needed} approval(s)",
                    }
                )
        details = {"ref": ref, "action": "alias", "alias": alias, "violations": violations}
        if violations:
            listing = "; ".join(f"{x['role']} ({x['ref']}): {x['message']}" for x in violations)
            raise PolicyViolation(
                f"cannot move bundle alias @{alias} to {ref}: the production policy is not "
                f"met: {listing}",
                details=details,
            )
        if unapproved:
            listing = "; ".join(f"{x['role']}: {x['message']}" for x in unapproved)
            raise Conflict(
                f"cannot move bundle alias @{alias} to {ref}: {listing}; request approval "
                f"for those moves first (`modelyard approval request REF --alias {alias}`), or "
                f"of this bundle move (`modelyard bundle approval request "
                f"{row.namespace}/{row.name}@{number} {alias}`)",
                code="APPROVAL_REQUIRED",
                details={**details, "violations": unapproved},
            )

    def delete_bundle_alias(
        self,
        name: str,
        alias: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        reason: str = "",
        actor: Principal,
    ) -> None:
        """Remove a bundle alias (recorded in history); ``ALIAS_PROTECTED`` if
        the namespace's production policy protects it. Requires: write."""
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.WRITE, namespace)
        validate_name(name)
        check_bundle_alias(alias)
        reason = v.check_description(reason)

        def op(tx: RegistryTx) -> None:
            row = tx.bundles.get(namespace, name)
            if row is None:
                raise bundle_not_found(namespace, name)
            tx.bundles.lock(row.id)
            prev = tx.bundles.get_alias(row.id, alias)
            if prev is None:
                raise NotFound(
                    f"bundle alias {namespace}/{name}@{alias} not found",
                    code="ALIAS_NOT_FOUND",
                    details={"namespace": namespace, "name": name, "alias": alias},
                )
            if _namespace_policy(self, tx, namespace).protects(alias):
                raise Conflict(
                    f"bundle alias {namespace}/{name}@{alias} is protected by the production "
                    "policy; move it or unprotect it first",
                    code="ALIAS_PROTECTED",
                    details={"alias": alias},
                )
            tx.bundles.set_alias(
                row.id, alias, None, from_number=prev, actor=actor.name, reason=reason, at=now_us()
            )
            tx.append_event(
                "bundle.alias_deleted",
                actor=actor.name,
                namespace=namespace,
                subject=_subject(namespace, name, alias),
                payload={
                    "name": name,
                    "alias": alias,
                    "from_version": prev,
                    "reason": reason,
                    "before": {"version": prev},
                    "after": {"version": None},
                },
            )

        self.run_in_transaction(op)

    def bundle_alias_history(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        alias: str | None = None,
        actor: Principal,
    ) -> list[BundleAliasMove]:
        """Every recorded move of a bundle's aliases (or of one, compared as
        given), oldest first.

        Requires: read on the namespace (not part of the production view).
        """
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.READ, namespace)
        with self.db.read() as tx:
            row = tx.bundles.get(namespace, name)
            if row is None:
                raise bundle_not_found(namespace, name)
            return [
                BundleAliasMove(
                    namespace, name, m.alias, m.from_version, m.to_version, m.actor, m.reason, m.at
                )
                for m in tx.bundles.alias_history(row.id, alias)
            ]


def _namespace_policy(core: RegistryCore, tx: RegistryTx, namespace: str) -> Policy:
    stored = tx.governance.get_policy(core.namespace_id(tx, namespace), None, PRODUCTION)
    found = policy_gate.stored_policy(None if stored is None else stored.rules)
    return found or Policy()


def _previous_target(tx: RegistryTx, bundle_id: int, alias: str) -> int | None:
    """Where ``alias`` pointed before its current target (a rollback's destination)."""
    moves = tx.bundles.alias_history(bundle_id, alias)
    return moves[-1].from_version if moves else None
