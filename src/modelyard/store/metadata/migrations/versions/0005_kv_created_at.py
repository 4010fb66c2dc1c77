"""version key/value rows carry their version's creation time

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-23

The four version key/value tables get ``created_at`` (copied from their
version, which never changes it) and their ``(key, value)`` index becomes
``(key, value, created_at, version_id)``: a search for one tag value then
walks that value's versions in the default order (newest first) instead of
every version.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("version_tags", "version_metrics", "version_params", "version_meta")


def upgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as batch:
            batch.add_column(
                sa.Column("created_at", sa.BigInteger(), nullable=False, server_default="0")
            )
        op.execute(
            f"UPDATE {name} SET created_at = "
            f"(SELECT versions.created_at FROM versions WHERE versions.id = {name}.version_id)"
        )
        with op.batch_alter_table(name) as batch:
            # Every writer sets it; a default would hide one that forgot.
            batch.alter_column("created_at", server_default=None)
            batch.drop_index(f"ix_{name}_key_value")
            batch.create_index(
                f"ix_{name}_key_value", ["key", "value", "created_at", "version_id"], unique=False
            )


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as batch:
            batch.drop_index(f"ix_{name}_key_value")
            batch.create_index(f"ix_{name}_key_value", ["key", "value", "version_id"], unique=False)
            batch.drop_column("created_at")
