"""webhooks made through the MLflow door keep MLflow's view of them

Revision ID: 0010
Revises: 0013
Create Date: 2026-11-30

A webhook created with ``MlflowClient.create_webhook`` is an ordinary
subscription (its URL, description, active flag, secret and modelyard event
types live in the existing columns) plus what only MLflow has: its name and
its list of MLflow event names. That goes into one nullable JSON column;
a NULL marks a webhook made through REST v1, which keeps its own body and
Standard Webhooks headers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("mlflow", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("mlflow")
