"""The database fixtures work: both backends connect, write and read, start empty."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.pgcluster import admin_conninfo, fresh_database


def test_db_url_connects_writes_and_reads(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        if engine.dialect.name == "postgresql":
            assert engine.dialect.driver == "psycopg"
        else:
            assert engine.dialect.name == "sqlite"
        assert sa.inspect(engine).get_table_names() == []  # a fresh database per test
        with engine.begin() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            conn.execute(sa.text("create table t (id integer primary key, name text not null)"))
            conn.execute(
                sa.text("insert into t (id, name) values (:id, :name)"),
                [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("select id, name from t order by id")).all()
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "b")]
    finally:
        engine.dispose()


def test_sqlite_url_is_a_fresh_file(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_fresh_database_is_dropped_even_with_open_connections(pg_url: str) -> None:
    admin = admin_conninfo(make_url(pg_url))
    with fresh_database(pg_url) as url:
        name = make_url(url).database
        assert name is not None and name.startswith("test_")
        leaked = sa.create_engine(url)
        open_conn = leaked.connect()  # left open on purpose: WITH (FORCE) must still drop it
    with psycopg.connect(**admin) as conn:
        row = conn.execute("select count(*) from pg_database where datname = %s", [name]).fetchone()
    assert row == (0,)
    open_conn.invalidate()  # the server ended it; do not try to roll back on it
    open_conn.close()
    leaked.dispose()
