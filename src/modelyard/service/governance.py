"""Governance use cases (issue 3): production policies, approvals, rollback,
alias history by time and the audit log.

Enforcement itself (the gate on publish and on protected alias moves) runs
inside ``RegistryService``'s transactions through ``service/policy_gate.py``;
this service stores policies, answers dry runs and drives approvals, which
apply their transition through the same in-transaction code paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelyard.domain.approvals import Approval, ApprovalAction, ApprovalState
from modelyard.domain.entities import AliasMove, Version, VersionState
from modelyard.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from modelyard.domain.filters import And, Comparison, Field, Node, Or
from modelyard.domain.lifecycle import check_transition
from modelyard.domain.names import RESERVED_ALIASES, validate_alias, validate_name
from modelyard.domain.policies import (
    PRODUCTION,
    Policy,
    evaluate,
    merge_policies,
    parse_policy,
    policy_filter,
    visible,
)
from modelyard.domain.references import DEFAULT_NAMESPACE, Reference
from modelyard.service import policy_gate
from modelyard.service import validation as v
from modelyard.service.registry import Page, RegistryService, _page_size
from modelyard.store.metadata import governance as gov
from modelyard.store.metadata.repository import Tx

_ACTION_RE = re.compile(r"^[a-z][a-z0-9_.]{0,63}\*?$")
MAX_ACTOR_LENGTH = 256


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """A stored policy (or none) of a namespace or one model."""

    namespace: str
    model: str | None
    policy: Policy | None
    updated_by: str | None
    updated_at: int | None


@dataclass(frozen=True, slots=True)
class PolicyCheck:
    """A dry run: what a version still lacks for a gated transition."""

    ref: str
    action: str
    alias: str | None
    gated: bool
    policy: Policy
    violations: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        """Nothing is missing."""
        return not self.violations


@dataclass(frozen=True, slots=True)
class AliasAt:
    """Where an alias pointed at a time, and the move that put it there."""

    namespace: str
    model: str
    alias: str
    at: int
    version: int | None
    move: AliasMove | None


def parse_instant(value: str | int) -> int:
    """A time as integer microseconds: digits are µs, anything else RFC 3339
    (naive means UTC). ``INVALID_TIME`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        micros = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 20:
        micros = int(value)
    elif isinstance(value, str) and len(value) <= 64:
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(
                f"invalid time {value!r}: use RFC 3339 (2026-01-02T03:04:05Z) or microseconds",
                code="INVALID_TIME",
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    else:
        raise InvalidInput("invalid time", code="INVALID_TIME")
    if not -(2**63) <= micros < 2**63:
        raise InvalidInput("time out of range", code="INVALID_TIME")
    return micros


def _cursor(token: str | None) -> int | None:
    if not token:
        return None
    if not token.isdigit() or len(token) > 18:
        raise InvalidInput("invalid page token", code="INVALID_CURSOR")
    return int(token)


def _actor_filter(value: str | None) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_ACTOR_LENGTH):
        raise InvalidInput("actor filter is too long", code="INVALID_INPUT")
    return None if value is None else _text(value, "actor")


def _text(value: str, field_name: str) -> str:
    """Free text bound for the database: no NUL (PostgreSQL refuses it in text)
    and no lone surrogates (not encodable as UTF-8)."""
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise InvalidInput(
            f"{field_name} contains NUL or surrogate characters",
            code="INVALID_INPUT",
            details={"field": field_name},
        )
    return value


def _comment(value: str) -> str:
    return _text(v.check_description(value), "comment")


class GovernanceService:
    """Policies, approvals, rollback, alias-at-time and the audit log."""

    def __init__(self, registry: RegistryService) -> None:
        self.reg = registry
        self.db = registry.db

    # -- policies ---------------------------------------------------------

    def _scope(self, tx: Tx, namespace: str, model: str | None) -> tuple[int, int | None]:
        nid = self.reg._namespace_id(tx, namespace)
        mid = None if model is None else self.reg._model_id(tx, namespace, model)
        return nid, mid

    def get_policy(self, namespace: str, model: str | None = None) -> PolicyRecord:
        """The policy stored for a namespace or for one model (``policy`` None if unset).

        Requires: reader on the namespace.
        """
        validate_name(namespace, kind="namespace")
        if model is not None:
            validate_name(model)
        with self.db.read() as tx:
            nid, mid = self._scope(tx, namespace, model)
            stored = gov.get_policy(tx, nid, mid, PRODUCTION)
        if stored is None:
            return PolicyRecord(namespace, model, None, None, None)
        return PolicyRecord(
            namespace, model, parse_policy(stored.rules), stored.updated_by, stored.updated_at
        )

    def effective_policy(self, namespace: str, model: str) -> Policy:
        """The policy that gates ``model``: its namespace's, extended by its own.

        Requires: reader on the namespace.
        """
        with self.db.read() as tx:
            mid = self.reg._model_id(tx, namespace, model)
            return policy_gate.effective_policy(tx, mid)

    def set_policy(
        self,
        namespace: str,
        rules: Mapping[str, Any],
        *,
        model: str | None = None,
        actor: str,
    ) -> PolicyRecord:
        """Replace the production policy of a namespace (or of one model).

        Writes ``policy.updated`` with the policy before and after.
        Requires: admin on the namespace.
        """
        validate_name(namespace, kind="namespace")
        if model is not None:
            validate_name(model)
        policy = parse_policy(rules)
        stored_rules = policy.to_dict()

        def op(tx: Tx) -> PolicyRecord:
            nid = self.reg._namespace_id(tx, namespace)
            mid = None
            if model is None:
                gov.lock_namespace(tx, nid)
            else:
                mid = self.reg._model_id(tx, namespace, model, for_update=True)
            before = gov.get_policy(tx, nid, mid, PRODUCTION)
            gov.put_policy(tx, nid, mid, PRODUCTION, stored_rules, actor)
            after = gov.get_policy(tx, nid, mid, PRODUCTION)
            assert after is not None
            tx.append_event(
                "policy.updated",
                actor=actor,
                namespace=namespace,
                subject=namespace if model is None else f"{namespace}/{model}",
                payload={
                    "scope": "namespace" if model is None else "model",
                    "purpose": PRODUCTION,
                    "before": None if before is None else before.rules,
                    "after": after.rules,
                },
            )
            return PolicyRecord(namespace, model, policy, after.updated_by, after.updated_at)

        return self.reg._write(op)

    def delete_policy(self, namespace: str, *, model: str | None = None, actor: str) -> None:
        """Remove the production policy of a namespace (or of one model).

        Requires: admin on the namespace.
        """
        validate_name(namespace, kind="namespace")
        if model is not None:
            validate_name(model)

        def op(tx: Tx) -> None:
            nid = self.reg._namespace_id(tx, namespace)
            mid = None
            if model is None:
                gov.lock_namespace(tx, nid)
            else:
                mid = self.reg._model_id(tx, namespace, model, for_update=True)
            before = gov.get_policy(tx, nid, mid, PRODUCTION)
            if before is None or not gov.delete_policy(tx, nid, mid, PRODUCTION):
                raise NotFound(
                    "no policy set here", code="POLICY_NOT_FOUND", details={"namespace": namespace}
                )
            tx.append_event(
                "policy.deleted",
                actor=actor,
                namespace=namespace,
                subject=namespace if model is None else f"{namespace}/{model}",
                payload={
                    "scope": "namespace" if model is None else "model",
                    "purpose": PRODUCTION,
                    "before": before.rules,
                    "after": None,
                },
            )

        self.reg._write(op)

    def visibility_filter(self, namespace: str) -> Node:
        """The production view of a namespace as one search filter node.

        Versions a production consumer may see: published and meeting the
        content rules of their model's effective policy (see
        :func:`~modelyard.domain.policies.policy_filter`). Models with their
        own policy get their own branch, the rest share the namespace's:
        ``(namespace = ns AND name NOT IN (own...) AND ns_filter) OR (namespace
        = ns AND name = m1 AND m1_filter) OR ...``. AND it into a search so the
        view is an indexed query, not post-filtering.
        Requires: consumer (or reader) on the namespace.
        """
        validate_name(namespace, kind="namespace")
        with self.db.read() as tx:
            nid = self.reg._namespace_id(tx, namespace)
            ns_rules = gov.get_policy(tx, nid, None, PRODUCTION)
            own = gov.model_policies_of_namespace(tx, nid, PRODUCTION)
        ns_policy = policy_gate.stored_policy(None if ns_rules is None else ns_rules.rules)
        in_ns = Comparison(Field("attr", "namespace"), "=", namespace)
        name = Field("attr", "name")
        shared: list[Node] = [in_ns]
        if own:
            shared.append(Comparison(name, "NOT IN", tuple(n for n, _ in own)))
        shared.append(policy_filter(ns_policy or Policy()))
        branches: list[Node] = [And(tuple(shared))]
        for model_name, rules in own:
            effective = merge_policies(ns_policy, parse_policy(rules))
            branches.append(
                And((in_ns, Comparison(name, "=", model_name), policy_filter(effective)))
            )
        return branches[0] if len(branches) == 1 else Or(tuple(branches))

    def is_visible(self, version: Version) -> bool:
        """True if a production consumer may see ``version`` (point reads of the
        consumer view; the same rule as :meth:`visibility_filter`).
        Requires: consumer (or reader) on the namespace.
        """
        with self.db.read() as tx:
            mid = self.reg._model_id(tx, version.namespace, version.model)
            return visible(policy_gate.effective_policy(tx, mid), version)

    def check(
        self, ref: str | Reference, *, action: str = "publish", alias: str | None = None
    ) -> PolicyCheck:
        """Dry run: every rule the version does not meet yet for ``action``.

        ``action`` is ``publish`` or ``alias`` (with ``alias``). Lists the
        approval rule too when approvals are needed (they are given by
        approving a request, never by the version itself). Answers even when
        everything is met (``violations`` empty).
        Requires: reader on the namespace.
        """
        act = _action(action)
        if act is ApprovalAction.ALIAS or alias is not None:
            alias = _alias(alias)
        r = self.reg.resolve(ref)
        with self.db.read() as tx:
            vid = self.reg._version_id(tx, r)
            version = tx.load_versions([vid])[0]
            mid = tx.version_row(vid).model_id
            policy = policy_gate.effective_policy(tx, mid)
        violations = []
        if act is ApprovalAction.PUBLISH and version.state is not VersionState.READY:
            violations.append(
                {
                    "rule": "state",
                    "key": None,
                    "expected": "ready",
                    "actual": version.state.value,
                    "message": f"only ready versions can be published (it is "
                    f"{version.state.value})",
                }
            )
        gated = act is ApprovalAction.PUBLISH or policy.protects(alias or "")
        if gated:
            ev = evaluate(policy, version, require_published=act is ApprovalAction.ALIAS)
            violations += [x.to_dict() for x in ev.violations]
        return PolicyCheck(version.ref, act.value, alias, gated, policy, violations)

    # -- aliases: rollback and time travel --------------------------------

    def rollback_alias(
        self,
        name: str,
        alias: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: str,
        reason: str = "",
        expected_version: int | None = None,
    ) -> Version:
        """Move ``alias`` back to the version it pointed at before its last move.

        "Previous" is the ``from_version`` of the alias's newest history
        entry, so rolling back twice returns to where it started (an undo of
        the last move, itself recorded). ``NO_PREVIOUS_TARGET`` when the last
        move started from nothing. ``expected_version`` (the version the
        caller believes is current) turns concurrent rollbacks into exactly
        one winner and ``ALIAS_CHANGED`` for the others. On a protected alias
        the target must still meet the policy, but needs no new approval: it
        held the alias before.
        Requires: writer on the namespace.
        """
        validate_name(namespace, kind="namespace")
        validate_name(name)
        validate_alias(alias)
        reason = _text(v.check_description(reason), "reason")

        def op(tx: Tx) -> Version:
            mid = self.reg._model_id(tx, namespace, name, for_update=True)
            last = gov.last_alias_move(tx, mid, namespace, name, alias)
            if last is None or last.from_version is None:
                raise Conflict(
                    f"alias {namespace}/{name}@{alias} has no previous target to roll back to",
                    code="NO_PREVIOUS_TARGET",
                    details={"alias": alias, "history_entries": 0 if last is None else None},
                )
            why = reason or f"rollback from {last.to_version} to {last.from_version}"
            return self.reg.move_alias_in_tx(
                tx,
                Reference(namespace, name, version=last.from_version),
                alias,
                actor=actor,
                reason=why,
                expected_version=expected_version,
                rollback=True,
            )

        return self.reg._write(op)

    def alias_at(
        self, name: str, alias: str, at: str | int, *, namespace: str = DEFAULT_NAMESPACE
    ) -> AliasAt:
        """Which version ``alias`` pointed at, at time ``at`` (µs or RFC 3339).

        ``version`` is None when the alias did not exist (yet, or any more).
        Requires: reader on the namespace.
        """
        validate_name(namespace, kind="namespace")
        validate_name(name)
        validate_alias(alias)
        when = parse_instant(at)
        with self.db.read() as tx:
            mid = self.reg._model_id(tx, namespace, name)
            move = gov.alias_move_at(tx, mid, namespace, name, alias, when)
        return AliasAt(
            namespace, name, alias, when, None if move is None else move.to_version, move
        )

    # -- approvals --------------------------------------------------------

    def request_approval(
        self,
        ref: str | Reference,
        *,
        action: str = "publish",
        alias: str | None = None,
        archive_previous: bool = False,
        comment: str = "",
        actor: str,
    ) -> Approval:
        """Ask reviewers for a gated transition.

        ``publish`` (optionally then pointing ``alias`` at the version) or
        ``alias`` (move ``alias`` to an already published version). Refused
        with ``POLICY_VIOLATION`` when the version fails the policy's other
        rules, so reviewers only see requests that can apply; refused with
        ``APPROVAL_ALREADY_PENDING`` when the same request is open.
        Requires: writer on the namespace.
        """
        act = _action(action)
        if act is ApprovalAction.ALIAS or alias is not None:
            alias = _alias(alias)
        comment = _comment(comment)
        r = self.reg.resolve(ref)

        def op(tx: Tx) -> Approval:
            vid = self.reg._version_id(tx, r)
            version = tx.load_versions([vid])[0]
            row = tx.version_row(vid)
            mid = self.reg._model_id(tx, version.namespace, version.model, for_update=True)
            nid = self.reg._namespace_id(tx, version.namespace)
            if act is ApprovalAction.PUBLISH:
                check_transition(version.state, VersionState.PUBLISHED, ref=version.ref)
            policy = policy_gate.effective_policy(tx, row.model_id)
            self._precheck(policy, version, act, alias)
            if gov.find_pending(tx, vid, act, alias) is not None:
                raise Conflict(
                    "the same request is already pending",
                    code="APPROVAL_ALREADY_PENDING",
                    details={"ref": version.ref, "action": act.value, "alias": alias},
                )
            alias_from = None
            if alias is not None:
                current = tx.get_alias(mid, alias)
                alias_from = None if current is None else tx.version_row(current).number
            aid = gov.insert_approval(
                tx,
                namespace_id=nid,
                model_id=mid,
                version_id=vid,
                action=act,
                alias=alias,
                alias_from=alias_from,
                archive_previous=archive_previous,
                actor=actor,
                comment=comment,
            )
            approval = gov.load_approvals(tx, [aid])[0].approval
            tx.append_event(
                "approval.requested",
                actor=actor,
                namespace=version.namespace,
                subject=version.ref,
                payload={
                    **_approval_payload(approval),
                    "required_approvals": policy.approvals_needed,
                },
            )
            return approval

        return self.reg._write(op)

    @staticmethod
    def _precheck(policy: Policy, version: Version, act: ApprovalAction, alias: str | None) -> None:
        """The policy minus the approval rule, for the transition a request asks."""
        if act is ApprovalAction.PUBLISH:
            policy_gate.enforce(evaluate(policy, version, approvals=None), version, "publish")
        elif alias is not None and policy.protects(alias):
            ev = evaluate(policy, version, approvals=None, require_published=True)
            policy_gate.enforce(ev, version, "alias", alias)

    def _pending(self, tx: Tx, approval_id: int) -> gov.ApprovalRow:
        row = self._row(tx, approval_id, for_update=True)
        if row.approval.state is not ApprovalState.PENDING:
            raise Conflict(
                f"approval request {approval_id} is {row.approval.state.value}, not pending",
                code="APPROVAL_NOT_PENDING",
                details={"id": approval_id, "state": row.approval.state.value},
            )
        return row

    def _row(self, tx: Tx, approval_id: int, *, for_update: bool = False) -> gov.ApprovalRow:
        if isinstance(approval_id, bool) or not isinstance(approval_id, int):
            raise InvalidInput("approval id must be an integer", code="INVALID_INPUT")
        if not 1 <= approval_id < 2**63:
            # No id in the details: JSON encoders refuse integers beyond 64 bits.
            raise NotFound("approval request not found", code="APPROVAL_NOT_FOUND")
        found = gov.load_approvals(tx, [approval_id], for_update=for_update)
        if not found:
            raise NotFound(
                f"approval request {approval_id} not found",
                code="APPROVAL_NOT_FOUND",
                details={"id": approval_id},
            )
        return found[0]

    def approve(self, approval_id: int, *, actor: str, comment: str = "") -> Approval:
        """Approve a pending request; at the N-th distinct approval it applies.

        The requester cannot approve (``SELF_APPROVAL``), nor can anyone twice
        (``ALREADY_REVIEWED``). The policy minus its approval rule must still
        hold, else ``POLICY_VIOLATION`` and nothing changes (the request stays
        pending). The transition, the vote and the request's new state commit
        in one transaction; of two concurrent last approvals exactly one
        applies and the other gets ``APPROVAL_NOT_PENDING``.
        Requires: reviewer on the namespace.
        """
        comment = _comment(comment)

        def op(tx: Tx) -> Approval:
            row = self._pending(tx, approval_id)
            a = row.approval
            if actor == a.requested_by:
                raise PermissionDenied(
                    "the requester cannot approve their own request",
                    code="SELF_APPROVAL",
                    details={"id": approval_id},
                )
            if any(vote.actor == actor for vote in a.votes):
                raise Conflict(
                    f"{actor} has already reviewed request {approval_id}",
                    code="ALREADY_REVIEWED",
                    details={"id": approval_id},
                )
            version = tx.load_versions([row.version_id])[0]
            policy = policy_gate.effective_policy(tx, row.model_id)
            self._precheck(policy, version, a.action, a.alias)
            gov.add_vote(tx, approval_id, actor, "approve", comment)
            count = len(a.approvers) + 1
            tx.append_event(
                "approval.approved",
                actor=actor,
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

        return self.reg._write(op)

    def _apply(self, tx: Tx, row: gov.ApprovalRow, actor: str) -> None:
        a = row.approval
        ref = Reference(a.namespace, a.model, version=a.version)
        before = tx.load_versions([row.version_id])[0]
        if a.alias is not None:
            # The reviewers approved moving the alias from where it was then:
            # if it moved since (another approved move, a rollback), this one
            # must not silently undo that. Locked, so two approved moves of one
            # alias cannot both apply.
            self.reg._model_id(tx, a.namespace, a.model, for_update=True)
            current = tx.get_alias(row.model_id, a.alias)
            now = None if current is None else tx.version_row(current).number
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
        gov.set_approval_state(tx, a.id, ApprovalState.APPLIED, actor)
        after = self._row(tx, a.id).approval
        tx.append_event(
            "approval.applied",
            actor=actor,
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

    def reject(self, approval_id: int, *, actor: str, comment: str = "") -> Approval:
        """Reject a pending request (final). The requester cancels instead.

        Requires: reviewer on the namespace.
        """
        comment = _comment(comment)

        def op(tx: Tx) -> Approval:
            a = self._pending(tx, approval_id).approval
            if actor == a.requested_by:
                raise PermissionDenied(
                    "the requester cannot review their own request; cancel it instead",
                    code="SELF_APPROVAL",
                    details={"id": approval_id},
                )
            gov.add_vote(tx, approval_id, actor, "reject", comment)
            gov.set_approval_state(tx, approval_id, ApprovalState.REJECTED, actor)
            tx.append_event(
                "approval.rejected",
                actor=actor,
                namespace=a.namespace,
                subject=a.ref,
                payload={
                    **_approval_payload(a),
                    "comment": comment,
                    "before": {"request": "pending"},
                    "after": {"request": "rejected"},
                },
            )
            return self._row(tx, approval_id).approval

        return self.reg._write(op)

    def cancel(self, approval_id: int, *, actor: str) -> Approval:
        """Withdraw one's own pending request (``NOT_REQUESTER`` for anyone else).

        Requires: writer on the namespace.
        """

        def op(tx: Tx) -> Approval:
            a = self._pending(tx, approval_id).approval
            if actor != a.requested_by:
                raise PermissionDenied(
                    "only the requester can cancel a request",
                    code="NOT_REQUESTER",
                    details={"id": approval_id},
                )
            gov.set_approval_state(tx, approval_id, ApprovalState.CANCELLED, actor)
            tx.append_event(
                "approval.cancelled",
                actor=actor,
                namespace=a.namespace,
                subject=a.ref,
                payload={
                    **_approval_payload(a),
                    "before": {"request": "pending"},
                    "after": {"request": "cancelled"},
                },
            )
            return self._row(tx, approval_id).approval

        return self.reg._write(op)

    def get_approval(self, approval_id: int) -> Approval:
        """One request with its reviews.

        Requires: reader on the request's namespace.
        """
        with self.db.read() as tx:
            return self._row(tx, approval_id).approval

    def list_approvals(
        self,
        namespace: str,
        *,
        state: str | None = "pending",
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[Approval]:
        """A namespace's requests, newest first (pending ones by default).

        Requires: reader on the namespace.
        """
        validate_name(namespace, kind="namespace")
        if state is not None:
            try:
                state = ApprovalState(state).value
            except ValueError:
                raise InvalidInput(
                    f"unknown approval state {state!r}",
                    code="INVALID_STATE",
                    details={"allowed": [s.value for s in ApprovalState]},
                ) from None
        limit = _page_size(page_size)
        before = _cursor(page_token)
        with self.db.read() as tx:
            nid = self.reg._namespace_id(tx, namespace)
            ids = gov.list_approval_ids(tx, nid, state=state, before=before, limit=limit + 1)
            items = [r.approval for r in gov.load_approvals(tx, ids[:limit])]
        token = str(items[-1].id) if len(ids) > limit else None
        return Page(items, token)

    # -- audit ------------------------------------------------------------

    def audit(
        self,
        *,
        actor: str | None = None,
        model: str | None = None,
        namespace: str | None = None,
        action: str | None = None,
        since: str | int | None = None,
        until: str | int | None = None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[dict[str, Any]]:
        """The audit log: events newest first, filtered, keyset-paged by id.

        ``model`` is ``name`` or ``namespace/name`` and matches the model, its
        versions and aliases; ``action`` an event type (``alias.moved``) or a
        prefix (``alias.`` or ``alias.*``); ``since`` inclusive and ``until``
        exclusive, as µs or RFC 3339.
        Requires: reader on the namespace (auditor: admin).
        """
        limit = _page_size(page_size)
        model_key: tuple[str, str] | None = None
        if model is not None:
            ns, _, name = model.rpartition("/")
            ns = ns or namespace or DEFAULT_NAMESPACE
            validate_name(ns, kind="namespace")
            validate_name(name)
            model_key = (ns, name)
        if namespace is not None:
            validate_name(namespace, kind="namespace")
        if action is not None and (not isinstance(action, str) or not _ACTION_RE.match(action)):
            raise InvalidInput(
                "action must be an event type such as alias.moved or a prefix such as alias.*",
                code="INVALID_INPUT",
                details={"field": "action"},
            )
        query = gov.AuditQuery(
            actor=_actor_filter(actor),
            namespace=namespace,
            model=model_key,
            action=action,
            since=None if since is None else parse_instant(since),
            until=None if until is None else parse_instant(until),
            before_id=_cursor(page_token),
        )
        with self.db.read() as tx:
            rows = gov.audit_events(tx, query, limit + 1)
        items = rows[:limit]
        token = str(items[-1]["id"]) if len(rows) > limit else None
        return Page(items, token)


def _action(value: str) -> ApprovalAction:
    try:
        return ApprovalAction(value)
    except ValueError:
        raise InvalidInput(
            f"unknown action {value!r}",
            code="INVALID_ACTION",
            details={"allowed": [a.value for a in ApprovalAction]},
        ) from None


def _alias(value: str | None) -> str:
    if value is None:
        raise InvalidInput("this action needs an alias", code="INVALID_ALIAS")
    validate_alias(value)
    if value in RESERVED_ALIASES:
        raise InvalidInput(f"alias {value!r} is reserved", code="INVALID_ALIAS")
    return value


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
