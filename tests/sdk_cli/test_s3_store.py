"""A live ``modelyard server`` process whose blob store is S3 (a moto server
process on 127.0.0.1, over HTTP): push, pull, ranges, tar, and the store's
failures as clean errors."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.client import Registry
from modelyard.domain.errors import ModelyardError
from tests.conftest_server import start_server, stop_server
from tests.s3server import S3Server

pytestmark = pytest.mark.s3

PART = 5 << 20


@pytest.fixture(scope="module")
def s3_live(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(server URL, bucket) of a server storing blobs in a fresh bucket, with
    S3's smallest part size so that a modest file goes multipart."""
    bucket = s3_server.new_bucket()
    proc, url = start_server(
        tmp_path_factory.mktemp("s3-server"),
        extra_env={**s3_server.env(), "MODELYARD_S3_PART_SIZE": str(PART)},
        args=("--store", f"s3://{bucket}/registry"),
    )
    try:
        yield url, bucket
    finally:
        stop_server(proc)


def test_push_and_pull_through_a_server_on_s3(
    s3_live: tuple[str, str], s3_server: S3Server, tmp_path: Path
) -> None:
    url, bucket = s3_live
    name = "m" + uuid.uuid4().hex[:8]
    files = {
        "weights.bin": os.urandom(2 * PART + 4321),  # multipart, staged then copied
        "config.json": b'{"labels": 3}',
        "empty.txt": b"",
    }
    src = tmp_path / "src"
    src.mkdir()
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    with Registry(url, cache_dir=tmp_path / "cache") as reg:
        reg.create_model(name)
        v = reg.push(name, src)
        assert v.state == "ready"
        out = reg.pull(f"{name}/{v.version}", tmp_path / "out")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files

    # The bytes are in the bucket under their digests, and nothing is staged.
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    digests = {hashlib.sha256(d).hexdigest() for d in files.values()}
    assert {k.rsplit("/", 1)[-1] for k in keys} >= digests
    assert all(k.startswith("registry/sha256/") for k in keys)

    base = f"{url}/api/v1/models/default/{name}/versions/{v.version}"
    big = files["weights.bin"]
    r = httpx.get(f"{base}/files/weights.bin", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == big[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(big)}"
    r = httpx.get(f"{base}/files/weights.bin", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == big[-10:]
    r = httpx.get(f"{base}/files/weights.bin", headers={"Range": f"bytes={len(big)}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(big)}"
    r = httpx.head(f"{base}/files/weights.bin")
    assert r.status_code == 200 and r.headers["content-length"] == str(len(big))
    r = httpx.get(f"{base}/archive.tar")
    assert r.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert got == files


def test_a_blob_whose_bytes_do_not_match_is_refused_and_not_stored(
    s3_live: tuple[str, str], s3_server: S3Server
) -> None:
    url, bucket = s3_live
    claimed = hashlib.sha256(b"what the client says").hexdigest()
    r = httpx.put(f"{url}/api/v1/blobs/{claimed}", content=b"what it sends")
    assert r.status_code == 422 and r.json()["error"]["code"] == "DIGEST_MISMATCH"
    assert httpx.head(f"{url}/api/v1/blobs/{claimed}").status_code == 404
    listed = s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert not any(claimed in o["Key"] or "/uploads/" in o["Key"] for o in listed)


def test_a_store_that_fails_is_a_503_with_its_code_never_a_500(
    s3_server: S3Server, tmp_path: Path
) -> None:
    # A store that fails while the server runs (here: its bucket is gone)
    # fails each request that needs it, cleanly; the server keeps serving.
    bucket = s3_server.new_bucket()
    proc, url = start_server(
        tmp_path / "srv", extra_env=s3_server.env(), args=("--store", f"s3://{bucket}/x")
    )
    try:
        s3_server.client().delete_bucket(Bucket=bucket)
        data = b"some bytes"
        digest = hashlib.sha256(data).hexdigest()
        r = httpx.put(f"{url}/api/v1/blobs/{digest}", content=data)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
        src = tmp_path / "m"
        src.mkdir()
        (src / "w.bin").write_bytes(data)
        with Registry(url, cache_dir=tmp_path / "cache") as reg:
            reg.create_model("m")
            with pytest.raises(ModelyardError) as caught:
                reg.push("m", src)
            assert caught.value.code == "STORAGE_UNAVAILABLE"
            assert reg.get_model("m").name == "m"
    finally:
        stop_server(proc)
