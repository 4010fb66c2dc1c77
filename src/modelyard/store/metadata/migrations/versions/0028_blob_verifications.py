"""blob verifications: direct uploads read back by a background verifier

Revision ID: 0028
Revises: 0022
Create Date: 2026-11-30

A blob a client PUT straight into the object store through presigned URLs is
verified (size, SHA-256) by reading it back once before it is published under
its digest. That read takes as long as the upload's bytes take to stream, so
it runs in a background verifier of each server process, not in the request:
one row per upload, claimed with a lease (``worker``, ``lease_until``) so that
exactly one replica reads it and a killed replica's claim expires and is
redone; ``state`` says pending, verified or failed, for the client to poll.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_verifications",
        sa.Column("upload_id", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("uploader", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("upload_id", name=op.f("pk_blob_verifications")),
    )
    op.create_index(
        "ix_blob_verifications_state_lease",
        "blob_verifications",
        ["state", "lease_until"],
    )


def downgrade() -> None:
    op.drop_index("ix_blob_verifications_state_lease", table_name="blob_verifications")
    op.drop_table("blob_verifications")
