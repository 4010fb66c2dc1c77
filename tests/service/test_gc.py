"""Garbage collection (``service/gc.py``) and hard deletes, on every database
and every blob store backend: what goes, what stays, and the two ways a
version commit can interleave with a collection, each forced step by step."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import Conflict, IntegrityError, PermissionDenied
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("ops")
NS_ADMIN = Principal("nsadmin", roles={"default": frozenset({Role.ADMIN})})


@pytest.fixture
def svc(tmp_path: Path, db_url: str, store_url: str) -> Iterator[Services]:
    with build_services(Settings(data_dir=tmp_path / "data", db=db_url, store=store_url)) as s:
        s.registry.create_model("m", actor=ADMIN)
        yield s


def upload(svc: Services, data: bytes) -> str:
    return svc.blob_service.upload([data], actor=ADMIN, size=len(data)).digest


def files(**named: bytes) -> list[dict[str, object]]:
    return [
        {"path": path, "digest": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for path, data in named.items()
    ]


def stored(svc: Services) -> set[str]:
    return {b.digest for b in svc.blobs.iter_blobs()}


def events(svc: Services, type_: str) -> list[dict[str, object]]:
    with svc.metadata.read() as tx:
        return [e for e in tx.list_events(limit=1000) if e["type"] == type_]


def test_only_unreferenced_blobs_past_the_grace_period_go(svc: Services) -> None:
    used, loose = upload(svc, b"weights"), upload(svc, b"left over")
    svc.registry.create_version("m", VersionSpec(files=files(w=b"weights")), actor=ADMIN)

    # Young blobs are left alone: their version may be about to commit.
    young = svc.gc.collect(actor=ADMIN, grace_s=3600)
    assert (young.blobs, young.bytes, young.scanned) == (0, 0, 2)

    dry = svc.gc.collect(actor=ADMIN, grace_s=0, dry_run=True)
    assert (dry.blobs, dry.bytes, dry.digests) == (1, len(b"left over"), [loose])
    assert stored(svc) == {used, loose}
    assert events(svc, "blobs.collected") == []

    report = svc.gc.collect(actor=ADMIN, grace_s=0)
    assert (report.blobs, report.bytes, report.digests) == (1, len(b"left over"), [loose])
    assert stored(svc) == {used}
    [event] = events(svc, "blobs.collected")
    assert event["payload"]["blobs_freed"] == 1  # type: ignore[index]
    assert event["payload"]["bytes_freed"] == len(b"left over")  # type: ignore[index]
    # The version still reads; a second run finds nothing.
    ver = svc.registry.get_version("m/1", actor=ADMIN)
    assert b"".join(svc.blobs.iter_range(ver.files[0].digest)) == b"weights"  # type: ignore[index]
    assert svc.gc.collect(actor=ADMIN, grace_s=0).blobs == 0


def test_gc_is_for_instance_admins(svc: Services) -> None:
    with pytest.raises(PermissionDenied):
        svc.gc.collect(actor=NS_ADMIN, grace_s=0)


def test_hard_deletes_make_unique_blobs_collectable(svc: Services) -> None:
    for data in (b"only v1", b"shared", b"only v2"):
        upload(svc, data)
    reg = svc.registry
    reg.create_version("m", VersionSpec(files=files(a=b"only v1", s=b"shared")), actor=ADMIN)
    reg.create_version("m", VersionSpec(files=files(s=b"shared", b=b"only v2")), actor=ADMIN)
    reg.set_alias("m/1", "prod", actor=ADMIN)
    reg.transition_version("m/1", "published", actor=ADMIN)

    with pytest.raises(PermissionDenied):
        reg.delete_version("m/1", actor=Principal("w", roles={"default": frozenset({Role.WRITER})}))
    with pytest.raises(Conflict) as caught:
        reg.delete_version("m/1", actor=NS_ADMIN)
    assert caught.value.code == "VERSION_PUBLISHED"
    reg.delete_version("m/1", force=True, actor=NS_ADMIN)

    [event] = events(svc, "version.deleted")
    assert event["subject"] == "default/m/1" and event["actor"] == "nsadmin"
    assert event["payload"]["aliases_removed"] == ["prod"]  # type: ignore[index]
    assert [v.number for v in reg.list_versions("m", actor=ADMIN).items] == [2]
    report = svc.gc.collect(actor=ADMIN, grace_s=0)
    assert report.digests == [hashlib.sha256(b"only v1").hexdigest()]

    # The number is never handed out again.
    assert reg.create_version("m", VersionSpec(), actor=ADMIN).number == 3
    reg.delete_model("m", actor=NS_ADMIN)
    report = svc.gc.collect(actor=ADMIN, grace_s=0)
    assert sorted(report.digests) == sorted(
        hashlib.sha256(d).hexdigest() for d in (b"shared", b"only v2")
    )
    assert stored(svc) == set()


def test_a_commit_that_lands_after_the_plan_keeps_its_blob(svc: Services) -> None:
    """Interleaving 1: the version commits between gc's listing and its re-check."""
    digest = upload(svc, b"fresh weights")
    plan = svc.gc.plan(actor=ADMIN, grace_s=0)
    assert digest in plan.candidates  # unreferenced when listed

    svc.registry.create_version("m", VersionSpec(files=files(w=b"fresh weights")), actor=ADMIN)

    marked = svc.gc.mark(plan, actor=ADMIN)
    report = svc.gc.finish(plan, marked, actor=ADMIN)
    assert (report.blobs, report.kept) == (0, 1)
    assert digest in stored(svc)
    ver = svc.registry.get_version("m/1", actor=ADMIN)
    assert b"".join(svc.blobs.iter_range(ver.files[0].digest)) == b"fresh weights"  # type: ignore[index]


