"""Versions over HTTP: upload flow, references, downloads, immutability, lineage."""

from __future__ import annotations

import io
import tarfile

import pytest
from starlette.testclient import TestClient

from modelyard.settings import Settings
from tests.helpers import assert_error, push, sha, upload

FILES = {"model.onnx": b"\x08\x01onnx-bytes" * 100, "labels/classes.txt": b"cat\ndog\n"}


def test_upload_flow_and_manifest(client: TestClient) -> None:
    client.post("/api/v1/models", json={"name": "fraud"})
    digests = [sha(d) for d in FILES.values()]
    r = client.post("/api/v1/blobs/missing", json={"digests": digests + digests[:1]})
    assert r.json()["missing"] == digests
    upload(client, FILES["model.onnx"])
    r = client.post("/api/v1/blobs/missing", json={"digests": digests})
    assert r.json()["missing"] == digests[1:]
    v = push(
        client,
        "fraud",
        FILES,
        create=False,
        framework="ONNX",
        format="onnx",
        metrics={"auc": 0.93},
        params={"lr": 0.01, "epochs": 3},
        tags={"encrypted": "true"},
        signature={"inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]},
        lineage={
            "source_run": "run-17",
            "datasets": ["s3-free-text-ref"],
            "code_ref": "git:abc123",
        },
    )
    assert v["version"] == 1 and v["state"] == "ready"
    assert v["framework"] == "onnx" and v["metrics"] == {"auc": 0.93}
    assert v["params"] == {"lr": "0.01", "epochs": "3"}
    assert v["file_count"] == 2 and v["total_size"] == sum(len(d) for d in FILES.values())
    assert {f["path"] for f in v["files"]} == set(FILES)
    assert v["lineage"]["source_run"] == "run-17"
    head = client.head(f"/api/v1/blobs/{digests[0]}")
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(
        FILES["model.onnx"]
    )
    assert client.head(f"/api/v1/blobs/{'0' * 64}").status_code == 404


def test_references_resolve_everywhere(client: TestClient) -> None:
    for i in range(3):
        push(client, "m", {"w": bytes([i])})
    assert client.get("/api/v1/models/default/m/versions/2").json()["version"] == 2
    assert client.get("/api/v1/models/default/m/versions/latest").json()["version"] == 3
    r = client.put("/api/v1/models/default/m/aliases/champion", json={"version": "2"})
    assert r.status_code == 200 and r.json()["aliases"] == ["champion"]
    assert client.get("/api/v1/models/default/m/versions/champion").json()["version"] == 2
    for ref, number in [
        ("m/1", 1),
        ("m@champion", 2),
        ("m@latest", 3),
        ("default/m/3", 3),
        ("default/m@champion", 2),
        ("m", 3),
    ]:
        r = client.get("/api/v1/resolve", params={"ref": ref})
        assert r.status_code == 200, (ref, r.text)
        assert r.json()["version"] == number, ref
    assert client.get("/api/v1/models/default/m/versions/champion/files/w").content == b"\x01"
    assert_error(client.get("/api/v1/resolve", params={"ref": "m@nope"}), 404, "ALIAS_NOT_FOUND")
    assert_error(client.get("/api/v1/resolve", params={"ref": "m/9"}), 404, "VERSION_NOT_FOUND")
    assert_error(client.get("/api/v1/resolve", params={"ref": "x/y/z/1"}), 400, "INVALID_REFERENCE")
    # Alias history: move and delete are recorded.
    client.put(
        "/api/v1/models/default/m/aliases/champion", json={"version": "3", "reason": "better"}
    )
    assert client.delete("/api/v1/models/default/m/aliases/champion").status_code == 204
    hist = client.get("/api/v1/models/default/m/aliases/history").json()["history"]
    assert [(h["from_version"], h["to_version"]) for h in hist] == [(None, 2), (2, 3), (3, None)]
    assert hist[1]["reason"] == "better"


def test_download_file_range_and_tar(client: TestClient) -> None:
    push(client, "m", FILES)
    r = client.get("/api/v1/models/default/m/versions/1/files/labels/classes.txt")
    assert r.status_code == 200 and r.content == FILES["labels/classes.txt"]
    assert r.headers["x-content-sha256"] == sha(FILES["labels/classes.txt"])
    r = client.get(
        "/api/v1/models/default/m/versions/1/files/model.onnx", headers={"Range": "bytes=2-9"}
    )
    assert r.status_code == 206 and r.content == FILES["model.onnx"][2:10]
    r = client.get("/api/v1/models/default/m/versions/1/archive.tar")
    assert r.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert got == FILES
    assert_error(
        client.get("/api/v1/models/default/m/versions/1/files/nope"), 404, "FILE_NOT_FOUND"
    )
    assert_error(
        client.get("/api/v1/models/default/m/versions/1/files/..%2F..%2Fetc%2Fpasswd"),
        404,
        "FILE_NOT_FOUND",
    )


def test_integrity_errors(client: TestClient) -> None:
    client.post("/api/v1/models", json={"name": "m"})
    data = b"payload"
    r = client.put(f"/api/v1/blobs/{sha(b'other')}", content=data)
    assert_error(r, 422, "DIGEST_MISMATCH")
    assert client.head(f"/api/v1/blobs/{sha(b'other')}").status_code == 404
    r = client.post(
        "/api/v1/models/default/m/versions",
        json={"files": [{"path": "a", "digest": sha(data), "size": 7}]},
    )
    assert_error(r, 422, "BLOB_MISSING")
    digest = upload(client, data)
    r = client.post(
        "/api/v1/models/default/m/versions",
        json={"files": [{"path": "a", "digest": digest, "size": 8}]},
    )
    assert_error(r, 422, "SIZE_MISMATCH")
    assert_error(client.put("/api/v1/blobs/XYZ", content=b"x"), 400, "INVALID_DIGEST")
    # Nothing partial became visible: no version exists.
    assert client.get("/api/v1/models/default/m/versions").json()["versions"] == []
    assert client.get("/api/v1/models/default/m").json()["latest_version"] is None


def test_immutability_and_draft_flow(client: TestClient) -> None:
    v = push(client, "m", {"a": b"1"})
    d = upload(client, b"2")
    r = client.post(
        "/api/v1/models/default/m/versions/1/files",
        json={"files": [{"path": "b", "digest": d, "size": 1}]},
    )
    assert_error(r, 409, "VERSION_IMMUTABLE")
    r = client.post("/api/v1/models/default/m/versions", json={"draft": True})
    assert r.status_code == 201 and r.json()["state"] == "draft"
    # A draft is not "latest".
    assert client.get("/api/v1/models/default/m/versions/latest").json()["version"] == 1
    r = client.post(
        "/api/v1/models/default/m/versions/2/files",
        json={"files": [{"path": "b", "digest": d, "size": 1}]},
    )
    assert r.status_code == 200 and r.json()["state"] == "ready"
    assert client.get("/api/v1/models/default/m/versions/latest").json()["version"] == 2
    # Mutable fields do change.
    r = client.patch(
        "/api/v1/models/default/m/versions/1",
        json={"description": "d", "tags": {"k": "v"}, "metadata": {"x": [1]}},
    )
    assert r.json()["description"] == "d" and r.json()["tags"] == {"k": "v"}
    assert r.json()["metadata"] == {"x": [1]}
    assert v["files"][0]["digest"] == sha(b"1")


def test_lifecycle(client: TestClient) -> None:
    for i in range(3):
        push(client, "m", {"a": bytes([i])})
    assert client.post("/api/v1/models/default/m/versions/1/publish").json()["state"] == (
        "published"
    )
    assert client.post("/api/v1/models/default/m/versions/2/publish").status_code == 200
    r = client.post("/api/v1/models/default/m/versions/3/publish", json={"archive_previous": True})
    assert r.json()["state"] == "published"
    states = {
        v["version"]: v["state"]
        for v in client.get("/api/v1/models/default/m/versions").json()["versions"]
    }
    assert states == {1: "archived", 2: "archived", 3: "published"}
    assert_error(
        client.post("/api/v1/models/default/m/versions/1/publish"), 409, "INVALID_STATE_TRANSITION"
    )
    assert client.post("/api/v1/models/default/m/versions/1/restore").json()["state"] == "ready"


def test_lineage(client: TestClient) -> None:
    push(client, "resnet", {"w.pt": b"torch"}, framework="pytorch")
    onnx = push(
        client,
        "resnet-onnx",
        {"m.onnx": b"onnx"},
        lineage={"parent": "resnet/1", "relation": "converted"},
    )
    assert onnx["lineage"]["parent"] == "default/resnet/1"
    assert onnx["lineage"]["original"] == "default/resnet/1"
    q = push(
        client,
        "resnet-int8",
        {"m.onnx": b"int8"},
        lineage={"parent": "resnet-onnx/1", "relation": "quantized"},
    )
    assert q["lineage"]["original"] == "default/resnet/1"
    assert q["lineage"]["parent"] == "default/resnet-onnx/1"
    r = client.post(
        "/api/v1/models/default/resnet-int8/versions",
        json={"lineage": {"parent": "resnet/7", "relation": "converted"}},
    )
    assert_error(r, 404, "VERSION_NOT_FOUND")
    r = client.post(
        "/api/v1/models/default/resnet-int8/versions", json={"lineage": {"relation": "converted"}}
    )
    assert_error(r, 400, "INVALID_LINEAGE")


def test_pagination_of_versions(client: TestClient) -> None:
    for i in range(7):
        push(client, "m", {"a": bytes([i])})
    seen, token = [], None
    while True:
        params = {"page_size": 3, **({"page_token": token} if token else {})}
        page = client.get("/api/v1/models/default/m/versions", params=params).json()
        seen += [v["version"] for v in page["versions"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1]


def test_idempotency_key(client: TestClient) -> None:
    client.post("/api/v1/models", json={"name": "m"})
    body = {"files": [], "tags": {"a": "b"}}
    h = {"Idempotency-Key": "k-1"}
    a = client.post("/api/v1/models/default/m/versions", json=body, headers=h)
    b = client.post("/api/v1/models/default/m/versions", json=body, headers=h)
    assert a.status_code == 201 and b.status_code == 201
    assert a.json()["version"] == b.json()["version"] == 1
    c = client.post("/api/v1/models/default/m/versions", json={"files": []}, headers=h)
    assert_error(c, 409, "IDEMPOTENCY_KEY_REUSED")
    assert len(client.get("/api/v1/models/default/m/versions").json()["versions"]) == 1


def test_big_file_download_whole_and_ranged(client: TestClient) -> None:
    """A big blob is streamed block by block (``BlobStreamResponse``); a Range
    request for it still gets 206 with exactly the asked bytes."""
    import os

    from modelyard.hashio import PIPELINE_MIN

    data = os.urandom(PIPELINE_MIN + 12_345)
    push(client, "big", {"weights/model.bin": data})
    url = "/api/v1/models/default/big/versions/1/files/weights/model.bin"
    r = client.get(url)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["etag"] == f'"{sha(data)}"'
    assert r.headers["content-disposition"] == 'attachment; filename="model.bin"'
    assert r.headers["accept-ranges"] == "bytes"
    last = len(data) - 1
    r = client.get(url, headers={"Range": f"bytes={last - 99}-{last}"})
    assert r.status_code == 206 and r.content == data[-100:]


@pytest.mark.parametrize("size", [1000, 20 << 20])
def test_a_full_disk_is_storage_full_and_keeps_nothing(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """ENOSPC while a blob is written (inline for small blobs, on the writer
    thread for big ones) answers 507 ``STORAGE_FULL``; the partial file is
    removed and the digest stays unknown."""
    import errno
    import os

    from modelyard import hashio

    def no_room(fd: int, view: memoryview, offset: int | None) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hashio, "_write_all", no_room)
    data = os.urandom(size)
    r = client.put(f"/api/v1/blobs/{sha(data)}", content=data)
    assert_error(r, 507, "STORAGE_FULL")
    monkeypatch.undo()
    assert list((settings.data_dir / "blobs" / "tmp").iterdir()) == []
    assert client.head(f"/api/v1/blobs/{sha(data)}").status_code == 404
    assert upload(client, data) == sha(data)
