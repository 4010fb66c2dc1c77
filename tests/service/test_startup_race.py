"""Two replicas starting at once on one new PostgreSQL database (issue 13):
what start-up ensures (the ``Default`` experiment) is created by one of them
and found by the other, whichever order their statements land in."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from modelyard.composition import build_services
from modelyard.domain.tracking import DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME
from modelyard.settings import Settings
from modelyard.store.metadata import tables as t
from tests.pgcluster import admin_conninfo, fresh_database

pytestmark = pytest.mark.postgres


def test_a_replica_starting_while_another_creates_the_default_experiment(
    tmp_path: Path, pg_url: str
) -> None:
    with fresh_database(pg_url) as db:
        first = build_services(Settings(data_dir=tmp_path / "a", db=db))
        try:
            engine = first.metadata.engine
            with engine.begin() as conn:  # back to a database without it
                conn.execute(sa.delete(t.experiments).where(t.experiments.c.id == 0))
            holding = threading.Event()
            release = threading.Event()

            def create_and_hold() -> None:
                # Replica A has inserted it and not committed yet.
                with first.metadata.write() as tx:
                    tx.tracking.insert_experiment(
                        DEFAULT_EXPERIMENT_NAME,
                        namespace="default",
                        tags={},
                        actor="system",
                        experiment_id=DEFAULT_EXPERIMENT_ID,
                    )
                    holding.set()
                    release.wait(60)

            creator = threading.Thread(target=create_and_hold)
            creator.start()
            assert holding.wait(30)
            waited = threading.Event()

            def commit_once_b_waits() -> None:
                # Replica B read "missing" and its insert now waits on A's row:
                # A commits, so B's insert fails on the unique key.
                info = admin_conninfo(make_url(db))
                with psycopg.connect(**info, autocommit=True) as conn:
                    for _ in range(3000):
                        row = conn.execute(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        ).fetchone()
                        if row and row[0]:
                            waited.set()
                            break
                        threading.Event().wait(0.01)
                release.set()

            watcher = threading.Thread(target=commit_once_b_waits)
            watcher.start()
            try:
                second = build_services(Settings(data_dir=tmp_path / "b", db=db))
            finally:
                release.set()
                watcher.join(60)
                creator.join(60)
            try:
                assert waited.is_set(), "replica B never waited on replica A's insert"
                with second.metadata.read() as tx:
                    found = tx.tracking.get_experiment(DEFAULT_EXPERIMENT_ID)
                assert found is not None and found.name == DEFAULT_EXPERIMENT_NAME
            finally:
                second.close()
        finally:
            first.close()
