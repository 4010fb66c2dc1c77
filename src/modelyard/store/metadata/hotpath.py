"""The prepared statements of the hot paths: resolve and load one version.

See :mod:`modelyard.store.metadata.prepared` for why these bypass per-call
SQLAlchemy statement building.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from modelyard.domain.entities import FileEntry, Model, Version, VersionLink, VersionState
from modelyard.domain.lifecycle import LATEST_STATES
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.alias_queries import AliasQueries
from modelyard.store.metadata.model_queries import ModelQueries
from modelyard.store.metadata.prepared import Prepared, json_value

_orig = t.versions.alias("orig")
_orig_m = t.models.alias("orig_m")
_orig_ns = t.namespaces.alias("orig_ns")
_par = t.versions.alias("par")
_par_m = t.models.alias("par_m")
_par_ns = t.namespaces.alias("par_ns")

MODEL_COLS = (
    t.models.c.id,
    t.namespaces.c.name.label("namespace"),
    t.models.c.name,
    t.models.c.description,
    t.models.c.meta,
    t.models.c.archived,
    t.models.c.last_version,
    t.models.c.created_by,
    t.models.c.created_at,
    t.models.c.updated_at,
)
MODEL_FROM = t.models.join(t.namespaces, t.models.c.namespace_id == t.namespaces.c.id)

VERSION_COLS = (
    t.versions.c.id,
    t.namespaces.c.name.label("namespace"),
    t.models.c.name.label("model"),
    t.versions.c.number,
    t.versions.c.state,
    t.versions.c.description,
    t.versions.c.framework,
    t.versions.c.format,
    t.versions.c.signature,
    t.versions.c.meta,
    t.versions.c.source_run,
    t.versions.c.code_ref,
    t.versions.c.datasets,
    t.versions.c.relation,
    t.versions.c.file_count,
    t.versions.c.total_size,
    t.versions.c.created_by,
    t.versions.c.created_at,
    t.versions.c.updated_at,
    _orig_ns.c.name.label("orig_ns"),
    _orig_m.c.name.label("orig_model"),
    _orig.c.number.label("orig_number"),
    _par_ns.c.name.label("par_ns"),
    _par_m.c.name.label("par_model"),
    _par.c.number.label("par_number"),
    t.versions.c.recipe,
    t.versions.c.metric_delta,
    t.versions.c.pickle_exception,
)
VERSION_FROM = (
    t.versions.join(t.models, t.versions.c.model_id == t.models.c.id)
    .join(t.namespaces, t.models.c.namespace_id == t.namespaces.c.id)
    .outerjoin(_orig, t.versions.c.original_id == _orig.c.id)
    .outerjoin(_orig_m, _orig.c.model_id == _orig_m.c.id)
    .outerjoin(_orig_ns, _orig_m.c.namespace_id == _orig_ns.c.id)
    .outerjoin(_par, t.versions.c.parent_id == _par.c.id)
    .outerjoin(_par_m, _par.c.model_id == _par_m.c.id)
    .outerjoin(_par_ns, _par_m.c.namespace_id == _par_ns.c.id)
)
VERSION_SELECT = sa.select(*VERSION_COLS).select_from(VERSION_FROM)

_B = sa.bindparam
_OF_MODEL = (t.namespaces.c.name == _B("ns"), t.models.c.name == _B("name"))
# The "latest" rule is the domain's (``LATEST_STATES``); the statement takes
# one bound state per entry so it stays a prepared statement.
_LATEST_PARAMS = {f"s{i}": s.value for i, s in enumerate(LATEST_STATES)}

_KvCondition = Callable[[sa.Column[Any]], sa.ColumnElement[bool]]


def _kv_union(of_versions: _KvCondition) -> sa.CompoundSelect[Any]:
    """Tags, metrics, params and aliases of some versions, in one round trip.

    Rows are ``(version_id, kind, key, text, number)`` with kind ``t``, ``m``,
    ``p`` or ``a``; ``of_versions`` turns a ``version_id`` column into the
    condition that picks the versions (one bound id, or a list).
    """
    null_text = sa.cast(sa.null(), sa.Text)
    null_num = sa.cast(sa.null(), sa.Float)
    tags, metrics, params, aliases = (
        t.version_tags,
        t.version_metrics,
        t.version_params,
        t.aliases,
    )
    parts = [
        sa.select(
            tags.c.version_id, sa.literal_column("'t'"), tags.c.key, tags.c.value, null_num
        ).where(of_versions(tags.c.version_id)),
        sa.select(
            metrics.c.version_id,
            sa.literal_column("'m'"),
            metrics.c.key,
            null_text,
            metrics.c.value,
        ).where(of_versions(metrics.c.version_id)),
        sa.select(
            params.c.version_id, sa.literal_column("'p'"), params.c.key, params.c.value, null_num
        ).where(of_versions(params.c.version_id)),
        sa.select(
            aliases.c.version_id, sa.literal_column("'a'"), aliases.c.name, null_text, null_num
        ).where(of_versions(aliases.c.version_id)),
    ]
    return sa.union_all(*parts)


_FILES_SELECT = sa.select(
    t.files.c.version_id, t.files.c.path, t.files.c.digest, t.files.c.size, t.files.c.media_type
)


class HotQueries:
    """Resolve references and load versions: the one implementation of each.

    Every statement is prepared once per dialect (see
    :mod:`~modelyard.store.metadata.prepared`). Loading versions takes three
    statements however many versions there are (rows, their tags, metrics,
    params and aliases, their files): the ids go in as one parameter, a JSON
    array on SQLite (``json_each``) and an array on PostgreSQL (``= ANY``).
    For a search page of 50 versions on SQLite that is 0.6 ms of SQLite
    against 1.4 ms for two prepared point queries per version, before the
    Python cost of 100 statements (measured in-process, 1,000 versions).
    """

    def __init__(self, dialect: Dialect) -> None:
        def p(stmt: sa.ClauseElement) -> Prepared:
            return Prepared(stmt, dialect)

        self.by_number = p(VERSION_SELECT.where(*_OF_MODEL, t.versions.c.number == _B("num")))
        self.by_alias = p(
            # model_id in the join lets SQLite use the (model_id, name) key.
            VERSION_SELECT.join(
                t.aliases,
                sa.and_(
                    t.aliases.c.model_id == t.models.c.id,
                    t.aliases.c.version_id == t.versions.c.id,
                ),
            ).where(*_OF_MODEL, t.aliases.c.name == _B("alias"))
        )
        newest = t.versions.alias("newest")
        self.latest = p(
            VERSION_SELECT.where(
                *_OF_MODEL,
                t.versions.c.number
                == sa.select(sa.func.max(newest.c.number))
                .where(
                    newest.c.model_id == t.models.c.id,
                    sa.or_(*(newest.c.state == _B(name) for name in _LATEST_PARAMS)),
                )
                .scalar_subquery(),
            )
        )
        self.sqlite = dialect.name == "sqlite"
        # One version (a point read) by its id; several by ``ids``. A list of
        # one costs ~20 µs more per read on SQLite (json_each) than ``= ?``.
        one = _B("vid", type_=sa.BigInteger())
        self.by_id = p(VERSION_SELECT.where(t.versions.c.id == one))
        self.kv_one = p(_kv_union(lambda col: col == one))
        self.files_one = p(
            _FILES_SELECT.where(t.files.c.version_id == one).order_by(t.files.c.path)
        )
        # Models: the MLflow door reads a model with its aliases and stage
        # candidates on every get and every page of a search.
        self.model_id = p(
            sa.select(t.models.c.id)
            .select_from(MODEL_FROM)
            .where(t.namespaces.c.name == _B("ns"), t.models.c.name == _B("name"))
        )
        self.model_rows = p(
            sa.select(*MODEL_COLS).select_from(MODEL_FROM).where(self._in_ids(t.models.c.id))
        )
        self.model_tags = p(
            sa.select(t.model_tags.c.model_id, t.model_tags.c.key, t.model_tags.c.value).where(
                self._in_ids(t.model_tags.c.model_id)
            )
        )
        self.model_aliases = p(
            sa.select(t.aliases.c.model_id, t.aliases.c.name, t.versions.c.number)
            .join(t.versions, t.versions.c.id == t.aliases.c.version_id)
            .where(self._in_ids(t.aliases.c.model_id))
            .order_by(t.aliases.c.model_id, t.aliases.c.name)
        )
        self.newest = p(self._newest_statement())
        states = [state.value for state in VersionState]
        # Every state, bound as the driver takes a list (as ``_ids`` does).
        self._newest_states = {"states": orjson.dumps(states).decode() if self.sqlite else states}
        self.rows = p(VERSION_SELECT.where(self._in_ids(t.versions.c.id)))
        # The database revision (``Tx.data_revision``).
        self.newest_event = p(sa.select(sa.func.max(t.events.c.id)))
        self.kv = p(_kv_union(self._in_ids))
        self.files = p(
            _FILES_SELECT.where(self._in_ids(t.files.c.version_id)).order_by(
                t.files.c.version_id, t.files.c.path
            )
        )

    def load_models(self, conn: sa.Connection, ids: Sequence[int]) -> list[Model]:
        """Models by id with their tags, in the given order (ids not found are left out)."""
        if not ids:
            return []
        values = self._ids(ids)
        tags: dict[int, dict[str, str]] = defaultdict(dict)
        for mid, key, value in self.model_tags.all(conn, values):
            tags[mid][key] = value
        by_id = {
            r[0]: Model(
                id=r[0],
                namespace=r[1],
                name=r[2],
                description=r[3],
                tags=tags.get(r[0], {}),
                metadata=json_value(r[4]),
                archived=bool(r[5]),
                latest_version=r[6],
                created_by=r[7],
                created_at=r[8],
                updated_at=r[9],
            )
            for r in self.model_rows.all(conn, values)
        }
        return [by_id[i] for i in ids if i in by_id]

    def aliases_of_models(
        self, conn: sa.Connection, ids: Sequence[int]
    ) -> list[tuple[int, str, int]]:
        """Every alias of the given models as (model id, alias, version number)."""
        if not ids:
            return []
        return [
            (int(r[0]), str(r[1]), int(r[2])) for r in self.model_aliases.all(conn, self._ids(ids))
        ]

    def newest_by_state(self, conn: sa.Connection, model_ids: Sequence[int], k: int) -> list[int]:
        """Ids of each model's ``k`` highest-numbered versions in each state.

        One ``ORDER BY number DESC LIMIT k`` probe per (model, state) on the
        ``(model_id, state, number)`` index, so the cost is models x states x
        ``k`` rows however many versions the models have. The models and
        states are bound lists, so one statement serves every page: it was a
        UNION ALL of a probe per (model, state), compiled once per number of
        models, and the first page of 20 models spent ~40 ms compiling it
        (py-spy, issue 10's tag search), then ~120 µs answering.
        """
        if not model_ids:
            return []
        values = {**self._ids(model_ids), **self._newest_states, "k": k, "o": 0}
        return [int(r[0]) for r in self.newest.all(conn, values)]

    def _newest_statement(self) -> sa.Select[Any]:
        """:meth:`newest_by_state`'s statement: the probe is a correlated
        subquery, run once per (model, state) pair of the two bound lists.

        SQLite has no ``LATERAL``; it runs a correlated ``IN (subquery)`` per
        outer row and looks each id up by rowid (``CORRELATED LIST
        SUBQUERY``). PostgreSQL would plan that as a filter over every
        version, so there the probe is a ``LATERAL`` subquery.
        """
        p = t.versions.alias("p")

        def probe(model: sa.ColumnElement[Any], state: sa.ColumnElement[Any]) -> sa.Select[Any]:
            return (
                sa.select(p.c.id)
                .where(p.c.model_id == model, p.c.state == state)
                .order_by(p.c.number.desc())
                .limit(_B("k", type_=sa.Integer()))
                # Named, or SQLite's compiler adds an anonymous ``OFFSET 0``.
                .offset(_B("o", type_=sa.Integer()))
            )

        if self.sqlite:
            m = sa.func.json_each(_B("ids", type_=sa.Text())).table_valued("value").alias("m")
            s = sa.func.json_each(_B("states", type_=sa.Text())).table_valued("value").alias("s")
            v = t.versions
            return sa.select(v.c.id).select_from(
                m.join(s, sa.true()).join(v, v.c.id.in_(probe(m.c.value, s.c.value)))
            )
        from sqlalchemy.dialects.postgresql import ARRAY

        m = (
            sa.func.unnest(_B("ids", type_=ARRAY(sa.BigInteger())))
            .table_valued("value")
            .render_derived(name="m")
        )
        s = (
            sa.func.unnest(_B("states", type_=ARRAY(sa.Text())))
            .table_valued("value")
            .render_derived(name="s")
        )
        newest = probe(m.c.value, s.c.value).lateral("newest")
        return sa.select(newest.c.id).select_from(m.join(s, sa.true()).join(newest, sa.true()))

    def _in_ids(self, col: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """``col`` is one of the ids bound as ``ids`` (see :meth:`_ids`)."""
        if self.sqlite:
            each = sa.func.json_each(_B("ids", type_=sa.Text())).table_valued("value")
            return col.in_(sa.select(each.c.value))
        # Imported here: a SQLite server never loads the PostgreSQL dialect.
        from sqlalchemy.dialects.postgresql import ARRAY

        return col == sa.any_(_B("ids", type_=ARRAY(sa.BigInteger())))

    def _ids(self, ids: Iterable[int]) -> dict[str, Any]:
        """The ``ids`` parameter of the load statements."""
        if self.sqlite:
            return {"ids": orjson.dumps(list(ids)).decode()}
        return {"ids": list(ids)}

    def find_row(
        self,
        conn: sa.Connection,
        namespace: str,
        name: str,
        number: int | None,
        alias: str | None,
    ) -> Any:
        """The version row (``VERSION_COLS``) a reference names, or None.

        ``number`` wins, then ``alias``; neither, or the alias ``latest``,
        names the newest version in one of the domain's ``LATEST_STATES``.
        """
        if number is not None:
            return self.by_number.one_or_none(conn, {"ns": namespace, "name": name, "num": number})
        if alias is not None and alias != "latest":
            return self.by_alias.one_or_none(conn, {"ns": namespace, "name": name, "alias": alias})
        return self.latest.one_or_none(conn, {"ns": namespace, "name": name, **_LATEST_PARAMS})

    def load(self, conn: sa.Connection, ids: Sequence[int], *, with_files: bool) -> list[Version]:
        """Versions by id, in the given order (ids not found are left out)."""
        if not ids:
            return []
        if len(ids) == 1:
            rows = self.by_id.all(conn, {"vid": ids[0]})
        else:
            by_id = {r[0]: r for r in self.rows.all(conn, self._ids(ids))}
            rows = [by_id[i] for i in ids if i in by_id]
        return self.hydrate(conn, rows, with_files=with_files)

    def hydrate(
        self, conn: sa.Connection, rows: Sequence[Any], *, with_files: bool
    ) -> list[Version]:
        """Turn version rows into Versions with their tags, metrics, params, aliases
        (and files, sorted by path, if asked)."""
        if not rows:
            return []
        if len(rows) == 1:
            kv, files, ids = self.kv_one, self.files_one, {"vid": rows[0][0]}
        else:
            kv, files, ids = self.kv, self.files, self._ids({r[0] for r in rows})
        kv_of: dict[int, list[Any]] = defaultdict(list)
        for kv_row in kv.all(conn, ids):
            kv_of[kv_row[0]].append(kv_row)
        files_of: dict[int, list[Any]] | None = None
        if with_files:
            files_of = defaultdict(list)
            for f in files.all(conn, ids):
                files_of[f[0]].append(f)
        return [
            _assemble(
                row, kv_of.get(row[0], ()), None if files_of is None else files_of.get(row[0], ())
            )
            for row in rows
        ]


def _assemble(row: Any, kv_rows: Iterable[Any], file_rows: Iterable[Any] | None) -> Version:
    """A Version from its row, its ``_kv_union`` rows and its ``_FILES_SELECT`` rows."""
    tags: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    params: dict[str, Any] = {}
    aliases: list[str] = []
    for _vid, kind, key, text, num in kv_rows:
        if kind == "t":
            tags[key] = text
        elif kind == "m":
            metrics[key] = num
        elif kind == "p":
            params[key] = text
        else:
            aliases.append(key)
    files = None if file_rows is None else [FileEntry(*f[1:]) for f in file_rows]
    return version_from_row(
        row, tags=tags, metrics=metrics, params=params, aliases=sorted(aliases), files=files
    )


def version_from_row(
    r: Any,
    *,
    tags: dict[str, Any],
    metrics: dict[str, Any],
    params: dict[str, Any],
    aliases: list[str],
    files: list[FileEntry] | None,
) -> Version:
    """Map a row of ``VERSION_COLS`` (by position) to a Version."""
    return Version(
        id=r[0],
        namespace=r[1],
        model=r[2],
        number=r[3],
        state=VersionState(r[4]),
        description=r[5],
        framework=r[6],
        format=r[7],
        signature=json_value(r[8]),
        metrics=metrics,
        params=params,
        tags=tags,
        metadata=json_value(r[9]),
        source_run=r[10],
        code_ref=r[11],
        datasets=json_value(r[12]),
        relation=r[13],
        file_count=r[14],
        total_size=r[15],
        created_by=r[16],
        created_at=r[17],
        updated_at=r[18],
        original=VersionLink(r[19], r[20], r[21]) if r[21] is not None else None,
        parent=VersionLink(r[22], r[23], r[24]) if r[24] is not None else None,
        aliases=aliases,
        files=files,
        recipe=None if r[25] is None else json_value(r[25]),
        metric_delta=None if r[26] is None else json_value(r[26]),
        pickle_exception=None if r[27] is None else json_value(r[27]),
    )


_INSERT_VERSION_COLS = (
    "model_id",
    "number",
    "state",
    "description",
    "framework",
    "format",
    "signature",
    "meta",
    "source_run",
    "code_ref",
    "datasets",
    "original_id",
    "parent_id",
    "relation",
    "file_count",
    "total_size",
    "created_by",
    "created_at",
    "updated_at",
    "recipe",
    "metric_delta",
)


KvKind = Literal["tags", "metrics", "params"]
_KV_TABLES: dict[KvKind, sa.Table] = {
    "tags": t.version_tags,
    "metrics": t.version_metrics,
    "params": t.version_params,
}

_ITEM_TABLES: dict[KvKind | Literal["meta"], sa.Table] = {
    "tags": t.version_tags,
    "metrics": t.version_metrics,
    "params": t.version_params,
    "meta": t.version_meta,
}


class WriteQueries:
    """The statements of version writes, compiled for one dialect: the one
    implementation of writing a version's files, tags, metrics, params and
    metadata index rows (at creation and on later edits alike)."""

    def __init__(self, dialect: Dialect) -> None:
        def p(stmt: sa.ClauseElement) -> Prepared:
            return Prepared(stmt, dialect)

        self.model_for_write = p(
            sa.select(t.models.c.id, t.models.c.archived)
            .select_from(t.models.join(t.namespaces, t.models.c.namespace_id == t.namespaces.c.id))
            .where(*_OF_MODEL)
        )
        self.allocate = p(
            t.models.update()
            .where(t.models.c.id == _B("mid"))
            .values(
                last_version=t.models.c.last_version + sa.literal_column("1"), updated_at=_B("at")
            )
            .returning(t.models.c.last_version)
        )
        self.insert_version = p(
            t.versions.insert()
            .values({c: _B(c) for c in _INSERT_VERSION_COLS})
            .returning(t.versions.c.id)
        )
        self.insert_kv_by_kind: dict[KvKind, Prepared] = {
            name: p(
                table.insert().values(
                    version_id=_B("version_id"),
                    key=_B("key"),
                    value=_B("value"),
                    created_at=_B("created_at"),
                )
            )
            for name, table in _KV_TABLES.items()
        }
        self.delete_by_kind: dict[KvKind | Literal["meta"], Prepared] = {
            name: p(table.delete().where(table.c.version_id == _B("vid")))
            for name, table in _ITEM_TABLES.items()
        }
        self.insert_meta = p(
            t.version_meta.insert().values(
                version_id=_B("version_id"),
                key=_B("key"),
                value=_B("value"),
                num=_B("num"),
                created_at=_B("created_at"),
            )
        )
        self.insert_file = p(
            t.files.insert().values(
                version_id=_B("version_id"),
                path=_B("path"),
                digest=_B("digest"),
                size=_B("size"),
                media_type=_B("media_type"),
            )
        )
        self.insert_event = p(
            t.events.insert()
            .values(
                type=_B("type"),
                at=_B("at"),
                actor=_B("actor"),
                namespace=_B("namespace"),
                subject=_B("subject"),
                payload=_B("payload"),
                model_key=_B("model_key"),
            )
            .returning(t.events.c.id)
        )
        self.aliases = AliasQueries(dialect)
        self.models = ModelQueries(dialect)
        self.get_idempotent = p(
            sa.select(t.idempotency_keys.c.request_hash, t.idempotency_keys.c.result_id).where(
                t.idempotency_keys.c.scope == _B("scope"), t.idempotency_keys.c.key == _B("key")
            )
        )
        self.put_idempotent = p(
            t.idempotency_keys.insert().values(
                scope=_B("scope"),
                key=_B("key"),
                request_hash=_B("request_hash"),
                result_id=_B("result_id"),
                created_at=_B("created_at"),
            )
        )

    def insert_kv(
        self,
        conn: sa.Connection,
        kind: KvKind,
        version_id: int,
        items: Mapping[str, Any],
        *,
        created_at: int,
    ) -> None:
        """Insert a version's tags, metrics or params (``created_at``: the
        version's, copied into each row for the filter indexes)."""
        self.insert_kv_by_kind[kind].execute_many(
            conn,
            [
                {"version_id": version_id, "key": k, "value": v, "created_at": created_at}
                for k, v in items.items()
            ],
        )

    def insert_meta_rows(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert a version's metadata index rows (see ``repository._meta_rows``)."""
        self.insert_meta.execute_many(conn, rows)

    def insert_files(
        self, conn: sa.Connection, version_id: int, entries: Sequence[FileEntry]
    ) -> None:
        """Insert a version's manifest."""
        self.insert_file.execute_many(
            conn,
            [
                {
                    "version_id": version_id,
                    "path": f.path,
                    "digest": f.digest,
                    "size": f.size,
                    "media_type": f.media_type,
                }
                for f in entries
            ],
        )

    def delete_items(
        self, conn: sa.Connection, kind: KvKind | Literal["meta"], version_id: int
    ) -> None:
        """Delete every tag / metric / param / metadata index row of a version."""
        self.delete_by_kind[kind].execute(conn, {"vid": version_id})
