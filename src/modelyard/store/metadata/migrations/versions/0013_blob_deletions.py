"""blobs being deleted by garbage collection (tombstones)

Revision ID: 0013
Revises: 0006
Create Date: 2026-11-30

Garbage collection deletes a blob in three steps: it records the digest here
(in a transaction that re-checks that no manifest lists it), deletes the
bytes from the store, then removes the row. A version commit that names a
digest recorded here is refused (``BLOB_MISSING``), so no version can come to
reference bytes that are being deleted; see ``service/gc.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_deletions",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_blob_deletions")),
    )


def downgrade() -> None:
    op.drop_table("blob_deletions")
