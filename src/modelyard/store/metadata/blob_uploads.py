"""Who uploaded which blob: the record behind the blob "mount" rule.

A manifest may name a digest only if its caller uploaded those bytes or can
read a version that lists them (``service/blobs.py``); this table holds the
first half. One row per (digest, user), however often the bytes are sent.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from modelyard.store.metadata import tables as t


def record_upload(conn: sa.Connection, digest: str, user: str, at: int) -> None:
    """Note that ``user`` sent the bytes of ``digest`` (idempotent)."""
    values = {"digest": digest, "user_name": user, "created_at": at}
    stmt = (
        sqlite.insert(t.blob_uploads).values(values).on_conflict_do_nothing()
        if conn.dialect.name == "sqlite"
        else postgresql.insert(t.blob_uploads).values(values).on_conflict_do_nothing()
    )
    conn.execute(stmt)


def uploaded_by(conn: sa.Connection, user: str, digests: Sequence[str]) -> set[str]:
    """The subset of ``digests`` that ``user`` uploaded."""
    found: set[str] = set()
    unique = sorted(set(digests))
    # Bounded IN lists: SQLite caps bound parameters per statement.
    for i in range(0, len(unique), 500):
        found.update(
            conn.execute(
                sa.select(t.blob_uploads.c.digest).where(
                    t.blob_uploads.c.user_name == user,
                    t.blob_uploads.c.digest.in_(unique[i : i + 500]),
                )
            ).scalars()
        )
    return found
