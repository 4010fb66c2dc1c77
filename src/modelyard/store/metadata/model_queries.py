"""The statements of creating a model, compiled once per dialect (issue 10).

Creating a model (REST v1, the MLflow door's ``create_registered_model``, the
SDK) ran its namespace lookup, the model row and the replacement of its tag
and metadata-index rows as SQLAlchemy-built statements; building and
cache-keying them was most of the create's server CPU (cProfile, issue 10's
head-to-head). As :class:`~modelyard.store.metadata.prepared.Prepared`
statements they are the same SQL run straight on the driver; ``Tx`` runs
them (``get_namespace``, ``insert_model``, ``replace_model_tags``,
``replace_model_meta``), the one implementation of each.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from modelyard.store.metadata import tables as t
from modelyard.store.metadata.prepared import Prepared

_B = sa.bindparam


class ModelQueries:
    """A namespace by name; a model's row, tags and metadata index rows."""

    def __init__(self, dialect: Dialect) -> None:
        def p(stmt: sa.ClauseElement) -> Prepared:
            return Prepared(stmt, dialect)

        n, m, tags, meta = t.namespaces, t.models, t.model_tags, t.model_meta
        self.namespace = p(
            sa.select(n.c.id, n.c.name, n.c.description, n.c.created_at).where(
                n.c.name == _B("name")
            )
        )
        # A taken name inserts nothing and returns no row, rather than
        # failing: a failing statement would need a savepoint around it, and
        # SQLAlchemy's SAVEPOINT and RELEASE were a quarter of a create's CPU.
        values = {
            "namespace_id": _B("namespace_id"),
            "name": _B("name"),
            "description": _B("description"),
            # JSON text, as ``prepared.json_param`` writes it.
            "meta": _B("meta"),
            "archived": sa.false(),
            "last_version": sa.literal_column("0"),
            "created_by": _B("actor"),
            "created_at": _B("at"),
            "updated_at": _B("at"),
        }
        key = [m.c.namespace_id, m.c.name]
        # The dialect's own INSERT, imported here: a server on SQLite never
        # loads PostgreSQL's dialect (tests/system/test_startup_imports.py).
        insert: sa.Insert
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            insert = pg_insert(m).values(values).on_conflict_do_nothing(index_elements=key)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            insert = sqlite_insert(m).values(values).on_conflict_do_nothing(index_elements=key)
        self.insert = p(insert.returning(m.c.id))
        self.delete_tags = p(tags.delete().where(tags.c.model_id == _B("model_id")))
        self.insert_tag = p(
            tags.insert().values(model_id=_B("model_id"), key=_B("key"), value=_B("value"))
        )
        self.delete_meta = p(meta.delete().where(meta.c.model_id == _B("model_id")))
        self.insert_meta = p(
            meta.insert().values(
                model_id=_B("model_id"), key=_B("key"), value=_B("value"), num=_B("num")
            )
        )
