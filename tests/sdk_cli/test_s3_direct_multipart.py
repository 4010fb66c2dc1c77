"""Presigned multipart uploads straight to S3 (a moto server process over
HTTP), for blobs past ``MODELYARD_S3_DIRECT_MULTIPART_THRESHOLD`` (5 GiB in
production; S3's smallest part, 5 MiB, here): the offer has one URL per part,
``complete`` assembles only what the store holds and verifies the whole, and
the SDK takes the path by itself."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.client import Registry
from tests.conftest_server import start_server, stop_server
from tests.helpers import verified_upload
from tests.s3server import S3Server

pytestmark = pytest.mark.s3

PART = 5 << 20
SIZE = 2 * PART + 123_457


@pytest.fixture(scope="module")
def live(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    bucket = s3_server.new_bucket()
    proc, url = start_server(
        tmp_path_factory.mktemp("s3-multipart"),
        extra_env={
            **s3_server.env(),
            "MODELYARD_S3_PART_SIZE": str(PART),
            "MODELYARD_S3_DIRECT_MULTIPART_THRESHOLD": str(PART),
        },
        args=("--store", f"s3://{bucket}/registry"),
    )
    try:
        yield url, bucket
    finally:
        stop_server(proc)


def offer(api: str, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    r = httpx.post(f"{api}/blobs/uploads", json={"size": len(data), "digest": digest})
    assert r.status_code == 200, r.text
    return dict(r.json())


def put_parts(body: dict[str, Any], data: bytes, numbers: set[int] | None = None) -> None:
    for part in body["parts"]:
        if numbers is None or part["number"] in numbers:
            chunk = data[part["offset"] : part["offset"] + part["size"]]
            assert httpx.put(part["url"], content=chunk).status_code == 200


def staged_left(s3_server: S3Server, bucket: str) -> int:
    client = s3_server.client()
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix="registry/uploads/")
    objects = client.list_objects_v2(Bucket=bucket, Prefix="registry/uploads/")
    return len(uploads.get("Uploads", [])) + int(objects.get("KeyCount", 0))


def test_a_big_blob_is_offered_in_parts_and_verified_whole(
    live: tuple[str, str], s3_server: S3Server
) -> None:
    url, bucket = live
    api = f"{url}/api/v1"
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).hexdigest()

    body = offer(api, data)
    assert body["mode"] == "direct" and "url" not in body
    parts = body["parts"]
    assert [(p["number"], p["offset"], p["size"]) for p in parts] == [
        (1, 0, PART),
        (2, PART, PART),
        (3, 2 * PART, SIZE - 2 * PART),
    ]
    assert all(str(p["url"]).startswith(s3_server.endpoint) for p in parts)

    # A part never sent: the upload is refused, and nothing is left staged.
    put_parts(body, data, {1, 3})
    r = httpx.post(f"{api}/blobs/uploads/{body['upload_id']}/complete", json={"digest": digest})
    assert r.status_code == 422 and r.json()["error"]["code"] == "UPLOAD_INCOMPLETE"
    assert staged_left(s3_server, bucket) == 0

    # Every part, but one byte changed: assembled, read back, refused.
    body = offer(api, data)
    flipped = bytearray(data)
    flipped[PART + 7] ^= 0xFF
    put_parts(body, bytes(flipped))
    r = httpx.post(f"{api}/blobs/uploads/{body['upload_id']}/complete", json={"digest": digest})
    assert r.status_code == 202, r.text
    with httpx.Client(base_url=url) as c:
        status = verified_upload(c, str(body["upload_id"]))
    assert status["state"] == "failed" and status["error"]["code"] == "DIGEST_MISMATCH"
    assert httpx.head(f"{api}/blobs/{digest}").status_code == 404
    assert staged_left(s3_server, bucket) == 0

    body = offer(api, data)
    put_parts(body, data)
    done = f"{api}/blobs/uploads/{body['upload_id']}/complete"
    r = httpx.post(done, json={"digest": digest, "size": SIZE})
    assert r.status_code == 202, r.text
    assert r.json() == {"digest": digest, "size": SIZE, "created": True, "verified": False}
    with httpx.Client(base_url=url) as c:
        assert verified_upload(c, str(body["upload_id"]))["state"] == "verified"
    assert staged_left(s3_server, bucket) == 0
    assert httpx.head(f"{api}/blobs/{digest}").status_code == 200
    key = f"registry/sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    assert s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read() == data

    # Small blobs still go in one PUT.
    small = offer(api, b"small")
    assert "parts" not in small and small["url"]


def test_the_sdk_sends_big_files_in_presigned_parts(
    live: tuple[str, str], s3_server: S3Server, tmp_path: Path
) -> None:
    url, _ = live
    name = "mp" + uuid.uuid4().hex[:8]
    src = tmp_path / "src"
    src.mkdir()
    files = {"big.bin": os.urandom(SIZE + 1), "small.bin": b"labels"}
    for rel, data in files.items():
        (src / rel).write_bytes(data)

    def presigned_parts() -> int:
        log = s3_server.log.read_text(errors="replace")
        return sum(
            1
            for line in log.splitlines()
            if "partNumber=" in line and "Signature=" in line and '"PUT ' in line
        )

    before = presigned_parts()
    with Registry(url, cache_dir=tmp_path / "cache") as reg:
        reg.create_model(name)
        v = reg.push(name, src)
        out = reg.pull(f"{name}/{v.version}", tmp_path / "out")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    # The client sent the big file's three parts to presigned URLs itself.
    assert presigned_parts() - before == 3
