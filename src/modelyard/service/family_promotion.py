"""Promote a family together (issue 14): publish an original, or move one of
its aliases, and apply the same step to chosen variants, in one transaction.

``publish fraud/3 --with-variants onnx tflite`` publishes ``fraud/3`` and the
newest ready-or-published ONNX and TFLite builds made from it
(:func:`~modelyard.domain.families.choose_variants`); ``alias fraud/3
production --with-variants onnx`` points ``fraud@production`` at ``fraud/3``
and ``fraud-onnx@production`` at that ONNX build. Every part goes through
the same gate as a lone publish or alias move (state rules, the production
policy, protected aliases): one refused part refuses the whole change, and
the error lists every refused part. Each part writes its usual event
(``version.published``, ``alias.moved``: webhooks and model servers see the
moves they always saw) marked with ``change: {"id", "type"}``, and a
``family.promoted`` event written last in the same transaction holds the
change with its parts, so the audit log shows one change.
"""

from __future__ import annotations

import uuid
from typing import Any

from modelyard.domain import identity as auth
from modelyard.domain.entities import Version, VersionState
from modelyard.domain.errors import InvalidInput, ModelyardError, NotFound
from modelyard.domain.families import (
    FamilyPromotion,
    PromotionPart,
    choose_variants,
    descendants,
)
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import RESERVED_ALIASES, validate_alias
from modelyard.domain.references import Reference, parse_reference
from modelyard.service import policy_gate
from modelyard.service import validation as v
from modelyard.service.aliases import AliasUseCases
from modelyard.service.lifecycle import LifecycleUseCases
from modelyard.store.metadata.ports import RegistryTx

ACTIONS = ("publish", "alias")
MAX_FORMATS = 20
EVENT = "family.promoted"


def _refusal(exc: ModelyardError, ref: str) -> dict[str, Any]:
    return {"ref": ref, "code": exc.code, "message": exc.message, "details": exc.details}


