"""A throwaway PostgreSQL 15 cluster for the test session.

``PgCluster.start()`` runs ``initdb`` on a fresh temporary directory (on tmpfs
when ``/dev/shm`` exists, see ``_scratch_dir``) and starts
``postgres`` in the foreground as a direct child of this process, listening on
127.0.0.1 on a free port and on a unix socket inside the temporary directory.
Durability is switched off (``fsync``, ``synchronous_commit``,
``full_page_writes``) because the data is thrown away. ``stop()`` sends an
immediate-shutdown signal to the postmaster PID we started (and to nothing else)
and removes the directory.

PostgreSQL refuses to run as root. When the tests run as root (CI, this
machine) both ``initdb`` and ``postgres`` run as the existing ``postgres``
system user, on a directory chowned to it. We switch user inside
``subprocess`` (the ``user=``/``group=`` arguments, the same effect as
``runuser -u postgres --``) rather than through ``runuser`` or ``pg_ctl``: that
way the PID we hold *is* the postmaster's, with no wrapper or daemonizing step
in between, and we can ask the kernel to stop it if this process dies without
running its teardown (killed worker, crash): no orphaned clusters.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

PG_BIN = Path(os.environ.get("MODELYARD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
"""Where the server binaries live (the Debian ``postgresql-15`` package)."""

SYSTEM_USER = "postgres"
"""The OS account the server runs as when we are root."""

ROLE = "modelyard"
"""The database superuser created by ``initdb`` (trust auth, no password)."""

DATABASE = "modelyard"
"""The database the base URL points at."""

START_TIMEOUT = 30.0

_PR_SET_PDEATHSIG = 1


class PgUnavailable(RuntimeError):
    """PostgreSQL cannot be started here (binaries or system user missing)."""


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started on this machine, or ``None`` if it can."""
    for tool in ("initdb", "postgres"):
        if not os.access(PG_BIN / tool, os.X_OK):
            return (
                f"PostgreSQL 15 server binaries not found ({PG_BIN / tool} is missing); "
                "install the Debian package postgresql-15 (`make test` does it as root) "
                "or set MODELYARD_TEST_PG_URL to an existing server"
            )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            return (
                f"running as root but there is no {SYSTEM_USER!r} system user to run "
                "PostgreSQL as (it refuses root); install postgresql-15 or run as non-root"
            )
    return None


def _scratch_dir() -> str | None:
    """Where to put the cluster: RAM (``/dev/shm``) when there is one.

    The data is thrown away anyway, and file creation dominates here: measured on
    this machine, ``CREATE DATABASE`` + ``DROP DATABASE`` took ~0.4 s on the ext4
    ``/tmp`` and ~0.05 s on tmpfs, a cluster start ~2.4 s against ~0.8 s.
    ``MODELYARD_TEST_PG_TMPDIR`` overrides the choice.
    """
    chosen = os.environ.get("MODELYARD_TEST_PG_TMPDIR")
    if chosen:
        return chosen
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None  # tempfile's default (TMPDIR, /tmp)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (may race; ``start`` retries on bind errors)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, after the user switch: get SIGQUIT (immediate shutdown) if we die.

    The setting is tied to the thread that forked; fixtures run on pytest's
    main thread, which lives as long as the session.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT, 0, 0, 0)


