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
from tests.helpers import verified_upload
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


def test_direct_uploads_are_verified_before_a_version_may_name_them(
    s3_live: tuple[str, str], s3_server: S3Server
) -> None:
    url, bucket = s3_live
    data = b"weights sent straight to the store"
    digest = hashlib.sha256(data).hexdigest()
    api = f"{url}/api/v1"
    assert httpx.get(f"{api}/blobs/transfers").json() == {"direct": True}

    def offer() -> dict[str, object]:
        r = httpx.post(f"{api}/blobs/uploads", json={"size": len(data), "digest": digest})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["mode"] == "direct" and str(body["url"]).startswith(s3_server.endpoint)
        return dict(body)

    # Other bytes of the same size reach the store, but never the digest.
    bad = offer()
    r = httpx.put(str(bad["url"]), content=b"x" * len(data), headers=bad["headers"])  # type: ignore[arg-type]
    assert r.status_code == 200
    assert httpx.head(f"{api}/blobs/{digest}").status_code == 404
    name = "d" + uuid.uuid4().hex[:8]
    assert httpx.post(f"{api}/models", json={"name": name}).status_code == 201
    manifest = {"files": [{"path": "w.bin", "digest": digest, "size": len(data)}]}
    r = httpx.post(f"{api}/models/default/{name}/versions", json=manifest)
    assert r.status_code == 422 and r.json()["error"]["code"] == "BLOB_MISSING"
    r = httpx.post(f"{api}/blobs/uploads/{bad['upload_id']}/complete", json={"digest": digest})
    # The size is right: queued for the background verifier, which refuses it.
    assert r.status_code == 202 and r.json()["verified"] is False, r.text
    with httpx.Client(base_url=url) as c:
        status = verified_upload(c, str(bad["upload_id"]))
    assert status["state"] == "failed" and status["error"]["code"] == "DIGEST_MISMATCH"
    r = httpx.post(f"{api}/blobs/uploads/{bad['upload_id']}/complete", json={"digest": digest})
    assert r.status_code == 422 and r.json()["error"]["code"] == "DIGEST_MISMATCH"
    staged = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="registry/uploads/")
    assert staged.get("KeyCount", 0) == 0
    assert httpx.head(f"{api}/blobs/{digest}").status_code == 404

    good = offer()
    r = httpx.put(str(good["url"]), content=data, headers=good["headers"])  # type: ignore[arg-type]
    assert r.status_code == 200
    done = f"{api}/blobs/uploads/{good['upload_id']}/complete"
    r = httpx.post(done, json={"digest": digest, "size": len(data)})
    assert r.status_code == 202, r.text
    assert r.json() == {"digest": digest, "size": len(data), "created": True, "verified": False}
    with httpx.Client(base_url=url) as c:
        assert verified_upload(c, str(good["upload_id"]))["state"] == "verified"
    # Completing again answers what the verifier found.
    r = httpx.post(done, json={"digest": digest})
    assert r.status_code == 201 and r.json()["verified"] is True, r.text
    r = httpx.post(f"{api}/blobs/uploads/1-{'b' * 32}/complete", json={"digest": digest})
    assert r.status_code == 404 and r.json()["error"]["code"] == "UPLOAD_NOT_FOUND"
    r = httpx.post(f"{api}/blobs/uploads/not-an-upload/complete", json={"digest": digest})
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_UPLOAD_ID"
    r = httpx.post(f"{api}/models/default/{name}/versions", json=manifest)
    assert r.status_code == 201, r.text

    # Downloads: a redirect to the store, ranges and all.
    file_url = f"{api}/models/default/{name}/versions/1/files/w.bin"
    r = httpx.get(file_url, params={"redirect": "true"})
    assert r.status_code == 307
    location = r.headers["location"]
    assert location.startswith(s3_server.endpoint)
    assert httpx.get(location).content == data
    r = httpx.get(location, headers={"Range": "bytes=0-6"})
    assert r.status_code == 206 and r.content == data[:7]
    assert httpx.get(file_url).content == data  # without asking: through the server


