"""Bundle queries (issue 14) bound to one open transaction: the object behind
``RegistryTx.bundles`` (see :mod:`~modelyard.store.metadata.ports`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from modelyard.domain.approvals import ApprovalState, Vote
from modelyard.domain.bundles import BundleApproval
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.alias_queries import AliasQueries
from modelyard.store.metadata.engine import is_sqlite
from modelyard.store.metadata.ports import (
    BundleAliasMoveRow,
    BundleRow,
    BundleVersionRow,
    FollowedAlias,
)
from modelyard.store.metadata.prepared import json_value


def _bundle(r: Any) -> BundleRow:
    return BundleRow(
        id=int(r.id),
        namespace=r.namespace,
        name=r.name,
        description=r.description,
        roles=json_value(r.roles),
        edges=json_value(r.edges),
        last_version=int(r.last_version),
        created_by=r.created_by,
        created_at=int(r.created_at),
        updated_at=int(r.updated_at),
        incompatible=list(json_value(r.incompatible) or []),
    )


_BUNDLE_SELECT = sa.select(
    t.bundles.c.id,
    t.namespaces.c.name.label("namespace"),
    t.bundles.c.name,
    t.bundles.c.description,
    t.bundles.c.roles,
    t.bundles.c.edges,
    t.bundles.c.last_version,
    t.bundles.c.created_by,
    t.bundles.c.created_at,
    t.bundles.c.updated_at,
    t.bundles.c.incompatible,
).select_from(t.bundles.join(t.namespaces, t.bundles.c.namespace_id == t.namespaces.c.id))


_BA = t.bundle_approvals
_BA_SELECT = sa.select(
    _BA,
    t.namespaces.c.name.label("ns_name"),
    t.bundles.c.name.label("bundle_name"),
).select_from(
    _BA.join(t.bundles, _BA.c.bundle_id == t.bundles.c.id).join(
        t.namespaces, t.bundles.c.namespace_id == t.namespaces.c.id
    )
)


class BundleApprovalQueries:
    """Approval requests for bundle aliases (mixed into :class:`BoundBundles`)."""

    __slots__ = ()
    _conn: sa.Connection

    def insert_approval(
        self,
        bundle_id: int,
        number: int,
        alias: str,
        *,
        alias_from: int | None,
        actor: str,
        comment: str,
        at: int,
    ) -> int:
        """Record a pending request; its id."""
        return int(
            self._conn.execute(
                _BA.insert()
                .values(
                    bundle_id=bundle_id,
                    number=number,
                    alias=alias,
                    alias_from=alias_from,
                    state=ApprovalState.PENDING.value,
                    requested_by=actor,
                    comment=comment,
                    created_at=at,
                )
                .returning(_BA.c.id)
            ).scalar_one()
        )

    def find_pending_approval(self, bundle_id: int, number: int, alias: str) -> int | None:
        """The id of a pending request for the same move, if any."""
        q = sa.select(_BA.c.id).where(
            _BA.c.bundle_id == bundle_id,
            _BA.c.number == number,
            _BA.c.alias == alias,
            _BA.c.state == ApprovalState.PENDING.value,
        )
        found = self._conn.execute(q.limit(1)).scalar_one_or_none()
        return None if found is None else int(found)

    def load_approvals(
        self, ids: Sequence[int], *, for_update: bool = False
    ) -> list[tuple[int, BundleApproval]]:
        """(bundle id, request with its votes) by id, in the given order;
        ``for_update`` row-locks them on PostgreSQL (concurrent reviewers queue)."""
        if not ids:
            return []
        if for_update and not is_sqlite(self._conn.engine):
            self._conn.execute(sa.select(_BA.c.id).where(_BA.c.id.in_(ids)).with_for_update())
        rows = self._conn.execute(_BA_SELECT.where(_BA.c.id.in_(ids))).all()
        v = t.bundle_approval_votes
        votes: dict[int, list[Vote]] = {}
        for r in self._conn.execute(
            sa.select(v).where(v.c.approval_id.in_(ids)).order_by(v.c.at, v.c.actor)
        ):
            votes.setdefault(int(r.approval_id), []).append(
                Vote(r.actor, r.decision, r.comment, int(r.at))
            )
        by_id = {
            int(r.id): (
                int(r.bundle_id),
                BundleApproval(
                    id=int(r.id),
                    namespace=r.ns_name,
                    bundle=r.bundle_name,
                    version=int(r.number),
                    alias=r.alias,
                    alias_from=r.alias_from,
                    state=ApprovalState(r.state),
                    requested_by=r.requested_by,
                    comment=r.comment,
                    created_at=int(r.created_at),
                    decided_by=r.decided_by,
                    decided_at=r.decided_at,
                    votes=votes.get(int(r.id), []),
                ),
            )
            for r in rows
        }
        return [by_id[i] for i in ids if i in by_id]

    def approval_ids(self, bundle_id: int, *, state: str | None, limit: int) -> list[int]:
        """A bundle's request ids, newest first."""
        q = sa.select(_BA.c.id).where(_BA.c.bundle_id == bundle_id)
        if state is not None:
            q = q.where(_BA.c.state == state)
        return [
            int(i) for i in self._conn.execute(q.order_by(_BA.c.id.desc()).limit(limit)).scalars()
        ]

    def add_approval_vote(
        self, approval_id: int, actor: str, decision: str, comment: str, at: int
    ) -> None:
        """Record one reviewer's decision (the primary key keeps reviewers distinct)."""
        self._conn.execute(
            t.bundle_approval_votes.insert().values(
                approval_id=approval_id, actor=actor, decision=decision, comment=comment, at=at
            )
        )

    def set_approval_state(
        self, approval_id: int, state: ApprovalState, actor: str, at: int
    ) -> None:
        """Close a request (applied, rejected, cancelled)."""
        self._conn.execute(
            _BA.update()
            .where(_BA.c.id == approval_id)
            .values(state=state.value, decided_by=actor, decided_at=at)
        )


