"""``FsckService`` on every database and both blob stores: a clean registry
checks clean; a deleted blob, corrupted bytes (listed or not), a wrong size
and a dangling alias are reported with who uses them; a repair from a backup
puts the blobs back, verified, and what no backup holds stays reported."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelyard.composition import Services, build_services, open_backup
from modelyard.domain.errors import PermissionDenied
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings
from modelyard.store.blobs.local import LocalBlobStore
from modelyard.store.blobs.s3 import S3BlobStore
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.engine import create_engine

ADMIN = Principal.local("ops")
NS_ADMIN = Principal("nsadmin", roles={"default": frozenset({Role.ADMIN})})


@pytest.fixture
def svc(tmp_path: Path, db_url: str, store_url: str) -> Iterator[Services]:
    with build_services(Settings(data_dir=tmp_path / "data", db=db_url, store=store_url)) as s:
        s.registry.create_model("m", actor=ADMIN)
        s.registry.create_model("other", actor=ADMIN)
        yield s


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def push(svc: Services, model: str, **named: bytes) -> None:
    for data in named.values():
        svc.blob_service.upload([data], actor=ADMIN, size=len(data))
    files = [{"path": p, "digest": sha(d), "size": len(d)} for p, d in named.items()]
    svc.registry.create_version(model, VersionSpec(files=files), actor=ADMIN)


def overwrite(svc: Services, digest: str, data: bytes) -> None:
    """Damage a stored blob behind the registry's back, as a disk or an
    operator would: new bytes under the old name."""
    store = svc.blobs
    if isinstance(store, LocalBlobStore):
        path = store.path_for(digest)
        path.chmod(0o644)
        path.write_bytes(data)
    else:
        assert isinstance(store, S3BlobStore)
        store.client.put_object(Bucket=store.bucket, Key=store.key_for(digest), Body=data)


def remove(svc: Services, digest: str) -> None:
    store = svc.blobs
    if isinstance(store, LocalBlobStore):
        store.path_for(digest).unlink()
    else:
        assert isinstance(store, S3BlobStore)
        store.client.delete_object(Bucket=store.bucket, Key=store.key_for(digest))


def test_a_clean_registry_checks_clean(svc: Services) -> None:
    push(svc, "m", w=b"weights", labels=b"cats")
    push(svc, "m", w=b"weights", labels=b"dogs")
    svc.blob_service.upload([b"not listed yet"], actor=ADMIN, size=14)
    report = svc.fsck.check(actor=ADMIN)
    assert report.ok and report.blobs == [] and report.pointers == []
    assert (report.listed, report.stored, report.unlisted, report.hashed) == (3, 4, 1, 4)
    assert report.bytes_hashed == len(b"weights" + b"cats" + b"dogs" + b"not listed yet")
    assert report.to_dict()["ok"] is True


def test_fsck_is_for_instance_admins(svc: Services) -> None:
    with pytest.raises(PermissionDenied):
        svc.fsck.check(actor=NS_ADMIN)


def test_missing_and_corrupt_blobs_are_reported_with_their_users(svc: Services) -> None:
    push(svc, "m", w=b"weights", labels=b"cats")
    push(svc, "other", shared=b"cats")
    remove(svc, sha(b"weights"))
    overwrite(svc, sha(b"cats"), b"dogs")  # same size, other bytes
    loose = svc.blob_service.upload([b"loose bytes"], actor=ADMIN, size=11).digest
    overwrite(svc, loose, b"LOOSE BYTES")

    report = svc.fsck.check(actor=ADMIN)
    assert not report.ok
    found = {d.digest: d for d in report.blobs}
    assert set(found) == {sha(b"weights"), sha(b"cats"), loose}
    missing = found[sha(b"weights")]
    assert (missing.problem, missing.stored_size, missing.listed_sizes) == ("missing", None, [7])
    assert missing.used_by == ["version default/m/1 w"]
    corrupt = found[sha(b"cats")]
    assert (corrupt.problem, corrupt.actual_digest) == ("corrupt", sha(b"dogs"))
    assert corrupt.used_by == ["version default/m/1 labels", "version default/other/1 shared"]
    # Nothing lists it, but a new upload of those bytes would land on it.
    unlisted = found[loose]
    assert (unlisted.problem, unlisted.listed_sizes, unlisted.used_by) == ("corrupt", [], [])
    as_json = report.to_dict()
    assert as_json["ok"] is False and len(as_json["damaged_blobs"]) == 3

    # Without hashing only the missing blob shows.
    quick = svc.fsck.check(actor=ADMIN, verify_bytes=False)
    assert [d.digest for d in quick.blobs] == [sha(b"weights")] and quick.hashed == 0


def test_a_blob_stored_at_another_size_is_reported(svc: Services) -> None:
    push(svc, "m", w=b"weights")
    overwrite(svc, sha(b"weights"), b"weights, longer")
    [damage] = svc.fsck.check(actor=ADMIN).blobs
    # Its bytes do not hash to its name: corrupt, whatever the size says.
    assert (damage.problem, damage.stored_size) == ("corrupt", len(b"weights, longer"))
    [quick] = svc.fsck.check(actor=ADMIN, verify_bytes=False).blobs
    assert (quick.problem, quick.listed_sizes, quick.stored_size) == ("size", [7], 15)


def test_dangling_pointers_are_reported(svc: Services) -> None:
    push(svc, "m", w=b"weights")
    push(svc, "other", w=b"other weights")
    svc.registry.set_alias("m/1", "prod", actor=ADMIN)
    engine = create_engine(svc.settings.database_url())
    try:
        with engine.begin() as conn:
            other = conn.execute(
                sa.select(t.versions.c.id)
                .join(t.models, t.models.c.id == t.versions.c.model_id)
                .where(t.models.c.name == "other")
            ).scalar_one()
            # A hand edit (or a bad restore) points m@prod at another model's version.
            conn.execute(sa.update(t.aliases).values(version_id=other))
    finally:
        engine.dispose()
    report = svc.fsck.check(actor=ADMIN)
    assert not report.ok and report.blobs == []
    assert report.pointers == [
        {
            "kind": "alias",
            "subject": "default/m@prod",
            "detail": f"version of another model (version id {other})",
        }
    ]


def test_repair_from_a_backup_puts_blobs_back(svc: Services, tmp_path: Path) -> None:
    push(svc, "m", w=b"weights", labels=b"cats")
    area = open_backup(svc.settings, str(tmp_path / "backup"))
    svc.backup.backup(area, actor=ADMIN)
    push(svc, "m", w=b"weights 2")  # after the backup: not in it
    remove(svc, sha(b"weights"))
    overwrite(svc, sha(b"cats"), b"dogs")
    remove(svc, sha(b"weights 2"))

    report = svc.fsck.check(actor=ADMIN, repair_from=area.blobs, repair_source=area.url)
    found = {d.digest: d for d in report.blobs}
    assert found[sha(b"weights")].repaired and found[sha(b"cats")].repaired
    lost = found[sha(b"weights 2")]
    assert not lost.repaired and lost.repair_error == "not in the backup"
    assert report.repaired == 2 and not report.ok

    after = svc.fsck.check(actor=ADMIN)
    assert [d.digest for d in after.blobs] == [sha(b"weights 2")]
    assert b"".join(svc.blobs.iter_range(sha(b"cats"))) == b"cats"
    assert b"".join(svc.blobs.iter_range(sha(b"weights"))) == b"weights"
    with svc.metadata.read() as tx:
        [event] = [e for e in tx.list_events(limit=100) if e["type"] == "blobs.repaired"]
    assert sorted(event["payload"]["digests"]) == sorted([sha(b"weights"), sha(b"cats")])


def test_a_damaged_backup_copy_is_not_used(svc: Services, tmp_path: Path) -> None:
    push(svc, "m", w=b"weights")
    area = open_backup(svc.settings, str(tmp_path / "backup"))
    svc.backup.backup(area, actor=ADMIN)
    backup_blobs = area.blobs
    assert isinstance(backup_blobs, LocalBlobStore)
    path = backup_blobs.path_for(sha(b"weights"))
    path.chmod(0o644)
    path.write_bytes(b"WEIGHTS")
    remove(svc, sha(b"weights"))
    [damage] = svc.fsck.check(actor=ADMIN, repair_from=backup_blobs).blobs
    assert not damage.repaired and str(damage.repair_error).startswith("DIGEST_MISMATCH")
    assert not svc.blobs.exists(sha(b"weights"))


def test_gc_keeps_the_blobs_of_run_artifacts(svc: Services) -> None:
    """The artifact index lists blobs as manifests do: gc must not free them,
    and fsck checks them (it once counted manifests only)."""
    exp = svc.tracking.create_experiment("exp", actor=ADMIN)
    run = svc.tracking.create_run(exp.id, actor=ADMIN)
    path = f"{exp.id}/{run.id}/artifacts/model.pkl"
    entry = svc.artifacts.upload(path, iter([b"artifact bytes"]), actor=ADMIN)
    assert svc.gc.collect(actor=ADMIN, grace_s=0).blobs == 0
    _, chunks = svc.artifacts.open(path, actor=ADMIN)
    assert b"".join(chunks) == b"artifact bytes"

    remove(svc, entry.digest)
    [damage] = svc.fsck.check(actor=ADMIN).blobs
    assert (damage.problem, damage.used_by) == ("missing", [f"artifact {run.id}/model.pkl"])
