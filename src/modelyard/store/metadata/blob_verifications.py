"""Direct uploads waiting for the background verifier (``service/blob_verifier.py``).

One row per upload: ``pending`` until a verifier has read the staged object
back and published it (``verified``) or refused it (``failed``, with the
reason in ``detail``). A verifier claims pending rows with a lease, as the
webhook dispatcher claims deliveries (``outbox.claim_due``): on PostgreSQL
``FOR UPDATE SKIP LOCKED`` keeps two replicas off the same row, and a killed
process's lease simply runs out and the row is claimed again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from modelyard.store.metadata import tables as t
from modelyard.store.metadata.ports import FAILED, PENDING, VERIFIED, VerificationRow


def _row(r: sa.Row[tuple[object, ...]]) -> VerificationRow:
    m = r._mapping
    return VerificationRow(
        upload_id=str(m["upload_id"]),
        digest=str(m["digest"]),
        size=int(m["size"]),
        uploader=str(m["uploader"]),
        state=str(m["state"]),
        detail=None if m["detail"] is None else str(m["detail"]),
        attempts=int(m["attempts"]),
    )


def add(
    conn: sa.Connection, upload_id: str, digest: str, size: int, uploader: str, at: int
) -> None:
    """Queue an upload for verification (unclaimed)."""
    conn.execute(
        t.blob_verifications.insert().values(
            upload_id=upload_id,
            digest=digest,
            size=size,
            uploader=uploader,
            state=PENDING,
            detail=None,
            worker=None,
            lease_until=0,
            attempts=0,
            created_at=at,
            updated_at=at,
        )
    )


def get(conn: sa.Connection, upload_id: str) -> VerificationRow | None:
    """One upload's verification, or None."""
    r = conn.execute(
        sa.select(t.blob_verifications).where(t.blob_verifications.c.upload_id == upload_id)
    ).one_or_none()
    return None if r is None else _row(r)


def claim(
    conn: sa.Connection, *, now: int, lease_until: int, worker: str, limit: int
) -> list[VerificationRow]:
    """Claim up to ``limit`` pending uploads whose lease ran out (oldest first)."""
    v = t.blob_verifications.c
    q = (
        sa.select(v.upload_id)
        .where(v.state == PENDING, v.lease_until < now)
        .order_by(v.created_at, v.upload_id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    ids = list(conn.execute(q).scalars())
    if not ids:
        return []
    conn.execute(
        t.blob_verifications.update()
        .where(v.upload_id.in_(ids))
        .values(worker=worker, lease_until=lease_until, attempts=v.attempts + 1, updated_at=now)
    )
    rows = conn.execute(
        sa.select(t.blob_verifications).where(v.upload_id.in_(ids)).order_by(v.created_at)
    )
    return [_row(r) for r in rows]


def finish(
    conn: sa.Connection, upload_id: str, *, worker: str, state: str, detail: str | None, at: int
) -> bool:
    """Record the outcome of a claimed verification; False if the claim was
    lost meanwhile (its lease ran out and another worker took the row)."""
    v = t.blob_verifications.c
    done = conn.execute(
        t.blob_verifications.update()
        .where(v.upload_id == upload_id, v.worker == worker, v.state == PENDING)
        .values(state=state, detail=detail, lease_until=0, updated_at=at)
    )
    return bool(done.rowcount)


def renew(conn: sa.Connection, upload_id: str, *, worker: str, lease_until: int) -> bool:
    """Extend ``worker``'s lease on a pending verification it still holds."""
    v = t.blob_verifications.c
    done = conn.execute(
        t.blob_verifications.update()
        .where(v.upload_id == upload_id, v.worker == worker, v.state == PENDING)
        .values(lease_until=lease_until)
    )
    return bool(done.rowcount)


def pending_uploads(conn: sa.Connection) -> list[str]:
    """The upload ids still waiting for verification (their staged objects stay)."""
    v = t.blob_verifications.c
    return list(conn.execute(sa.select(v.upload_id).where(v.state == PENDING)).scalars())


def prune(conn: sa.Connection, *, before: int, states: Sequence[str] = (VERIFIED, FAILED)) -> int:
    """Forget finished verifications last changed before ``before``."""
    v = t.blob_verifications.c
    done = conn.execute(
        t.blob_verifications.delete().where(v.state.in_(list(states)), v.updated_at < before)
    )
    return int(done.rowcount)
