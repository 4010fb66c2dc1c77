"""a replica's heartbeat carries its monitoring window (issue 12)

Revision ID: 0026
Revises: 0022
Create Date: 2026-11-30

- ``deployment_replicas.measures``: what the model server measured over its
  monitoring window at its last heartbeat (requests, error rate, latency
  percentiles, per-feature PSI and KS with the thresholds it judges them
  by), as JSON; None from a server that sends none. Overwritten by each
  heartbeat: the latest figures, not a time series (Prometheus keeps that).
- ``ix_deployment_history_reference_id``: one deployment's history (its
  page, its alerts) read newest first without scanning its environment's.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployment_replicas") as batch_op:
        batch_op.add_column(sa.Column("measures", sa.JSON(), nullable=True))
    op.create_index(
        "ix_deployment_history_reference_id",
        "deployment_history",
        ["environment", "reference", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_deployment_history_reference_id", table_name="deployment_history")
    with op.batch_alter_table("deployment_replicas") as batch_op:
        batch_op.drop_column("measures")
