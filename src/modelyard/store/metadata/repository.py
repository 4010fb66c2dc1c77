"""Queries over the metadata schema, grouped in a transaction object.

The service opens a :class:`Tx` with :meth:`MetadataStore.read` or
:meth:`MetadataStore.write` and calls its methods; all SQL lives here. Rows are
turned into domain entities with plain mapping (no ORM) because hydration is
on every hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError

from modelyard.domain.entities import (
    AliasMove,
    FileEntry,
    Model,
    Namespace,
    PendingFile,
    Version,
    VersionState,
)
from modelyard.domain.errors import AlreadyExists, Conflict
from modelyard.domain.filters import Node, OrderBy
from modelyard.store.metadata import (
    blob_uploads,
    blob_verifications,
    integrity,
    outbox,
    search,
    version_waits,
)
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.engine import (
    checkpointer_for,
    is_retryable,
    is_sqlite,
    write_options,
    writer_lock_for,
)
from modelyard.store.metadata.groupcommit import GroupCommitter
from modelyard.store.metadata.hotpath import MODEL_COLS, MODEL_FROM, HotQueries, WriteQueries
from modelyard.store.metadata.ports import SnapshotInfo, VerificationRow, VersionKeys, now_us
from modelyard.store.metadata.prepared import json_param

if TYPE_CHECKING:
    from modelyard.store.metadata.bound import BoundGovernance, BoundOutbox
    from modelyard.store.metadata.bundles import BoundBundles
    from modelyard.store.metadata.deployments import BoundDeployments
    from modelyard.store.metadata.identity import IdentityQueries
    from modelyard.store.metadata.tracking import TrackingQueries

T = TypeVar("T")
__all__ = ["EVENT_ORDER_LOCK", "MetadataStore", "Tx", "now_us"]

EVENT_ORDER_LOCK = 7400212
"""PostgreSQL advisory lock key that orders event inserts by commit."""


_MODEL_COLS = MODEL_COLS
_MODEL_FROM = MODEL_FROM


def _meta_rows(owner_col: str, owner_id: int, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten top-level scalars of custom metadata for the filter index."""
    rows = []
    for key, value in meta.items():
        if isinstance(value, bool):
            rows.append({owner_col: owner_id, "key": key, "value": str(value).lower(), "num": None})
        elif isinstance(value, int | float):
            rows.append({owner_col: owner_id, "key": key, "value": str(value), "num": float(value)})
        elif isinstance(value, str):
            rows.append({owner_col: owner_id, "key": key, "value": value, "num": None})
        else:
            # None, and nested objects and lists (kept in the JSON column only):
            # a row without a value, so "key present" (``meta.k EXISTS``) is
            # answered from the index.
            rows.append({owner_col: owner_id, "key": key, "value": None, "num": None})
    return rows


def _version_meta_rows(
    version_id: int, meta: dict[str, Any], created_at: int
) -> list[dict[str, Any]]:
    """:func:`_meta_rows` of a version, with its creation time for the index."""
    return [{**row, "created_at": created_at} for row in _meta_rows("version_id", version_id, meta)]


