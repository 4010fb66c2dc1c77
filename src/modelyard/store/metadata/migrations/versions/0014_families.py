"""model families: recipe and metric delta of a variant, lineage indexes

Revision ID: 0014
Revises: 0006
Create Date: 2026-11-30

- ``versions.recipe`` (JSON: tool, tool_version, options) and
  ``versions.metric_delta`` (JSON: metric -> change against the parent).
- ``(original_id, created_at, id)`` and ``(parent_id, created_at, id)``
  replace the one-column lineage indexes: a family and a version's direct
  variants come out in the default search order; ``(relation, id)`` serves
  ``relation = '...'`` terms.
- An original is always the root of its family from now on: rows whose
  original has an original of its own are pointed at that one, until none
  is left (the chain is walked one level per statement).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0006"
branch_labels = None
depends_on = None

# Far more than any real lineage depth; a loop in a damaged store stops here.
_MAX_PASSES = 1000


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch_op:
        batch_op.add_column(sa.Column("recipe", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("metric_delta", sa.JSON(), nullable=True))
        batch_op.drop_index("ix_versions_original_id")
        batch_op.drop_index("ix_versions_parent_id")
        batch_op.create_index(
            "ix_versions_original_created", ["original_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_versions_parent_created", ["parent_id", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_versions_relation_id", ["relation", "id"], unique=False)
    bind = op.get_bind()
    fix = sa.text(
        "UPDATE versions SET original_id = "
        "(SELECT o.original_id FROM versions o WHERE o.id = versions.original_id) "
        "WHERE original_id IN (SELECT id FROM versions WHERE original_id IS NOT NULL)"
    )
    for _ in range(_MAX_PASSES):
        if not bind.execute(fix).rowcount:
            break


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch_op:
        batch_op.drop_index("ix_versions_relation_id")
        batch_op.drop_index("ix_versions_parent_created")
        batch_op.drop_index("ix_versions_original_created")
        batch_op.create_index("ix_versions_parent_id", ["parent_id"], unique=False)
        batch_op.create_index("ix_versions_original_id", ["original_id"], unique=False)
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch drop would
    # rebuild ``versions``, which every lineage and child row references.
    op.drop_column("versions", "metric_delta")
    op.drop_column("versions", "recipe")
