"""The blob store Protocol's promises, on every backend: a local directory and
S3 (a moto server process over HTTP). Each test takes ``store_url`` and so
runs once per backend (``tests/conftest_s3.py``)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modelyard.composition import build_services
from modelyard.domain.errors import IntegrityError, InvalidInput, StorageUnavailable
from modelyard.settings import Settings
from modelyard.store.blobs import BlobStore, S3Options, open_blob_store
from modelyard.store.blobs.local import LocalBlobStore
from modelyard.store.blobs.s3 import S3BlobStore
from tests.pgcluster import free_port
from tests.receiver import wait_for
from tests.s3server import S3Server

PART = 5 << 20
"""The smallest part S3 takes: big blobs in these tests span a few of them."""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(store_url: str) -> BlobStore:
    return open_blob_store(store_url, s3=S3Options(part_size=PART))


def put(store: BlobStore, data: bytes, *, digest: str | None = None, step: int = 1 << 20) -> str:
    """Stream ``data`` through a writer in ``step``-sized chunks, honouring ``ready``."""
    w = store.writer(len(data))
    try:
        for i in range(0, len(data), step):
            backlog = w.ready()
            if backlog is not None:
                backlog.result()
            w.write(data[i : i + step])
        return w.commit(expected_digest=digest, expected_size=len(data))
    except BaseException:
        w.abort()
        raise


def staged(store: BlobStore) -> list[str]:
    """What uploads in flight (or left behind) hold in the store."""
    if isinstance(store, LocalBlobStore):
        return [p.name for p in store.tmp_dir.iterdir()]
    assert isinstance(store, S3BlobStore)
    c = store.client
    uploads = c.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    objects = c.list_objects_v2(Bucket=store.bucket, Prefix=f"{store.prefix}uploads/")
    return [u["Key"] for u in uploads] + [o["Key"] for o in objects.get("Contents", [])]


@pytest.mark.parametrize("size", [0, 5, 3 * PART + 123], ids=["empty", "small", "multipart"])
def test_round_trip_under_the_digest(store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    d = put(store, data, digest=sha(data))
    assert d == sha(data)
    assert store.exists(d) and store.size_of(d) == size
    assert b"".join(store.iter_range(d)) == data
    assert staged(store) == []


def test_ranges_read_exactly_the_asked_bytes(store: BlobStore) -> None:
    data = os.urandom(PART + 10)
    d = put(store, data)
    assert b"".join(store.iter_range(d, 3, 11)) == data[3:11]
    assert b"".join(store.iter_range(d, PART)) == data[PART:]
    assert b"".join(store.iter_range(d, 0, 0)) == b""
    assert b"".join(store.iter_range(d, 0, len(data), chunk_size=4096)) == data


@pytest.mark.parametrize("size", [7, 2 * PART + 1], ids=["small", "multipart"])
def test_bytes_that_do_not_hash_to_the_digest_are_never_visible(
    store: BlobStore, size: int
) -> None:
    data = os.urandom(size)
    claimed = sha(b"something else")
    with pytest.raises(IntegrityError) as caught:
        put(store, data, digest=claimed)
    assert caught.value.code == "DIGEST_MISMATCH"
    assert caught.value.details["actual"] == sha(data)
    assert not store.exists(claimed) and not store.exists(sha(data))
    assert list(store.iter_blobs()) == []
    assert staged(store) == []


def test_a_wrong_size_is_refused(store: BlobStore) -> None:
    w = store.writer(4)
    w.write(b"abc")
    with pytest.raises(IntegrityError) as caught:
        w.commit(expected_size=4)
    assert caught.value.code == "SIZE_MISMATCH"
    assert not store.exists(sha(b"abc"))
    assert staged(store) == []


@pytest.mark.parametrize("size", [9, 2 * PART + 9], ids=["small", "multipart"])
def test_identical_bytes_are_stored_once(store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    first = put(store, data)
    again = put(store, data, digest=first)
    assert first == again
    listed = [b for b in store.iter_blobs()]
    assert [(b.digest, b.size) for b in listed] == [(first, size)]
    assert listed[0].stored_at > 0
    assert staged(store) == []


def test_an_aborted_upload_leaves_nothing(store: BlobStore) -> None:
    w = store.writer(None)
    w.write(os.urandom(2 * PART))  # at least one part already sent to S3
    assert w.size == 2 * PART
    w.abort()
    assert list(store.iter_blobs()) == []
    assert staged(store) == []


def test_missing_keeps_order_and_drops_repeats(store: BlobStore) -> None:
    a, b = put(store, b"a"), put(store, b"b")
    absent1, absent2 = sha(b"x"), sha(b"y")
    assert store.missing([absent2, a, absent1, absent2, b]) == [absent2, absent1]
    assert store.missing([]) == []


def test_delete_removes_only_that_blob(store: BlobStore) -> None:
    a, b = put(store, b"keep"), put(store, b"drop")
    store.delete(b)
    assert store.exists(a) and not store.exists(b)
    assert store.size_of(b) is None
    store.delete(b)  # idempotent
    assert [x.digest for x in store.iter_blobs()] == [a]


def test_invalid_digests_are_refused_before_any_request(store: BlobStore) -> None:
    for call in (
        lambda: store.exists("A" * 64),
        lambda: store.size_of("../" * 20),
        lambda: store.missing(["nope"]),
    ):
        with pytest.raises(InvalidInput) as caught:
            call()
        assert caught.value.code == "INVALID_DIGEST"


def test_local_sweep_spares_live_uploads_and_takes_dead_ones(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    live = store.writer(None)
    live.write(b"still coming")
    # The first upload of a store also starts a sweep on a thread of its own;
    # left running, it could take (or hold the lock of) the dead file under
    # the sweep below, which would then count 0. Let it end first.
    for thread in threading.enumerate():
        if thread.name == "upload-sweep":
            thread.join()
    dead = store.tmp_dir / "upload-left-by-a-killed-process"
    dead.write_bytes(b"x")
    os.utime(dead, (0, 0))
    assert store.clean_stale_uploads(max_age_s=0) == 1
    assert not dead.exists()
    assert live.commit() == sha(b"still coming")


@pytest.mark.s3
def test_s3_sweep_aborts_abandoned_multipart_uploads(s3_server: S3Server) -> None:
    store = open_blob_store(f"s3://{s3_server.new_bucket()}/p", s3=S3Options(part_size=PART))
    assert isinstance(store, S3BlobStore)
    w = store.writer(None)
    w.write(os.urandom(PART + 1))  # a part in flight: the multipart upload exists
    backlog = w.ready()
    if backlog is not None:
        backlog.result()
    w.write(os.urandom(PART))  # waits for the first part, sends a second
    # Within the grace period, an upload is left alone: it may be live.
    assert store.clean_stale_uploads() == 0
    assert len(staged(store)) == 1
    # The writer is abandoned (its process died): past the grace, it goes.
    assert store.clean_stale_uploads(max_age_s=0) == 1
    assert staged(store) == []


@pytest.mark.s3
def test_s3_sweep_spares_a_long_upload_whose_parts_keep_arriving(s3_server: S3Server) -> None:
    """A live upload renews its age with every part: started before the grace
    period's cutoff but with a part sent after it, the sweep leaves it be."""
    store = open_blob_store(f"s3://{s3_server.new_bucket()}/p", s3=S3Options(part_size=PART))
    assert isinstance(store, S3BlobStore)
    c = store.client
    w = store.writer(None)
    w.write(os.urandom(PART + 1))  # part 1 goes up
    # Part 1 is sent in the background (ready() hands its future over only
    # when the buffer is near full): wait until the upload shows.
    [key] = wait_for(lambda: staged(store))
    started = int(key.rsplit("/", 1)[-1].split("-", 1)[0])
    time.sleep(2.5)  # the upload is now older than the cutoff chosen below
    w.write(os.urandom(PART))  # waits for part 1, sends part 2

    def parts() -> list[Any]:
        [up] = c.list_multipart_uploads(Bucket=store.bucket)["Uploads"]
        return list(c.list_parts(Bucket=store.bucket, Key=key, UploadId=up["UploadId"])["Parts"])

    latest = wait_for(lambda: len(parts()) == 2 and parts()[-1]["LastModified"].timestamp())
    assert latest - started >= 2
    # A cutoff between the upload's start and its latest part.
    grace = time.time() - (started + latest) / 2
    assert store.clean_stale_uploads(max_age_s=grace) == 0
    assert staged(store) == [key]
    assert w.commit() is not None


