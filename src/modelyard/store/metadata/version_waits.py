"""Files of draft versions waiting for their direct upload's verification.

A version may name a blob whose direct upload its creator completed but the
background verifier has not read back yet (issue 13): the version is created
``draft`` with one row here per such file (``pending``). The verifier's
transaction that publishes the blob releases the rows (:func:`release`),
and the one that refuses it marks them ``failed`` (:func:`mark_failed`).
Only an upload by the row's ``uploader`` (or anyone's when it is NULL)
releases a row: the OCI mount rule, knowing a digest is not enough.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from modelyard.domain.entities import PendingFile
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.ports import FAILED, PENDING


def add(
    conn: sa.Connection,
    version_id: int,
    files: Sequence[tuple[str, str]],
    *,
    uploader: str | None,
    promote: bool,
    at: int,
) -> None:
    """Record that ``version_id`` waits on these (path, digest) files."""
    if not files:
        return
    conn.execute(
        t.version_blob_waits.insert(),
        [
            {
                "version_id": version_id,
                "path": path,
                "digest": digest,
                "uploader": uploader,
                "state": PENDING,
                "detail": None,
                "promote": promote,
                "created_at": at,
            }
            for path, digest in files
        ],
    )


def of_versions(conn: sa.Connection, version_ids: Sequence[int]) -> dict[int, list[PendingFile]]:
    """The waiting files of each version, in path order."""
    if not version_ids:
        return {}
    w = t.version_blob_waits.c
    rows = conn.execute(
        sa.select(w.version_id, w.path, w.digest, w.state, w.detail)
        .where(w.version_id.in_(list(version_ids)))
        .order_by(w.version_id, w.path)
    )
    out: dict[int, list[PendingFile]] = {}
    for vid, path, digest, state, detail in rows:
        out.setdefault(int(vid), []).append(
            PendingFile(str(path), str(digest), str(state), _error(detail))
        )
    return out


def _error(detail: object) -> dict[str, Any] | None:
    if detail is None:
        return None
    try:
        parsed = json.loads(str(detail))
    except ValueError:
        return {"code": "DIGEST_MISMATCH", "message": str(detail), "details": {}}
    return parsed if isinstance(parsed, dict) else None


def waiting_digests(conn: sa.Connection) -> set[str]:
    """Every digest some version waits on (its blob may not be stored yet)."""
    w = t.version_blob_waits.c
    return set(conn.execute(sa.select(w.digest).distinct()).scalars())


def _matching(digest: str, uploader: str) -> sa.ColumnElement[bool]:
    w = t.version_blob_waits.c
    return sa.and_(w.digest == digest, sa.or_(w.uploader.is_(None), w.uploader == uploader))


def waiting_on(conn: sa.Connection, digest: str, uploader: str) -> list[int]:
    """The versions with a file an upload of ``digest`` by ``uploader`` releases."""
    w = t.version_blob_waits.c
    return sorted(
        int(x)
        for x in conn.execute(
            sa.select(w.version_id).where(_matching(digest, uploader)).distinct()
        ).scalars()
    )


def release(conn: sa.Connection, version_id: int, digest: str, uploader: str) -> bool:
    """Drop the version's waits on ``digest`` that ``uploader``'s upload
    releases; whether the version was to become ready once none is left."""
    w = t.version_blob_waits.c
    where = sa.and_(w.version_id == version_id, _matching(digest, uploader))
    promote = conn.execute(sa.select(w.promote).where(where).limit(1)).scalar_one_or_none()
    conn.execute(t.version_blob_waits.delete().where(where))
    return bool(promote)


def remaining(conn: sa.Connection, version_id: int) -> int:
    """How many files of the version still wait (pending or failed)."""
    w = t.version_blob_waits.c
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(t.version_blob_waits)
            .where(w.version_id == version_id)
        ).scalar_one()
    )


def mark_failed(
    conn: sa.Connection, digest: str, uploader: str, detail: str
) -> list[tuple[int, str]]:
    """Mark the waits an upload of ``digest`` by ``uploader`` would have
    released as failed; the (version id, path) pairs marked."""
    w = t.version_blob_waits.c
    hit = [
        (int(vid), str(path))
        for vid, path in conn.execute(
            sa.select(w.version_id, w.path)
            .where(_matching(digest, uploader))
            .order_by(w.version_id, w.path)
        )
    ]
    if hit:
        conn.execute(
            t.version_blob_waits.update()
            .where(_matching(digest, uploader))
            .values(state=FAILED, detail=detail)
        )
    return hit


def pending_uploads_of(
    conn: sa.Connection, digests: Sequence[str], uploader: str | None
) -> dict[str, int]:
    """Digests among ``digests`` with a direct upload still waiting for the
    verifier, by ``uploader`` (None: by anyone), with their sizes."""
    if not digests:
        return {}
    v = t.blob_verifications.c
    q = sa.select(v.digest, v.size).where(v.state == PENDING, v.digest.in_(list(digests)))
    if uploader is not None:
        q = q.where(v.uploader == uploader)
    return {str(d): int(s) for d, s in conn.execute(q)}


def verification_states(
    conn: sa.Connection, digests: Sequence[str], uploader: str | None
) -> dict[str, set[str]]:
    """The states of the direct uploads of ``digests`` by ``uploader`` (None:
    anyone), their rows locked (``FOR UPDATE`` on PostgreSQL, upload id order)."""
    if not digests:
        return {}
    v = t.blob_verifications.c
    q = sa.select(v.digest, v.state).where(v.digest.in_(list(digests))).order_by(v.upload_id)
    if uploader is not None:
        q = q.where(v.uploader == uploader)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    out: dict[str, set[str]] = {}
    for digest, state in conn.execute(q):
        out.setdefault(str(digest), set()).add(str(state))
    return out


def delete_of(conn: sa.Connection, version_ids: sa.Select[tuple[int]] | Sequence[int]) -> None:
    """Forget the waits of deleted versions."""
    w = t.version_blob_waits.c
    ids = version_ids if isinstance(version_ids, sa.Select) else list(version_ids)
    conn.execute(t.version_blob_waits.delete().where(w.version_id.in_(ids)))