def test_the_sdk_takes_the_direct_path_by_itself(
    s3_live: tuple[str, str], s3_server: S3Server, tmp_path: Path
) -> None:
    url, bucket = s3_live
    name = "s" + uuid.uuid4().hex[:8]
    src = tmp_path / "src"
    src.mkdir()
    files = {"a.bin": os.urandom(1000), "b.bin": os.urandom(2000)}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    before = s3_server.log.read_text(errors="replace").count(f"PUT /{bucket}/registry/uploads/")
    with Registry(url, cache_dir=tmp_path / "cache") as reg:
        reg.create_model(name)
        v = reg.push(name, src)
        out = reg.pull(f"{name}/{v.version}", tmp_path / "out")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    # The store saw one presigned PUT per file, from the client (the server's
    # own uploads go to sha256/ keys, or to uploads/ as numbered parts).
    log = s3_server.log.read_text(errors="replace")
    direct = [
        line
        for line in log.splitlines()
        if f"PUT /{bucket}/registry/uploads/" in line and "partNumber" not in line
    ]
    assert len(direct) - before == len(files)


@pytest.mark.parametrize("store", ["s3-proxy", "local"])
def test_a_server_without_direct_transfers_takes_the_bytes_itself(
    store: str, s3_server: S3Server, tmp_path: Path
) -> None:
    from starlette.testclient import TestClient

    from modelyard.api.app import create_app
    from modelyard.settings import Settings

    settings = Settings(
        data_dir=tmp_path / "d",
        store=f"s3://{s3_server.new_bucket()}/p" if store == "s3-proxy" else None,
        direct_transfers=False,
    )
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/v1/blobs/transfers").json() == {"direct": False}
        r = c.post("/api/v1/blobs/uploads", json={"size": 3})
        assert r.json() == {"mode": "proxy"}
        r = c.post(f"/api/v1/blobs/uploads/1-{'a' * 32}/complete", json={"digest": "0" * 64})
        assert r.status_code == 404 and r.json()["error"]["code"] == "UPLOAD_NOT_FOUND"


def test_a_direct_pull_reads_the_store_and_says_when_it_refuses(
    s3_live: tuple[str, str], s3_server: S3Server, tmp_path: Path
) -> None:
    """The SDK pulls a file straight from the store's presigned URL (read
    into its buffers off the socket, as a proxied pull is) and checks its
    digest; a store that refuses the GET is STORAGE_UNAVAILABLE naming the
    HTTP status, never a half-written file."""
    url, bucket = s3_live
    name = "p" + uuid.uuid4().hex[:8]
    data = os.urandom(300_000)
    (tmp_path / "m.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    with Registry(url, cache_dir=tmp_path / "cache") as reg:
        reg.create_model(name)
        v = reg.push(name, tmp_path / "m.bin")
        before = s3_server.log.read_text(errors="replace").count(f"GET /{bucket}/registry/sha256/")
        out = reg.pull(f"{name}/{v.version}", tmp_path / "out")
        assert (out / "m.bin").read_bytes() == data
        log = s3_server.log.read_text(errors="replace")
        assert log.count(f"GET /{bucket}/registry/sha256/") > before
        # The object goes behind the registry's back: the store answers 404.
        s3 = s3_server.client()
        keys = [
            o["Key"]
            for o in s3.list_objects_v2(Bucket=bucket, Prefix="registry/sha256/")["Contents"]
            if o["Key"].endswith(digest)
        ]
        assert keys
        for key in keys:
            s3.delete_object(Bucket=bucket, Key=key)
    with (
        Registry(url, cache_dir=tmp_path / "cache2") as reg,
        pytest.raises(ModelyardError) as err,
    ):
        reg.pull(f"{name}/{v.version}", tmp_path / "out2")
    assert err.value.code == "STORAGE_UNAVAILABLE" and "HTTP 4" in str(err.value), err.value
    assert not (tmp_path / "out2" / "m.bin").exists()
