"""who uploaded which blob (the blob "mount" rule)

Revision ID: 0008
Revises: 0004
Create Date: 2026-11-30

A manifest may name a digest only if its caller uploaded those bytes or can
already read a version that lists them; existence answers (``HEAD``,
``/blobs/missing``) follow the same rule. This table records the uploads.
Blobs stored before it have no uploader: versions that list them keep them
reachable for their readers, and anyone else uploads the bytes again (stored
once).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_uploads",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("digest", "user_name", name=op.f("pk_blob_uploads")),
    )


def downgrade() -> None:
    op.drop_table("blob_uploads")