@dataclass
class PgCluster:
    """One throwaway cluster: its directory, port and postmaster process."""

    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's base database (psycopg 3, trust, no password)."""
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls) -> PgCluster:
        """initdb + start a new cluster; raises ``PgUnavailable`` or ``RuntimeError``."""
        reason = unavailable_reason()
        if reason:
            raise PgUnavailable(reason)
        # Not pytest's tmp_path: /tmp/pytest-of-root is 0700, so the postgres user
        # could not reach a directory below it. A short path also keeps the unix
        # socket path under its 107-byte limit.
        cluster = cls(root=Path(tempfile.mkdtemp(prefix="modelyard-pg-", dir=_scratch_dir())))
        try:
            cluster._initdb()
            cluster._start_server()
            cluster._create_database()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        """Stop the postmaster we started (by its PID) and remove the directory."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # immediate shutdown: children go too
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.root, ignore_errors=True)

    def halt(self) -> None:
        """Stop the postmaster (fast shutdown) but keep the data and the port:
        a database outage that :meth:`resume` ends."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: sessions are cut off
            proc.wait(30)

    def resume(self) -> None:
        """Start the postmaster again after :meth:`halt`, on the same port."""
        assert self.proc is None and self._log is not None
        self.proc = subprocess.Popen(
            self._server_args(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=_die_with_parent,
            **self._owner_kwargs(),
        )
        if not self._wait_ready():
            raise RuntimeError(f"postgres did not start again:\n{self._read_log(0)}")

    # -- steps ---------------------------------------------------------------------------------

    def _owner_kwargs(self) -> dict[str, Any]:
        """``subprocess`` arguments that run a command as the server's OS user."""
        kwargs: dict[str, Any] = {"cwd": self.root}
        if os.geteuid() == 0:
            kwargs.update(user=SYSTEM_USER, group=SYSTEM_USER, extra_groups=[])
        return kwargs

    def _initdb(self) -> None:
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            pw = pwd.getpwnam(SYSTEM_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        result = subprocess.run(
            [
                str(PG_BIN / "initdb"),
                f"--pgdata={self.data_dir}",
                f"--username={ROLE}",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",  # C collation: byte order, like SQLite's BINARY
                "--no-sync",
                "--no-instructions",
            ],
            env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
            **self._owner_kwargs(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout.decode()}")

    def _server_args(self) -> list[str]:
        settings = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": "200",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "wal_level": "minimal",
            # Each CREATE DATABASE writes the template (~7 MB) to WAL; checkpoint
            # often (cheap with fsync off) so WAL stays small in RAM.
            "max_wal_size": "256MB",
            "min_wal_size": "32MB",
            "max_wal_senders": "0",
            "timezone": "UTC",
            "logging_collector": "off",
        }
        args = [str(PG_BIN / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def _start_server(self) -> None:
        self._log = self.log_path.open("ab")
        for _attempt in range(5):
            self.port = free_port()
            offset = self._log.tell()
            self.proc = subprocess.Popen(
                self._server_args(),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                preexec_fn=_die_with_parent,  # runs after the user switch
                **self._owner_kwargs(),
            )
            if self._wait_ready():
                return
            log = self._read_log(offset)
            self.proc.wait(10)
            self.proc = None
            if "could not bind" in log or "could not create any TCP/IP sockets" in log:
                continue  # someone took the port between free_port() and bind: retry
            raise RuntimeError(f"postgres did not start:\n{log}")
        raise RuntimeError(f"postgres could not bind a free port:\n{self._read_log(0)}")

    def _wait_ready(self) -> bool:
        """Poll until the server accepts connections; False if it exited."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with psycopg.connect(**self.conninfo("postgres"), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.02)
        self.proc.kill()
        raise RuntimeError(
            f"postgres did not accept connections in {START_TIMEOUT:.0f} s:\n{self._read_log(0)}"
        )

    def _read_log(self, offset: int) -> str:
        if self._log is not None:
            self._log.flush()
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")[-4000:]

    def _create_database(self) -> None:
        with psycopg.connect(**self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))

    def conninfo(self, dbname: str) -> dict[str, Any]:
        """psycopg connection arguments for ``dbname`` on this cluster."""
        return {"host": "127.0.0.1", "port": self.port, "user": ROLE, "dbname": dbname}


# -- databases on any server (ours or MODELYARD_TEST_PG_URL) ---------------------------------------


def normalize_url(url: str) -> str:
    """``postgres://``/``postgresql://`` URLs with the psycopg 3 driver SQLAlchemy needs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername != "postgresql+psycopg":
        raise ValueError(f"expected a postgresql URL, got driver {parsed.drivername!r}")
    return parsed.render_as_string(hide_password=False)


def admin_conninfo(url: URL) -> dict[str, Any]:
    """psycopg connection arguments for the database a SQLAlchemy URL names."""
    info: dict[str, Any] = {
        "host": url.host or None,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database or "postgres",
        **{k: v for k, v in url.query.items() if isinstance(v, str)},
    }
    return {k: v for k, v in info.items() if v is not None}


@contextlib.contextmanager
def fresh_database(base_url: str, prefix: str = "test_") -> Iterator[str]:
    """Create an empty database on the server of ``base_url``; drop it afterwards.

    Yields the SQLAlchemy URL of the new database. The drop uses ``WITH (FORCE)``
    so connections a test leaked (an undisposed engine pool) cannot keep it alive.
    """
    base = make_url(normalize_url(base_url))
    name = f"{prefix}{uuid.uuid4().hex}"
    admin = admin_conninfo(base)
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
