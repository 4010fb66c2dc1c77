"""The production policy as a gate inside write transactions (issue 3).

``RegistryService`` calls these from ``transition_version`` and ``set_alias``
so every door (REST, SDK embedded mode, CLI, later the MLflow API and the UI)
is gated by the same rule in the same transaction as the change itself.
"""

from __future__ import annotations

from typing import Any

from modelyard.domain.entities import Version, VersionState
from modelyard.domain.errors import Conflict, PolicyViolation
from modelyard.domain.policies import (
    PRODUCTION,
    Evaluation,
    Policy,
    evaluate,
    merge_policies,
    parse_policy,
)
from modelyard.store.metadata.ports import RegistryTx


def stored_policy(rules: dict[str, Any] | None) -> Policy | None:
    """A policy as stored (validated on write, so parsing cannot fail here)."""
    return None if rules is None else parse_policy(rules)


def effective_policy(tx: RegistryTx, model_id: int) -> Policy:
    """The model's production policy: its namespace's, extended by its own."""
    ns_rules, model_rules = tx.governance.policies_of_model(model_id, PRODUCTION)
    return merge_policies(stored_policy(ns_rules), stored_policy(model_rules))


def namespace_policy(tx: RegistryTx, namespace: str) -> Policy:
    """A namespace's own production policy (empty when none is set): what
    governs its bundles, which have no policy of their own."""
    ns = tx.get_namespace(namespace)
    stored = None if ns is None else tx.governance.get_policy(ns.id, None, PRODUCTION)
    return stored_policy(None if stored is None else stored.rules) or Policy()


def violation_details(
    ev: Evaluation, version: Version, action: str, alias: str | None
) -> dict[str, Any]:
    """The structured part of a policy error or dry run."""
    return {
        "ref": version.ref,
        "action": action,
        "alias": alias,
        "violations": [v.to_dict() for v in ev.violations],
    }


def enforce(ev: Evaluation, version: Version, action: str, alias: str | None = None) -> None:
    """Raise unless ``ev`` is clean.

    Only the approval rule unmet: ``APPROVAL_REQUIRED`` (409), telling the
    caller to request one. Anything else: ``POLICY_VIOLATION`` (409) listing
    every unmet rule, the approval rule included.
    """
    if ev.ok:
        return
    what = f"publish {version.ref}" if action == "publish" else f"move @{alias} to {version.ref}"
    details = violation_details(ev, version, action, alias)
    if ev.only_approvals_missing:
        raise Conflict(
            f"cannot {what}: the production policy requires approval; request one "
            "(POST .../versions/{v}/approvals, `modelyard approval request`)",
            code="APPROVAL_REQUIRED",
            details=details,
        )
    listing = "; ".join(v.message for v in ev.violations)
    raise PolicyViolation(
        f"cannot {what}: the production policy is not met: {listing}", details=details
    )


def check_publish(tx: RegistryTx, version: Version, model_id: int, *, approved: bool) -> None:
    """Gate a publish. ``approved``: an approval being applied (approvals met)."""
    policy = effective_policy(tx, model_id)
    enforce(evaluate(policy, version, approvals=None if approved else 0), version, "publish")


def alias_target(tx: RegistryTx, model_id: int, alias: str) -> Version | None:
    """The version ``alias`` points at now, or None."""
    vid = tx.get_alias(model_id, alias)
    return None if vid is None else tx.load_versions([vid])[0]


def check_alias(
    tx: RegistryTx,
    version: Version,
    model_id: int,
    alias: str,
    *,
    approved: bool,
    rollback: bool = False,
) -> None:
    """Gate a move of ``alias`` to ``version``; no-op unless the alias is protected.

    A protected alias may only point at a published version meeting the
    policy; with ``compatible_signature`` its signature must also be
    compatible with the current target's. A ``rollback`` is not held to that
    rule: it returns to a version that held the alias before, and refusing
    the way back in an incident would leave the breaking version in place.
    """
    policy = effective_policy(tx, model_id)
    if not policy.protects(alias):
        return
    replacing = None
    if policy.compatible_signature and not rollback:
        replacing = alias_target(tx, model_id, alias)
    ev = evaluate(
        policy,
        version,
        approvals=None if approved or rollback else 0,
        require_published=True,
        replacing=replacing,
        alias=alias,
    )
    enforce(ev, version, "alias", alias)


