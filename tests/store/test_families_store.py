"""Migration 0014 (issue 14): an original is always its family's root, and the
lineage columns and indexes come and go cleanly; on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from modelyard.store.metadata import migrate
from modelyard.store.metadata.engine import create_engine


def test_0014_points_every_original_at_the_root(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine, "0006")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO namespaces (id, name, description, created_at) "
                "VALUES (1, 'default', '', 0)"
            )
            conn.exec_driver_sql(
                "INSERT INTO models (id, namespace_id, name, description, meta, archived, "
                "last_version, created_by, created_at, updated_at) VALUES "
                "(1, 1, 'm', '', '{}', false, 4, 't', 0, 0)"
            )
            # 1 <- 2 <- 3 <- 4 by parent, each naming its parent as original
            # (what the old rules let a client store).
            for vid in range(1, 5):
                link = "NULL" if vid == 1 else str(vid - 1)
                conn.exec_driver_sql(
                    "INSERT INTO versions (id, model_id, number, state, description, meta, "
                    "datasets, original_id, parent_id, file_count, total_size, created_by, "
                    f"created_at, updated_at) VALUES ({vid}, 1, {vid}, 'ready', '', '{{}}', "
                    f"'[]', {link}, {link}, 0, 0, 't', {vid}, {vid})"
                )
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.SCHEMA_HEAD
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT id, original_id, parent_id, recipe, metric_delta FROM versions ORDER BY id"
            ).all()
            assert [tuple(r) for r in rows] == [
                (1, None, None, None, None),
                (2, 1, 1, None, None),
                (3, 1, 2, None, None),
                (4, 1, 3, None, None),
            ]
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("versions")}
            assert {"ix_versions_original_created", "ix_versions_parent_created"} <= indexes
        with engine.begin() as conn:
            command.downgrade(migrate._config(conn), "0006")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("versions")}
            assert "recipe" not in columns and "metric_delta" not in columns
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.SCHEMA_HEAD
    finally:
        engine.dispose()
