"""Bundle use cases (issue 14): create a bundle, pin a bundle version after
checking it fits together, read them.

A bundle version is created in one transaction: every role's reference is
resolved there (an alias is read once, so the pins are consistent), each
pinned version must be ready or published, every declared edge must hold
against the members' signatures, and a member that changed since the
previous bundle version must not break its signature (unless the caller
accepts breaking changes). Any problem refuses the whole version with
``BUNDLE_INCOMPATIBLE`` and every mismatch spelled out in ``details``.

Events: ``bundle.created``, ``bundle.version_created``, ``bundle.deleted``
(subject ``bundle:NS/NAME``), read by the audit log like every other event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from modelyard.domain import filters
from modelyard.domain import identity as auth
from modelyard.domain.bundles import (
    MAX_ROLES,
    Bundle,
    BundleVersion,
    Mismatch,
    check_edge,
    compare_signatures,
    parse_edges,
    validate_role,
)
from modelyard.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.lifecycle import counts_as_latest
from modelyard.domain.names import RESERVED_ALIASES, validate_alias, validate_name
from modelyard.domain.references import DEFAULT_NAMESPACE, parse_reference
from modelyard.service import validation as v
from modelyard.service.core import RegistryCore
from modelyard.service.views import ProductionView
from modelyard.store.metadata.ports import BundleRow, FollowedAlias, RegistryTx, now_us


def bundle_not_found(namespace: str, name: str) -> NotFound:
    """``BUNDLE_NOT_FOUND`` for ``namespace/name``."""
    return NotFound(
        f"bundle {namespace}/{name} not found",
        code="BUNDLE_NOT_FOUND",
        details={"namespace": namespace, "name": name},
    )


def _bundle(row: BundleRow) -> Bundle:
    return Bundle(
        namespace=row.namespace,
        name=row.name,
        description=row.description,
        roles=dict(row.roles),
        edges=parse_edges(row.edges, row.roles),
        latest_version=row.last_version,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        incompatible=list(row.incompatible),
    )


def _bind_roles(roles: Any, namespace: str, actor: Principal) -> dict[str, str]:
    """Roles checked and their references normalized (``ns/model@alias``, ``ns/model/3``).

    The actor must read every member's namespace.
    """
    if not isinstance(roles, Mapping) or not roles or len(roles) > MAX_ROLES:
        raise InvalidInput(f"a bundle needs 1 to {MAX_ROLES} roles", code="INVALID_BUNDLE")
    bound: dict[str, str] = {}
    for role, ref in roles.items():
        validate_role(role)
        if not isinstance(ref, str):
            raise InvalidInput(
                f"role {role!r} needs a reference",
                code="INVALID_BUNDLE",
                details={"role": role},
            )
        r = parse_reference(ref, default_namespace=namespace)
        auth.require(actor, Permission.READ, r.namespace)
        bound[role] = str(r)
    return bound


def _follows(roles: Mapping[str, str]) -> dict[str, FollowedAlias]:
    """The model aliases the roles follow (``@latest`` is computed, never moved)."""
    out: dict[str, FollowedAlias] = {}
    for role, ref in roles.items():
        r = parse_reference(ref)
        if r.alias is not None and r.alias not in RESERVED_ALIASES:
            out[role] = FollowedAlias(r.namespace, r.name, r.alias)
    return out


def _subject(namespace: str, name: str) -> str:
    # Not "ns/name...": that would read as a model's subject in the audit log.
    return f"bundle:{namespace}/{name}"


class BundleUseCases(RegistryCore):
    """Bundles: roles bound to references, versions pinning concrete versions."""

    def create_bundle(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        roles: Mapping[str, str],
        edges: Any = None,
        description: str = "",
        actor: Principal,
    ) -> Bundle:
        """Create a bundle: ``roles`` maps a role to a reference (``det@production``,
        ``ns/cls/3``); ``edges`` are ``[{"from", "to", "mapping": {out: in}}]``.

        Requires: write on the namespace, read on every member's namespace.
        """
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.WRITE, namespace)
        validate_name(name)
        desc = v.check_description(description)
        bound = _bind_roles(roles, namespace, actor)
        parsed = parse_edges(edges, bound)

        def op(tx: RegistryTx) -> Bundle:
            ns = self.namespace_id(tx, namespace)
            if tx.bundles.get(namespace, name) is not None:
                raise AlreadyExists(
                    f"bundle {namespace}/{name} already exists",
                    code="BUNDLE_ALREADY_EXISTS",
                    details={"namespace": namespace, "name": name},
                )
            at = now_us()
            tx.bundles.insert(
                {
                    "namespace_id": ns,
                    "name": name,
                    "description": desc,
                    "roles": bound,
                    "edges": [e.to_dict() for e in parsed],
                    "last_version": 0,
                    "created_by": actor.name,
                    "created_at": at,
                    "updated_at": at,
                }
            )
            row = tx.bundles.get(namespace, name)
            assert row is not None
            tx.bundles.set_follows(row.id, _follows(bound))
            tx.append_event(
                "bundle.created",
                actor=actor.name,
                namespace=namespace,
                subject=_subject(namespace, name),
                payload={"name": name, "roles": bound, "edges": [e.to_dict() for e in parsed]},
            )
            return _bundle(row)

        return self.run_in_transaction(op)

    def delete_bundle(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        force: bool = False,
        reason: str = "",
        actor: Principal,
    ) -> None:
        """Delete a bundle with its versions, aliases and their history.

        Refused with ``BUNDLE_HAS_ALIASES`` (409) while any alias names one of
        its versions (consumers pull and serve ``pipe@production``), unless
        ``force``; a protected alias cannot be removed on its own, so
        ``force`` is how an admin retires a bundle in production. The member
        model versions stay (only the bundle's pins go, so their models may be
        deleted afterwards). No deployment record names a bundle: a running
        ``serve --bundle`` keeps serving what it loaded. Writes
        ``bundle.deleted`` (subject ``bundle:NS/NAME``) with what was deleted.
        Requires: admin on the namespace.
        """
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.ADMIN, namespace)
        validate_name(name)
        reason = v.check_description(reason)

        def op(tx: RegistryTx) -> None:
            row = tx.bundles.get(namespace, name)
            if row is None:
                raise bundle_not_found(namespace, name)
            tx.bundles.lock(row.id)
            aliases = tx.bundles.aliases(row.id)
            if aliases and not force:
                listing = ", ".join(f"@{a} -> {n}" for a, n in sorted(aliases.items()))
                raise Conflict(
                    f"bundle {namespace}/{name} has aliases ({listing}); remove them first "
                    "or, as an admin, delete with force",
                    code="BUNDLE_HAS_ALIASES",
                    details={"namespace": namespace, "name": name, "aliases": aliases},
                )
            tx.bundles.delete(row.id)
            tx.append_event(
                "bundle.deleted",
                actor=actor.name,
                namespace=namespace,
                subject=_subject(namespace, name),
                payload={
                    "name": name,
                    "forced": force,
                    "reason": reason,
                    "before": {
                        "roles": row.roles,
                        "edges": row.edges,
                        "latest_version": row.last_version,
                        "aliases": aliases,
                    },
                    "after": None,
                },
            )

        self.run_in_transaction(op)

    def get_bundle(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE, actor: Principal
    ) -> Bundle:
        """One bundle. Requires: read (or consume) on the namespace."""
        validate_name(namespace, kind="namespace")
        auth.require_readable(actor, namespace)
        with self.db.read() as tx:
            row = tx.bundles.get(namespace, name)
            if row is None:
                raise bundle_not_found(namespace, name)
            aliases = tx.bundles.aliases(row.id)
        return replace(_bundle(row), aliases=aliases)

    def list_bundles(self, *, namespace: str = DEFAULT_NAMESPACE, actor: Principal) -> list[Bundle]:
        """A namespace's bundles by name. Requires: read (or consume) on it."""
        validate_name(namespace, kind="namespace")
        auth.require_readable(actor, namespace)
        with self.db.read() as tx:
            self.namespace_id(tx, namespace)
            return [_bundle(r) for r in tx.bundles.in_namespace(namespace)]

    def create_bundle_version(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        accept_breaking: bool = False,
        actor: Principal,
    ) -> BundleVersion:
        """Pin the version every role's reference names now, after checking the
        bundle fits together (see the module docstring).

        ``accept_breaking`` lets a member's breaking signature change through
        (edges must hold regardless). Requires: write on the namespace, read
        on every member's namespace.
        """
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.WRITE, namespace)
        validate_name(name)

        def op(tx: RegistryTx) -> BundleVersion:
            row = tx.bundles.get(namespace, name)
            if row is None:
                raise bundle_not_found(namespace, name)
            return self._pin_in_tx(tx, row, accept_breaking=accept_breaking, actor=actor)

        return self.run_in_transaction(op)

    def update_bundle(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        roles: Mapping[str, str] | None = None,
        edges: Any = None,
        description: str | None = None,
        accept_breaking: bool = False,
        actor: Principal,
    ) -> BundleVersion:
        """Edit a bundle's roles, edges or description, and pin the next bundle
        version with them, in one transaction.

        ``roles`` and ``edges`` replace the bundle's whole (None: keep them);
        the edges are checked against the roles they end with. The new
        version is checked like any pin (members ready or published, every
        edge holds, no breaking change of a role that stays, unless
        ``accept_breaking``); if it does not fit, nothing changes
        (``BUNDLE_INCOMPATIBLE``). Earlier bundle versions keep their members
        and the edges they were checked against. Writes ``bundle.updated``
        then ``bundle.version_created``.

        Requires: write on the namespace, read on every member's namespace.
        """
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.WRITE, namespace)
        validate_name(name)
        bound = None if roles is None else _bind_roles(roles, namespace, actor)
        desc = None if description is None else v.check_description(description)

        def op(tx: RegistryTx) -> BundleVersion:
            row = tx.bundles.get(namespace, name)
            if row is None:
                raise bundle_not_found(namespace, name)
            if bound is None and edges is None and desc is None:
                # Nothing to change: the same as pinning the next version.
                return self._pin_in_tx(tx, row, accept_breaking=accept_breaking, actor=actor)
            new_roles = dict(row.roles) if bound is None else bound
            new_edges = parse_edges(row.edges if edges is None else edges, new_roles)
            at = now_us()
            tx.bundles.update(
                row.id,
                roles=new_roles,
                edges=[e.to_dict() for e in new_edges],
                description=row.description if desc is None else desc,
                at=at,
            )
            tx.bundles.set_follows(row.id, _follows(new_roles))
            tx.append_event(
                "bundle.updated",
                actor=actor.name,
                namespace=namespace,
                subject=_subject(namespace, name),
                payload={
                    "name": name,
                    "before": {"roles": row.roles, "edges": row.edges},
                    "after": {"roles": new_roles, "edges": [e.to_dict() for e in new_edges]},
                },
            )
            after = tx.bundles.get(namespace, name)
            assert after is not None
            return self._pin_in_tx(tx, after, accept_breaking=accept_breaking, actor=actor)

        return self.run_in_transaction(op)

    def _pin_in_tx(
        self, tx: RegistryTx, row: BundleRow, *, accept_breaking: bool, actor: Principal
    ) -> BundleVersion:
        """Check and insert the next version of bundle ``row`` (see
        :meth:`create_bundle_version`), with its ``bundle.version_created`` event."""
        namespace, name = row.namespace, row.name
        bundle = _bundle(row)
        pinned: dict[str, int] = {}
        for role, ref in bundle.roles.items():
            r = parse_reference(ref)
            auth.require(actor, Permission.READ, r.namespace)
            pinned[role] = self.version_id(tx, r)
        loaded = dict(zip(pinned, tx.load_versions(list(pinned.values())), strict=True))
        problems: list[Mismatch] = []
        for role, ver in loaded.items():
            if not counts_as_latest(ver.state):
                problems.append(
                    Mismatch(
                        "member",
                        role,
                        None,
                        f"{role}: {ver.ref} is {ver.state.value}; members must be "
                        "ready or published",
                    )
                )
        for edge in bundle.edges:
            problems.extend(
                check_edge(edge, loaded[edge.source].signature, loaded[edge.target].signature)
            )
        previous = tx.bundles.version(row.id, None)
        if previous is not None and not accept_breaking:
            before = dict(
                zip(
                    previous.members,
                    tx.load_versions(list(previous.members.values())),
                    strict=True,
                )
            )
            for role, ver in loaded.items():
                old = before.get(role)
                if old is not None and old.id != ver.id:
                    problems.extend(compare_signatures(role, old.signature, ver.signature))
        if problems:
            raise Conflict(
                f"bundle {namespace}/{name} does not fit together: "
                + "; ".join(p.problem for p in problems),
                code="BUNDLE_INCOMPATIBLE",
                details={"mismatches": [p.to_dict() for p in problems]},
            )
        at = now_us()
        edges = [e.to_dict() for e in bundle.edges]
        number = tx.bundles.allocate_version(row.id, at)
        tx.bundles.insert_version(row.id, number, pinned, edges=edges, actor=actor.name, at=at)
        if row.incompatible:
            # This version was checked to fit together: what moves broke before is resolved.
            tx.bundles.set_incompatible(row.id, [])
        tx.append_event(
            "bundle.version_created",
            actor=actor.name,
            namespace=namespace,
            subject=f"{_subject(namespace, name)}/{number}",
            payload={
                "name": name,
                "version": number,
                "members": {role: ver.ref for role, ver in loaded.items()},
                "edges": edges,
            },
        )
        members = tx.load_versions(list(pinned.values()), with_files=True)
        return BundleVersion(
            namespace,
            name,
            number,
            dict(zip(pinned, members, strict=True)),
            actor.name,
            at,
            edges=list(bundle.edges),
        )

    def get_bundle_version(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        number: int | None = None,
        alias: str | None = None,
        actor: Principal,
    ) -> BundleVersion:
        """A bundle version (by ``number``, by ``alias``, or the newest) with
        every member's manifest.

        Requires: read on the namespace; with consume only, the version is
        visible only if every member is in the production view of its
        namespace (else ``BUNDLE_VERSION_NOT_FOUND``, as if it did not exist).
        """
        validate_name(namespace, kind="namespace")
        auth.require_readable(actor, namespace)
        if alias is not None:
            validate_alias(alias)
        with self.db.read() as tx:
            row = tx.bundles.get(namespace, name)
            if row is None:
                raise bundle_not_found(namespace, name)
            if alias is not None:
                number = tx.bundles.get_alias(row.id, alias)
                if number is None:
                    raise NotFound(
                        f"bundle alias {namespace}/{name}@{alias} not found",
                        code="ALIAS_NOT_FOUND",
                        details={"namespace": namespace, "name": name, "alias": alias},
                    )
            found = tx.bundles.version(row.id, number)
            missing = NotFound(
                f"bundle {namespace}/{name} has no version {number or '(none yet)'}",
                code="BUNDLE_VERSION_NOT_FOUND",
                details={"namespace": namespace, "name": name, "version": number},
            )
            if found is None:
                raise missing
            members = dict(
                zip(
                    found.members,
                    tx.load_versions(list(found.members.values()), with_files=True),
                    strict=True,
                )
            )
            # Every member must be visible to the caller: read on its
            # namespace, or consume and in that namespace's production view.
            # The consume-only members are checked in one query: each
            # namespace's rule names its namespace, so their OR is exact.
            view = ProductionView(tx)
            consumed: dict[int, str] = {}
            for m in members.values():
                perms = actor.permissions_in(m.namespace)
                if Permission.READ in perms:
                    continue
                if Permission.CONSUME not in perms:
                    raise missing
                consumed[m.id] = m.namespace
            if consumed:
                rules = [view.rule(ns) for ns in sorted(set(consumed.values()))]
                node = rules[0] if len(rules) == 1 else filters.Or(tuple(rules))
                if tx.versions_matching(list(consumed), node) != set(consumed):
                    raise missing
            members = {role: view.version(actor, m) for role, m in members.items()}
        if found.edges is not None:
            edges = parse_edges(found.edges, found.members)
        else:
            # Pinned before versions kept their edges (0016): the bundle's
            # edges between roles this version has are the best record.
            edges = [
                e
                for e in parse_edges(row.edges, row.roles)
                if e.source in found.members and e.target in found.members
            ]
        return BundleVersion(
            namespace,
            name,
            found.number,
            members,
            found.created_by,
            found.created_at,
            edges=edges,
        )
