"""bundles keep flagged incompatibilities; bundle alias approval requests (issue 14)

Revision ID: 0029
Revises: 0022
Create Date: 2026-11-30

- ``bundles.incompatible``: JSON list, NULL when none. A model alias move
  that breaks a bundle whose namespace policy says ``bundle_breaks: flag``
  applies and appends what it broke here; pinning the next bundle version
  (which checks that the bundle fits together again) clears it.
- ``bundle_approvals`` / ``bundle_approval_votes``: requests to move a
  (protected) bundle alias to a bundle version, and their reviews, as
  ``approvals`` / ``approval_votes`` are for model versions. Deleting the
  bundle deletes them (their events stay in the audit log).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bundles") as batch_op:
        batch_op.add_column(sa.Column("incompatible", sa.JSON(), nullable=True))
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "bundle_approvals",
        sa.Column("id", big, primary_key=True, autoincrement=True),
        sa.Column(
            "bundle_id", big, sa.ForeignKey("bundles.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("alias_from", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=256), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("decided_by", sa.String(length=256), nullable=True),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
    )
    op.create_index(
        "ix_bundle_approvals_bundle_id_state_id",
        "bundle_approvals",
        ["bundle_id", "state", "id"],
    )
    op.create_table(
        "bundle_approval_votes",
        sa.Column(
            "approval_id",
            big,
            sa.ForeignKey("bundle_approvals.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("actor", sa.String(length=256), primary_key=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False, server_default=""),
        sa.Column("at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bundle_approval_votes")
    op.drop_index("ix_bundle_approvals_bundle_id_state_id", table_name="bundle_approvals")
    op.drop_table("bundle_approvals")
    with op.batch_alter_table("bundles") as batch_op:
        batch_op.drop_column("incompatible")
