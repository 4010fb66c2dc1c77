"""The prepared statements of the hot paths: resolve and load one version.

See :mod:`modelyard.store.metadata.prepared` for why these bypass per-call
SQLAlchemy statement building.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from modelyard.domain.entities import FileEntry, Version, VersionLink, VersionState
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.prepared import Prepared, json_value

_orig = t.versions.alias("orig")
_orig_m = t.models.alias("orig_m")
_orig_ns = t.namespaces.alias("orig_ns")
_par = t.versions.alias("par")
_par_m = t.models.alias("par_m")
_par_ns = t.namespaces.alias("par_ns")

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
LATEST_STATES = ("ready", "published")


def _kv_union() -> sa.CompoundSelect[Any]:
    """Tags, metrics, params and aliases of one version, in one round trip."""
    null_text = sa.cast(sa.null(), sa.Text)
    null_num = sa.cast(sa.null(), sa.Float)
    vid = _B("vid", type_=sa.BigInteger())
    parts = [
        sa.select(
            sa.literal_column("'t'"), t.version_tags.c.key, t.version_tags.c.value, null_num
        ).where(t.version_tags.c.version_id == vid),
        sa.select(
            sa.literal_column("'m'"), t.version_metrics.c.key, null_text, t.version_metrics.c.value
        ).where(t.version_metrics.c.version_id == vid),
        sa.select(
            sa.literal_column("'p'"), t.version_params.c.key, t.version_params.c.value, null_num
        ).where(t.version_params.c.version_id == vid),
        sa.select(sa.literal_column("'a'"), t.aliases.c.name, null_text, null_num).where(
            t.aliases.c.version_id == vid
        ),
    ]
    return sa.union_all(*parts)


class HotQueries:
    """The hot statements compiled for one dialect."""

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
                    sa.or_(newest.c.state == _B("s1"), newest.c.state == _B("s2")),
                )
                .scalar_subquery(),
            )
        )
        self.by_id = p(VERSION_SELECT.where(t.versions.c.id == _B("vid")))
        self.kv = p(_kv_union())
        self.files = p(
            sa.select(t.files.c.path, t.files.c.digest, t.files.c.size, t.files.c.media_type)
            .where(t.files.c.version_id == _B("vid"))
            .order_by(t.files.c.path)
        )

    def find_row(
        self,
        conn: sa.Connection,
        namespace: str,
        name: str,
        number: int | None,
        alias: str | None,
    ) -> Any:
        """The version row a reference names, or None."""
        if number is not None:
            return self.by_number.one_or_none(conn, {"ns": namespace, "name": name, "num": number})
        if alias is not None and alias != "latest":
            return self.by_alias.one_or_none(conn, {"ns": namespace, "name": name, "alias": alias})
        return self.latest.one_or_none(
            conn, {"ns": namespace, "name": name, "s1": LATEST_STATES[0], "s2": LATEST_STATES[1]}
        )

    def hydrate(self, conn: sa.Connection, row: Any, *, with_files: bool) -> Version:
        """Turn a version row into a Version with its tags, metrics, params, aliases."""
        vid = row[0]
        kv: dict[str, dict[str, Any]] = defaultdict(dict)
        aliases: list[str] = []
        for kind, key, text, num in self.kv.all(conn, {"vid": vid}):
            if kind == "a":
                aliases.append(key)
            elif kind == "m":
                kv["m"][key] = num
            else:
                kv[kind][key] = text
        files = None
        if with_files:
            files = [FileEntry(*f) for f in self.files.all(conn, {"vid": vid})]
        return version_from_row(
            row, tags=kv["t"], metrics=kv["m"], params=kv["p"], aliases=sorted(aliases), files=files
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
    )


_JSON_VERSION_COLS = ("signature", "meta", "datasets")
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
)


class WriteQueries:
    """The statements of version creation, compiled for one dialect."""

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
        self.insert_kv = {
            name: p(
                table.insert().values(
                    version_id=_B("version_id"),
                    key=_B("key"),
                    value=_B("value"),
                    created_at=_B("created_at"),
                )
            )
            for name, table in (
                ("tags", t.version_tags),
                ("metrics", t.version_metrics),
                ("params", t.version_params),
            )
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
