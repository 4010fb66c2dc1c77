"""governance: policies, approvals, audit indexes, append-only events

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Columns whose change would rewrite history. Other columns (delivery
# bookkeeping a later feature may add) stay updatable.
_AUDIT_COLUMNS = "id, type, at, actor, namespace, subject, payload"
_MESSAGE = "events are append-only: the audit log cannot be changed or deleted"


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("namespace_id", _ID, nullable=False),
        sa.Column("model_id", _ID, nullable=True),
        sa.Column("model_key", _ID, nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=256), server_default="", nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["namespaces.id"], name=op.f("fk_policies_namespace_id_namespaces")
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_policies_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policies")),
        sa.UniqueConstraint(
            "namespace_id",
            "model_key",
            "purpose",
            name=op.f("uq_policies_namespace_id_model_key_purpose"),
        ),
    )
    op.create_table(
        "approvals",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("namespace_id", _ID, nullable=False),
        sa.Column("model_id", _ID, nullable=False),
        sa.Column("version_id", _ID, nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=True),
        sa.Column("alias_from", sa.Integer(), nullable=True),
        sa.Column("archive_previous", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=256), nullable=False),
        sa.Column("comment", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("decided_by", sa.String(length=256), nullable=True),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["namespaces.id"], name=op.f("fk_approvals_namespace_id_namespaces")
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_approvals_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
            name=op.f("fk_approvals_version_id_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approvals_namespace_id_state_id", ["namespace_id", "state", "id"], unique=False
        )
        batch_op.create_index("ix_approvals_version_id", ["version_id"], unique=False)
        batch_op.create_index("ix_approvals_model_id", ["model_id"], unique=False)
    op.create_table(
        "approval_votes",
        sa.Column("approval_id", _ID, nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), server_default="", nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approvals.id"],
            name=op.f("fk_approval_votes_approval_id_approvals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("approval_id", "actor", name=op.f("pk_approval_votes")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_actor_id", ["actor", "id"], unique=False)
        batch_op.create_index("ix_events_namespace_id", ["namespace", "id"], unique=False)
        batch_op.create_index("ix_events_at_id", ["at", "id"], unique=False)
    _create_append_only_guard()
    _index_nested_metadata()


def _create_append_only_guard() -> None:
    """Triggers refusing UPDATE of audit columns, DELETE (and TRUNCATE) on events."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION modelyard_events_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'raise_exception'; "
            "END $$"
        )
        op.execute(
            "CREATE TRIGGER events_append_only_update BEFORE UPDATE OF "
            f"{_AUDIT_COLUMNS} ON events FOR EACH ROW "
            "EXECUTE FUNCTION modelyard_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events "
            "FOR EACH ROW EXECUTE FUNCTION modelyard_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events "
            "FOR EACH STATEMENT EXECUTE FUNCTION modelyard_events_append_only()"
        )
        return
    op.execute(
        f"CREATE TRIGGER events_append_only_update BEFORE UPDATE OF {_AUDIT_COLUMNS} "
        f"ON events BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
    )
    op.execute(
        "CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events "
        f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
    )


def _index_nested_metadata() -> None:
    """Give nested top-level metadata values (objects, lists) a key row too.

    From this revision on, "metadata key present" is a filter (``meta.k
    EXISTS``), so every top-level key needs a row in the key/value index;
    scalars had one already.
    """
    bind = op.get_bind()
    for owner, table, kv in (
        ("version_id", "versions", "version_meta"),
        ("model_id", "models", "model_meta"),
    ):
        src = sa.table(table, sa.column("id", _ID), sa.column("meta", sa.JSON()))
        dst = sa.table(
            kv,
            sa.column(owner, _ID),
            sa.column("key", sa.String()),
            sa.column("value", sa.Text()),
            sa.column("num", sa.Float()),
        )
        # Rows left by an earlier upgrade (downgrade keeps them) are skipped.
        have = {
            (r[0], r[1])
            for r in bind.execute(
                sa.select(dst.c[owner], dst.c.key).where(dst.c.value.is_(None), dst.c.num.is_(None))
            )
        }
        rows = []
        for oid, meta in bind.execute(sa.select(src.c.id, src.c.meta)):
            for key, value in (meta or {}).items():
                if isinstance(value, dict | list) and (oid, key) not in have:
                    rows.append({owner: oid, "key": key, "value": None, "num": None})
        if rows:
            bind.execute(dst.insert(), rows)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("update", "delete", "truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS events_append_only_{name} ON events")
        op.execute("DROP FUNCTION IF EXISTS modelyard_events_append_only()")
    else:
        for name in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS events_append_only_{name}")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_at_id")
        batch_op.drop_index("ix_events_actor_id")
        batch_op.drop_index("ix_events_namespace_id")
    op.drop_table("approval_votes")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_approvals_model_id")
        batch_op.drop_index("ix_approvals_version_id")
        batch_op.drop_index("ix_approvals_namespace_id_state_id")
    op.drop_table("approvals")
    op.drop_table("policies")