class Tx:
    """One database transaction with the registry's queries: the SQL
    implementation of :class:`~modelyard.store.metadata.ports.RegistryTx`."""

    def __init__(
        self, conn: sa.Connection, hot: HotQueries, wq: WriteQueries, *, snapshot: bool = False
    ) -> None:
        self.conn = conn
        self.hot = hot
        self.wq = wq
        # A read-only transaction of its own (``MetadataStore.read`` outside a
        # batch): what it reads is committed, so ``data_revision`` names it.
        self.snapshot = snapshot

    # The query modules of governance and identity import this one (for
    # ``Tx`` and ``now_us``), so they are imported when first used.

    @property
    def governance(self) -> BoundGovernance:
        """Policies, approvals and the audit log, in this transaction."""
        from modelyard.store.metadata.bound import BoundGovernance

        return BoundGovernance(self)

    @property
    def identity(self) -> IdentityQueries:
        """Users, tokens and role bindings, in this transaction."""
        from modelyard.store.metadata.identity import IdentityQueries

        return IdentityQueries(self.conn)

    @property
    def outbox(self) -> BoundOutbox:
        """Event pages, webhooks and deliveries, in this transaction."""
        from modelyard.store.metadata.bound import BoundOutbox

        return BoundOutbox(self.conn)

    @property
    def tracking(self) -> TrackingQueries:
        """Experiments, runs, logged models and the artifact index, in this transaction."""
        from modelyard.store.metadata.tracking import TrackingQueries

        return TrackingQueries(self.conn)

    @property
    def bundles(self) -> BoundBundles:
        """Bundles, bundle versions and members, in this transaction."""
        from modelyard.store.metadata.bundles import BoundBundles

        return BoundBundles(self.conn, self.wq.aliases)

    @property
    def deployments(self) -> BoundDeployments:
        """Deployments, replicas and their history, in this transaction."""
        from modelyard.store.metadata.deployments import BoundDeployments

        return BoundDeployments(self.conn)

    # -- namespaces -------------------------------------------------------

    def get_namespace(self, name: str) -> Namespace | None:
        """A namespace by name."""
        row = self.wq.models.namespace.one_or_none(self.conn, {"name": name})
        if row is None:
            return None
        return Namespace(int(row[0]), row[1], row[2], int(row[3]))

    def list_namespaces(self) -> list[Namespace]:
        """All namespaces by name."""
        rows = self.conn.execute(sa.select(t.namespaces).order_by(t.namespaces.c.name))
        return [Namespace(r.id, r.name, r.description, r.created_at) for r in rows]

    def insert_namespace(self, name: str, description: str = "") -> Namespace:
        """Create a namespace; ``NAMESPACE_ALREADY_EXISTS`` if taken."""
        at = now_us()
        try:
            with self.conn.begin_nested():
                nid = self.conn.execute(
                    t.namespaces.insert()
                    .values(name=name, description=description, created_at=at)
                    .returning(t.namespaces.c.id)
                ).scalar_one()
        except SAIntegrityError:
            raise AlreadyExists(
                f"namespace {name!r} already exists",
                code="NAMESPACE_ALREADY_EXISTS",
                details={"namespace": name},
            ) from None
        return Namespace(nid, name, description, at)

    # -- models -----------------------------------------------------------

    def insert_model(
        self,
        namespace_id: int,
        name: str,
        *,
        description: str,
        tags: dict[str, str],
        meta: dict[str, Any],
        actor: str,
    ) -> int:
        """Insert a model row with its tags; ``MODEL_ALREADY_EXISTS`` if taken."""
        row = self.wq.models.insert.one_or_none(
            self.conn,
            {
                "namespace_id": namespace_id,
                "name": name,
                "description": description,
                "meta": json_param(meta),
                "actor": actor,
                "at": now_us(),
            },
        )
        if row is None:  # the name is taken (the insert did nothing)
            raise AlreadyExists(
                f"model {name!r} already exists",
                code="MODEL_ALREADY_EXISTS",
                details={"name": name},
            )
        mid = int(row[0])
        self.replace_model_tags(mid, tags)
        self.replace_model_meta(mid, meta)
        return mid

    def find_model_id(self, namespace: str, name: str, *, for_update: bool = False) -> int | None:
        """The id of ``namespace/name`` or None."""
        if not for_update or self.hot.sqlite:  # SQLite has no row locks to take
            row = self.hot.model_id.one_or_none(self.conn, {"ns": namespace, "name": name})
            return None if row is None else int(row[0])
        q = (
            sa.select(t.models.c.id)
            .select_from(_MODEL_FROM)
            .where(t.namespaces.c.name == namespace, t.models.c.name == name)
        )
        if for_update and not is_sqlite(self.conn.engine):
            q = q.with_for_update(of=t.models)
        return self.conn.execute(q).scalar_one_or_none()

    def load_models(self, ids: Sequence[int]) -> list[Model]:
        """Hydrate models by id, in the given order."""
        return self.hot.load_models(self.conn, ids)

    def update_model(self, model_id: int, **values: Any) -> None:
        """Update model columns and bump ``updated_at``."""
        values["updated_at"] = now_us()
        self.conn.execute(t.models.update().where(t.models.c.id == model_id).values(**values))

    def rename_model(self, model_id: int, new_name: str) -> None:
        """Give a model a new name in its namespace; ``MODEL_ALREADY_EXISTS`` if taken."""
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    t.models.update()
                    .where(t.models.c.id == model_id)
                    .values(name=new_name, updated_at=now_us())
                )
        except SAIntegrityError:
            raise AlreadyExists(
                f"model {new_name!r} already exists",
                code="MODEL_ALREADY_EXISTS",
                details={"name": new_name},
            ) from None

    def replace_model_tags(self, model_id: int, tags: dict[str, str]) -> None:
        """Set the model's tags to exactly ``tags``."""
        q = self.wq.models
        q.delete_tags.execute(self.conn, {"model_id": model_id})
        q.insert_tag.execute_many(
            self.conn, [{"model_id": model_id, "key": k, "value": v} for k, v in tags.items()]
        )

    def replace_model_meta(self, model_id: int, meta: dict[str, Any]) -> None:
        """Re-index the model's metadata scalars."""
        q = self.wq.models
        q.delete_meta.execute(self.conn, {"model_id": model_id})
        q.insert_meta.execute_many(self.conn, _meta_rows("model_id", model_id, meta))

    def count_versions_in_state(self, model_id: int, state: VersionState) -> int:
        """How many versions of a model are in ``state``."""
        return int(
            self.conn.execute(
                sa.select(sa.func.count())
                .select_from(t.versions)
                .where(t.versions.c.model_id == model_id, t.versions.c.state == state.value)
            ).scalar_one()
        )

    def delete_model(self, model_id: int) -> list[str]:
        """Delete a model and everything under it; return digests it referenced."""
        vids = select_ids = sa.select(t.versions.c.id).where(t.versions.c.model_id == model_id)
        digests = list(
            self.conn.execute(
                sa.select(t.files.c.digest).where(t.files.c.version_id.in_(vids)).distinct()
            ).scalars()
        )
        version_waits.delete_of(self.conn, select_ids)
        for table in (t.version_tags, t.version_metrics, t.version_params, t.version_meta, t.files):
            self.conn.execute(table.delete().where(table.c.version_id.in_(select_ids)))
        self.conn.execute(t.aliases.delete().where(t.aliases.c.model_id == model_id))
        self.conn.execute(t.alias_history.delete().where(t.alias_history.c.model_id == model_id))
        v = t.versions.c
        # Versions of other models whose family root goes away: after the cut
        # each gets its new root (the original is always the root, issue 14).
        orphans = list(
            self.conn.execute(
                sa.select(v.id)
                .where(v.original_id.in_(select_ids), v.model_id != model_id)
                .order_by(v.id)
            ).scalars()
        )
        # Lineage links from other models' versions to this one are cut, not cascaded.
        for col in (v.original_id, v.parent_id):
            self.conn.execute(
                t.versions.update().where(col.in_(select_ids)).values({col.key: None})
            )
        # A parent is older than its child (smaller id), so walking in id
        # order meets every parent's repaired root before its children.
        for vid in orphans:
            parent = self.conn.execute(
                sa.select(v.parent_id).where(v.id == vid)
            ).scalar_one_or_none()
            root = None
            if parent is not None:
                up = self.conn.execute(sa.select(v.original_id).where(v.id == parent)).scalar()
                root = up if up is not None else parent
            self.conn.execute(t.versions.update().where(v.id == vid).values(original_id=root))
        self.conn.execute(t.versions.delete().where(t.versions.c.model_id == model_id))
        self.conn.execute(t.model_tags.delete().where(t.model_tags.c.model_id == model_id))
        self.conn.execute(t.model_meta.delete().where(t.model_meta.c.model_id == model_id))
        self.conn.execute(t.models.delete().where(t.models.c.id == model_id))
        return digests

    def delete_version(self, version_id: int, *, actor: str) -> tuple[list[str], list[str]]:
        """Delete one version and what hangs on it; return (digests its manifest
        listed, aliases that pointed at it). The aliases are removed with a
        history entry; lineage links from other versions are cut; the
        model's version counter is untouched, so the number is never reused."""
        v = t.versions
        mid, number = self.conn.execute(
            sa.select(v.c.model_id, v.c.number).where(v.c.id == version_id)
        ).one()
        digests = list(
            self.conn.execute(
                sa.select(t.files.c.digest).where(t.files.c.version_id == version_id).distinct()
            ).scalars()
        )
        aliases = sorted(
            self.conn.execute(
                sa.select(t.aliases.c.name).where(t.aliases.c.version_id == version_id)
            ).scalars()
        )
        for alias in aliases:
            self.set_alias(
                mid,
                alias,
                None,
                from_number=number,
                to_number=None,
                actor=actor,
                reason="version deleted",
            )
        for col in (v.c.original_id, v.c.parent_id):
            self.conn.execute(v.update().where(col == version_id).values({col.key: None}))
        approval_ids = sa.select(t.approvals.c.id).where(t.approvals.c.version_id == version_id)
        self.conn.execute(
            t.approval_votes.delete().where(t.approval_votes.c.approval_id.in_(approval_ids))
        )
        self.conn.execute(t.approvals.delete().where(t.approvals.c.version_id == version_id))
        version_waits.delete_of(self.conn, [version_id])
        for table in (t.version_tags, t.version_metrics, t.version_params, t.version_meta, t.files):
            self.conn.execute(table.delete().where(table.c.version_id == version_id))
        self.conn.execute(v.delete().where(v.c.id == version_id))
        return digests, aliases

    # -- versions ---------------------------------------------------------

    def model_for_write(self, namespace: str, name: str) -> tuple[int, bool] | None:
        """(id, archived) of a model about to receive a version, or None."""
        row = self.wq.model_for_write.one_or_none(self.conn, {"ns": namespace, "name": name})
        return None if row is None else (int(row[0]), bool(row[1]))

    def allocate_version_number(self, model_id: int) -> int:
        """Bump and return the model's version counter (row-locked until commit)."""
        row = self.wq.allocate.one_or_none(self.conn, {"mid": model_id, "at": now_us()})
        return int(row[0])

    def insert_version(self, values: dict[str, Any]) -> int:
        """Insert a version row; return its id."""
        params = dict(values)
        for col in ("signature", "meta", "datasets"):
            params[col] = json_param(params[col])
        # Unset lineage extras stay SQL NULL (not JSON null): "no recipe".
        for col in ("recipe", "metric_delta"):
            value = params.get(col)
            params[col] = None if value is None else json_param(value)
        return int(self.wq.insert_version.one_or_none(self.conn, params)[0])

    def insert_version_items(
        self,
        version_id: int,
        *,
        tags: dict[str, str],
        metrics: dict[str, float],
        params: dict[str, str],
        meta: dict[str, Any],
        files: Sequence[FileEntry],
        created_at: int,
    ) -> None:
        """Insert the key/value rows and manifest of a new version."""
        self.wq.insert_kv(self.conn, "tags", version_id, tags, created_at=created_at)
        self.wq.insert_kv(self.conn, "metrics", version_id, metrics, created_at=created_at)
        self.wq.insert_kv(self.conn, "params", version_id, params, created_at=created_at)
        self.wq.insert_meta_rows(self.conn, _version_meta_rows(version_id, meta, created_at))
        self.wq.insert_files(self.conn, version_id, files)

    def replace_version_tags(
        self, version_id: int, tags: dict[str, str], *, created_at: int
    ) -> None:
        """Set a version's tags to exactly ``tags``
        (``created_at``: the version's, copied into each row for the index)."""
        self.wq.delete_items(self.conn, "tags", version_id)
        self.wq.insert_kv(self.conn, "tags", version_id, tags, created_at=created_at)

    def replace_version_meta(
        self, version_id: int, meta: dict[str, Any], *, created_at: int
    ) -> None:
        """Re-index a version's metadata scalars."""
        self.wq.delete_items(self.conn, "meta", version_id)
        self.wq.insert_meta_rows(self.conn, _version_meta_rows(version_id, meta, created_at))

    def insert_files(self, version_id: int, entries: Sequence[FileEntry]) -> None:
        """Record a version's manifest."""
        self.wq.insert_files(self.conn, version_id, entries)

    def update_version(self, version_id: int, **values: Any) -> None:
        """Update version columns and bump ``updated_at``. None in a JSON
        column stores SQL NULL (what a version that never had a value holds),
        not JSON ``null``."""
        values["updated_at"] = now_us()
        for col, value in values.items():
            if value is None and isinstance(t.versions.c[col].type, sa.JSON):
                values[col] = sa.null()
        self.conn.execute(t.versions.update().where(t.versions.c.id == version_id).values(**values))

    def find_version_id(
        self, namespace: str, name: str, *, number: int | None = None, alias: str | None = None
    ) -> int | None:
        """Resolve ``namespace/name`` plus a number, an alias, or neither (latest)."""
        row = self.hot.find_row(self.conn, namespace, name, number, alias)
        return None if row is None else int(row[0])

    def get_version_by_ref(
        self,
        namespace: str,
        name: str,
        *,
        number: int | None = None,
        alias: str | None = None,
        with_files: bool = False,
    ) -> Version | None:
        """Resolve and load one version in three prepared statements (the hot path)."""
        row = self.hot.find_row(self.conn, namespace, name, number, alias)
        if row is None:
            return None
        return self.hot.hydrate(self.conn, [row], with_files=with_files)[0]

    def get_version_by_id(self, version_id: int, *, with_files: bool = False) -> Version:
        """Load one version by id (prepared statements)."""
        return self.hot.load(self.conn, [version_id], with_files=with_files)[0]

    def load_versions(self, ids: Sequence[int], *, with_files: bool = False) -> list[Version]:
        """Hydrate versions by id, in the given order (see ``HotQueries.load``)."""
        return self.hot.load(self.conn, ids, with_files=with_files)

    def version_keys(self, version_id: int) -> VersionKeys:
        """The ids of a version row (for rules that need them)."""
        v = t.versions.c
        r = self.conn.execute(
            sa.select(v.id, v.model_id, v.number, v.original_id, v.parent_id).where(
                v.id == version_id
            )
        ).one()
        return VersionKeys(r.id, r.model_id, r.number, r.original_id, r.parent_id)

    def family_links(self, root_id: int) -> dict[int, int | None]:
        """Members of the family rooted at ``root_id`` mapped to their parent
        ids: one walk of ``ix_versions_original_created`` plus the root row."""
        v = t.versions.c
        rows = self.conn.execute(
            sa.select(v.id, v.parent_id).where(sa.or_(v.original_id == root_id, v.id == root_id))
        ).all()
        return {int(r.id): None if r.parent_id is None else int(r.parent_id) for r in rows}

    def list_version_ids(
        self,
        model_id: int,
        *,
        limit: int,
        before: int | None,
        states: Iterable[str] | None,
        where: Node | None = None,
    ) -> list[int]:
        """Version ids of a model, newest number first, keyset-paged on number.

        ``where`` narrows further (a versions filter: the production view).
        """
        q = sa.select(t.versions.c.id).where(t.versions.c.model_id == model_id)
        if where is not None:
            q = q.where(search.version_condition(self.conn, where))
        if before is not None:
            q = q.where(t.versions.c.number < before)
        if states:
            q = q.where(t.versions.c.state.in_(list(states)))
        q = q.order_by(t.versions.c.number.desc()).limit(limit)
        return list(self.conn.execute(q).scalars())

    def version_matches(self, version_id: int, node: Node) -> bool:
        """True if the version satisfies the versions filter ``node``."""
        return search.version_matches(self.conn, version_id, node)

    def versions_matching(self, version_ids: Sequence[int], node: Node) -> set[int]:
        """Which of ``version_ids`` satisfy the versions filter ``node`` (one query)."""
        return search.versions_matching(self.conn, version_ids, node)

    def model_matches(self, model_id: int, node: Node) -> bool:
        """True if the model satisfies the models filter ``node``
        (e.g. ``AnyVersion(rule)``: it holds a version inside ``rule``)."""
        return search.model_matches(self.conn, model_id, node)

    def digest_visible(self, digest: str, node: Node | None) -> bool:
        """True if some version satisfying ``node`` (any, if None) lists ``digest``."""
        return search.digest_visible(self.conn, digest, node)

    def search_versions(
        self,
        *,
        node: Node | None,
        order: OrderBy,
        limit: int,
        cursor: str | None,
        namespace: str | None = None,
    ) -> tuple[list[int], str | None]:
        """A keyset page of version ids (see :func:`search.search_versions`)."""
        return search.search_versions(
            self.conn, node=node, order=order, limit=limit, cursor=cursor, namespace=namespace
        )

    def search_models(
        self,
        *,
        node: Node | None,
        order: OrderBy,
        limit: int,
        cursor: str | None,
        namespace: str | None = None,
    ) -> tuple[list[int], str | None]:
        """A keyset page of model ids (see :func:`search.search_models`)."""
        return search.search_models(
            self.conn, node=node, order=order, limit=limit, cursor=cursor, namespace=namespace
        )

    def file_of(self, version_id: int, path: str) -> FileEntry | None:
        """One file of a version."""
        r = self.conn.execute(
            sa.select(t.files).where(t.files.c.version_id == version_id, t.files.c.path == path)
        ).one_or_none()
        return None if r is None else FileEntry(r.path, r.digest, r.size, r.media_type)

    def record_blob_upload(self, digest: str, user: str) -> None:
        """Note that ``user`` uploaded the bytes of ``digest`` (idempotent)."""
        blob_uploads.record_upload(self.conn, digest, user, now_us())

    def blobs_uploaded_by(self, user: str, digests: Sequence[str]) -> set[str]:
        """The subset of ``digests`` that ``user`` uploaded."""
        return blob_uploads.uploaded_by(self.conn, user, digests)

    def lock_blob_collection(self, *, exclusive: bool) -> None:
        """Serialize with garbage collection (see ``blob_uploads.lock_collection``)."""
        blob_uploads.lock_collection(self.conn, exclusive=exclusive)

    def referenced_digests(self, digests: Sequence[str]) -> set[str]:
        """The subset of ``digests`` that a manifest, the artifact index or an
        open multipart upload names (kept by garbage collection)."""
        return blob_uploads.referenced(self.conn, digests)

    def blobs_being_deleted(self, digests: Sequence[str]) -> set[str]:
        """The subset of ``digests`` garbage collection is deleting."""
        return blob_uploads.being_deleted(self.conn, digests)

    def mark_blobs_deleted(self, sizes: dict[str, int]) -> None:
        """Record blobs as being deleted (and forget their uploaders)."""
        blob_uploads.mark_deleted(self.conn, sizes, now_us())

    def pending_blob_deletions(self) -> dict[str, int]:
        """Every recorded deletion not yet done: digest -> size."""
        return blob_uploads.pending_deletions(self.conn)

    def clear_blob_deletions(self, digests: Sequence[str]) -> None:
        """Drop the records of finished deletions."""
        blob_uploads.clear_deleted(self.conn, digests)

    # -- integrity (fsck) and backup holds --------------------------------

    def listed_blobs(self) -> dict[str, set[int]]:
        """Every digest a manifest or artifact index lists, with its sizes."""
        return integrity.listed_blobs(self.conn)

    def blob_users(self, digests: Sequence[str]) -> dict[str, list[str]]:
        """Who lists each digest, in words (a few per digest)."""
        return integrity.users_of(self.conn, digests)

    def broken_pointers(self) -> list[dict[str, Any]]:
        """Rows pointing at nothing real (see ``integrity.broken_pointers``)."""
        return integrity.broken_pointers(self.conn)

    def add_blob_hold(self, holder: str, ttl_s: float) -> int:
        """Keep garbage collection from deleting for ``ttl_s`` seconds; the hold's id."""
        return integrity.add_hold(self.conn, holder, now_us(), int(ttl_s * 1_000_000))

    def drop_blob_hold(self, hold_id: int) -> None:
        """Release a hold."""
        integrity.drop_hold(self.conn, hold_id)

    def active_blob_holds(self) -> list[tuple[str, int]]:
        """Unexpired holds as (holder, expiry in microseconds since the epoch)."""
        return integrity.active_holds(self.conn, now_us())

    # -- direct uploads waiting for the background verifier -----------------

    def add_blob_verification(self, upload_id: str, digest: str, size: int, uploader: str) -> None:
        """Queue a direct upload for the background verifier."""
        blob_verifications.add(self.conn, upload_id, digest, size, uploader, now_us())

    def blob_verification(self, upload_id: str) -> VerificationRow | None:
        """One upload's verification, or None."""
        return blob_verifications.get(self.conn, upload_id)

    def claim_blob_verifications(
        self, *, lease_s: float, worker: str, limit: int
    ) -> list[VerificationRow]:
        """Claim pending verifications nobody holds, for ``lease_s`` seconds."""
        now = now_us()
        return blob_verifications.claim(
            self.conn, now=now, lease_until=now + int(lease_s * 1e6), worker=worker, limit=limit
        )

    def finish_blob_verification(
        self, upload_id: str, *, worker: str, state: str, detail: str | None
    ) -> bool:
        """Record a claimed verification's outcome; False if the claim was lost."""
        return blob_verifications.finish(
            self.conn, upload_id, worker=worker, state=state, detail=detail, at=now_us()
        )

    def pending_verification_uploads(self) -> list[str]:
        """Upload ids still waiting for verification."""
        return blob_verifications.pending_uploads(self.conn)

    def renew_blob_verification(self, upload_id: str, *, worker: str, lease_s: float) -> bool:
        """Extend ``worker``'s lease on a pending verification; False if it lost it."""
        return blob_verifications.renew(
            self.conn, upload_id, worker=worker, lease_until=now_us() + int(lease_s * 1e6)
        )

    def prune_blob_verifications(self, *, older_than_s: float) -> int:
        """Forget finished verifications older than ``older_than_s`` seconds."""
        return blob_verifications.prune(self.conn, before=now_us() - int(older_than_s * 1e6))

    # -- draft versions waiting for their blobs' verification ---------------

    def add_version_waits(
        self,
        version_id: int,
        files: Sequence[tuple[str, str]],
        *,
        uploader: str | None,
        promote: bool,
    ) -> None:
        """Record that a draft waits on these (path, digest) files."""
        version_waits.add(
            self.conn, version_id, files, uploader=uploader, promote=promote, at=now_us()
        )

    def version_waits(self, version_ids: Sequence[int]) -> dict[int, list[PendingFile]]:
        """The files each version still waits on (none: absent)."""
        return version_waits.of_versions(self.conn, version_ids)

    def versions_waiting_on(self, digest: str, uploader: str) -> list[int]:
        """Versions with a file an upload of ``digest`` by ``uploader`` releases."""
        return version_waits.waiting_on(self.conn, digest, uploader)

    def release_version_waits(self, version_id: int, digest: str, uploader: str) -> bool:
        """Drop the version's waits ``uploader``'s upload of ``digest`` releases;
        whether the version asked to become ready once nothing waits."""
        return version_waits.release(self.conn, version_id, digest, uploader)

    def count_version_waits(self, version_id: int) -> int:
        """How many files of the version still wait."""
        return version_waits.remaining(self.conn, version_id)

    def fail_version_waits(self, digest: str, uploader: str, detail: str) -> list[tuple[int, str]]:
        """Mark the matching waits failed; the (version id, path) pairs marked."""
        return version_waits.mark_failed(self.conn, digest, uploader, detail)

    def pending_uploads_of(self, digests: Sequence[str], uploader: str | None) -> dict[str, int]:
        """Digests with a direct upload still being verified (by ``uploader``; None: anyone)."""
        return version_waits.pending_uploads_of(self.conn, digests, uploader)

    def verification_states(
        self, digests: Sequence[str], uploader: str | None
    ) -> dict[str, set[str]]:
        """States of the direct uploads of ``digests`` by ``uploader``, rows locked."""
        return version_waits.verification_states(self.conn, digests, uploader)

    def waiting_digests(self) -> set[str]:
        """Every digest a draft version waits on."""
        return version_waits.waiting_digests(self.conn)

    # -- aliases ----------------------------------------------------------

    def aliases_of_models(self, model_ids: Sequence[int]) -> list[tuple[int, str, int]]:
        """Every alias of the given models as (model id, alias, version number)."""
        return self.hot.aliases_of_models(self.conn, model_ids)

    def newest_by_state(self, model_ids: Sequence[int], per_state: int) -> list[int]:
        """Ids of each model's ``per_state`` highest-numbered versions in each
        state, for a page of models (stages, issue 10); the probes are
        :meth:`HotQueries.newest_by_state`'s."""
        return self.hot.newest_by_state(self.conn, list(dict.fromkeys(model_ids)), per_state)

    def model_aliases(self, model_id: int) -> list[tuple[str, int, int]]:
        """Every alias of a model as (alias, version id, version number), by alias."""
        rows = self.conn.execute(
            sa.select(t.aliases.c.name, t.aliases.c.version_id, t.versions.c.number)
            .join(t.versions, t.versions.c.id == t.aliases.c.version_id)
            .where(t.aliases.c.model_id == model_id)
            .order_by(t.aliases.c.name)
        )
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def get_alias(self, model_id: int, alias: str) -> int | None:
        """The version id an alias points to, or None."""
        found = self.alias_target(model_id, alias)
        return None if found is None else found[0]

    def alias_target(self, model_id: int, alias: str) -> tuple[int, int] | None:
        """(version id, version number) an alias points to, or None."""
        row = self.wq.aliases.target.one_or_none(self.conn, {"mid": model_id, "alias": alias})
        return None if row is None else (int(row[0]), int(row[1]))

    def set_alias(
        self,
        model_id: int,
        alias: str,
        version_id: int | None,
        *,
        from_number: int | None,
        to_number: int | None,
        actor: str,
        reason: str,
    ) -> None:
        """Point (or with ``version_id=None`` remove) an alias, recording history."""
        q = self.wq.aliases
        values = {
            "mid": model_id,
            "alias": alias,
            "vid": version_id,
            "from_number": from_number,
            "to_number": to_number,
            "actor": actor,
            "reason": reason,
            "at": now_us(),
        }
        q.delete.execute(self.conn, values)
        if version_id is not None:
            q.insert.execute(self.conn, values)
        q.history.execute(self.conn, values)

    def alias_history(
        self, model_id: int, namespace: str, model: str, alias: str | None
    ) -> list[AliasMove]:
        """Every move of the model's aliases (or one alias), oldest first."""
        q = sa.select(t.alias_history).where(t.alias_history.c.model_id == model_id)
        if alias is not None:
            q = q.where(t.alias_history.c.name == alias)
        q = q.order_by(t.alias_history.c.id)
        return [
            AliasMove(
                model, namespace, r.name, r.from_version, r.to_version, r.actor, r.reason, r.at
            )
            for r in self.conn.execute(q)
        ]

    def alias_moves_page(
        self,
        model_id: int,
        namespace: str,
        model: str,
        alias: str | None,
        *,
        before: tuple[int, int] | None,
        limit: int,
        newest_first: bool = True,
    ) -> list[tuple[tuple[int, int], AliasMove]]:
        """Up to ``limit`` moves of the model's aliases (or one alias), newest
        first (or oldest first), each with its keyset position ``(at, id)``;
        ``before`` starts after that position in the order asked. Served by
        ``(model_id, at, id)`` or, for one alias, ``(model_id, name, at)``,
        read forwards or backwards."""
        h = t.alias_history
        q = sa.select(h).where(h.c.model_id == model_id)
        if alias is not None:
            q = q.where(h.c.name == alias)
        if before is not None:
            at, hid = before
            if newest_first:
                q = q.where(sa.or_(h.c.at < at, sa.and_(h.c.at == at, h.c.id < hid)))
            else:
                q = q.where(sa.or_(h.c.at > at, sa.and_(h.c.at == at, h.c.id > hid)))
        if newest_first:
            q = q.order_by(h.c.at.desc(), h.c.id.desc()).limit(limit)
        else:
            q = q.order_by(h.c.at.asc(), h.c.id.asc()).limit(limit)
        return [
            (
                (r.at, r.id),
                AliasMove(
                    model, namespace, r.name, r.from_version, r.to_version, r.actor, r.reason, r.at
                ),
            )
            for r in self.conn.execute(q)
        ]

    # -- idempotency ------------------------------------------------------

    def get_idempotent(self, scope: str, key: str) -> tuple[str, int] | None:
        """(request hash, result id) stored for an idempotency key."""
        r = self.wq.get_idempotent.one_or_none(self.conn, {"scope": scope, "key": key})
        return None if r is None else (r[0], r[1])

    def put_idempotent(self, scope: str, key: str, request_hash: str, result_id: int) -> None:
        """Remember the result of a keyed request (in the same transaction)."""
        self.wq.put_idempotent.execute(
            self.conn,
            {
                "scope": scope,
                "key": key,
                "request_hash": request_hash,
                "result_id": result_id,
                "created_at": now_us(),
            },
        )

    # -- events (outbox) --------------------------------------------------

    def append_event(
        self, type_: str, *, actor: str, namespace: str, subject: str, payload: dict[str, Any]
    ) -> int:
        """Write one event row in the current transaction.

        Event ids are commit-ordered, so a reader paging with ``id > after``
        (the event stream, the webhook fan-out) never skips an event that
        commits late. PostgreSQL hands out sequence values at insert time and
        concurrent transactions may commit out of that order, so writers take
        a transaction-scoped advisory lock first: they serialize only over the
        tail of their transaction (the event is written last) and the lock is
        released after the commit is visible. SQLite has one writer already.
        """
        if self.conn.dialect.name == "postgresql":
            self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({EVENT_ORDER_LOCK})")
        row = self.wq.insert_event.one_or_none(
            self.conn,
            {
                "type": type_,
                "at": now_us(),
                "actor": actor,
                "namespace": namespace,
                "subject": subject,
                "payload": json_param(payload),
                "model_key": outbox.model_key_of(namespace, subject),
            },
        )
        return int(row[0])

    def data_revision(self) -> int | None:
        """The id of the newest event this transaction sees (0 if none), or
        None in a transaction that writes (or joined a write batch).

        Every mutation writes an event in its own transaction and event ids
        are commit-ordered (see :meth:`append_event`), so this names the
        committed state a read transaction sees: two snapshots with the same
        revision hold the same data. One seek at the end of the primary key.
        Inside a write, uncommitted events could be rolled back and their ids
        handed out again (SQLite), so there is no revision to give.
        """
        if not self.snapshot:
            return None
        row = self.hot.newest_event.one_or_none(self.conn, {})
        return 0 if row is None or row[0] is None else int(row[0])

    def list_events(
        self, *, after: int = 0, limit: int = 100, namespaces: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Events with id > ``after``, oldest first (only of ``namespaces``, if given)."""
        q = sa.select(*outbox.EVENT_COLUMNS).where(t.events.c.id > after)
        if namespaces is not None:
            q = q.where(t.events.c.namespace.in_(sorted(namespaces)))
        rows = self.conn.execute(q.order_by(t.events.c.id).limit(limit))
        return [dict(r._mapping) for r in rows]


class MetadataStore:
    """Opens transactions on the metadata database: the SQL implementation of
    :class:`~modelyard.store.metadata.ports.MetadataStore`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.hot = HotQueries(engine.dialect)
        self.wq = WriteQueries(engine.dialect)
        self.writer_lock = writer_lock_for(engine)
        self.checkpointer = checkpointer_for(engine, self.writer_lock)
        # SQLite only: one writer at a time, so concurrent writes share a
        # transaction (see groupcommit). PostgreSQL runs writers side by side.
        self.group = None if self.writer_lock is None else GroupCommitter(self)

    def tx(self, conn: sa.Connection) -> Tx:
        """Our queries over a connection whose transaction the caller manages."""
        return Tx(conn, self.hot, self.wq)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only transaction (a consistent snapshot).

        Inside an operation run by a group-commit batch it is that batch's
        transaction instead, so the operation reads what it wrote before the
        batch commits.
        """
        joined = self.group.joined() if self.group is not None else None
        if joined is not None:
            yield joined
            return
        with self.engine.connect() as conn, conn.begin():
            yield Tx(conn, self.hot, self.wq, snapshot=True)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction: serialized on SQLite (writer lock, BEGIN IMMEDIATE).

        Inside an operation run by a group-commit batch it is that batch's
        transaction: a second connection would wait on the database lock the
        batch itself holds.
        """
        joined = self.group.joined() if self.group is not None else None
        if joined is not None:
            yield joined
            return
        if self.writer_lock is None:
            with self.engine.connect().execution_options(**write_options()) as conn, conn.begin():
                yield Tx(conn, self.hot, self.wq)
            return
        with (
            self.writer_lock.hold(),
            self.engine.connect().execution_options(**write_options()) as conn,
            conn.begin(),
        ):
            yield Tx(conn, self.hot, self.wq)
        if self.checkpointer is not None:
            self.checkpointer.nudge()

    def transact(
        self, fn: Callable[[Tx], T], *, attempts: int = 8, retry_conflicts: bool = False
    ) -> T:
        """Run ``fn`` in a write transaction; return its result once committed.

        On SQLite ``fn`` goes to the group committer (see
        :mod:`~modelyard.store.metadata.groupcommit`). Elsewhere each call is
        its own transaction, retried on transient lock failures and, with
        ``retry_conflicts``, on unique-constraint races (the retry sees the
        winner's row). A unique-constraint race left over is ``Conflict``
        ``CONCURRENT_UPDATE``: the service never sees a SQLAlchemy error.
        """
        try:
            return self._transact(fn, attempts=attempts, retry_conflicts=retry_conflicts)
        except SAIntegrityError:
            raise Conflict(
                "a concurrent change conflicted with this one; retry", code="CONCURRENT_UPDATE"
            ) from None

    def _transact(self, fn: Callable[[Tx], T], *, attempts: int, retry_conflicts: bool) -> T:
        if self.group is not None:
            return self.group.run(fn)
        for attempt in range(attempts):
            try:
                with self.write() as tx:
                    return fn(tx)
            except OperationalError as exc:
                if not is_retryable(exc) or attempt == attempts - 1:
                    raise
            except SAIntegrityError:
                if not retry_conflicts or attempt == attempts - 1:
                    raise
            time.sleep(min(0.5, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    def snapshot(self, dest: Path, *, pg_bin: Path | None = None) -> SnapshotInfo:
        """A consistent copy of the whole database in ``dest`` (see ``snapshot.py``)."""
        from modelyard.store.metadata.snapshot import take_snapshot

        return take_snapshot(self.engine, dest, pg_bin=pg_bin)

    def dispose(self) -> None:
        """Stop the checkpoint thread and close pooled connections."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()
