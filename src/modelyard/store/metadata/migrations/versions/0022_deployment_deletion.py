"""deployments can be deleted with their history kept (issue 12)

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30

- ``deployments.deleted_at`` / ``deleted_by``: a deleted deployment keeps its
  row (its history rows point at it, and a history must survive the
  deletion it records); reads skip it, and recording the same environment
  and reference again brings the row back with a ``created`` entry.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("deleted_by", sa.String(length=256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.drop_column("deleted_by")
        batch_op.drop_column("deleted_at")
