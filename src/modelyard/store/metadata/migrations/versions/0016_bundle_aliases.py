"""bundle aliases, their history, the aliases bundle roles follow, pinned edges

Revision ID: 0016
Revises: 0019
Create Date: 2026-11-30

- ``bundle_aliases``: (bundle, alias) -> bundle version, like ``aliases``
  for models; ``bundle_alias_history`` one row per move or removal.
- ``bundle_follows``: one row per bundle role bound to a model alias
  (namespace, model, alias), indexed by the alias, so moving
  ``det@production`` finds the bundles that follow it in one indexed read.
  Filled here from the existing bundles' roles.
- ``bundle_versions.edges``: the edges a bundle version was checked against
  (the bundle's edges may be edited later; a version never changes). NULL
  for versions pinned before this revision: they read the bundle's edges.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0019"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bundle_aliases",
        sa.Column("bundle_id", _BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("bundle_version_id", _BIG_ID, nullable=False),
        sa.Column("updated_by", sa.String(length=256), server_default="", nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundle_id"],
            ["bundles.id"],
            name=op.f("fk_bundle_aliases_bundle_id_bundles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["bundle_version_id"],
            ["bundle_versions.id"],
            name=op.f("fk_bundle_aliases_bundle_version_id_bundle_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bundle_id", "name", name=op.f("pk_bundle_aliases")),
    )
    op.create_table(
        "bundle_alias_history",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("bundle_id", _BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=256), server_default="", nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundle_id"],
            ["bundles.id"],
            name=op.f("fk_bundle_alias_history_bundle_id_bundles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bundle_alias_history")),
    )
    op.create_index(
        "ix_bundle_alias_history_bundle_name_id",
        "bundle_alias_history",
        ["bundle_id", "name", "id"],
        unique=False,
    )
    op.create_table(
        "bundle_follows",
        sa.Column("bundle_id", _BIG_ID, nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("namespace", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundle_id"],
            ["bundles.id"],
            name=op.f("fk_bundle_follows_bundle_id_bundles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bundle_id", "role", name=op.f("pk_bundle_follows")),
    )
    op.create_index(
        "ix_bundle_follows_target",
        "bundle_follows",
        ["namespace", "model", "alias"],
        unique=False,
    )
    with op.batch_alter_table("bundle_versions") as batch_op:
        batch_op.add_column(sa.Column("edges", sa.JSON(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, roles FROM bundles")).all()
    follows: list[dict[str, Any]] = []
    for bundle_id, roles in rows:
        # Stored roles are normalized references: "ns/model@alias" or "ns/model/N".
        for role, ref in (json.loads(roles) if isinstance(roles, str) else roles).items():
            head, at, alias = str(ref).partition("@")
            namespace, _, model = head.partition("/")
            # "@latest" is computed, never moved: nothing to guard.
            if at and model and alias != "latest":
                follows.append({"b": bundle_id, "r": role, "n": namespace, "m": model, "a": alias})
    if follows:
        bind.execute(
            sa.text(
                "INSERT INTO bundle_follows (bundle_id, role, namespace, model, alias) "
                "VALUES (:b, :r, :n, :m, :a)"
            ),
            follows,
        )


def downgrade() -> None:
    with op.batch_alter_table("bundle_versions") as batch_op:
        batch_op.drop_column("edges")
    op.drop_index("ix_bundle_follows_target", table_name="bundle_follows")
    op.drop_table("bundle_follows")
    op.drop_index("ix_bundle_alias_history_bundle_name_id", table_name="bundle_alias_history")
    op.drop_table("bundle_alias_history")
    op.drop_table("bundle_aliases")
