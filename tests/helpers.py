"""Small helpers shared by the API tests."""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.testclient import TestClient


def sha(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def upload(client: TestClient, data: bytes) -> str:
    """PUT a blob and return its digest."""
    digest = sha(data)
    r = client.put(f"/api/v1/blobs/{digest}", content=data)
    assert r.status_code in (200, 201), r.text
    return digest


def push(
    client: TestClient,
    name: str,
    files: dict[str, bytes],
    *,
    namespace: str = "default",
    create: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """Create the model if needed, upload files and create a version."""
    if create:
        r = client.post("/api/v1/models", json={"name": name, "namespace": namespace})
        assert r.status_code in (201, 409), r.text
    manifest = [
        {"path": p, "digest": upload(client, data), "size": len(data)} for p, data in files.items()
    ]
    r = client.post(
        f"/api/v1/models/{namespace}/{name}/versions", json={"files": manifest, **extra}
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    """Check the one error body and return its ``error`` object."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert set(body) == {"error"}, body
    err: dict[str, Any] = body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], dict)
    assert err["code"] == code, err
    return err


def verified_upload(client: Any, upload_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the server's background verifier has finished with a
    completed direct upload; its final status (``verified`` or ``failed``).
    ``client``: an ``httpx.Client`` (or TestClient) on the server's base URL."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/v1/blobs/uploads/{upload_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["state"] != "pending":
            return body
        assert time.monotonic() < deadline, f"upload {upload_id} still pending"
        time.sleep(0.05)
