"""Governance storage: the 0003 migration over existing data, and the audit
log's queries on their indexes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelyard.domain.webhooks import EventFilter, filter_matches
from modelyard.store.metadata import governance as gov
from modelyard.store.metadata import migrate, outbox
from modelyard.store.metadata.engine import create_engine
from modelyard.store.metadata.repository import MetadataStore


def test_upgrade_from_0001_backfills_and_round_trips(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO namespaces (id, name, description, created_at) "
                "VALUES (1, 'default', '', 0)"
            )
            conn.exec_driver_sql(
                "INSERT INTO models (id, namespace_id, name, description, meta, archived, "
                "last_version, created_by, created_at, updated_at) VALUES "
                """(1, 1, 'm', '', '{"team": {"a": 1}}', false, 1, 't', 0, 0)"""
            )
            conn.exec_driver_sql(
                "INSERT INTO versions (id, model_id, number, state, description, meta, "
                "datasets, file_count, total_size, created_by, created_at, updated_at) VALUES "
                """(1, 1, 1, 'ready', '', '{"owner": ["a"], "n": 1}', '[]', 0, 0, 't', 0, 0)"""
            )
            conn.exec_driver_sql(
                "INSERT INTO version_meta (version_id, key, value, num) VALUES (1, 'n', '1', 1)"
            )
            conn.exec_driver_sql(
                "INSERT INTO events (type, at, actor, namespace, subject, payload) "
                "VALUES ('model.created', 0, 't', 'default', 'default/m', '{}')"
            )
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.SCHEMA_HEAD
        with engine.connect() as conn:
            vkeys = conn.exec_driver_sql("SELECT key FROM version_meta ORDER BY key").scalars()
            mkeys = conn.exec_driver_sql("SELECT key FROM model_meta").scalars()
            assert list(vkeys) == ["n", "owner"] and list(mkeys) == ["team"]
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM events")
        # Down and up again: the guard goes and comes back.
        migrate.upgrade(engine, "0003")
        from alembic import command

        with engine.begin() as conn:
            command.downgrade(migrate._config(conn), "0001")
        with engine.begin() as conn:
            assert not sa.inspect(conn).has_table("policies")
            conn.exec_driver_sql("UPDATE events SET actor = 'fixed'")  # no guard at 0001
        migrate.upgrade(engine)
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql("UPDATE events SET actor = 'again'")
    finally:
        engine.dispose()


def _plan(tmp_path: Path, q: gov.AuditQuery) -> str:
    engine = create_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    migrate.upgrade(engine)
    store = MetadataStore(engine)
    statements: list[tuple[str, Any]] = []
    try:
        with store.read() as tx:

            def capture(*args: Any) -> None:
                statements.append((args[2], args[3]))

            sa.event.listen(tx.conn, "before_cursor_execute", capture)
            gov.audit_events(tx, q, 10)
            sa.event.remove(tx.conn, "before_cursor_execute", capture)
            stmt, params = statements[-1]
            rows = tx.conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params).all()
        return "\n".join(str(r[3]) for r in rows)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (gov.AuditQuery(actor="ana"), "ix_events_actor_id"),
        (gov.AuditQuery(action="alias.moved"), "ix_events_type_id"),
        (gov.AuditQuery(actor="ana", before_id=100), "ix_events_actor_id"),
        (gov.AuditQuery(namespace="team"), "ix_events_namespace_id"),
        (gov.AuditQuery(model=("team", "fraud")), "ix_events_model_key_id (model_key=?)"),
    ],
)
def test_audit_filters_use_indexes(tmp_path: Path, query: gov.AuditQuery, index: str) -> None:
    plan = _plan(tmp_path, query)
    assert index in plan, plan
    assert "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize("action", ["alias.", "alias.*", "version.pub*"])
def test_audit_action_prefix_is_an_index_range(tmp_path: Path, action: str) -> None:
    """Issue 9: an action prefix is a range on (type, id), not a substr scan."""
    plan = _plan(tmp_path, gov.AuditQuery(action=action))
    assert "ix_events_type_id (type>? AND type<?)" in plan, plan


def test_audit_walks_ids_without_sorting(tmp_path: Path) -> None:
    plan = _plan(tmp_path, gov.AuditQuery(model=("default", "m"), action="version.*"))
    assert "TEMP B-TREE" not in plan, plan


_EVENTS = [
    ("alias.moved", "default", "default/fraud@prod"),
    ("alias.deleted", "default", "default/fraud@canary"),
    ("aliases.x", "default", "default/fraud"),
    ("version.published", "default", "default/fraud/1"),
    ("version.publish_x", "default", "default/fraud2/1"),
    ("alias.moved", "default", "default/fraud2@prod"),
    ("model.created", "default", "default/fraud-x"),
    ("alias.moved", "other", "other/fraud@prod"),
    ("user.created", "*", "user/fraud"),
    ("policy.updated", "default", "default"),
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (gov.AuditQuery(model=("default", "fraud")), [0, 1, 2, 3]),
        (gov.AuditQuery(model=("default", "fraud2")), [4, 5]),
        (gov.AuditQuery(model=("other", "fraud")), [7]),
        (gov.AuditQuery(model=("user", "fraud")), []),
        (gov.AuditQuery(action="alias."), [0, 1, 5, 7]),
        (gov.AuditQuery(action="alias.*"), [0, 1, 5, 7]),
        (gov.AuditQuery(action="alias*"), [0, 1, 2, 5, 7]),
        (gov.AuditQuery(action="version.publish*"), [3, 4]),
        (gov.AuditQuery(action="version.published"), [3]),
        (gov.AuditQuery(model=("default", "fraud"), action="alias."), [0, 1]),
    ],
)
def test_audit_model_and_prefix_filters_match_exactly(
    db_url: str, query: gov.AuditQuery, expected: list[int]
) -> None:
    """Issue 9: the indexed model and prefix filters select what the substr
    filters did: no neighbour model (fraud2, fraud-x), no neighbour type family."""
    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine)
        store = MetadataStore(engine)
        with store.write() as tx:
            ids = [
                tx.append_event(kind, actor="t", namespace=ns, subject=subject, payload={})
                for kind, ns, subject in _EVENTS
            ]
        with store.read() as tx:
            found = [r["id"] for r in gov.audit_events(tx, query, 100)]
        assert found == [ids[i] for i in reversed(expected)]
    finally:
        engine.dispose()


def test_upgrade_to_0006_fills_model_keys(db_url: str) -> None:
    """Events written before 0006 get their model key, so old history filters by model."""
    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine, "0004")
        with engine.begin() as conn:
            for i, (kind, ns, subject) in enumerate(_EVENTS, 1):
                conn.execute(
                    sa.text(
                        "INSERT INTO events (id, type, at, actor, namespace, subject, payload) "
                        "VALUES (:id, :type, 0, 't', :ns, :subject, '{}')"
                    ),
                    {"id": i, "type": kind, "ns": ns, "subject": subject},
                )
        migrate.upgrade(engine)
        with MetadataStore(engine).read() as tx:
            found = [
                r["id"]
                for r in gov.audit_events(tx, gov.AuditQuery(model=("default", "fraud")), 100)
            ]
            keys = dict(tx.conn.execute(sa.text("SELECT id, model_key FROM events")).all())
        assert found == [4, 3, 2, 1]
        assert keys[7] == "default/fraud-x" and keys[9] is None and keys[10] is None
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "flt",
    [
        EventFilter(),
        EventFilter(types=("alias.*",)),
        EventFilter(types=("alias.moved", "model.*")),
        EventFilter(types=("*",)),
        EventFilter(namespace="default"),
        EventFilter(namespaces=("other",)),
        EventFilter(namespaces=()),
        EventFilter(model="default/fraud"),
        EventFilter(subject="default/fraud@prod", types=("alias.*",)),
    ],
)
def test_stream_filter_in_memory_selects_what_the_query_selects(
    tmp_path: Path, flt: EventFilter
) -> None:
    """The shared stream poller filters events in memory (visibility included):
    the same events as the outbox query with that filter."""
    engine = create_engine(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        migrate.upgrade(engine)
        store = MetadataStore(engine)
        with store.write() as tx:
            for kind, ns, subject in _EVENTS:
                tx.append_event(kind, actor="t", namespace=ns, subject=subject, payload={})
        with store.read() as tx:
            every = outbox.list_events(tx.conn, after=0, limit=100)
            picked = outbox.list_events(
                tx.conn,
                after=0,
                limit=100,
                types=flt.types,
                namespace=flt.namespace,
                model=flt.model,
                subject=flt.subject,
                namespaces=flt.namespaces,
            )
        mine = [
            e["id"]
            for e in every
            if filter_matches(
                flt, event_type=e["type"], namespace=e["namespace"], subject=e["subject"]
            )
        ]
        assert mine == [e["id"] for e in picked]
    finally:
        engine.dispose()