class BoundBundles(BundleApprovalQueries):
    """Bundles, bundle versions and their members, in one transaction."""

    __slots__ = ("_aliases", "_conn")

    def __init__(self, conn: sa.Connection, aliases: AliasQueries) -> None:
        self._conn = conn
        self._aliases = aliases

    def get(self, namespace: str, name: str) -> BundleRow | None:
        """A bundle by name, or None."""
        row = self._conn.execute(
            _BUNDLE_SELECT.where(t.namespaces.c.name == namespace, t.bundles.c.name == name)
        ).one_or_none()
        return None if row is None else _bundle(row)

    def by_ids(self, bundle_ids: Sequence[int]) -> list[BundleRow]:
        """Bundles by id, by namespace and name."""
        if not bundle_ids:
            return []
        rows = self._conn.execute(
            _BUNDLE_SELECT.where(t.bundles.c.id.in_(list(bundle_ids))).order_by(
                t.namespaces.c.name, t.bundles.c.name
            )
        ).all()
        return [_bundle(r) for r in rows]

    def in_namespace(self, namespace: str) -> list[BundleRow]:
        """A namespace's bundles by name."""
        rows = self._conn.execute(
            _BUNDLE_SELECT.where(t.namespaces.c.name == namespace).order_by(t.bundles.c.name)
        ).all()
        return [_bundle(r) for r in rows]

    def insert(self, values: Mapping[str, Any]) -> int:
        """Insert a bundle row; its id."""
        return int(
            self._conn.execute(
                t.bundles.insert().values(dict(values)).returning(t.bundles.c.id)
            ).scalar_one()
        )

    def update(
        self,
        bundle_id: int,
        *,
        roles: Mapping[str, str],
        edges: Sequence[Mapping[str, Any]],
        description: str,
        at: int,
    ) -> None:
        """Replace a bundle's roles, edges and description."""
        self._conn.execute(
            t.bundles.update()
            .where(t.bundles.c.id == bundle_id)
            .values(roles=dict(roles), edges=list(edges), description=description, updated_at=at)
        )

    def lock(self, bundle_id: int) -> None:
        """Lock the bundle's row until commit (alias moves of one bundle serialize)."""
        self._conn.execute(
            t.bundles.update()
            .where(t.bundles.c.id == bundle_id)
            .values(updated_at=t.bundles.c.updated_at)
        )

    def set_incompatible(self, bundle_id: int, entries: Sequence[Mapping[str, Any]]) -> None:
        """Replace the bundle's flagged incompatibilities (empty: none, stored NULL)."""
        self._conn.execute(
            t.bundles.update()
            .where(t.bundles.c.id == bundle_id)
            .values(incompatible=[dict(e) for e in entries] if entries else sa.null())
        )

    def delete(self, bundle_id: int) -> None:
        """Delete a bundle: its versions, members, aliases, alias history and
        follows go with it (foreign keys cascade); member versions stay."""
        self._conn.execute(t.bundles.delete().where(t.bundles.c.id == bundle_id))

    def set_follows(self, bundle_id: int, follows: Mapping[str, FollowedAlias]) -> None:
        """Record which model alias each role follows (roles bound to a number follow none)."""
        f = t.bundle_follows
        self._conn.execute(f.delete().where(f.c.bundle_id == bundle_id))
        if follows:
            self._conn.execute(
                f.insert(),
                [
                    {
                        "bundle_id": bundle_id,
                        "role": role,
                        "namespace": a.namespace,
                        "model": a.model,
                        "alias": a.alias,
                    }
                    for role, a in follows.items()
                ],
            )

    def following(self, namespace: str, model: str, alias: str) -> dict[int, list[str]]:
        """Bundle id -> its roles that follow ``namespace/model@alias``."""
        out: dict[int, list[str]] = {}
        values = {"ns": namespace, "model": model, "alias": alias}
        for bid, role in self._aliases.following.all(self._conn, values):
            out.setdefault(int(bid), []).append(role)
        return out

    def allocate_version(self, bundle_id: int, at: int) -> int:
        """Bump and return the bundle's version counter (row-locked until commit)."""
        return int(
            self._conn.execute(
                t.bundles.update()
                .where(t.bundles.c.id == bundle_id)
                .values(last_version=t.bundles.c.last_version + 1, updated_at=at)
                .returning(t.bundles.c.last_version)
            ).scalar_one()
        )

    def insert_version(
        self,
        bundle_id: int,
        number: int,
        members: Mapping[str, int],
        *,
        edges: Sequence[Mapping[str, Any]],
        actor: str,
        at: int,
    ) -> int:
        """Insert a bundle version pinning ``members`` (role -> version id),
        checked against ``edges``."""
        bvid = int(
            self._conn.execute(
                t.bundle_versions.insert()
                .values(
                    bundle_id=bundle_id,
                    number=number,
                    edges=list(edges),
                    created_by=actor,
                    created_at=at,
                )
                .returning(t.bundle_versions.c.id)
            ).scalar_one()
        )
        self._conn.execute(
            t.bundle_members.insert(),
            [
                {"bundle_version_id": bvid, "role": role, "version_id": vid}
                for role, vid in members.items()
            ],
        )
        return bvid

    def version(self, bundle_id: int, number: int | None) -> BundleVersionRow | None:
        """A bundle version by number (None: the newest), with its members."""
        bv = t.bundle_versions.c
        q = sa.select(bv.id, bv.number, bv.edges, bv.created_by, bv.created_at).where(
            bv.bundle_id == bundle_id
        )
        q = q.where(bv.number == number) if number is not None else q.order_by(bv.number.desc())
        row = self._conn.execute(q.limit(1)).one_or_none()
        if row is None:
            return None
        members = {
            r.role: int(r.version_id)
            for r in self._conn.execute(
                sa.select(t.bundle_members.c.role, t.bundle_members.c.version_id).where(
                    t.bundle_members.c.bundle_version_id == row.id
                )
            )
        }
        return BundleVersionRow(
            int(row.id),
            int(row.number),
            row.created_by,
            int(row.created_at),
            members,
            None if row.edges is None else json_value(row.edges),
        )

    # -- aliases -------------------------------------------------------------

    def aliased_members_of_model(self, model_id: int) -> list[tuple[str, str, str, int, str, int]]:
        """(namespace, bundle, alias, bundle version, role, version id) of every
        bundle alias whose bundle version pins a version of the model."""
        a, bv, b, m, v = (
            t.bundle_aliases,
            t.bundle_versions,
            t.bundles,
            t.bundle_members,
            t.versions,
        )
        rows = self._conn.execute(
            sa.select(t.namespaces.c.name, b.c.name, a.c.name, bv.c.number, m.c.role, v.c.id)
            .select_from(
                a.join(bv, bv.c.id == a.c.bundle_version_id)
                .join(b, b.c.id == a.c.bundle_id)
                .join(t.namespaces, t.namespaces.c.id == b.c.namespace_id)
                .join(m, m.c.bundle_version_id == bv.c.id)
                .join(v, v.c.id == m.c.version_id)
            )
            .where(v.c.model_id == model_id)
            .order_by(t.namespaces.c.name, b.c.name, a.c.name, m.c.role)
        ).all()
        return [(ns, bn, al, int(n), role, int(vid)) for ns, bn, al, n, role, vid in rows]

    def get_alias(self, bundle_id: int, alias: str) -> int | None:
        """The number of the bundle version ``alias`` names, or None."""
        a, bv = t.bundle_aliases.c, t.bundle_versions.c
        found = self._conn.execute(
            sa.select(bv.number)
            .select_from(t.bundle_aliases.join(t.bundle_versions, bv.id == a.bundle_version_id))
            .where(a.bundle_id == bundle_id, a.name == alias)
        ).scalar_one_or_none()
        return None if found is None else int(found)

    def aliases(self, bundle_id: int) -> dict[str, int]:
        """Every alias of the bundle and the version number it names."""
        a, bv = t.bundle_aliases.c, t.bundle_versions.c
        return {
            name: int(number)
            for name, number in self._conn.execute(
                sa.select(a.name, bv.number)
                .select_from(t.bundle_aliases.join(t.bundle_versions, bv.id == a.bundle_version_id))
                .where(a.bundle_id == bundle_id)
                .order_by(a.name)
            )
        }

    def set_alias(
        self,
        bundle_id: int,
        alias: str,
        number: int | None,
        *,
        from_number: int | None,
        actor: str,
        reason: str,
        at: int,
    ) -> None:
        """Point ``alias`` at bundle version ``number`` (None: remove it) and
        record the move in the alias's history."""
        a = t.bundle_aliases
        if number is None:
            self._conn.execute(a.delete().where(a.c.bundle_id == bundle_id, a.c.name == alias))
        else:
            bvid = (
                sa.select(t.bundle_versions.c.id)
                .where(
                    t.bundle_versions.c.bundle_id == bundle_id,
                    t.bundle_versions.c.number == number,
                )
                .scalar_subquery()
            )
            values = {"bundle_version_id": bvid, "updated_by": actor, "updated_at": at}
            done = self._conn.execute(
                a.update().where(a.c.bundle_id == bundle_id, a.c.name == alias).values(values)
            )
            if not done.rowcount:
                self._conn.execute(a.insert().values(bundle_id=bundle_id, name=alias, **values))
        self._conn.execute(
            t.bundle_alias_history.insert().values(
                bundle_id=bundle_id,
                name=alias,
                from_version=from_number,
                to_version=number,
                actor=actor,
                reason=reason,
                at=at,
            )
        )

    def alias_history(self, bundle_id: int, alias: str | None) -> list[BundleAliasMoveRow]:
        """Every recorded move of the bundle's aliases (or one alias), oldest first."""
        h = t.bundle_alias_history.c
        q = sa.select(h.name, h.from_version, h.to_version, h.actor, h.reason, h.at).where(
            h.bundle_id == bundle_id
        )
        if alias is not None:
            q = q.where(h.name == alias)
        return [
            BundleAliasMoveRow(r.name, r.from_version, r.to_version, r.actor, r.reason, int(r.at))
            for r in self._conn.execute(q.order_by(h.id))
        ]

    def pinning_model(self, model_id: int) -> list[str]:
        """``ns/bundle/N`` of every bundle version pinning a version of the model."""
        m, bv, b = t.bundle_members, t.bundle_versions, t.bundles
        rows = self._conn.execute(
            sa.select(t.namespaces.c.name, b.c.name, bv.c.number)
            .select_from(
                m.join(t.versions, t.versions.c.id == m.c.version_id)
                .join(bv, bv.c.id == m.c.bundle_version_id)
                .join(b, b.c.id == bv.c.bundle_id)
                .join(t.namespaces, t.namespaces.c.id == b.c.namespace_id)
            )
            .where(t.versions.c.model_id == model_id)
            .distinct()
            .order_by(t.namespaces.c.name, b.c.name, bv.c.number)
        ).all()
        return [f"{ns}/{name}/{n}" for ns, name, n in rows]

    def pinned_versions(self, version_ids: Sequence[int]) -> list[int]:
        """Which of ``version_ids`` some bundle version pins."""
        if not version_ids:
            return []
        m = t.bundle_members.c
        return sorted(
            {
                int(v)
                for v in self._conn.execute(
                    sa.select(m.version_id).where(m.version_id.in_(list(version_ids)))
                ).scalars()
            }
        )
