"""version blob waits: draft versions over direct uploads still being verified

Revision ID: 0031
Revises: 0028
Create Date: 2026-12-01

Issue 13: a version may name a blob whose direct upload is complete but not
yet read back by the background verifier; it is then created as ``draft``
with one row here per such file. The verifier releases the rows when the
upload verifies (and moves the version to ready when none is left and
``promote`` says so) or marks them ``failed`` when the bytes do not hash to
the digest. ``uploader`` names whose verified upload releases a row (the
mount rule: knowing a digest is not enough), NULL for anyone's.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "version_blob_waits",
        sa.Column(
            "version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("uploader", sa.String(256), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("promote", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
            name=op.f("fk_version_blob_waits_version_id_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "path", name=op.f("pk_version_blob_waits")),
    )
    op.create_index("ix_version_blob_waits_digest", "version_blob_waits", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_version_blob_waits_digest", table_name="version_blob_waits")
    op.drop_table("version_blob_waits")
