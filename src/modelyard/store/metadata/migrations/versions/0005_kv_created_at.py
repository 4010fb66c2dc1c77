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
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name in TABLES:
        op.add_column(
            name, sa.Column("created_at", sa.BigInteger(), nullable=False, server_default="0")
        )
        op.execute(
            f"UPDATE {name} SET created_at = "
            f"(SELECT versions.created_at FROM versions WHERE versions.id = {name}.version_id)"
        )
        if not sqlite:
            # Every writer sets it; a default would hide one that forgot. On
            # SQLite dropping a default means copying the table (slow on a big
            # one, and a fresh database's start-up pays it too), so it stays.
            op.alter_column(name, "created_at", server_default=None)
        op.drop_index(f"ix_{name}_key_value", table_name=name)
        op.create_index(f"ix_{name}_key_value", name, ["key", "value", "created_at", "version_id"])


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as batch:
            batch.drop_index(f"ix_{name}_key_value")
            batch.create_index(f"ix_{name}_key_value", ["key", "value", "version_id"], unique=False)
            batch.drop_column("created_at")
