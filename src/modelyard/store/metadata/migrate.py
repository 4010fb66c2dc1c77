"""Schema migrations with Alembic, driven from code (no alembic.ini needed).

``modelyard db upgrade`` and the automatic upgrade of a fresh embedded database
both call :func:`upgrade`. Alembic is imported only when a migration has to run,
which keeps server start-up fast; :data:`SCHEMA_HEAD` names the newest shipped
revision (a test holds it equal to Alembic's head).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SCHEMA_HEAD = "0004"


def _config(conn: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str | None:
    """The newest migration shipped with this package, as Alembic sees it."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None if never migrated)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` in one transaction."""
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Serialize concurrent upgrades from several replicas starting at once.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7400211)")
        command.upgrade(_config(conn), revision)


def is_up_to_date(engine: Engine) -> bool:
    """True if the database is at the shipped head."""
    return current_revision(engine) == SCHEMA_HEAD
