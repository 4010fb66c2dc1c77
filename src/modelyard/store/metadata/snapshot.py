"""Consistent snapshots of the metadata database, and loading them into an
empty one (``modelyard backup`` / ``modelyard restore-backup``).

Taking a snapshot never blocks writers:

- SQLite: the online backup API copies the database in one step, inside one
  read transaction of its own; in WAL mode writers go on appending meanwhile
  and the copy is the database as of that transaction's start.
- PostgreSQL: ``pg_dump`` (custom format) dumps inside one repeatable-read
  transaction; it takes ``ACCESS SHARE`` locks, which only DDL waits for.

Loading goes into an **empty** database (no tables), then the schema is
upgraded to this release's head:

- SQLite to SQLite: the backup API again, snapshot file to target file;
- PostgreSQL to PostgreSQL: ``pg_restore`` in one transaction;
- SQLite to PostgreSQL (a growing team's move): a logical copy, table by
  table in foreign-key order through SQLAlchemy, both sides first brought to
  the same head revision, then PostgreSQL's id sequences set past the copied
  ids. A PostgreSQL dump does not load into SQLite (``RESTORE_UNSUPPORTED``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from modelyard.domain.errors import Conflict, InvalidInput, StorageUnavailable
from modelyard.store.metadata import migrate
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.engine import create_engine
from modelyard.store.metadata.ports import SnapshotInfo

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_BATCH = 1000
"""Rows per insert in a logical copy."""


def _sqlite_path(url: URL) -> Path:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise InvalidInput(
            "only a SQLite database file can be backed up or restored",
            code="INVALID_SETTING",
        )
    return Path(database)


def _pg_tool(pg_bin: Path | None, tool: str) -> str:
    """The path of a PostgreSQL client program: in ``pg_bin`` if given, else on PATH."""
    found = str(pg_bin / tool) if pg_bin is not None else shutil.which(tool)
    if found is None or not os.access(found, os.X_OK):
        raise StorageUnavailable(
            f"the PostgreSQL client program {tool} was not found",
            code="PG_TOOL_MISSING",
            details={"tool": tool, "pg_bin": str(pg_bin) if pg_bin else None},
        )
    return found


def _pg_args(url: URL) -> tuple[list[str], dict[str, str]]:
    """libpq connection options and environment for ``url``: the password goes
    through the environment, never on a command line others can read."""
    args = [f"--dbname={url.database}"]
    if url.host:
        args.append(f"--host={url.host}")
    if url.port:
        args.append(f"--port={url.port}")
    if url.username:
        args.append(f"--username={url.username}")
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return args, env


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StorageUnavailable(
            f"{what} failed",
            code="PG_TOOL_FAILED",
            details={"tool": Path(cmd[0]).name, "stderr": done.stderr.strip()[-2000:]},
        )


def take_snapshot(engine: Engine, dest: Path, *, pg_bin: Path | None = None) -> SnapshotInfo:
    """Write a consistent snapshot of the database behind ``engine`` to ``dest``."""
    revision = migrate.current_revision(engine)
    if engine.dialect.name == SQLITE:
        source = sqlite3.connect(_sqlite_path(engine.url))
        try:
            target = sqlite3.connect(dest)
            try:
                # pages=-1 (the default): one step, one read transaction.
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
        return SnapshotInfo(SQLITE, revision)
    args, env = _pg_args(engine.url)
    _run(
        [
            _pg_tool(pg_bin, "pg_dump"),
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            f"--file={dest}",
            *args,
        ],
        env,
        "pg_dump",
    )
    return SnapshotInfo(POSTGRESQL, revision)


def _is_empty(engine: Engine) -> bool:
    with engine.connect() as conn:
        return not sa.inspect(conn).get_table_names()


def load_snapshot(
    kind: str, snapshot: Path, target_url: str, *, pg_bin: Path | None = None
) -> str | None:
    """Load a snapshot of a ``kind`` database into the empty database at
    ``target_url`` and upgrade it to head; the revision it came from."""
    engine = create_engine(target_url)
    try:
        if not _is_empty(engine):
            raise Conflict(
                "a restore goes into an empty database; this one has tables",
                code="RESTORE_TARGET_NOT_EMPTY",
            )
        target_kind = engine.dialect.name
        if kind == SQLITE and target_kind == SQLITE:
            before = _sqlite_revision(snapshot)
            path = _sqlite_path(engine.url)
            engine.dispose()
            source = sqlite3.connect(snapshot)
            try:
                target = sqlite3.connect(path)
                try:
                    source.backup(target)
                finally:
                    target.close()
            finally:
                source.close()
        elif kind == POSTGRESQL and target_kind == POSTGRESQL:
            args, env = _pg_args(engine.url)
            _run(
                [
                    _pg_tool(pg_bin, "pg_restore"),
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "--single-transaction",
                    *args,
                    str(snapshot),
                ],
                env,
                "pg_restore",
            )
            before = migrate.current_revision(engine)
        elif kind == SQLITE and target_kind == POSTGRESQL:
            before = _sqlite_revision(snapshot)
            _copy_logically(snapshot, engine)
        else:
            raise InvalidInput(
                f"a {kind} snapshot cannot be restored into {target_kind}",
                code="RESTORE_UNSUPPORTED",
                details={"snapshot": kind, "target": target_kind},
            )
        if not migrate.is_up_to_date(engine):
            migrate.upgrade(engine)
        with engine.begin() as conn:
            # The backup's own hold on garbage collection was live when the
            # snapshot was taken; on the restored registry nothing holds it.
            conn.execute(t.blob_holds.delete())
        return before
    finally:
        engine.dispose()


def _sqlite_revision(path: Path) -> str | None:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    finally:
        db.close()
    return None if row is None else str(row[0])


def _copy_logically(snapshot: Path, target: Engine) -> None:
    """Copy every row of a SQLite snapshot into an empty PostgreSQL database."""
    with tempfile.TemporaryDirectory(prefix="modelyard-restore-") as tmp:
        # Upgraded on a copy: the backup itself stays as it was taken.
        work = Path(tmp) / "source.db"
        shutil.copyfile(snapshot, work)
        source = create_engine(f"sqlite:///{work}")
        try:
            if not migrate.is_up_to_date(source):
                migrate.upgrade(source)
            migrate.upgrade(target)
            ours = set(t.metadata.tables)
            with source.connect() as conn:
                theirs = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
            if theirs - ours:
                raise InvalidInput(
                    "the snapshot has tables this release does not know",
                    code="RESTORE_UNSUPPORTED",
                    details={"tables": sorted(theirs - ours)},
                )
            with source.connect() as src, target.begin() as dst:
                # The migrations seed a few rows (the dispatcher's cursor, ...);
                # the snapshot has its own copy of each.
                for table in reversed(t.metadata.sorted_tables):
                    if dst.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first():
                        dst.execute(table.delete())
                for table in t.metadata.sorted_tables:
                    _copy_table(src, dst, table)
                    _advance_sequence(dst, table)
        finally:
            source.dispose()


def _copy_table(src: sa.Connection, dst: sa.Connection, table: sa.Table) -> None:
    order = list(table.primary_key.columns) or list(table.columns)
    result = src.execution_options(yield_per=_BATCH).execute(sa.select(table).order_by(*order))
    for rows in result.partitions():
        batch: list[dict[str, Any]] = [dict(r._mapping) for r in rows]
        dst.execute(table.insert(), batch)


def _advance_sequence(dst: sa.Connection, table: sa.Table) -> None:
    """Set an id sequence past the copied ids, so new rows do not collide."""
    for column in table.primary_key.columns:
        if column.autoincrement is True and isinstance(column.type, sa.Integer):
            dst.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence(:table, :column), "
                    f"coalesce((SELECT max({column.name}) FROM {table.name}), 0) + 1, false)"
                ),
                {"table": table.name, "column": column.name},
            )
