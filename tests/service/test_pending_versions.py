"""Versions over direct uploads still being verified (issue 13), on an S3
store (a moto server process over HTTP) and on SQLite and PostgreSQL: such a
version is ``draft`` with the files it waits on; the verifier's transaction
that publishes the blob makes it ready (once, whatever the number of
verifiers); bytes that fail leave it draft with the failure recorded and an
event; its unverified files are never served and it is never moved by hand
meanwhile; gc and fsck leave it alone."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import Conflict, IntegrityError
from modelyard.domain.identity import Principal, Role
from modelyard.service import blobs as blobs_module
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings
from tests.s3server import S3Server

pytestmark = pytest.mark.s3

WRITER = Principal("w", roles={"default": frozenset({Role.WRITER})})
OTHER = Principal("o", roles={"default": frozenset({Role.WRITER})})
ADMIN = Principal.local("ops")


@pytest.fixture
def svc(tmp_path: Path, s3_server: S3Server, db_url: str) -> Iterator[Services]:
    settings = Settings(
        data_dir=tmp_path / "d", db=db_url, store=f"s3://{s3_server.new_bucket()}/reg"
    )
    with build_services(settings) as services:
        services.registry.create_model("m", actor=WRITER)
        yield services


def send(svc: Services, data: bytes, *, actor: Principal = WRITER) -> str:
    """A direct upload as a client makes it: offered, PUT to the presigned URL,
    completed (queued for the background verifier)."""
    digest = hashlib.sha256(data).hexdigest()
    blobs = svc.blob_service
    staged = blobs.offer_direct_upload(actor, size=len(data), digest=digest)
    assert staged is not None and not staged.parts
    assert httpx.put(staged.url, content=data, headers=staged.headers).status_code == 200
    done = blobs.complete_direct_upload(actor, staged.upload_id, digest=digest, size=len(data))
    assert done.verified is False
    return staged.upload_id


def file(path: str, data: bytes) -> dict[str, Any]:
    return {"path": path, "digest": hashlib.sha256(data).hexdigest(), "size": len(data)}


def events(svc: Services, kind: str) -> list[dict[str, Any]]:
    with svc.metadata.read() as tx:
        return [e for e in tx.list_events(after=0, limit=10_000) if e["type"] == kind]


def swap_staged(svc: Services, upload_id: str) -> None:
    """Someone with bucket access swaps the staged bytes (same size) after the
    server checked their size."""
    store: Any = svc.blobs
    key = f"{store.prefix}uploads/{upload_id}"
    size = store.client.head_object(Bucket=store.bucket, Key=key)["ContentLength"]
    store.client.put_object(Bucket=store.bucket, Key=key, Body=os.urandom(size))


def test_a_version_over_a_pending_upload_is_draft_until_the_verifier_publishes_it(
    svc: Services,
) -> None:
    weights, config = os.urandom(60_000), b'{"labels": 3}'
    reg = svc.registry
    send(svc, weights)
    send(svc, config)
    spec = VersionSpec(files=[file("w.bin", weights), file("config.json", config)])
    v = reg.create_version("m", spec, actor=WRITER)
    assert v.state.value == "draft"
    assert v.pending is not None
    assert sorted((p.path, p.state) for p in v.pending) == [
        ("config.json", "pending"),
        ("w.bin", "pending"),
    ]
    [created] = events(svc, "version.created")
    assert created["payload"]["state"] == "draft"
    assert {p["path"] for p in created["payload"]["pending_files"]} == {"w.bin", "config.json"}
    # Knowing the digests is not enough: another writer cannot name these bytes.
    with pytest.raises(IntegrityError) as missing:
        reg.create_version("m", spec, actor=OTHER)
    assert missing.value.code == "BLOB_MISSING"
    # Never the unverified bytes; never moved by hand meanwhile.
    with pytest.raises(Conflict) as unverified:
        svc.blob_service.open_file("m/1", "w.bin", actor=WRITER)
    assert unverified.value.code == "BLOB_UNVERIFIED"
    assert unverified.value.details["path"] == "w.bin"
    for target in ("ready", "published"):
        with pytest.raises(Conflict) as refused:
            reg.transition_version("m/1", target, actor=WRITER)
        assert refused.value.code == "VERSION_UNVERIFIED"
        assert {p["path"] for p in refused.value.details["pending"]} == {"w.bin", "config.json"}
    with pytest.raises(Conflict) as committed:
        reg.commit_files("m/1", [file("w.bin", weights)], actor=WRITER)
    assert committed.value.code == "VERSION_UNVERIFIED"
    assert reg.get_version("m/1", actor=WRITER).state.value == "draft"

    # The first blob verified: still waiting on the other.
    assert svc.blob_service.verify_pending("worker-a", limit=1) == 1
    half = reg.get_version("m/1", actor=WRITER)
    assert half.state.value == "draft" and half.pending is not None and len(half.pending) == 1
    assert events(svc, "version.files_committed") == []
    assert svc.blob_service.verify_pending("worker-a", limit=1) == 1
    ready = reg.get_version("m/1", actor=WRITER)
    assert (ready.state.value, ready.pending) == ("ready", [])
    [moved] = events(svc, "version.files_committed")
    assert moved["subject"] == "default/m/1" and moved["payload"]["verified"] is True
    assert moved["payload"]["before"]["state"] == "draft"
    assert moved["payload"]["after"]["state"] == "ready"
    _, _, chunks = svc.blob_service.open_file("m/1", "w.bin", actor=WRITER)
    assert b"".join(chunks) == weights


def test_a_version_asked_as_a_draft_stays_one_once_verified(svc: Services) -> None:
    data = os.urandom(9_000)
    send(svc, data)
    v = svc.registry.create_version(
        "m", VersionSpec(files=[file("w.bin", data)], draft=True), actor=WRITER
    )
    assert v.state.value == "draft" and v.pending
    assert svc.blob_service.verify_pending("worker-a") == 1
    after = svc.registry.get_version("m/1", actor=WRITER)
    assert (after.state.value, after.pending) == ("draft", [])
    assert events(svc, "version.files_committed") == []
    # Nothing waits any more: its owner moves it when it chooses.
    assert svc.registry.transition_version("m/1", "ready", actor=WRITER).state.value == "ready"


def test_swapped_bytes_leave_the_version_draft_until_the_right_bytes_verify(
    svc: Services,
) -> None:
    data = os.urandom(40_000)
    digest = hashlib.sha256(data).hexdigest()
    reg = svc.registry
    upload_id = send(svc, data)
    reg.create_version("m", VersionSpec(files=[file("w.bin", data)]), actor=WRITER)
    swap_staged(svc, upload_id)
    assert svc.blob_service.verify_pending("worker-a") == 1

    v = reg.get_version("m/1", actor=WRITER)
    assert v.state.value == "draft" and v.pending is not None
    [failed] = v.pending
    assert (failed.path, failed.digest, failed.state) == ("w.bin", digest, "failed")
    assert failed.error is not None and failed.error["code"] == "DIGEST_MISMATCH"
    [event] = events(svc, "version.verification_failed")
    assert event["subject"] == "default/m/1"
    assert (event["payload"]["digest"], event["payload"]["paths"]) == (digest, ["w.bin"])
    assert event["payload"]["upload_id"] == upload_id
    with pytest.raises(Conflict) as download:
        svc.blob_service.open_file("m/1", "w.bin", actor=WRITER)
    assert (download.value.code, download.value.details["state"]) == ("BLOB_UNVERIFIED", "failed")
    with pytest.raises(Conflict) as move:
        reg.transition_version("m/1", "ready", actor=WRITER)
    assert move.value.code == "VERSION_UNVERIFIED"
    assert move.value.details["pending"][0]["path"] == "w.bin"

    # Another writer's right bytes do not release it (the mount rule) ...
    send(svc, data, actor=OTHER)
    assert svc.blob_service.verify_pending("worker-a") == 1
    assert reg.get_version("m/1", actor=WRITER).state.value == "draft"
    # ... its creator's do: uploaded again, verified, ready.
    send(svc, data)
    assert svc.blob_service.verify_pending("worker-a") == 1
    assert reg.get_version("m/1", actor=WRITER).state.value == "ready"
    assert len(events(svc, "version.files_committed")) == 1


def test_a_failed_second_upload_releases_a_draft_its_verified_first_one_covers(
    svc: Services,
) -> None:
    """Two uploads of the same bytes are pending when a version naming them is
    prepared; the first is verified before its transaction, which then waits
    on the second, still pending. If that one fails, the draft still has the
    verified bytes it needs: it becomes ready. It stayed a draft for good:
    uploading the bytes again finds them stored and proves nothing anew."""
    data = os.urandom(30_000)
    reg = svc.registry
    send(svc, data)
    second = send(svc, data)
    swap_staged(svc, second)
    checked = blobs_module.check_manifest

    def then_verify_the_first(*args: Any, **kwargs: Any) -> Any:
        waiting = checked(*args, **kwargs)
        assert svc.blob_service.verify_pending("worker-a", limit=1) == 1
        return waiting

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blobs_module, "check_manifest", then_verify_the_first)
        reg.create_version("m", VersionSpec(files=[file("w.bin", data)]), actor=WRITER)
    v = reg.get_version("m/1", actor=WRITER)
    assert v.state.value == "draft" and [w.state for w in v.pending or []] == ["pending"]

    assert svc.blob_service.verify_pending("worker-a") == 1  # the second fails
    [failed] = events(svc, "blob.verification_failed")
    assert failed["payload"]["upload_id"] == second
    v = reg.get_version("m/1", actor=WRITER)
    assert v.state.value == "ready" and not v.pending
    assert events(svc, "version.verification_failed") == []
    [committed] = events(svc, "version.files_committed")
    assert committed["payload"]["verified"] is True
    _, _, chunks = svc.blob_service.open_file("m/1", "w.bin", actor=WRITER)
    assert b"".join(chunks) == data


def test_concurrent_verifiers_move_each_version_once(svc: Services) -> None:
    # Several versions, each over two uploads, verified by two workers at
    # once: on PostgreSQL they claim with SKIP LOCKED and may release the two
    # files of one version at the same moment.
    payloads = [(os.urandom(5_000 + n), os.urandom(6_000 + n)) for n in range(4)]
    for a, b in payloads:
        send(svc, a)
        send(svc, b)
        svc.registry.create_version(
            "m", VersionSpec(files=[file("a.bin", a), file("b.bin", b)]), actor=WRITER
        )
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(worker: str) -> None:
        try:
            start.wait()
            while svc.blob_service.verify_pending(worker, limit=1):
                pass
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"worker-{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    moved = events(svc, "version.files_committed")
    assert sorted(e["subject"] for e in moved) == [f"default/m/{n}" for n in range(1, 5)]
    for n in range(1, 5):
        assert svc.registry.get_version(f"m/{n}", actor=WRITER).state.value == "ready"


def test_a_lost_claim_does_not_move_the_version_again(svc: Services) -> None:
    data = os.urandom(7_000)
    send(svc, data)
    svc.registry.create_version("m", VersionSpec(files=[file("w.bin", data)]), actor=WRITER)
    blobs = svc.blob_service
    # A worker claims and dies (its lease already out); another redoes it.
    [row] = svc.registry.run_in_transaction(
        lambda tx: tx.claim_blob_verifications(lease_s=0, worker="dead", limit=1)
    )
    assert blobs.verify_pending("worker-b") == 1
    assert svc.registry.get_version("m/1", actor=WRITER).state.value == "ready"
    # The dead worker's late outcome finds its claim lost: nothing moves twice.
    assert not svc.registry.run_in_transaction(
        lambda tx: tx.finish_blob_verification(
            row.upload_id, worker="dead", state="verified", detail=None
        )
    )
    assert len(events(svc, "version.files_committed")) == 1


def test_gc_and_fsck_leave_a_waiting_draft_alone(svc: Services) -> None:
    data = os.urandom(12_000)
    digest = hashlib.sha256(data).hexdigest()
    send(svc, data)
    svc.registry.create_version("m", VersionSpec(files=[file("w.bin", data)]), actor=WRITER)
    report = svc.fsck.check(actor=ADMIN)
    assert report.ok and report.pending == 1 and report.blobs == []
    gc = svc.gc.collect(actor=ADMIN, grace_s=0)
    assert gc.uploads == 0  # the staged bytes wait for the verifier
    assert svc.blob_service.verify_pending("worker-a") == 1
    assert svc.registry.get_version("m/1", actor=WRITER).state.value == "ready"
    svc.gc.collect(actor=ADMIN, grace_s=0)
    assert svc.blobs.exists(digest)  # listed by the version's manifest now
    after = svc.fsck.check(actor=ADMIN)
    assert after.ok and after.pending == 0


def test_inline_verification_never_makes_a_draft(
    tmp_path: Path, s3_server: S3Server, db_url: str
) -> None:
    settings = Settings(
        data_dir=tmp_path / "d",
        db=db_url,
        store=f"s3://{s3_server.new_bucket()}/reg",
        direct_verify="inline",
    )
    with build_services(settings) as svc:
        svc.registry.create_model("m", actor=WRITER)
        data = os.urandom(8_000)
        digest = hashlib.sha256(data).hexdigest()
        staged = svc.blob_service.offer_direct_upload(WRITER, size=len(data), digest=digest)
        assert staged is not None
        assert httpx.put(staged.url, content=data, headers=staged.headers).status_code == 200
        assert svc.blob_service.complete_direct_upload(WRITER, staged.upload_id, digest=digest)
        v = svc.registry.create_version("m", VersionSpec(files=[file("w.bin", data)]), actor=WRITER)
        assert (v.state.value, v.pending) == ("ready", [])
