"""alias history in pages: newest first per model

Revision ID: 0019
Revises: 0012
Create Date: 2026-11-30

``(model_id, at, id)`` on ``alias_history``: a model's moves come out newest
first, one keyset page at a time (the model page reads the newest 100, not
every move the model ever had). One alias's moves keep using
``(model_id, name, at)``.
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alias_history") as batch_op:
        batch_op.create_index("ix_alias_history_model_at", ["model_id", "at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alias_history") as batch_op:
        batch_op.drop_index("ix_alias_history_model_at")