def test_a_commit_after_the_mark_is_refused_and_can_be_redone(svc: Services) -> None:
    """Interleaving 2: gc has re-checked and recorded the deletion; a commit
    that already saw the blob stored (before its transaction) must not land."""
    digest = upload(svc, b"doomed")
    plan = svc.gc.plan(actor=ADMIN, grace_s=0)
    marked = svc.gc.mark(plan, actor=ADMIN)
    assert digest in marked and svc.blobs.exists(digest)

    reg = svc.registry
    with pytest.raises(IntegrityError) as caught:
        reg.create_version("m", VersionSpec(files=files(w=b"doomed")), actor=ADMIN)
    assert caught.value.code == "BLOB_MISSING"
    reg.create_version("m", VersionSpec(draft=True), actor=ADMIN)
    with pytest.raises(IntegrityError) as caught:
        reg.commit_files("m/1", files(w=b"doomed"), actor=ADMIN)
    assert caught.value.code == "BLOB_MISSING"

    svc.gc.finish(plan, marked, actor=ADMIN)
    assert not svc.blobs.exists(digest)
    # Nothing lists it; the client uploads again and commits.
    upload(svc, b"doomed")
    svc.registry.commit_files("m/1", files(w=b"doomed"), actor=ADMIN)
    assert svc.registry.get_version("m/1", actor=ADMIN).state.value == "ready"


def test_a_collection_that_died_midway_is_finished_by_the_next(svc: Services) -> None:
    digest = upload(svc, b"half collected")
    plan = svc.gc.plan(actor=ADMIN, grace_s=0)
    svc.gc.mark(plan, actor=ADMIN)  # ... and the process dies here
    with pytest.raises(IntegrityError):
        svc.registry.create_version("m", VersionSpec(files=files(w=b"half collected")), actor=ADMIN)
    report = svc.gc.collect(actor=ADMIN, grace_s=3600)  # young or not, it is marked
    assert report.digests == [digest]
    assert not svc.blobs.exists(digest)
    upload(svc, b"half collected")
    svc.registry.create_version("m", VersionSpec(files=files(w=b"half collected")), actor=ADMIN)


