"""blob holds: a backup in progress keeps garbage collection from deleting

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30

A backup takes a snapshot of the metadata, then copies the blobs it lists.
Between the two, a hard delete followed by a collection could remove a blob
the snapshot still lists. A row here (taken under the exclusive collection
lock, before the snapshot) makes garbage collection refuse to delete until
the backup drops it or it expires; version commits are not affected.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_holds",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blob_holds")),
    )


def downgrade() -> None:
    op.drop_table("blob_holds")
