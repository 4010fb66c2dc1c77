"""users can be disabled and deleted; audit filters on indexes; delivery retention

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-30

- ``users.disabled_at`` / ``users.deleted_at``: a disabled or deleted user's
  tokens stop working; a deleted user's row stays so that its name is not
  reused by someone else while the history names it.
- ``events.model_key`` (``ns/name`` of the model an event is about, else
  NULL) with an index ``(model_key, id)``: the audit log's model filter is an
  index walk instead of a ``substr`` scan. Existing rows are filled in.
- PostgreSQL: ``events.type`` compares in byte order (``COLLATE "C"``), so an
  action-prefix filter is a range on ``(type, id)`` under any database
  locale (SQLite compares bytes already).
- ``deliveries (updated_at)``: the retention prune finds old deliveries
  without a scan.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 5000
_NAME_END = re.compile(r"[/@]")


def _model_key(namespace: str, subject: str) -> str | None:
    # The same rule as store/metadata/outbox.model_key_of, frozen here: a
    # migration must not change when the code does.
    head = namespace + "/"
    if not subject.startswith(head):
        return None
    name = _NAME_END.split(subject[len(head) :], maxsplit=1)[0]
    return head + name if name else None


def _set_type_collation(collation: str) -> None:
    # The append-only trigger of 0003 names the column, and PostgreSQL will
    # not retype a column a trigger names: drop it, retype, put it back
    # (all in this migration's transaction, so no write slips through).
    op.execute("DROP TRIGGER events_append_only_update ON events")
    op.execute(f'ALTER TABLE events ALTER COLUMN type TYPE VARCHAR(64) COLLATE "{collation}"')
    op.execute(
        "CREATE TRIGGER events_append_only_update BEFORE UPDATE OF "
        "id, type, at, actor, namespace, subject, payload ON events FOR EACH ROW "
        "EXECUTE FUNCTION modelyard_events_append_only()"
    )


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("users", sa.Column("disabled_at", sa.BigInteger(), nullable=True))
    op.add_column("users", sa.Column("deleted_at", sa.BigInteger(), nullable=True))
    op.add_column("events", sa.Column("model_key", sa.String(length=256), nullable=True))
    events = sa.table(
        "events",
        sa.column("id", sa.BigInteger()),
        sa.column("namespace", sa.String()),
        sa.column("subject", sa.String()),
        sa.column("model_key", sa.String()),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(events.c.id, events.c.namespace, events.c.subject)
            .where(events.c.id > last)
            .order_by(events.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        updates = [
            {"eid": r.id, "key": key}
            for r in rows
            if (key := _model_key(r.namespace, r.subject)) is not None
        ]
        if updates:
            bind.execute(
                events.update()
                .where(events.c.id == sa.bindparam("eid"))
                .values(model_key=sa.bindparam("key")),
                updates,
            )
        last = rows[-1].id
    op.create_index(op.f("ix_events_model_key_id"), "events", ["model_key", "id"])
    op.create_index(op.f("ix_deliveries_updated_at"), "deliveries", ["updated_at"])
    if bind.dialect.name == "postgresql":
        _set_type_collation("C")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _set_type_collation("default")
    op.drop_index(op.f("ix_deliveries_updated_at"), table_name="deliveries")
    op.drop_index(op.f("ix_events_model_key_id"), table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("model_key")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("disabled_at")
