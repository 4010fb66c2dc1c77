"""Alias use cases: move (a compare-and-set, gated by the production policy for
protected aliases), delete, and their history."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modelyard.domain import identity as auth
from modelyard.domain.entities import AliasMove, Version, VersionState
from modelyard.domain.errors import Conflict, InvalidInput, NotFound
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import RESERVED_ALIASES, validate_alias
from modelyard.domain.references import DEFAULT_NAMESPACE, Reference
from modelyard.domain.webhooks import CONSUMER_VISIBLE
from modelyard.service import bundle_guard, policy_gate
from modelyard.service import validation as v
from modelyard.service.core import MAX_PAGE_SIZE, Page, RegistryCore, version_payload
from modelyard.service.views import ProductionView, production_filter
from modelyard.store.metadata.ports import RegistryTx


class AliasUseCases(RegistryCore):
    """Aliases: a model's named pointers at versions, with their history."""

    def set_alias(
        self,
        ref: str | Reference,
        alias: str,
        *,
        actor: Principal,
        reason: str = "",
        expected_version: int | None = None,
        force: bool = False,
    ) -> Version:
        """Point ``alias`` of the version's model at the version (recorded in history).

        ``expected_version`` makes the move a compare-and-set: it is refused
        with ``ALIAS_CHANGED`` unless the alias points at that version now, so
        of two concurrent movers that read the same state exactly one wins.
        Moves of protected aliases are gated by the production policy. A move
        that breaks a bundle following the alias is refused with
        ``BUNDLE_INCOMPATIBLE`` (:mod:`~modelyard.service.bundle_guard`)
        unless ``force`` (an admin's override, recorded in the event) or the
        bundle's namespace policy says ``bundle_breaks: flag`` (the move
        applies and the bundle records the incompatibility).

        Requires: write on the namespace; ``force`` needs admin on it.
        """
        r = self.resolve(ref)
        auth.require(actor, Permission.WRITE, r.namespace)
        if force:
            auth.require(actor, Permission.ADMIN, r.namespace)
        validate_alias(alias)
        if alias in RESERVED_ALIASES:
            raise InvalidInput(f"alias {alias!r} is reserved", code="INVALID_ALIAS")
        reason = v.check_description(reason)
        return self.run_in_transaction(
            lambda tx: self.move_alias_in_tx(
                tx,
                r,
                alias,
                actor=actor,
                reason=reason,
                expected_version=expected_version,
                force=force,
            )
        )

    def move_alias_in_tx(
        self,
        tx: RegistryTx,
        r: Reference,
        alias: str,
        *,
        actor: Principal,
        reason: str,
        expected_version: int | None = None,
        approval_id: int | None = None,
        rollback: bool = False,
        change: dict[str, Any] | None = None,
        force: bool = False,
        payload: dict[str, Any] | None = None,
    ) -> Version:
        """The body of :meth:`set_alias` inside an open transaction.

        ``change`` marks the event as one part of a larger change (see
        ``LifecycleUseCases.transition_in_tx``); ``payload`` adds keys to the
        ``alias.moved`` event (an automatic rollback says why).

        ``approval_id`` (an approved request being applied) and ``rollback``
        (a return to the alias's previous target, which held it before) count
        the policy's approval rule as met; its other rules are still checked.
        ``force`` lets a move through that breaks bundles following the alias.
        Requires: nothing checked here; the caller checked its own permission
        (and admin for ``force``).
        """
        if expected_version is not None and (
            isinstance(expected_version, bool)
            or not isinstance(expected_version, int)
            or not 1 <= expected_version <= 2**31 - 1
        ):
            raise InvalidInput(
                "expected_version must be a version number",
                code="INVALID_INPUT",
                details={"field": "expected_version"},
            )
        # The version and the alias's current target are read in three
        # statements (it was eight: the target resolved, then loaded, the
        # alias's version loaded for its number, and the target loaded again
        # after the move for its aliases).
        target = tx.get_version_by_ref(r.namespace, r.name, number=r.version, alias=r.alias)
        if target is None:
            self.version_id(tx, r)  # raises the not-found error that fits
            raise AssertionError("unreachable")
        vid = target.id
        mid = self.model_id(tx, target.namespace, target.model, for_update=True)
        current = tx.alias_target(mid, alias)
        prev_id, prev = current if current is not None else (None, None)
        if expected_version is not None and prev != expected_version:
            raise Conflict(
                f"alias {target.namespace}/{target.model}@{alias} points at "
                f"{prev if prev is not None else 'nothing'}, not {expected_version}: "
                "it was moved meanwhile; re-read and retry",
                code="ALIAS_CHANGED",
                details={"alias": alias, "expected": expected_version, "actual": prev},
            )
        policy_gate.check_aliasable(target, alias)
        policy_gate.check_alias(
            tx, target, mid, alias, approved=approval_id is not None, rollback=rollback
        )
        following = tx.bundles.following(target.namespace, target.model, alias)
        breaks = bundle_guard.breaks_of_move(tx, target, alias, prev_id, following)
        refused = [b for b in breaks if b["mode"] == "refuse"]
        if refused and not force:
            bundle_guard.refuse_breaking_move(target, alias, refused)
        tx.set_alias(
            mid,
            alias,
            vid,
            from_number=prev,
            to_number=target.number,
            actor=actor.name,
            reason=reason,
        )
        # The move changes the target's row nowhere but in its aliases.
        after = replace(target, aliases=sorted({*target.aliases, alias}))
        event: dict[str, Any] = {
            **(payload or {}),
            "alias": alias,
            "from_version": prev,
            "to_version": after.number,
            "reason": reason,
            "before": {"version": prev},
            "after": {"version": after.number},
        }
        if approval_id is not None:
            event["approval_id"] = approval_id
        if rollback:
            event["rollback"] = True
        if change is not None:
            event["change"] = change
        if refused:
            event["forced_bundles"] = refused
        flagged = [b for b in breaks if b["mode"] == "flag"]
        if flagged:
            event["flagged_bundles"] = flagged
        if _consumer_visible(tx, mid, vid, after.namespace, alias):
            event[CONSUMER_VISIBLE] = True
        tx.append_event(
            "alias.moved",
            actor=actor.name,
            namespace=after.namespace,
            subject=f"{after.namespace}/{after.model}@{alias}",
            payload=event,
        )
        if breaks:
            bundle_guard.record_breaks(tx, after, alias, prev, breaks, actor=actor.name)
        bundle_guard.record_mended(tx, after, alias, following, breaks, actor=actor.name)
        return after

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
    ) -> Version:
        """The body of ``GovernanceService.rollback_alias`` inside an open
        transaction (that method's docstring has the rules); ``model`` names the
        model (its version part is ignored). An automatic rollback
        (``service/monitoring.py``) runs the same body, so both are governed
        alike. ``payload`` adds keys to the ``alias.moved`` event.
        Requires: nothing checked here; the caller checked its own permission.
        """
        namespace, name = model.namespace, model.name
        mid = self.model_id(tx, namespace, name, for_update=True)
        last = tx.governance.last_alias_move(mid, namespace, name, alias)
        if last is None or last.from_version is None:
            raise Conflict(
                f"alias {namespace}/{name}@{alias} has no previous target to roll back to",
                code="NO_PREVIOUS_TARGET",
                details={"alias": alias, "history_entries": 0 if last is None else None},
            )
        why = reason or f"rollback from {last.to_version} to {last.from_version}"
        target = Reference(namespace, name, version=last.from_version)
        self._restore_rollback_target(tx, mid, target, alias, actor=actor, reason=why)
        return self.move_alias_in_tx(
            tx,
            target,
            alias,
            actor=actor,
            reason=why,
            expected_version=expected_version,
            rollback=True,
            payload=payload,
        )

    def _restore_rollback_target(
        self,
        tx: RegistryTx,
        model_id: int,
        target: Reference,
        alias: str,
        *,
        actor: Principal,
        reason: str,
    ) -> None:
        """Bring an archived rollback target back (see ``rollback_alias``).

        Not the lifecycle's ``archived -> ready`` transition: behind a
        protected alias it goes straight to ``published``, because that is
        the state it held the alias in. The policy is checked by the alias
        move that follows, in this transaction.
        """
        vid = self.version_id(tx, target)
        before = tx.load_versions([vid])[0]
        if before.state is not VersionState.ARCHIVED:
            return
        protected = policy_gate.is_protected(tx, model_id, alias)
        state = VersionState.PUBLISHED if protected else VersionState.READY
        tx.update_version(vid, state=state.value)
        after = tx.load_versions([vid])[0]
        payload = version_payload(after)
        payload.update(
            {
                "from_state": before.state.value,
                "before": {"state": before.state.value},
                "after": {"state": after.state.value},
                "rollback": True,
                "alias": alias,
                "reason": reason,
            }
        )
        tx.append_event(
            "version.restored",
            actor=actor.name,
            namespace=after.namespace,
            subject=after.ref,
            payload=payload,
        )

    def delete_alias(
        self,
        name: str,
        alias: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: Principal,
        reason: str = "",
    ) -> None:
        """Remove an alias (recorded in history).

        A protected alias cannot be deleted (``ALIAS_PROTECTED``): remove it
        from the production policy's protected aliases first, which is itself
        a recorded policy change.

        Requires: write on the namespace.
        """
        auth.require(actor, Permission.WRITE, namespace)
        validate_alias(alias)

        def op(tx: RegistryTx) -> None:
            mid = self.model_id(tx, namespace, name, for_update=True)
            prev_id = tx.get_alias(mid, alias)
            if prev_id is None:
                raise NotFound(
                    f"alias {namespace}/{name}@{alias} not found", code="ALIAS_NOT_FOUND"
                )
            prev = tx.load_versions([prev_id])[0].number
            self.remove_alias_in_tx(
                tx, mid, namespace, name, alias, prev, actor=actor, reason=reason
            )

        self.run_in_transaction(op)

    def remove_alias_in_tx(
        self,
        tx: RegistryTx,
        model_id: int,
        namespace: str,
        name: str,
        alias: str,
        from_number: int,
        *,
        actor: Principal,
        reason: str,
    ) -> None:
        """Remove an alias that points at version ``from_number``, with its history
        row and ``alias.deleted`` event; ``ALIAS_PROTECTED`` if the production
        policy protects it. Requires: nothing checked here; the caller checked
        its own permission."""
        if policy_gate.is_protected(tx, model_id, alias):
            raise Conflict(
                f"alias {namespace}/{name}@{alias} is protected by the production policy; "
                "move it (with approval) or unprotect it first",
                code="ALIAS_PROTECTED",
                details={"alias": alias},
            )
        tx.set_alias(
            model_id,
            alias,
            None,
            from_number=from_number,
            to_number=None,
            actor=actor.name,
            reason=reason,
        )
        tx.append_event(
            "alias.deleted",
            actor=actor.name,
            namespace=namespace,
            subject=f"{namespace}/{name}@{alias}",
            payload={
                "alias": alias,
                "from_version": from_number,
                "reason": reason,
                "before": {"version": from_number},
                "after": {"version": None},
            },
        )

    def model_aliases(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE, actor: Principal
    ) -> dict[str, int]:
        """A model's aliases and the version number each names now.

        Requires: read on the namespace; with consume only, just the aliases
        whose version is in the production view.
        """
        consume_only = auth.require_readable(actor, namespace)
        with self.db.read() as tx:
            if not consume_only:
                mid = self.model_id(tx, namespace, name)
                return {a: number for a, _, number in tx.model_aliases(mid)}
            view = ProductionView(tx)
            rule = view.rule(namespace)
            mid = view.model_id(namespace, name, rule)
            return {
                a: number
                for a, vid, number in tx.model_aliases(mid)
                if tx.version_matches(vid, rule)
            }

    def alias_moves(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        alias: str | None = None,
        page_size: int = 100,
        page_token: str | None = None,
        newest_first: bool = True,
        actor: Principal,
    ) -> Page[AliasMove]:
        """A model's alias moves, newest first (or oldest first with
        ``newest_first=False``), one keyset page at a time
        (``next_page_token`` continues; None: no further move). A token
        continues in the order of the page that gave it.

        Requires: read on the namespace (not part of the production view).
        """
        auth.require(actor, Permission.READ, namespace)
        if isinstance(page_size, bool) or not isinstance(page_size, int):
            raise InvalidInput("page_size must be an integer", code="INVALID_PAGE_SIZE")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"page_size must be 1..{MAX_PAGE_SIZE}", code="INVALID_PAGE_SIZE")
        before = _move_cursor(page_token)
        with self.db.read() as tx:
            mid = self.model_id(tx, namespace, name)
            rows = tx.alias_moves_page(
                mid,
                namespace,
                name,
                alias,
                before=before,
                limit=page_size + 1,
                newest_first=newest_first,
            )
        items = [move for _, move in rows[:page_size]]
        token = None
        if len(rows) > page_size:
            at, hid = rows[page_size - 1][0]
            token = f"{at}.{hid}"
        return Page(items, token)

    def alias_history(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        alias: str | None = None,
        actor: Principal,
    ) -> list[AliasMove]:
        """Every recorded move of a model's aliases, oldest first.

        Requires: read on the namespace (not part of the production view).
        """
        auth.require(actor, Permission.READ, namespace)
        with self.db.read() as tx:
            mid = self.model_id(tx, namespace, name)
            return tx.alias_history(mid, namespace, name, alias)


def _move_cursor(token: str | None) -> tuple[int, int] | None:
    """``(at, id)`` from an alias-history page token (``at.id``)."""
    if not token:
        return None
    at, dot, hid = token.partition(".")
    if not (dot and at.isascii() and at.isdigit() and hid.isascii() and hid.isdigit()):
        raise InvalidInput("invalid page token", code="INVALID_CURSOR")
    if len(at) > 19 or len(hid) > 19:
        raise InvalidInput("invalid page token", code="INVALID_CURSOR")
    return int(at), int(hid)


def _consumer_visible(tx: RegistryTx, model_id: int, version_id: int, ns: str, alias: str) -> bool:
    """True if this move is one the production view shows: the alias is
    protected by the model's policy and now names a version consumers see
    (published, meeting the policy). Consumers' event streams carry only such
    moves (``domain/webhooks.event_for``); judged once, as the move commits."""
    if not policy_gate.effective_policy(tx, model_id).protects(alias):
        return False
    return tx.version_matches(version_id, production_filter(tx, ns))
