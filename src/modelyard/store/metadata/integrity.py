"""What fsck and backup ask of the metadata: which blobs the registry lists,
which rows point at nothing, and the holds a backup puts on garbage collection.

A blob is listed by a version's manifest (``files``) and by the artifact index
of runs and logged models (``artifacts``); both count as references for
garbage collection too (``blob_uploads.referenced``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from modelyard.store.metadata import tables as t

_CHUNK = 500
"""Bound parameters per IN list: SQLite caps them per statement."""


def _chunks(digests: Sequence[str]) -> Iterator[list[str]]:
    unique = sorted(set(digests))
    for i in range(0, len(unique), _CHUNK):
        yield unique[i : i + _CHUNK]


def listed_blobs(conn: sa.Connection) -> dict[str, set[int]]:
    """Every digest some manifest or artifact index lists, with the sizes it
    is listed under (more than one size is itself damage)."""
    out: dict[str, set[int]] = {}
    for table in (t.files, t.artifacts):
        found = conn.execute(sa.select(table.c.digest, table.c.size).distinct())
        for digest, size in found:
            out.setdefault(str(digest), set()).add(int(size))
    return out


def users_of(
    conn: sa.Connection, digests: Sequence[str], *, limit: int = 20
) -> dict[str, list[str]]:
    """Who lists each digest, in words (``version ns/model/3 path``,
    ``artifact OWNER/path``), at most ``limit`` per digest: for a report."""
    out: dict[str, list[str]] = {}
    v, m, n, f = t.versions, t.models, t.namespaces, t.files
    for chunk in _chunks(digests):
        versions = conn.execute(
            sa.select(f.c.digest, n.c.name, m.c.name, v.c.number, f.c.path)
            .select_from(
                f.join(v, v.c.id == f.c.version_id)
                .join(m, m.c.id == v.c.model_id)
                .join(n, n.c.id == m.c.namespace_id)
            )
            .where(f.c.digest.in_(chunk))
            .order_by(f.c.digest, n.c.name, m.c.name, v.c.number, f.c.path)
        )
        for digest, ns, model, number, path in versions:
            users = out.setdefault(str(digest), [])
            if len(users) < limit:
                users.append(f"version {ns}/{model}/{number} {path}")
        a = t.artifacts
        indexed = conn.execute(
            sa.select(a.c.digest, a.c.owner, a.c.path)
            .where(a.c.digest.in_(chunk))
            .order_by(a.c.digest, a.c.owner, a.c.path)
        )
        for digest, owner, path in indexed:
            users = out.setdefault(str(digest), [])
            if len(users) < limit:
                users.append(f"artifact {owner}/{path}")
    return out


def broken_pointers(conn: sa.Connection) -> list[dict[str, Any]]:
    """Rows that point at nothing real, each as ``{"kind", "subject", "detail"}``:
    aliases on a missing version or another model's, manifest rows of a
    missing version, lineage and bundle pins naming missing versions.

    Foreign keys forbid most of these; a restored or hand-edited database,
    or one whose foreign keys were off, can still hold them.
    """
    problems: list[dict[str, Any]] = []
    a, v, m, n = t.aliases, t.versions, t.models, t.namespaces
    target = v.alias("target")
    aliases = conn.execute(
        sa.select(n.c.name, m.c.name, a.c.name, a.c.version_id, target.c.model_id)
        .select_from(
            a.join(m, m.c.id == a.c.model_id)
            .join(n, n.c.id == m.c.namespace_id)
            .outerjoin(target, target.c.id == a.c.version_id)
        )
        .where(sa.or_(target.c.id.is_(None), target.c.model_id != a.c.model_id))
    )
    for ns, model, alias, version_id, owner in aliases:
        detail = "version missing" if owner is None else "version of another model"
        problems.append(
            {
                "kind": "alias",
                "subject": f"{ns}/{model}@{alias}",
                "detail": f"{detail} (version id {version_id})",
            }
        )
    f = t.files
    orphans = conn.execute(
        sa.select(f.c.version_id, sa.func.count())
        .select_from(f.outerjoin(v, v.c.id == f.c.version_id))
        .where(v.c.id.is_(None))
        .group_by(f.c.version_id)
    )
    for version_id, count in orphans:
        problems.append(
            {
                "kind": "manifest",
                "subject": f"version id {version_id}",
                "detail": f"{count} file row(s) of a version that does not exist",
            }
        )
    for column in ("original_id", "parent_id"):
        ref = v.alias("ref")
        lineage = conn.execute(
            sa.select(n.c.name, m.c.name, v.c.number, v.c[column])
            .select_from(
                v.join(m, m.c.id == v.c.model_id)
                .join(n, n.c.id == m.c.namespace_id)
                .outerjoin(ref, ref.c.id == v.c[column])
            )
            .where(v.c[column].is_not(None), ref.c.id.is_(None))
        )
        for ns, model, number, missing in lineage:
            problems.append(
                {
                    "kind": "lineage",
                    "subject": f"{ns}/{model}/{number}",
                    "detail": f"{column.removesuffix('_id')} version id {missing} does not exist",
                }
            )
    bm, bv, b = t.bundle_members, t.bundle_versions, t.bundles
    pins = conn.execute(
        sa.select(b.c.name, bv.c.number, bm.c.role, bm.c.version_id)
        .select_from(
            bm.join(bv, bv.c.id == bm.c.bundle_version_id)
            .join(b, b.c.id == bv.c.bundle_id)
            .outerjoin(v, v.c.id == bm.c.version_id)
        )
        .where(v.c.id.is_(None))
    )
    for bundle, number, role, version_id in pins:
        problems.append(
            {
                "kind": "bundle",
                "subject": f"{bundle}/{number} {role}",
                "detail": f"pinned version id {version_id} does not exist",
            }
        )
    return problems


# -- holds: a backup keeps garbage collection from deleting -------------------


def add_hold(conn: sa.Connection, holder: str, now_us: int, ttl_us: int) -> int:
    """Record a hold by ``holder`` for ``ttl_us`` microseconds; its id."""
    row = conn.execute(
        t.blob_holds.insert()
        .values(holder=holder, created_at=now_us, expires_at=now_us + ttl_us)
        .returning(t.blob_holds.c.id)
    ).one()
    return int(row[0])


def drop_hold(conn: sa.Connection, hold_id: int) -> None:
    """Remove a hold."""
    conn.execute(t.blob_holds.delete().where(t.blob_holds.c.id == hold_id))


def active_holds(conn: sa.Connection, now_us: int) -> list[tuple[str, int]]:
    """The unexpired holds as (holder, expires at in microseconds)."""
    h = t.blob_holds.c
    rows = conn.execute(
        sa.select(h.holder, h.expires_at).where(h.expires_at > now_us).order_by(h.id)
    )
    return [(str(r[0]), int(r[1])) for r in rows]
