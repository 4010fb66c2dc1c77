"""Bundle queries (issue 14) bound to one open transaction: the object behind
``RegistryTx.bundles`` (see :mod:`~modelyard.store.metadata.ports`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from modelyard.store.metadata import tables as t
from modelyard.store.metadata.ports import BundleRow, BundleVersionRow
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
).select_from(t.bundles.join(t.namespaces, t.bundles.c.namespace_id == t.namespaces.c.id))


class BoundBundles:
    """Bundles, bundle versions and their members, in one transaction."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def get(self, namespace: str, name: str) -> BundleRow | None:
        """A bundle by name, or None."""
        row = self._conn.execute(
            _BUNDLE_SELECT.where(t.namespaces.c.name == namespace, t.bundles.c.name == name)
        ).one_or_none()
        return None if row is None else _bundle(row)

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
        self, bundle_id: int, number: int, members: Mapping[str, int], *, actor: str, at: int
    ) -> int:
        """Insert a bundle version pinning ``members`` (role -> version id)."""
        bvid = int(
            self._conn.execute(
                t.bundle_versions.insert()
                .values(bundle_id=bundle_id, number=number, created_by=actor, created_at=at)
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
        q = sa.select(bv.id, bv.number, bv.created_by, bv.created_at).where(
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
            int(row.id), int(row.number), row.created_by, int(row.created_at), members
        )

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
