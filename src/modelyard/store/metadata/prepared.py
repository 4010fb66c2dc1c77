"""Statements compiled once per dialect and run on the raw DBAPI cursor.

The hot paths (resolve a reference, load one version, create a version) run a
handful of small statements. Building and cache-keying SQLAlchemy constructs
per call cost ~100 µs each, more than SQLite needs to answer, so these few
statements are compiled once at start-up and executed directly on the driver.
They are still written as Core expressions, so the SQL stays the same on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from modelyard.store.metadata.engine import is_storage_full, storage_full_error


class Prepared:
    """One statement, compiled for one dialect, with named parameters."""

    __slots__ = ("_pick", "dbapi_error", "defaults", "names", "positional", "sql")

    def __init__(self, stmt: sa.ClauseElement, dialect: Dialect, *, literals: bool = False) -> None:
        """Compile ``stmt`` for ``dialect``.

        With ``literals`` the values written into the statement (``col ==
        'x'``, ``IN`` lists, ``LIMIT``) are kept as defaults of their
        generated parameters, so a statement built from one filter can run
        again as is; a named parameter still comes from the caller. Refused
        (``ValueError``) if a value would need the driver-side conversion
        SQLAlchemy applies (a bind processor), which this path skips.
        """
        kw = {"render_postcompile": True} if literals else {}
        compiled = stmt.compile(dialect=dialect, compile_kwargs=kw)
        assert isinstance(compiled, SQLCompiler)
        if literals:
            for name, bind in compiled.binds.items():
                if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                    raise ValueError(f"parameter {name!r} needs a bind processor")
            self.defaults: Mapping[str, Any] = compiled.construct_params()
        else:
            literal = sorted(k for k, b in compiled.binds.items() if b.value is not None)
            if literal:
                # A literal would be bound under a generated name we cannot supply.
                raise ValueError(f"prepared statements take named parameters only: {literal}")
            self.defaults = {}
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        self.names: Sequence[str] = tuple(compiled.positiontup or ())
        # The positional tuple in one C call (a generator per statement was
        # 2% of a create's CPU); itemgetter of one name gives a bare value.
        names = self.names
        self._pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] = (
            (lambda _: ())
            if not names
            else (lambda v: (v[names[0]],))
            if len(names) == 1
            else operator.itemgetter(*names)
        )
        self.dbapi_error: type[Exception] = dialect.loaded_dbapi.Error

    def _run(
        self, conn: sa.Connection, params: Any, *, many: bool = False, fetch: bool = False
    ) -> list[Any]:
        cur = conn.connection.cursor()
        try:
            if many:
                cur.executemany(self.sql, params)
            else:
                cur.execute(self.sql, params)
            return list(cur.fetchall()) if fetch else []
        except self.dbapi_error as exc:
            if is_storage_full(exc):
                raise storage_full_error() from exc
            # Same exception classes as SQLAlchemy-run statements, so callers
            # catch IntegrityError / OperationalError in one way.
            raise sa.exc.DBAPIError.instance(self.sql, params, exc, self.dbapi_error) from exc
        finally:
            cur.close()

    def params(self, values: Mapping[str, Any]) -> Any:
        """Parameters in the driver's shape (tuple for qmark, dict for pyformat)."""
        if self.defaults:
            values = {**self.defaults, **values}
        if self.positional:
            return self._pick(values)
        return values

    def all(self, conn: sa.Connection, values: Mapping[str, Any]) -> list[Any]:
        """Run a query and fetch every row as a tuple."""
        return self._run(conn, self.params(values), fetch=True)

    def one_or_none(self, conn: sa.Connection, values: Mapping[str, Any]) -> Any:
        """Run a query expected to return at most one row."""
        rows = self.all(conn, values)
        return rows[0] if rows else None

    def execute(self, conn: sa.Connection, values: Mapping[str, Any]) -> None:
        """Run a statement that returns nothing."""
        self._run(conn, self.params(values))

    def execute_many(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement for each parameter set."""
        if rows:
            self._run(conn, [self.params(r) for r in rows], many=True)


def json_value(value: Any) -> Any:
    """A JSON column as read raw: text on SQLite, already parsed on PostgreSQL."""
    if isinstance(value, str | bytes):
        return orjson.loads(value)
    return value


def json_param(value: Any) -> str:
    """A JSON column value as the driver takes it (text; PostgreSQL casts it)."""
    return orjson.dumps(value).decode()
