"""Migration 0020: deliveries get a ``part`` (one event, several MLflow
deliveries to one webhook); existing deliveries and every attempt survive the
upgrade and the downgrade, with foreign keys on, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from modelyard.store.metadata import migrate
from modelyard.store.metadata.engine import create_engine


def _seed(conn: sa.Connection) -> None:
    conn.exec_driver_sql(
        "INSERT INTO events (id, at, type, actor, namespace, subject, payload) VALUES "
        "(1, 0, 'version.updated', 'a', 'default', 'default/m/1', '{}')"
    )
    conn.exec_driver_sql(
        "INSERT INTO webhooks (id, url, description, event_types, secret, active, "
        "since_event_id, created_by, created_at, updated_at) VALUES "
        "(1, 'https://example.com/', '', '[\"*\"]', 's', true, 0, 'a', 0, 0)"
    )
    conn.exec_driver_sql(
        "INSERT INTO deliveries (id, webhook_id, event_id, event_type, status, failures, "
        "attempt_count, created_at, updated_at) VALUES "
        "(7, 1, 1, 'version.updated', 'succeeded', 0, 2, 0, 0)"
    )
    for n in (1, 2):
        conn.exec_driver_sql(
            "INSERT INTO delivery_attempts (delivery_id, attempt, at, status, latency_us) "
            f"VALUES (7, {n}, {n}, 'failed', 5)"
        )


def _attempts(engine: sa.Engine) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT delivery_id, attempt FROM delivery_attempts ORDER BY attempt"
        ).all()
    return [(r[0], r[1]) for r in rows]


def test_0020_keeps_deliveries_and_attempts(db_url: str) -> None:
    engine = create_engine(db_url)  # modelyard's engine: foreign keys on
    try:
        migrate.upgrade(engine, "0012")
        with engine.begin() as conn:
            _seed(conn)
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.SCHEMA_HEAD
        assert _attempts(engine) == [(7, 1), (7, 2)]
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT part FROM deliveries").scalar() == 0
            # The widened key: a second part of the same event and webhook.
            conn.exec_driver_sql(
                "INSERT INTO deliveries (webhook_id, event_id, event_type, part, status, "
                "created_at, updated_at) VALUES (1, 1, 'version.updated', 1, 'pending', 0, 0)"
            )
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO deliveries (webhook_id, event_id, event_type, part, status, "
                "created_at, updated_at) VALUES (1, 1, 'version.updated', 1, 'pending', 0, 0)"
            )
        with engine.begin() as conn:
            command.downgrade(migrate._config(conn), "0012")
        assert _attempts(engine) == [(7, 1), (7, 2)]
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("deliveries")}
            assert "part" not in columns
            assert conn.exec_driver_sql("SELECT count(*) FROM deliveries").scalar() == 1
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM deliveries WHERE id = 7")
        assert _attempts(engine) == []  # the cascade from the rebuilt table works
    finally:
        engine.dispose()