def test_an_unreachable_store_is_a_domain_error(tmp_path: Path) -> None:
    store = open_blob_store(
        "s3://bucket/p", s3=S3Options(endpoint_url=f"http://127.0.0.1:{free_port()}")
    )
    for call in (
        lambda: store.size_of(sha(b"x")),
        lambda: put(store, b"x"),
        lambda: list(store.iter_blobs()),
    ):
        with pytest.raises(StorageUnavailable) as caught:
            call()
        assert caught.value.code == "STORAGE_UNAVAILABLE"


@pytest.mark.s3
def test_a_missing_bucket_is_a_domain_error(s3_server: S3Server) -> None:
    store = open_blob_store("s3://no-such-bucket-here/p", s3=S3Options(part_size=PART))
    for data in (b"small", os.urandom(PART + 1)):
        with pytest.raises(StorageUnavailable) as caught:
            put(store, data)
        assert caught.value.details["error"] == "NoSuchBucket"


def test_store_urls_are_checked() -> None:
    for url in ("s3://", "s3:///prefix", "gs://bucket/p"):
        with pytest.raises(InvalidInput) as caught:
            open_blob_store(url)
        assert caught.value.code == "INVALID_SETTING"
    with pytest.raises(InvalidInput):
        open_blob_store("s3://b/p", s3=S3Options(part_size=1 << 20))


@pytest.mark.s3
def test_a_server_on_a_store_it_cannot_use_does_not_start(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """The composition root sweeps the store at start: a wrong bucket stops the
    process there, with the reason, instead of at its first upload."""
    settings = Settings(data_dir=tmp_path, store="s3://bucket-that-does-not-exist/x")
    with pytest.raises(StorageUnavailable) as caught:
        build_services(settings)
    assert caught.value.details["error"] == "NoSuchBucket"