def check_protected_targets(tx: RegistryTx, model_id: int) -> None:
    """Every protected alias of the model still points at a published version.

    Run at the end of a transition's transaction: archiving or unpublishing
    the version behind ``@production`` would otherwise move production to a
    version no consumer may use, without the policy's say. Checked at the end
    (not per step) so that one transaction may publish a new version, move
    the alias to it and archive the old one.
    """
    policy = effective_policy(tx, model_id)
    for alias in policy.protected_aliases or ():
        vid = tx.get_alias(model_id, alias)
        if vid is None:
            continue
        version = tx.load_versions([vid])[0]
        if version.state is not VersionState.PUBLISHED:
            raise Conflict(
                f"version {version.ref} is the target of protected alias @{alias}; "
                "move the alias to another published version first",
                code="ALIAS_PROTECTED",
                details={"alias": alias, "ref": version.ref, "state": version.state.value},
            )
    _check_protected_bundle_members(tx, model_id)


def _check_protected_bundle_members(tx: RegistryTx, model_id: int) -> None:
    """The same for protected bundle aliases (issue 14): every member of the
    bundle version behind one stays published."""
    found = tx.bundles.aliased_members_of_model(model_id)
    if not found:
        return
    protected: dict[str, Policy] = {}
    for namespace, bundle, alias, number, role, vid in found:
        if namespace not in protected:
            protected[namespace] = namespace_policy(tx, namespace)
        if not protected[namespace].protects(alias):
            continue
        version = tx.load_versions([vid])[0]
        if version.state is not VersionState.PUBLISHED:
            raise Conflict(
                f"version {version.ref} is the {role} of bundle {namespace}/{bundle}/{number}, "
                f"the target of protected bundle alias @{alias}; move that alias first",
                code="ALIAS_PROTECTED",
                details={
                    "alias": alias,
                    "bundle": f"{namespace}/{bundle}",
                    "role": role,
                    "ref": version.ref,
                    "state": version.state.value,
                },
            )


def check_edit(tx: RegistryTx, version_id: int, before: Version, after: Version) -> None:
    """An edit of a version's tags or metadata may not break the policy under
    a protected alias that points at it (issue 9).

    Otherwise ``@production`` would stay on a version consumers may no longer
    see, without the policy's say. Only rules the edit breaks count: a
    version already short of a rule added to the policy since may still get
    its description fixed. ``POLICY_VIOLATION`` (409) names the alias and
    the rules. Called by every door through ``update_version``.
    """
    model_id = tx.version_keys(version_id).model_id
    policy = effective_policy(tx, model_id)
    aliases = [a for a in policy.protected_aliases or () if tx.get_alias(model_id, a) == version_id]
    if not aliases:
        return
    had = {
        (x.rule, x.key)
        for x in evaluate(policy, before, approvals=None, require_published=True).violations
    }
    ev = evaluate(policy, after, approvals=None, require_published=True)
    broken = [x for x in ev.violations if (x.rule, x.key) not in had]
    if not broken:
        return
    alias = aliases[0]
    listing = "; ".join(x.message for x in broken)
    details = violation_details(Evaluation(broken), after, "edit", alias)
    details["aliases"] = aliases
    raise PolicyViolation(
        f"cannot edit {after.ref}: it is the target of protected alias @{alias} and the "
        f"edit breaks the production policy: {listing}; move @{alias} to another "
        "compliant version first (or change the policy)",
        details=details,
    )


def check_aliasable(version: Version, alias: str) -> None:
    """Refuse to point ``alias`` at a draft or archived version, saying what to do.

    ``INVALID_STATE_TRANSITION`` (409) with the version, its state and the
    alias in ``details``; the message names the step that makes it aliasable.
    """
    if version.state not in (VersionState.DRAFT, VersionState.ARCHIVED):
        return
    state = version.state.value
    todo = (
        "commit its files first"
        if version.state is VersionState.DRAFT
        else "restore it first (POST .../versions/{v}/restore, `modelyard restore`)"
    )
    raise Conflict(
        f"cannot point @{alias} at {version.ref}: it is {_article(state)} {state} version; {todo}",
        code="INVALID_STATE_TRANSITION",
        details={"ref": version.ref, "state": state, "alias": alias},
    )


def _article(word: str) -> str:
    """ "an" before a vowel sound, else "a" (our states: draft, archived, ...)."""
    return "an" if word[:1] in "aeiou" else "a"


def is_protected(tx: RegistryTx, model_id: int, alias: str) -> bool:
    """True if the model's production policy protects ``alias``."""
    return effective_policy(tx, model_id).protects(alias)
