"""Engines for SQLite (embedded default) and PostgreSQL, from one URL.

SQLite is opened in WAL mode with a busy timeout and foreign keys on. Write
transactions start with ``BEGIN IMMEDIATE`` (see :func:`write_options`) so two
writers queue on the database lock instead of failing late with "database is
locked" when a read transaction tries to upgrade.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from modelyard.domain.errors import StorageFull, Unavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000
WAL_SIZE_LIMIT = 64 << 20

log = logging.getLogger(__name__)


def normalize_url(url: str) -> str:
    """Pick our drivers: ``postgresql://`` means psycopg 3; ``sqlite://`` pysqlite."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(engine: Engine) -> bool:
    """True for the embedded SQLite backend."""
    return engine.dialect.name == "sqlite"


def create_engine(url: str, *, pool_size: int = 8) -> Engine:
    """Create the engine for ``url`` with the settings each backend needs."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=16,
        )
        _configure_sqlite(engine)
    else:
        engine = sa.create_engine(
            url, pool_size=pool_size, max_overflow=16, pool_pre_ping=True, pool_recycle=1800
        )
    event.listen(engine, "handle_error", _translate_storage_full)
    if not url.startswith("sqlite"):
        event.listen(engine, "handle_error", _translate_unreachable)
    return engine


SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def is_storage_full(exc: BaseException) -> bool:
    """True for a driver error that means the database has no room: SQLite's
    "database or disk is full" (a full disk, a quota, ``max_page_count``) or
    PostgreSQL's ``disk_full``."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return (int(code) & 0xFF) == SQLITE_FULL  # extended codes keep the primary in the low byte
    return getattr(orig, "sqlstate", None) == PG_DISK_FULL


def storage_full_error() -> StorageFull:
    """The domain error for a full metadata database (507 on the API)."""
    return StorageFull("the metadata database has no room left; nothing of this write was kept")


def _translate_storage_full(ctx: sa.engine.ExceptionContext) -> None:
    # Raised here, the domain error replaces SQLAlchemy's wrapper for every
    # statement and commit the engine runs; statements run on the raw cursor
    # translate it themselves (prepared.py). Issue 9: it was a 500.
    if is_storage_full(ctx.original_exception):
        raise storage_full_error() from ctx.sqlalchemy_exception


def database_unavailable() -> Unavailable:
    """The domain error for a database server that cannot be reached (503)."""
    return Unavailable(
        "the metadata database cannot be reached; nothing was changed, retry later",
        code="DATABASE_UNAVAILABLE",
    )


def _translate_unreachable(ctx: sa.engine.ExceptionContext) -> None:
    # A server that is down, restarting or cut off: a failed connect (no
    # connection yet) or a connection lost mid-statement. Not the pool's
    # pre-ping, which reconnects by itself on a stale connection; if that
    # reconnect fails, it is a failed connect and comes here. It was a 500.
    lost = ctx.is_disconnect and not ctx.is_pre_ping
    refused = ctx.connection is None and isinstance(
        ctx.sqlalchemy_exception, sa.exc.OperationalError
    )
    if lost or refused:
        raise database_unavailable() from ctx.sqlalchemy_exception


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN itself, so we choose
        # DEFERRED for reads and IMMEDIATE for writes.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints run on a background thread (see Checkpointer): done by
        # the committing request they cost it a WAL-to-database copy and an
        # fsync, which showed as a 6 ms p99 on creates (0.5 ms without).
        cur.execute("PRAGMA wal_autocheckpoint=0")
        # A burst of writes can grow the WAL between checkpoints; once it has
        # been checkpointed and starts over, the file is cut back to this.
        cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        cur.close()

    dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        sql = f"BEGIN {mode}"
        # Straight to the driver: SQLAlchemy's statement machinery cost more
        # than SQLite's BEGIN (a sixth of a cached search page's CPU, 5% of a
        # create's; cProfile). A failure (IMMEDIATE on a busy database) is
        # raised as SQLAlchemy would raise it, since retries look for that.
        dbapi_conn = conn.connection.dbapi_connection
        assert dbapi_conn is not None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(sql)
        except dbapi_error as exc:
            raise sa.exc.DBAPIError.instance(sql, (), exc, dbapi_error) from exc
        finally:
            cur.close()


