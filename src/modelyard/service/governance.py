"""Governance use cases (issue 3): production policies, dry runs, the
production view as a filter, rollback, alias history by time and the audit log.

Enforcement itself (the gate on publish and on protected alias moves) runs
inside ``RegistryService``'s transactions through ``service/policy_gate.py``;
approvals live in ``service/approvals.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelyard.domain import identity as auth
from modelyard.domain.approvals import ApprovalAction
from modelyard.domain.bundles import signature_diff
from modelyard.domain.entities import AliasMove, Version, VersionState
from modelyard.domain.errors import InvalidInput, NotFound
from modelyard.domain.filters import Node
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import RESERVED_ALIASES, validate_alias, validate_name
from modelyard.domain.policies import (
    PRODUCTION,
    Policy,
    evaluate,
    parse_policy,
    visible,
)
from modelyard.domain.references import DEFAULT_NAMESPACE, Reference
from modelyard.service import policy_gate
from modelyard.service import validation as v
from modelyard.service.core import Page, check_page_size
from modelyard.service.registry import RegistryService
from modelyard.store.metadata.ports import AuditQuery, RegistryTx

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
    signature_diff: dict[str, Any] | None = None

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


def _is_ascii_int(text: str) -> bool:
    # str.isdigit() is also true for "²" and other digits int() refuses.
    return text.isascii() and text.isdigit()


def parse_instant(value: str | int) -> int:
    """A time as integer microseconds: digits are µs, anything else RFC 3339
    (naive means UTC). ``INVALID_TIME`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        micros = value
    elif isinstance(value, str) and _is_ascii_int(value.strip().lstrip("-")) and len(value) < 20:
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


def parse_cursor(token: str | None) -> int | None:
    if not token:
        return None
    if not _is_ascii_int(token) or len(token) > 18:
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


def _check_scope(namespace: str, model: str | None) -> None:
    """Validate the names of a policy's scope (a namespace, or one model in it)."""
    validate_name(namespace, kind="namespace")
    if model is not None:
        validate_name(model)


def check_comment(value: str) -> str:
    return _text(v.check_description(value), "comment")


class GovernanceService:
    """Policies, approvals, rollback, alias-at-time and the audit log."""

    def __init__(self, registry: RegistryService) -> None:
        self.reg = registry
        self.db = registry.db

    # -- policies ---------------------------------------------------------

    def _scope(
        self, tx: RegistryTx, namespace: str, model: str | None, *, for_update: bool = False
    ) -> tuple[int, int | None]:
        """The ids (namespace, model or None) a policy is kept under; ``for_update``
        locks that scope so concurrent changes of one policy serialize."""
        nid = self.reg.namespace_id(tx, namespace)
        if model is None:
            if for_update:
                tx.governance.lock_namespace(nid)
            return nid, None
        return nid, self.reg.model_id(tx, namespace, model, for_update=for_update)

    @staticmethod
    def _policy_event(
        tx: RegistryTx,
        verb: str,
        namespace: str,
        model: str | None,
        actor: Principal,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> None:
        """The ``policy.<verb>`` event of a change to a namespace's or model's policy."""
        tx.append_event(
            f"policy.{verb}",
            actor=actor.name,
            namespace=namespace,
            subject=namespace if model is None else f"{namespace}/{model}",
            payload={
                "scope": "namespace" if model is None else "model",
                "purpose": PRODUCTION,
                "before": before,
                "after": after,
            },
        )

    def get_policy(
        self, namespace: str, model: str | None = None, *, actor: Principal
    ) -> PolicyRecord:
        """The policy stored for a namespace or for one model (``policy`` None if unset).

        Requires: read on the namespace.
        """
        _check_scope(namespace, model)
        auth.require(actor, Permission.READ, namespace)
        with self.db.read() as tx:
            nid, mid = self._scope(tx, namespace, model)
            stored = tx.governance.get_policy(nid, mid, PRODUCTION)
        if stored is None:
            return PolicyRecord(namespace, model, None, None, None)
        return PolicyRecord(
            namespace, model, parse_policy(stored.rules), stored.updated_by, stored.updated_at
        )

    def effective_policy(self, namespace: str, model: str, *, actor: Principal) -> Policy:
        """The policy that gates ``model``: its namespace's, extended by its own.

        Requires: read on the namespace.
        """
        auth.require(actor, Permission.READ, namespace)
        with self.db.read() as tx:
            mid = self.reg.model_id(tx, namespace, model)
            return policy_gate.effective_policy(tx, mid)

    def set_policy(
        self,
        namespace: str,
        rules: Mapping[str, Any],
        *,
        model: str | None = None,
        actor: Principal,
    ) -> PolicyRecord:
        """Replace the production policy of a namespace (or of one model).

        Writes ``policy.updated`` with the policy before and after.
        Requires: admin on the namespace.
        """
        _check_scope(namespace, model)
        auth.require(actor, Permission.ADMIN, namespace)
        policy = parse_policy(rules)
        if model is not None and policy.bundle_breaks is not None:
            # About the namespace's bundles, which no model policy governs.
            raise InvalidInput(
                "bundle_breaks is a namespace policy rule; set it on the namespace's policy",
                code="INVALID_POLICY",
                details={"rule": "bundle_breaks"},
            )
        stored_rules = policy.to_dict()

        def op(tx: RegistryTx) -> PolicyRecord:
            nid, mid = self._scope(tx, namespace, model, for_update=True)
            before = tx.governance.get_policy(nid, mid, PRODUCTION)
            tx.governance.put_policy(nid, mid, PRODUCTION, stored_rules, actor.name)
            after = tx.governance.get_policy(nid, mid, PRODUCTION)
            assert after is not None
            self._policy_event(
                tx,
                "updated",
                namespace,
                model,
                actor,
                None if before is None else before.rules,
                after.rules,
            )
            return PolicyRecord(namespace, model, policy, after.updated_by, after.updated_at)

        return self.reg.run_in_transaction(op)

    def delete_policy(self, namespace: str, *, model: str | None = None, actor: Principal) -> None:
        """Remove the production policy of a namespace (or of one model).

        Requires: admin on the namespace.
        """
        _check_scope(namespace, model)
        auth.require(actor, Permission.ADMIN, namespace)

        def op(tx: RegistryTx) -> None:
            nid, mid = self._scope(tx, namespace, model, for_update=True)
            before = tx.governance.get_policy(nid, mid, PRODUCTION)
            if before is None or not tx.governance.delete_policy(nid, mid, PRODUCTION):
                raise NotFound(
                    "no policy set here", code="POLICY_NOT_FOUND", details={"namespace": namespace}
                )
            self._policy_event(tx, "deleted", namespace, model, actor, before.rules, None)

        self.reg.run_in_transaction(op)

    def visibility_filter(self, namespace: str) -> Node:
        """The production view of a namespace as one search filter node: what
        a ``consumer`` may see (``RegistryService.production_filter``, the one
        place the rule lives; AND it into a search so the view is an indexed
        query, not post-filtering).
        Requires: nothing (internal; callers check consume or read first).
        """
        return self.reg.production_filter(namespace)

    def is_visible(self, version: Version) -> bool:
        """True if a production consumer may see ``version`` (point reads of the
        consumer view; the same rule as :meth:`visibility_filter`).
        Requires: consumer (or reader) on the namespace.
        """
        with self.db.read() as tx:
            mid = self.reg.model_id(tx, version.namespace, version.model)
            return visible(policy_gate.effective_policy(tx, mid), version)

    def check(
        self,
        ref: str | Reference,
        *,
        action: str = "publish",
        alias: str | None = None,
        actor: Principal,
    ) -> PolicyCheck:
        """Dry run: every rule the version does not meet yet for ``action``.

        ``action`` is ``publish`` or ``alias`` (with ``alias``). Lists the
        approval rule too when approvals are needed (they are given by
        approving a request, never by the version itself). Answers even when
        everything is met (``violations`` empty).
        Requires: reader on the namespace.
        """
        act = parse_action(action)
        if act is ApprovalAction.ALIAS or alias is not None:
            alias = check_alias_name(alias)
        r = self.reg.resolve(ref)
        auth.require(actor, Permission.READ, r.namespace)
        with self.db.read() as tx:
            vid = self.reg.version_id(tx, r)
            version = tx.load_versions([vid])[0]
            mid = tx.version_keys(vid).model_id
            policy = policy_gate.effective_policy(tx, mid)
            replacing = None
            if act is ApprovalAction.ALIAS and alias is not None:
                replacing = policy_gate.alias_target(tx, mid, alias)
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
            ev = evaluate(
                policy,
                version,
                require_published=act is ApprovalAction.ALIAS,
                replacing=replacing,
                alias=alias,
            )
            violations += [x.to_dict() for x in ev.violations]
        diff = None
        if replacing is not None and replacing.id != version.id:
            # Shown whenever the move would replace a version, rule or not:
            # what consumers of @alias would see change.
            diff = {
                "against": replacing.ref,
                "checked": gated and bool(policy.compatible_signature),
                **signature_diff(
                    f"{version.model}@{alias}", replacing.signature, version.signature
                ),
            }
        return PolicyCheck(version.ref, act.value, alias, gated, policy, violations, diff)

    # -- aliases: rollback and time travel --------------------------------

    def rollback_alias(
        self,
        name: str,
        alias: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: Principal,
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

        A target archived since it held the alias (``archive_previous`` does
        that on every publish) is restored in the same transaction, so a
        rollback stays one step: to ``published`` behind a protected alias
        (which only points at published versions), to ``ready`` behind any
        other (the lifecycle's plain restore). The restore writes its own
        ``version.restored`` event (``rollback: true``) before ``alias.moved``;
        if the policy refuses the target, neither happens.
        Requires: write on the namespace.
        """
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.WRITE, namespace)
        validate_name(name)
        validate_alias(alias)
        reason = _text(v.check_description(reason), "reason")

        return self.reg.run_in_transaction(
            lambda tx: self.reg.rollback_alias_in_tx(
                tx,
                Reference(namespace, name),
                alias,
                actor=actor,
                reason=reason,
                expected_version=expected_version,
            )
        )

    def alias_at(
        self,
        name: str,
        alias: str,
        at: str | int,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: Principal,
    ) -> AliasAt:
        """Which version ``alias`` pointed at, at time ``at`` (µs or RFC 3339).

        ``version`` is None when the alias did not exist (yet, or any more).
        Requires: read on the namespace.
        """
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.READ, namespace)
        validate_name(name)
        validate_alias(alias)
        when = parse_instant(at)
        with self.db.read() as tx:
            mid = self.reg.model_id(tx, namespace, name)
            move = tx.governance.alias_move_at(mid, namespace, name, alias, when)
        return AliasAt(
            namespace, name, alias, when, None if move is None else move.to_version, move
        )

    # -- audit ------------------------------------------------------------

    def audit(
        self,
        *,
        actor: Principal,
        by: str | None = None,
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
        exclusive, as µs or RFC 3339; ``by`` the acting user.

        Requires: read on the namespace. Without ``namespace`` (or ``model``)
        the log holds only the namespaces the caller reads; instance-wide
        entries (users, tokens, global roles: namespace ``*``) need the
        instance admin or a global read role. A reader may audit their
        namespace because the log shows nothing a reader cannot see anyway
        (who changed which model, version, alias or policy, and when).
        """
        limit = check_page_size(page_size)
        model_key: tuple[str, str] | None = None
        if model is not None:
            ns, _, name = model.rpartition("/")
            ns = ns or namespace or DEFAULT_NAMESPACE
            validate_name(ns, kind="namespace")
            validate_name(name)
            model_key = (ns, name)
        if namespace is not None:
            validate_name(namespace, kind="namespace")
            auth.require(actor, Permission.READ, namespace)
        if model_key is not None:
            auth.require(actor, Permission.READ, model_key[0])
        readable = None if actor.reads_everything else actor.namespaces_with(Permission.READ)
        if action is not None and (not isinstance(action, str) or not _ACTION_RE.fullmatch(action)):
            raise InvalidInput(
                "action must be an event type such as alias.moved or a prefix such as alias.*",
                code="INVALID_INPUT",
                details={"field": "action"},
            )
        query = AuditQuery(
            actor=_actor_filter(by),
            namespace=namespace,
            namespaces=None if readable is None else tuple(sorted(readable)),
            model=model_key,
            action=action,
            since=None if since is None else parse_instant(since),
            until=None if until is None else parse_instant(until),
            before_id=parse_cursor(page_token),
        )
        with self.db.read() as tx:
            rows = tx.governance.audit_events(query, limit + 1)
        items = rows[:limit]
        token = str(items[-1]["id"]) if len(rows) > limit else None
        return Page(items, token)


def parse_action(value: str) -> ApprovalAction:
    try:
        return ApprovalAction(value)
    except ValueError:
        raise InvalidInput(
            f"unknown action {value!r}",
            code="INVALID_ACTION",
            details={"allowed": [a.value for a in ApprovalAction]},
        ) from None


def check_alias_name(value: str | None) -> str:
    if value is None:
        raise InvalidInput("this action needs an alias", code="INVALID_ALIAS")
    validate_alias(value)
    if value in RESERVED_ALIASES:
        raise InvalidInput(f"alias {value!r} is reserved", code="INVALID_ALIAS")
    return value