@pytest.mark.postgres
def test_gc_waits_for_a_commit_in_flight_and_then_keeps_its_blob(
    tmp_path: Path, pg_url: str
) -> None:
    """The interleaving inside the transactions, on PostgreSQL where they run
    at once: a version commit has checked that its blob is not being deleted
    and is still open when gc re-checks references. gc must wait for it (the
    collection lock) and then see its manifest. Each step waits on the lock
    state PostgreSQL reports, not on time."""
    import threading

    import sqlalchemy as sa

    from tests.pgcluster import fresh_database, normalize_url
    from tests.receiver import wait_for

    with (
        fresh_database(pg_url) as url,
        build_services(Settings(data_dir=tmp_path / "d", db=url)) as svc,
    ):
        svc.registry.create_model("m", actor=ADMIN)
        digest = upload(svc, b"in flight")
        plan = svc.gc.plan(actor=ADMIN, grace_s=0)
        assert digest in plan.candidates

        probe = sa.create_engine(normalize_url(url))

        def waiting(locktype: str) -> int:
            with probe.connect() as c:
                return int(
                    c.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = :t"
                        ),
                        {"t": locktype},
                    ).scalar_one()
                )

        results: dict[str, object] = {}

        def commit() -> None:
            try:
                results["version"] = svc.registry.create_version(
                    "m", VersionSpec(files=files(w=b"in flight")), actor=ADMIN
                ).number
            except BaseException as exc:
                results["version"] = exc

        def collect() -> None:
            results["marked"] = svc.gc.mark(plan, actor=ADMIN)

        try:
            with probe.connect() as holder:
                # Hold the model's row: the commit takes the collection lock
                # (shared) and checks for deletions first, then queues here.
                holder.execute(sa.text("SELECT id FROM models WHERE name = 'm' FOR UPDATE"))
                committer = threading.Thread(target=commit)
                committer.start()
                wait_for(lambda: waiting("transactionid") + waiting("tuple"), what="commit queued")
                collector = threading.Thread(target=collect)
                collector.start()
                wait_for(lambda: waiting("advisory"), what="gc waiting for the collection lock")
                holder.rollback()  # the commit goes on and lands; then gc re-checks
            committer.join(30)
            collector.join(30)
        finally:
            probe.dispose()
        assert results["version"] == 1, results
        assert results["marked"] == {}
        assert svc.blobs.exists(digest)
        ver = svc.registry.get_version("m/1", actor=ADMIN)
        assert ver.files is not None and ver.files[0].digest == digest


def test_run_artifacts_and_open_multipart_parts_are_kept(svc: Services) -> None:
    """Blobs named by the MLflow artifact index or by a part of an open
    multipart upload are in use, though no version lists them."""
    from modelyard.service.artifact_uploads import MultipartUploads

    exp = svc.tracking.create_experiment("gc-artifacts", actor=ADMIN)
    run = svc.tracking.create_run(exp.id, actor=ADMIN)
    root = f"{exp.id}/{run.id}/artifacts"
    svc.artifacts.upload(f"{root}/model.bin", iter([b"artifact bytes"]), actor=ADMIN)
    mpu = MultipartUploads(svc.artifacts)
    opened = mpu.create(root, "/local/big.bin", 2, actor=ADMIN)
    part = mpu.begin_part(opened.upload_id, 1, None)
    part.write(b"part one")
    mpu.finish_part(opened.upload_id, 1, part.commit())
    loose = upload(svc, b"nobody's")

    report = svc.gc.collect(actor=ADMIN, grace_s=0)
    assert report.digests == [loose]
    kept = {hashlib.sha256(b).hexdigest() for b in (b"artifact bytes", b"part one")}
    assert kept <= stored(svc)
    _entry, chunks = svc.artifacts.open(f"{root}/model.bin", actor=ADMIN)
    assert b"".join(chunks) == b"artifact bytes"
