"""Governance entities to JSON-able dicts: the wire shape of issue 3's API."""

from __future__ import annotations

from typing import Any, Protocol

from modelyard.domain.approvals import Approval
from modelyard.domain.entities import AliasMove
from modelyard.domain.policies import Policy
from modelyard.wire.render import alias_move, iso

# The governance service's answers, as far as their wire shape reads them:
# structural types, so this module needs ``domain`` only (the service's
# dataclasses satisfy them).


class PolicyRecord(Protocol):
    """A stored policy (or none) of a namespace or one model."""

    @property
    def namespace(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def policy(self) -> Policy | None: ...
    @property
    def updated_by(self) -> str | None: ...
    @property
    def updated_at(self) -> int | None: ...


class PolicyCheck(Protocol):
    """A dry run's answer."""

    @property
    def ref(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def alias(self) -> str | None: ...
    @property
    def gated(self) -> bool: ...
    @property
    def ok(self) -> bool: ...
    @property
    def violations(self) -> list[dict[str, Any]]: ...
    @property
    def policy(self) -> Policy: ...
    @property
    def signature_diff(self) -> dict[str, Any] | None: ...


class AliasAt(Protocol):
    """Where an alias pointed at a time."""

    @property
    def namespace(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def alias(self) -> str: ...
    @property
    def at(self) -> int: ...
    @property
    def version(self) -> int | None: ...
    @property
    def move(self) -> AliasMove | None: ...


def policy_record(p: PolicyRecord) -> dict[str, Any]:
    """A stored policy of a namespace or model (``policy`` null when unset)."""
    return {
        "namespace": p.namespace,
        "model": p.model,
        "scope": "namespace" if p.model is None else "model",
        "policy": None if p.policy is None else p.policy.to_dict(),
        "updated_by": p.updated_by,
        "updated_at": None if p.updated_at is None else iso(p.updated_at),
    }


def model_policy(ns: PolicyRecord, own: PolicyRecord, effective: Policy) -> dict[str, Any]:
    """A model's own policy, its namespace's, and the merged one that applies."""
    return {
        "namespace_policy": policy_record(ns),
        "model_policy": policy_record(own),
        "effective": effective.to_dict(),
    }


def policy_check(c: PolicyCheck) -> dict[str, Any]:
    """A dry-run answer."""
    return {
        "ref": c.ref,
        "action": c.action,
        "alias": c.alias,
        "gated": c.gated,
        "ok": c.ok,
        "violations": c.violations,
        "policy": c.policy.to_dict(),
        "signature_diff": c.signature_diff,
    }


def alias_at(a: AliasAt) -> dict[str, Any]:
    """Where an alias pointed at a time."""
    return {
        "namespace": a.namespace,
        "model": a.model,
        "alias": a.alias,
        "at": iso(a.at),
        "at_us": a.at,
        "version": a.version,
        "move": None if a.move is None else alias_move(a.move),
    }


def approval(a: Approval) -> dict[str, Any]:
    """One approval request with its reviews."""
    return {
        "id": a.id,
        "ref": a.ref,
        "namespace": a.namespace,
        "model": a.model,
        "version": a.version,
        "action": a.action.value,
        "alias": a.alias,
        "alias_from": a.alias_from,
        "archive_previous": a.archive_previous,
        "state": a.state.value,
        "requested_by": a.requested_by,
        "comment": a.comment,
        "created_at": iso(a.created_at),
        "decided_by": a.decided_by,
        "decided_at": None if a.decided_at is None else iso(a.decided_at),
        "approvals": a.approvers,
        "reviews": [
            {"actor": v.actor, "decision": v.decision, "comment": v.comment, "at": iso(v.at)}
            for v in a.votes
        ],
    }


def audit_entry(e: dict[str, Any]) -> dict[str, Any]:
    """One audit entry: who did what to which target, when, before and after."""
    payload = e["payload"] if isinstance(e["payload"], dict) else {}
    return {
        "id": e["id"],
        "at": iso(e["at"]),
        "actor": e["actor"],
        "action": e["type"],
        "namespace": e["namespace"],
        "target": e["subject"],
        "before": payload.get("before"),
        "after": payload.get("after"),
        "change": _change_of(e["type"], payload),
        "payload": payload,
    }


def _change_of(kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The larger change an entry belongs to (a family promotion and its
    parts share one id), so a reader can show them as one; None for most."""
    if kind == "family.promoted" and isinstance(payload.get("parts"), list):
        return {"id": payload.get("change_id"), "type": kind, "parts": len(payload["parts"])}
    change = payload.get("change")
    return change if isinstance(change, dict) else None
