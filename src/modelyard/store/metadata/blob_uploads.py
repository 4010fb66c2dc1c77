"""Who uploaded which blob: the record behind the blob "mount" rule.

A manifest may name a digest only if its caller uploaded those bytes or can
read a version that lists them (``service/blobs.py``); this table holds the
first half. One row per (digest, user), however often the bytes are sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from modelyard.store.metadata import tables as t


def record_upload(conn: sa.Connection, digest: str, user: str, at: int) -> None:
    """Note that ``user`` sent the bytes of ``digest`` (idempotent)."""
    values = {"digest": digest, "user_name": user, "created_at": at}
    insert = sqlite.insert if conn.dialect.name == "sqlite" else _postgresql_insert()
    conn.execute(insert(t.blob_uploads).values(values).on_conflict_do_nothing())


def _postgresql_insert() -> Any:
    """PostgreSQL's ``INSERT`` construct, imported when first needed: the
    dialect's modules cost ~25 ms of every SQLite server's start-up."""
    from sqlalchemy.dialects.postgresql import insert

    return insert


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


# -- garbage collection (service/gc.py) ---------------------------------------

COLLECTION_LOCK = 7400213
"""PostgreSQL advisory lock key between garbage collection (exclusive, while it
re-checks references and records deletions) and version commits (shared,
before they check those records). SQLite has one writer at a time already."""


def _chunks(digests: Sequence[str]) -> list[list[str]]:
    unique = sorted(set(digests))
    return [unique[i : i + 500] for i in range(0, len(unique), 500)]


def lock_collection(conn: sa.Connection, *, exclusive: bool) -> None:
    """Take the collection lock for the rest of the transaction (PostgreSQL).

    Its own statement, before the reads it guards: under READ COMMITTED each
    statement sees what was committed when it began, so a read in the same
    statement as the wait could miss what the other side committed meanwhile.
    """
    if conn.dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        conn.exec_driver_sql(f"SELECT {fn}({COLLECTION_LOCK})")


def referenced(conn: sa.Connection, digests: Sequence[str]) -> set[str]:
    """The subset of ``digests`` that something still names: a version's
    manifest, a run's or logged model's artifact index, or a part of an open
    multipart artifact upload (each column is indexed by digest or small)."""
    found: set[str] = set()
    columns = (t.files.c.digest, t.artifacts.c.digest, t.artifact_upload_parts.c.digest)
    for chunk in _chunks(digests):
        for column in columns:
            found.update(
                conn.execute(sa.select(column).where(column.in_(chunk)).distinct()).scalars()
            )
    return found


def being_deleted(conn: sa.Connection, digests: Sequence[str]) -> set[str]:
    """The subset of ``digests`` garbage collection is deleting."""
    found: set[str] = set()
    for chunk in _chunks(digests):
        found.update(
            conn.execute(
                sa.select(t.blob_deletions.c.digest).where(t.blob_deletions.c.digest.in_(chunk))
            ).scalars()
        )
    return found


def mark_deleted(conn: sa.Connection, sizes: dict[str, int], at: int) -> None:
    """Record that these blobs are being deleted, and forget who uploaded them
    (the mount rule's records: the bytes are going)."""
    rows = [{"digest": d, "size": n, "created_at": at} for d, n in sizes.items()]
    for i in range(0, len(rows), 500):
        conn.execute(t.blob_deletions.insert(), rows[i : i + 500])
    for chunk in _chunks(list(sizes)):
        conn.execute(t.blob_uploads.delete().where(t.blob_uploads.c.digest.in_(chunk)))


def pending_deletions(conn: sa.Connection) -> dict[str, int]:
    """Every recorded deletion (digest -> size), e.g. left by a collection that died."""
    c = t.blob_deletions.c
    return {str(d): int(n) for d, n in conn.execute(sa.select(c.digest, c.size))}


def clear_deleted(conn: sa.Connection, digests: Sequence[str]) -> None:
    """Drop the records of deletions that are done."""
    for chunk in _chunks(digests):
        conn.execute(t.blob_deletions.delete().where(t.blob_deletions.c.digest.in_(chunk)))