def is_retryable(exc: BaseException) -> bool:
    """True for transient lock / serialization failures worth one more try."""
    if isinstance(exc, sa.exc.OperationalError):
        msg = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
        return "database is locked" in msg or "deadlock" in msg or "could not serialize" in msg
    return False


def write_options() -> dict[str, Any]:
    """Execution options for a write transaction (IMMEDIATE on SQLite, ignored elsewhere)."""
    return {"sqlite_begin": "IMMEDIATE"}


class WriterLock:
    """Serializes write transactions on one SQLite file across threads and processes.

    SQLite lets one writer in at a time and makes the others poll with sleeps
    of up to 100 ms (its busy handler), which showed as 100 ms p99 latencies
    with two server workers. Waiting on a kernel file lock instead wakes the
    next writer the moment the previous one commits. The database's own
    locking still guards against writers that do not take this lock.
    """

    def __init__(self, path: str | None) -> None:
        self._thread_lock = threading.RLock()
        self._path = path
        self._fd: int | None = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the duration of the block."""
        with self._thread_lock:
            if self._path is None:
                yield
                return
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


class Checkpointer:
    """Copies a SQLite WAL back into the database file off the request path.

    Automatic checkpoints are off on our connections; after a write commits
    the store calls :meth:`nudge`, and this thread checkpoints a moment later
    (so one checkpoint covers a burst of commits). First a ``PASSIVE``
    checkpoint without any lock copies the bulk and fsyncs, while writers go
    on; if writers appended frames meanwhile, a second one runs holding the
    writer lock, which copies only those and so completes. A complete
    checkpoint lets the next writer start the WAL over from its beginning;
    without that the WAL grows for as long as writes keep coming (measured:
    ~100 KiB a created version, 600 MiB after 6,000). Each process that writes
    runs its own; SQLite serializes them. When the last connection to the
    database closes, SQLite checkpoints what is left.
    """

    def __init__(
        self, engine: Engine, writer_lock: WriterLock | None = None, *, delay: float = 0.05
    ) -> None:
        self._engine = engine
        self._writer_lock = writer_lock
        self._delay = delay
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def nudge(self) -> None:
        """Ask for a checkpoint soon (cheap; called after every write)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stopped:
                    self._thread = threading.Thread(
                        target=self._run, name="sqlite-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def _passive(self) -> None:
        """One passive checkpoint on a connection of our own."""
        raw = self._engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
            cur.fetchall()
            cur.close()
        finally:
            raw.close()

    def checkpoint(self) -> None:
        """Checkpoint the whole WAL now (see the class docstring)."""
        self._passive()
        if self._writer_lock is None:
            return
        # Always, even when the first pass reports every frame copied: it
        # counts the frames there were when it started, not those appended
        # while it ran. With no frames left the second pass copies nothing.
        with self._writer_lock.hold():
            self._passive()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            # Let a burst of commits land first; stop() ends the wait early.
            if self._halt.wait(self._delay):
                return
            self._wake.clear()
            # stop() during the sleep set the event we just cleared: without
            # this check the next wait() never returns and stop() waits out
            # its whole join timeout.
            if self._stopped:
                return
            try:
                self.checkpoint()
            except Exception:  # a failed checkpoint is retried on the next nudge
                log.warning("SQLite checkpoint failed", exc_info=True)

    def stop(self) -> None:
        """Stop the thread after a last checkpoint."""
        self._stopped = True
        self._halt.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
            with contextlib.suppress(Exception):
                self.checkpoint()


def checkpointer_for(engine: Engine, writer_lock: WriterLock | None) -> Checkpointer | None:
    """A checkpointer for a SQLite database file (None otherwise)."""
    if not is_sqlite(engine):
        return None
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    return Checkpointer(engine, writer_lock)


def writer_lock_for(engine: Engine) -> WriterLock | None:
    """The writer lock of a SQLite engine (None for other databases)."""
    if not is_sqlite(engine):
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return WriterLock(None)
    return WriterLock(database + ".writer-lock")
