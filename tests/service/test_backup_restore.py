"""Backups and restores on real stores: a backup copies only new digests the
second time, to a directory or an S3 prefix; garbage collection waits for a
backup in progress, so a blob its snapshot lists cannot go before it is
copied; a restore brings every row back, into the same backend or the other
one (SQLite and a directory to PostgreSQL and S3; PostgreSQL to PostgreSQL
through pg_dump/pg_restore), and the restored registry checks clean."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelyard.composition import Services, build_services, open_backup, restore_registry
from modelyard.domain.errors import Conflict, InvalidInput
from modelyard.domain.identity import Principal
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings
from modelyard.store.blobs.base import BackupArea, BlobStore
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.engine import create_engine
from modelyard.store.metadata.migrate import SCHEMA_HEAD
from tests.pgcluster import PG_BIN, fresh_database
from tests.s3server import S3Server

ADMIN = Principal.local("ops")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def push(svc: Services, model: str, meta: dict[str, Any] | None = None, **named: bytes) -> None:
    for data in named.values():
        svc.blob_service.upload([data], actor=ADMIN, size=len(data))
    files = [{"path": p, "digest": sha(d), "size": len(d)} for p, d in named.items()]
    spec = VersionSpec(files=files, metadata=meta or {}, tags={"team": "fraud"})
    svc.registry.create_version(model, spec, actor=ADMIN)


def populate(svc: Services) -> None:
    """A registry with a bit of everything: versions sharing blobs, aliases
    moved back and forth, a hard delete, a run with an artifact, events."""
    svc.registry.create_model("fraud", actor=ADMIN)
    svc.registry.create_model("churn", actor=ADMIN)
    push(svc, "fraud", {"auc": 0.91}, w=b"weights 1", labels=b"labels")
    push(svc, "fraud", {"auc": 0.93}, w=b"weights 2", labels=b"labels")
    push(svc, "fraud", w=b"weights 3")
    push(svc, "churn", {"nested": {"a": [1, 2]}}, churn=b"churn model")
    svc.registry.set_alias("fraud/1", "prod", actor=ADMIN)
    svc.registry.set_alias("fraud/2", "prod", actor=ADMIN, reason="better auc")
    svc.registry.set_alias("fraud/1", "prod", actor=ADMIN, reason="rollback")
    svc.registry.delete_version("fraud/3", actor=ADMIN)
    exp = svc.tracking.create_experiment("exp", actor=ADMIN)
    run = svc.tracking.create_run(exp.id, actor=ADMIN)
    svc.artifacts.upload(
        f"{exp.id}/{run.id}/artifacts/model/model.pkl", iter([b"artifact bytes"]), actor=ADMIN
    )


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of ours, in primary-key order."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            for table in t.metadata.sorted_tables:
                order = list(table.primary_key.columns) or list(table.columns)
                result = conn.execute(sa.select(table).order_by(*order))
                out[table.name] = [tuple(r) for r in result]
            return out
    finally:
        engine.dispose()


def without_backup_events(tables: dict[str, list[tuple[Any, ...]]]) -> None:
    """The last backup's own event is written after its snapshot, so it is not in it."""
    type_at = [c.name for c in t.events.columns].index("type")
    events = tables["events"]
    assert events[-1][type_at] == "registry.backed_up"
    tables["events"] = events[:-1]


def stored(store: BlobStore) -> set[str]:
    return {b.digest for b in store.iter_blobs()}


@pytest.fixture
def svc(tmp_path: Path, db_url: str, store_url: str) -> Iterator[Services]:
    with build_services(Settings(data_dir=tmp_path / "data", db=db_url, store=store_url)) as s:
        yield s


