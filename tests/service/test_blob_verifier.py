"""The background verifier of direct uploads (issue 13), on an S3 store (a
moto server process over HTTP): a completed direct upload is not a blob until
a verifier has read it back; bytes swapped after the client sent them are
caught, removed and reported; claims keep two workers off one upload and a
dead worker's claim expires; gc spares what waits for verification."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import IntegrityError
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings
from tests.s3server import S3Server

pytestmark = pytest.mark.s3

WRITER = Principal("w", roles={"default": frozenset({Role.WRITER})})
OTHER = Principal("o", roles={"default": frozenset({Role.WRITER})})
ADMIN = Principal.local("ops")


@pytest.fixture
def svc(tmp_path: Path, s3_server: S3Server) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path / "d", store=f"s3://{s3_server.new_bucket()}/reg")
    with build_services(settings) as services:
        assert services.blob_service.verify_in_background
        yield services


def send(svc: Services, data: bytes, *, actor: Principal = WRITER) -> str:
    """Offer a direct upload and PUT ``data`` to its presigned URL, as a client does."""
    staged = svc.blob_service.offer_direct_upload(
        actor, size=len(data), digest=hashlib.sha256(data).hexdigest()
    )
    assert staged is not None and not staged.parts
    assert httpx.put(staged.url, content=data, headers=staged.headers).status_code == 200
    return staged.upload_id


def staged_keys(svc: Services) -> list[str]:
    store = svc.blobs
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=f"{store.prefix}uploads/")  # type: ignore[attr-defined]
    return [o["Key"] for o in listed.get("Contents", [])]


def failure_events(svc: Services) -> list[dict[str, object]]:
    with svc.metadata.read() as tx:
        events = tx.list_events(after=0, limit=1000)
    return [e for e in events if e["type"] == "blob.verification_failed"]


def test_a_direct_upload_is_a_blob_only_once_the_verifier_read_it(svc: Services) -> None:
    data = os.urandom(70_000)
    digest = hashlib.sha256(data).hexdigest()
    blobs = svc.blob_service
    upload_id = send(svc, data)
    done = blobs.complete_direct_upload(WRITER, upload_id, digest=digest, size=len(data))
    assert (done.digest, done.size, done.verified) == (digest, len(data), False)
    # Queued, not published: only its uploader may name it, and the version
    # that does waits as a draft (tests/service/test_pending_versions.py);
    # no one else sees the upload.
    assert blobs.direct_upload_status(WRITER, upload_id).state == "pending"
    assert not svc.blobs.exists(digest)
    svc.registry.create_model("m", actor=WRITER)
    spec = VersionSpec(files=[{"path": "w.bin", "digest": digest, "size": len(data)}])
    with pytest.raises(IntegrityError) as caught:
        svc.registry.create_version("m", spec, actor=OTHER)
    assert caught.value.code == "BLOB_MISSING"
    assert svc.registry.create_version("m", spec, actor=WRITER).state.value == "draft"
    with pytest.raises(Exception) as hidden:
        blobs.direct_upload_status(OTHER, upload_id)
    assert getattr(hidden.value, "code", None) == "UPLOAD_NOT_FOUND"
    # Completing again (a client's retry) queues nothing more.
    again = blobs.complete_direct_upload(WRITER, upload_id, digest=digest, size=len(data))
    assert again.verified is False

    assert blobs.verify_pending("worker-a") == 1
    assert blobs.verify_pending("worker-a") == 0
    status = blobs.direct_upload_status(WRITER, upload_id)
    assert (status.state, status.error) == ("verified", None)
    assert b"".join(svc.blobs.iter_range(digest)) == data
    assert staged_keys(svc) == []
    # Verified: the draft became ready, and the uploader may name the blob
    # (the mount rule recorded it).
    assert svc.registry.get_version("m/1", actor=WRITER).state.value == "ready"
    assert svc.registry.create_version("m", spec, actor=WRITER).number == 2
    assert blobs.complete_direct_upload(WRITER, upload_id, digest=digest).verified


def test_bytes_swapped_after_the_upload_are_caught_removed_and_reported(svc: Services) -> None:
    data = os.urandom(50_000)
    digest = hashlib.sha256(data).hexdigest()
    blobs = svc.blob_service
    upload_id = send(svc, data)
    done = blobs.complete_direct_upload(WRITER, upload_id, digest=digest, size=len(data))
    assert done.verified is False
    # Someone with access to the bucket swaps the staged bytes (same size)
    # after the client sent them and the server checked their size.
    [key] = staged_keys(svc)
    store = svc.blobs
    swapped = os.urandom(len(data))
    store.client.put_object(Bucket=store.bucket, Key=key, Body=swapped)  # type: ignore[attr-defined]

    assert blobs.verify_pending("worker-a") == 1
    status = blobs.direct_upload_status(WRITER, upload_id)
    assert status.state == "failed" and status.error is not None
    assert status.error["code"] == "DIGEST_MISMATCH"
    assert status.error["details"]["actual"] == hashlib.sha256(swapped).hexdigest()
    assert not svc.blobs.exists(digest)
    assert staged_keys(svc) == []  # the swapped bytes are gone, not kept anywhere
    [event] = failure_events(svc)
    assert event["actor"] == "w"
    assert event["payload"]["upload_id"] == upload_id  # type: ignore[index]
    assert event["payload"]["error"]["code"] == "DIGEST_MISMATCH"  # type: ignore[index]
    # The client meets the refusal when it completes again.
    with pytest.raises(IntegrityError) as caught:
        blobs.complete_direct_upload(WRITER, upload_id, digest=digest)
    assert caught.value.code == "DIGEST_MISMATCH"


def test_claims_keep_workers_apart_and_a_dead_workers_claim_expires(svc: Services) -> None:
    blobs = svc.blob_service
    uploads = []
    for n in range(2):
        data = os.urandom(10_000 + n)
        upload_id = send(svc, data)
        blobs.complete_direct_upload(WRITER, upload_id, digest=hashlib.sha256(data).hexdigest())
        uploads.append(upload_id)

    def claim(worker: str, lease_s: float) -> list[str]:
        rows = svc.registry.run_in_transaction(
            lambda tx: tx.claim_blob_verifications(lease_s=lease_s, worker=worker, limit=1)
        )
        return [r.upload_id for r in rows]

    # A live worker's claim (a long lease) keeps the others off its upload ...
    assert claim("alive", 3600) == [uploads[0]]
    # ... a worker that died right after claiming (its lease already out) does not.
    assert claim("dead", 0) == [uploads[1]]
    assert blobs.verify_pending("worker-b", limit=5) == 1
    assert blobs.direct_upload_status(WRITER, uploads[1]).state == "verified"
    assert blobs.direct_upload_status(WRITER, uploads[0]).state == "pending"
    # The dead worker's late outcome is not recorded: it lost the claim.
    assert not svc.registry.run_in_transaction(
        lambda tx: tx.finish_blob_verification(
            uploads[1], worker="dead", state="failed", detail=None
        )
    )
    assert blobs.direct_upload_status(WRITER, uploads[1]).state == "verified"
    # The live worker renews its lease while it reads; the claim stays its own.
    assert blobs.renew_verification(uploads[0], "alive", 3600)
    assert not blobs.renew_verification(uploads[0], "worker-b", 3600)


def test_gc_spares_uploads_waiting_for_verification(svc: Services) -> None:
    data = os.urandom(20_000)
    digest = hashlib.sha256(data).hexdigest()
    blobs = svc.blob_service
    waiting = send(svc, data)
    blobs.complete_direct_upload(WRITER, waiting, digest=digest)
    abandoned = send(svc, b"never completed")
    assert len(staged_keys(svc)) == 2
    report = svc.gc.collect(actor=ADMIN, grace_s=0)
    assert report.uploads == 1
    assert [k.rsplit("/", 1)[-1] for k in staged_keys(svc)] == [waiting]
    assert abandoned not in str(staged_keys(svc))
    assert blobs.verify_pending("worker-a") == 1
    assert blobs.direct_upload_status(WRITER, waiting).state == "verified"


def test_inline_verification_reads_back_in_the_request(tmp_path: Path, s3_server: S3Server) -> None:
    settings = Settings(
        data_dir=tmp_path / "d",
        store=f"s3://{s3_server.new_bucket()}/reg",
        direct_verify="inline",
    )
    with build_services(settings) as svc:
        blobs = svc.blob_service
        data = os.urandom(30_000)
        digest = hashlib.sha256(data).hexdigest()
        done = blobs.complete_direct_upload(WRITER, send(svc, data), digest=digest)
        assert done.verified and svc.blobs.exists(digest)
        other = os.urandom(30_000)
        with pytest.raises(IntegrityError) as caught:
            blobs.complete_direct_upload(
                WRITER, send(svc, other), digest=hashlib.sha256(data[::-1]).hexdigest()
            )
        assert caught.value.code == "DIGEST_MISMATCH"
        assert staged_keys(svc) == []
        with svc.metadata.read() as tx:
            assert tx.pending_verification_uploads() == []
