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
- ``bundles`` (roles and edges as JSON), ``bundle_versions`` and
  ``bundle_members`` (the version each role pinned, indexed by version).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None

# Far more than any real lineage depth; a loop in a damaged store stops here.
_MAX_PASSES = 1000
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


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
    op.create_table(
        "bundles",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("namespace_id", _BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("edges", sa.JSON(), nullable=False),
        sa.Column("last_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_by", sa.String(length=256), server_default="", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["namespaces.id"], name=op.f("fk_bundles_namespace_id_namespaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bundles")),
        sa.UniqueConstraint("namespace_id", "name", name=op.f("uq_bundles_namespace_id_name")),
    )
    op.create_table(
        "bundle_versions",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("bundle_id", _BIG_ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=256), server_default="", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundle_id"],
            ["bundles.id"],
            name=op.f("fk_bundle_versions_bundle_id_bundles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bundle_versions")),
        sa.UniqueConstraint(
            "bundle_id", "number", name=op.f("uq_bundle_versions_bundle_id_number")
        ),
    )
    op.create_table(
        "bundle_members",
        sa.Column("bundle_version_id", _BIG_ID, nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("version_id", _BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["bundle_version_id"],
            ["bundle_versions.id"],
            name=op.f("fk_bundle_members_bundle_version_id_bundle_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name=op.f("fk_bundle_members_version_id_versions")
        ),
        sa.PrimaryKeyConstraint("bundle_version_id", "role", name=op.f("pk_bundle_members")),
    )
    op.create_index("ix_bundle_members_version_id", "bundle_members", ["version_id"], unique=False)
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
    op.drop_index("ix_bundle_members_version_id", table_name="bundle_members")
    op.drop_table("bundle_members")
    op.drop_table("bundle_versions")
    op.drop_table("bundles")
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
