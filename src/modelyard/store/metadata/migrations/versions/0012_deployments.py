"""deployments: what runs where (issue 12)

Revision ID: 0012
Revises: 0013
Create Date: 2026-11-30

- ``deployments``: one reference followed in one environment (unique on
  both), the version its replicas last reported, desired replicas, endpoint.
- ``deployment_replicas``: each model server's last heartbeat (status,
  loaded version, endpoint, error); staleness is computed when read.
- ``deployment_history``: one row per change, indexed by environment.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=400), nullable=False),
        sa.Column("namespace", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("alias", sa.String(length=128), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("replicas", sa.Integer(), server_default="1", nullable=False),
        sa.Column("endpoint", sa.String(length=2048), nullable=True),
        sa.Column("created_by", sa.String(length=256), server_default="", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=256), server_default="", nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        sa.UniqueConstraint(
            "environment", "reference", name=op.f("uq_deployments_environment_reference")
        ),
    )
    op.create_index(
        "ix_deployments_model_alias", "deployments", ["namespace", "model", "alias"], unique=False
    )
    op.create_table(
        "deployment_replicas",
        sa.Column("deployment_id", _BIG_ID, nullable=False),
        sa.Column("replica", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("endpoint", sa.String(length=2048), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_replicas_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("deployment_id", "replica", name=op.f("pk_deployment_replicas")),
    )
    op.create_table(
        "deployment_history",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("deployment_id", _BIG_ID, nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=400), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("replica", sa.String(length=128), nullable=True),
        sa.Column("actor", sa.String(length=256), server_default="", nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_history_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_history")),
    )
    op.create_index(
        "ix_deployment_history_environment_id",
        "deployment_history",
        ["environment", "id"],
        unique=False,
    )
    op.create_index(
        "ix_deployment_history_deployment_id",
        "deployment_history",
        ["deployment_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_deployment_history_deployment_id", table_name="deployment_history")
    op.drop_index("ix_deployment_history_environment_id", table_name="deployment_history")
    op.drop_table("deployment_history")
    op.drop_table("deployment_replicas")
    op.drop_index("ix_deployments_model_alias", table_name="deployments")
    op.drop_table("deployments")