def test_a_second_backup_copies_only_new_digests(svc: Services, tmp_path: Path) -> None:
    populate(svc)
    area = open_backup(svc.settings, str(tmp_path / "backup"))
    first = svc.backup.backup(area, actor=ADMIN, pg_bin=PG_BIN)
    everything = stored(svc.blobs)
    assert first.blobs_copied == first.blobs_stored == len(everything) and not first.blobs_failed
    assert stored(area.blobs) == everything

    push(svc, "fraud", w=b"weights 4", labels=b"labels")
    second = svc.backup.backup(area, actor=ADMIN, pg_bin=PG_BIN)
    assert (second.blobs_copied, second.bytes_copied) == (1, len(b"weights 4"))
    assert second.stamp > first.stamp
    assert (tmp_path / "backup" / "latest").read_text().strip() == second.stamp
    manifest = json.loads(
        (tmp_path / "backup" / "snapshots" / second.stamp / "manifest.json").read_text()
    )
    kind = "postgresql" if svc.settings.database_url().startswith("postgresql") else "sqlite"
    assert manifest["database"] == kind and manifest["schema_revision"] == SCHEMA_HEAD
    assert (tmp_path / "backup" / manifest["metadata"]).stat().st_size > 0
    with svc.metadata.read() as tx:
        assert tx.active_blob_holds() == []  # released
        backed = [e for e in tx.list_events(limit=1000) if e["type"] == "registry.backed_up"]
    assert [e["payload"]["stamp"] for e in backed] == [first.stamp, second.stamp]


class _PausingArea:
    """A real backup area that runs ``between`` once the metadata snapshot is
    taken and before the first blob is copied: the moment a collection could
    remove a blob the snapshot lists."""

    def __init__(self, area: BackupArea, between: Any) -> None:
        self._area = area
        self._between = between
        self.url = area.url

    @property
    def blobs(self) -> BlobStore:
        self._between()
        return self._area.blobs

    def put_file(self, name: str, source: Path) -> None:
        self._area.put_file(name, source)

    def get_file(self, name: str, dest: Path) -> bool:
        return self._area.get_file(name, dest)

    def put_text(self, name: str, text: str) -> None:
        self._area.put_text(name, text)

    def get_text(self, name: str) -> str | None:
        return self._area.get_text(name)


