"""deployment monitoring settings (issue 12)

Revision ID: 0018
Revises: 0016
Create Date: 2026-11-30

- ``deployments.monitoring``: the deployment's monitoring settings as JSON
  (drift and degradation thresholds, window, automatic rollback opt-in);
  NULL keeps the defaults. A nullable column added in place on both
  SQLite and PostgreSQL (no table rewrite).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deployments", sa.Column("monitoring", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("monitoring")
