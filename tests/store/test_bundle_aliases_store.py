"""Migration 0016 (issue 14): bundle aliases and their history, the model
aliases bundle roles follow (filled from existing bundles), the edges a
bundle version was checked against; up and down on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from modelyard.store.metadata import migrate
from modelyard.store.metadata.engine import create_engine


def test_0016_fills_bundle_follows_and_comes_and_goes(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine, "0012")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO namespaces (id, name, description, created_at) "
                "VALUES (1, 'default', '', 0)"
            )
            roles = (
                '{"detector": "default/det@production", "classifier": "vision/cls/3", '
                '"embedder": "default/emb@latest"}'
            )
            conn.exec_driver_sql(
                "INSERT INTO bundles (id, namespace_id, name, description, roles, edges, "
                "last_version, created_by, created_at, updated_at) VALUES "
                f"(1, 1, 'pipe', '', '{roles}', '[]', 1, 't', 0, 0)"
            )
            conn.exec_driver_sql(
                "INSERT INTO bundle_versions (id, bundle_id, number, created_by, created_at) "
                "VALUES (1, 1, 1, 't', 0)"
            )
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.SCHEMA_HEAD
        with engine.connect() as conn:
            follows = conn.exec_driver_sql(
                "SELECT bundle_id, role, namespace, model, alias FROM bundle_follows"
            ).all()
            # Only the role bound to a movable alias: not a number, not @latest.
            assert [tuple(r) for r in follows] == [(1, "detector", "default", "det", "production")]
            edges = conn.exec_driver_sql("SELECT edges FROM bundle_versions").scalar_one()
            assert edges is None
            inspector = sa.inspect(conn)
            assert {"bundle_aliases", "bundle_alias_history", "bundle_follows"} <= set(
                inspector.get_table_names()
            )
            indexes = {i["name"] for i in inspector.get_indexes("bundle_follows")}
            assert "ix_bundle_follows_target" in indexes
        with engine.begin() as conn:
            command.downgrade(migrate._config(conn), "0012")
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            assert "bundle_follows" not in inspector.get_table_names()
            assert "edges" not in {c["name"] for c in inspector.get_columns("bundle_versions")}
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.SCHEMA_HEAD
    finally:
        engine.dispose()