@contextlib.contextmanager
def empty_database_like(settings: Settings, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """An empty database of the kind ``settings`` uses (None: SQLite in the data dir)."""
    if not settings.database_url().startswith("postgresql"):
        yield None
        return
    with fresh_database(request.getfixturevalue("pg_url")) as db:
        yield db


def test_gc_deletes_nothing_while_a_backup_copies(
    svc: Services, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    svc.registry.create_model("fraud", actor=ADMIN)
    push(svc, "fraud", w=b"doomed weights")
    outcome: list[str] = []

    def delete_and_collect() -> None:
        if outcome:
            return
        svc.registry.delete_version("fraud/1", actor=ADMIN)
        try:
            svc.gc.collect(actor=ADMIN, grace_s=0)
        except Conflict as exc:
            outcome.append(exc.code)
        else:
            outcome.append("collected")

    area = _PausingArea(open_backup(svc.settings, str(tmp_path / "backup")), delete_and_collect)
    report = svc.backup.backup(area, actor=ADMIN, pg_bin=PG_BIN)
    assert outcome == ["GC_HELD"]
    assert sha(b"doomed weights") in stored(area.blobs) and report.blobs_failed == {}
    # Once the backup is done, the collection goes ahead.
    assert svc.gc.collect(actor=ADMIN, grace_s=0).digests == [sha(b"doomed weights")]

    # The backup's snapshot still has version 1, and its bytes are in the backup.
    with empty_database_like(svc.settings, request) as db:
        target = Settings(data_dir=tmp_path / "restored", db=db, pg_bin=PG_BIN)
        restore_registry(target, str(tmp_path / "backup"))
        with build_services(target) as restored:
            ver = restored.registry.get_version("fraud/1", actor=ADMIN)
            [file] = ver.files or []
            assert b"".join(restored.blobs.iter_range(file.digest)) == b"doomed weights"
            assert restored.fsck.check(actor=ADMIN).ok
            with restored.metadata.read() as tx:
                assert tx.active_blob_holds() == []  # the backup's hold did not come along


@pytest.mark.postgres
@pytest.mark.s3
def test_sqlite_and_a_directory_restore_into_postgresql_and_s3(
    tmp_path: Path, pg_url: str, s3_server: S3Server
) -> None:
    source = Settings(data_dir=tmp_path / "source")
    with build_services(source) as svc:
        populate(svc)
        report = svc.backup.backup(open_backup(source, str(tmp_path / "backup")), actor=ADMIN)
    assert report.database == "sqlite"
    before = rows(source.database_url())
    without_backup_events(before)

    with fresh_database(pg_url) as db:
        target = Settings(
            data_dir=tmp_path / "target", db=db, store=f"s3://{s3_server.new_bucket()}/reg"
        )
        restored = restore_registry(target, str(tmp_path / "backup"))
        assert (restored.database_from, restored.database, restored.store) == (
            "sqlite",
            "postgresql",
            "s3",
        )
        assert restored.blobs.copied == restored.blobs.considered == 5  # fraud/3 was deleted
        assert not restored.blobs.failed
        after = rows(db)
        assert after == before  # every version, alias, history row, event, file digest
        counts = {k: len(after[k]) for k in ("versions", "files", "alias_history", "artifacts")}
        assert counts == {"versions": 3, "files": 5, "alias_history": 3, "artifacts": 1}
        assert len(after["events"]) > 10

        with build_services(target) as svc:
            check = svc.fsck.check(actor=ADMIN)
            assert check.ok and check.listed == check.hashed == 5
            history = svc.registry.alias_history("fraud", alias="prod", actor=ADMIN)
            assert [h.to_version for h in history] == [1, 2, 1]
            ver = svc.registry.get_version("fraud@prod", actor=ADMIN)
            files = {f.path: f.digest for f in ver.files or []}
            assert files == {"w": sha(b"weights 1"), "labels": sha(b"labels")}
            # The sequences moved past the copied ids: new rows do not collide.
            push(svc, "fraud", w=b"weights after the move")
            assert svc.registry.get_version("fraud/4", actor=ADMIN).number == 4
            svc.registry.create_model("new", actor=ADMIN)


@pytest.mark.postgres
def test_postgresql_restores_into_postgresql_with_pg_restore(tmp_path: Path, pg_url: str) -> None:
    with fresh_database(pg_url) as db:
        source = Settings(data_dir=tmp_path / "source", db=db, pg_bin=PG_BIN)
        with build_services(source) as svc:
            populate(svc)
            report = svc.backup.backup(
                open_backup(source, str(tmp_path / "backup")), actor=ADMIN, pg_bin=PG_BIN
            )
        assert report.database == "postgresql"
        before = rows(db)
    without_backup_events(before)

    with fresh_database(pg_url) as db:
        target = Settings(data_dir=tmp_path / "target", db=db, pg_bin=PG_BIN)
        restore_registry(target, str(tmp_path / "backup"))
        assert rows(db) == before
        with build_services(target) as svc:
            assert svc.fsck.check(actor=ADMIN).ok
            push(svc, "fraud", w=b"weights after the move")

    # A PostgreSQL dump does not load into SQLite.
    with pytest.raises(InvalidInput) as err:
        restore_registry(Settings(data_dir=tmp_path / "lite"), str(tmp_path / "backup"))
    assert err.value.code == "RESTORE_UNSUPPORTED"


@pytest.mark.s3
def test_a_backup_to_an_s3_prefix_restores(tmp_path: Path, s3_server: S3Server) -> None:
    source = Settings(data_dir=tmp_path / "source")
    dest = f"s3://{s3_server.new_bucket()}/backups/reg"
    with build_services(source) as svc:
        populate(svc)
        first = svc.backup.backup(open_backup(source, dest), actor=ADMIN)
        push(svc, "churn", churn=b"churn model 2")
        second = svc.backup.backup(open_backup(source, dest), actor=ADMIN)
    assert (first.blobs_copied, second.blobs_copied) == (6, 1)
    before = rows(source.database_url())
    without_backup_events(before)

    target = Settings(data_dir=tmp_path / "target")
    restore_registry(target, dest)
    assert rows(target.database_url()) == before

    # The first snapshot is still there, by its stamp; a restore needs an empty database.
    with pytest.raises(Conflict) as err:
        restore_registry(target, dest, stamp=first.stamp)
    assert err.value.code == "RESTORE_TARGET_NOT_EMPTY"
    older = Settings(data_dir=tmp_path / "older")
    restore_registry(older, dest, stamp=first.stamp)
    with build_services(older) as svc:
        assert [v.number for v in svc.registry.list_versions("churn", actor=ADMIN).items] == [1]