class FamilyPromotionUseCases(LifecycleUseCases, AliasUseCases):
    """Publishing or aliasing an original together with chosen variants."""

    def promote_family(
        self,
        ref: str | Reference,
        *,
        action: str,
        formats: list[str],
        actor: Principal,
        alias: str | None = None,
        reason: str = "",
        archive_previous: bool = False,
    ) -> FamilyPromotion:
        """Publish ``ref``'s version (``action="publish"``) or point ``alias``
        at it (``action="alias"``), and do the same to the newest ready or
        published descendant of each of ``formats``, all in one transaction.

        A format with no such descendant is ``VARIANT_NOT_FOUND``; two parts
        in one model cannot share an alias (``FAMILY_MODEL_CLASH``). Publishing
        a part that is already published leaves it as it is (``changed``
        false). Every other refusal of any part (``POLICY_VIOLATION``,
        ``APPROVAL_REQUIRED``, ``INVALID_STATE_TRANSITION``, ...) refuses the
        whole change with the first refusal's code, and ``details.refused``
        lists each refused part. ``archive_previous`` (publish) archives each
        part's model's other published versions, as a lone publish does.

        Requires: write on the namespace of every part; variants in
        namespaces the caller cannot read are not considered.
        """
        if action not in ACTIONS:
            raise InvalidInput(
                f"action must be one of {', '.join(ACTIONS)}",
                code="INVALID_ACTION",
                details={"allowed": list(ACTIONS)},
            )
        if action == "alias":
            if alias is None:
                raise InvalidInput("moving an alias needs its name", code="INVALID_ALIAS")
            validate_alias(alias)
            if alias in RESERVED_ALIASES:
                raise InvalidInput(f"alias {alias!r} is reserved", code="INVALID_ALIAS")
        elif alias is not None:
            raise InvalidInput("alias is only taken with action alias", code="INVALID_INPUT")
        if not isinstance(formats, list) or not 1 <= len(formats) <= MAX_FORMATS:
            raise InvalidInput(
                f"with_variants names 1..{MAX_FORMATS} formats",
                code="INVALID_INPUT",
                details={"field": "with_variants"},
            )
        wanted = [v.check_short(f, "format") or "" for f in formats]
        reason = v.check_description(reason)
        r = self.resolve(ref)
        auth.require(actor, Permission.WRITE, r.namespace)
        change = {"id": uuid.uuid4().hex, "type": EVENT}

        def op(tx: RegistryTx) -> FamilyPromotion:
            parts = self._choose(tx, r, wanted, actor)
            # Lock every part's model in one order (by name) before any step:
            # two promotions of one family naming formats in different orders
            # would otherwise lock the same rows crosswise on PostgreSQL. Then
            # choose again: what was read before the locks may have changed
            # (a concurrent promotion committed while this one waited).
            locked: set[tuple[str, str]] = set()
            while True:
                wanted_locks = {(p.namespace, p.model) for p, _ in parts} - locked
                if not wanted_locks:
                    break
                for ns, model in sorted(wanted_locks):
                    self.model_id(tx, ns, model, for_update=True)
                locked |= wanted_locks
                parts = self._choose(tx, r, wanted, actor)
            if action == "alias" or archive_previous:
                # An alias names one version per model; archiving the others
                # would archive a part published a moment before.
                _check_one_per_model([p for p, _ in parts], action, alias)
            done: list[PromotionPart] = []
            refused: list[tuple[ModelyardError, str]] = []
            for ver, fmt in parts:
                try:
                    auth.require(actor, Permission.WRITE, ver.namespace)
                    done.append(
                        self._promote_part(
                            tx, ver, fmt, action, alias, actor, reason, archive_previous, change
                        )
                    )
                except ModelyardError as exc:
                    # Keep checking the other parts, so the answer lists every
                    # refusal; the transaction is rolled back by the raise below.
                    refused.append((exc, ver.ref))
            if not refused:
                for model_id in dict.fromkeys(tx.version_keys(p.version.id).model_id for p in done):
                    policy_gate.check_protected_targets(tx, model_id)
            if refused:
                first, _ = refused[0]
                listing = "; ".join(f"{ref}: {exc.message}" for exc, ref in refused)
                raise type(first)(
                    f"cannot {action} the family of {parts[0][0].ref}: {len(refused)} of "
                    f"{len(parts)} part(s) refused, nothing was changed: {listing}",
                    code=first.code,
                    details={**first.details, "refused": [_refusal(e, x) for e, x in refused]},
                )
            root = done[0].version
            tx.append_event(
                EVENT,
                actor=actor.name,
                namespace=root.namespace,
                subject=root.ref,
                payload={
                    "change_id": change["id"],
                    "action": action,
                    "alias": alias,
                    "formats": wanted,
                    "reason": reason,
                    "parts": [
                        {
                            "ref": p.version.ref,
                            "format": p.format,
                            "changed": p.changed,
                            "before": p.before,
                            "after": p.version.state.value
                            if action == "publish"
                            else p.version.number,
                        }
                        for p in done
                    ],
                    "before": {"parts": {p.version.ref: p.before for p in done}},
                    "after": {
                        "parts": {
                            p.version.ref: p.version.state.value
                            if action == "publish"
                            else p.version.number
                            for p in done
                        }
                    },
                },
            )
            return FamilyPromotion(change["id"], action, alias, done)

        return self.run_in_transaction(op)

    def _choose(
        self, tx: RegistryTx, r: Reference, formats: list[str], actor: Principal
    ) -> list[tuple[Version, str | None]]:
        """The original and the chosen variant of each format, in that order."""
        vid = self.version_id(tx, r)
        root_id = tx.version_keys(vid).original_id or vid
        links = tx.family_links(root_id)
        below = descendants(vid, links)
        candidates = [x for x in tx.load_versions(below) if actor.can(Permission.READ, x.namespace)]
        chosen, missing = choose_variants(candidates, formats)
        original = tx.load_versions([vid])[0]
        if missing:
            raise NotFound(
                f"{original.ref} has no ready or published variant of format {', '.join(missing)}",
                code="VARIANT_NOT_FOUND",
                details={"reference": original.ref, "formats": missing},
            )
        out: list[tuple[Version, str | None]] = [(original, None)]
        seen = {original.id}
        for fmt, ver in chosen.items():
            if ver.id not in seen:  # one build may answer two format names only once
                seen.add(ver.id)
                out.append((ver, fmt))
        return out

    def _promote_part(
        self,
        tx: RegistryTx,
        ver: Version,
        fmt: str | None,
        action: str,
        alias: str | None,
        actor: Principal,
        reason: str,
        archive_previous: bool,
        change: dict[str, Any],
    ) -> PromotionPart:
        exact = parse_reference(ver.ref)
        if action == "publish":
            if ver.state is VersionState.PUBLISHED:
                return PromotionPart(ver, fmt, False, ver.state.value)
            after = self.transition_in_tx(
                tx,
                exact,
                VersionState.PUBLISHED,
                actor=actor,
                archive_previous=archive_previous,
                change=change,
            )
            return PromotionPart(after, fmt, True, ver.state.value)
        assert alias is not None
        mid = tx.version_keys(ver.id).model_id
        prev_id = tx.get_alias(mid, alias)
        prev = None if prev_id is None else tx.load_versions([prev_id])[0].number
        after = self.move_alias_in_tx(tx, exact, alias, actor=actor, reason=reason, change=change)
        return PromotionPart(after, fmt, prev != after.number, prev)


def _check_one_per_model(parts: list[Version], action: str, alias: str | None) -> None:
    """Two parts of one model cannot both take ``alias`` (nor both be published
    while archiving the model's other published versions)."""
    seen: dict[tuple[str, str], str] = {}
    for ver in parts:
        key = (ver.namespace, ver.model)
        if key in seen:
            what = (
                f"{ver.namespace}/{ver.model}@{alias} can point at only one of them"
                if action == "alias"
                else "publishing one with archive_previous would archive the other"
            )
            raise InvalidInput(
                f"{seen[key]} and {ver.ref} are versions of one model, and {what}",
                code="FAMILY_MODEL_CLASH",
                details={"alias": alias, "refs": [seen[key], ver.ref]},
            )
        seen[key] = ver.ref
