"""deployments deleted with their history kept; serving exceptions (issue 12)

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30

- ``deployments.deleted_at`` / ``deleted_by``: a deleted deployment keeps its
  row (its history rows point at it, and a history must survive the
  deletion it records); reads skip it, and recording the same environment
  and reference again brings the row back with a ``created`` entry.
- ``serving_exceptions``: an admin's recorded, audited exception on one
  version (kind ``pickle``: the model server may unpickle this version's
  file); one per version and kind, gone with the version.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("deleted_by", sa.String(length=256), nullable=True))
    op.create_table(
        "serving_exceptions",
        sa.Column("version_id", _BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.String(length=256), nullable=False),
        sa.Column("granted_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
            name=op.f("fk_serving_exceptions_version_id_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "kind", name=op.f("pk_serving_exceptions")),
    )


def downgrade() -> None:
    op.drop_table("serving_exceptions")
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.drop_column("deleted_by")
        batch_op.drop_column("deleted_at")
