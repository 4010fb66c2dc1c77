"""Shared set-up for the identity and access tests: an app with auth on and users."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from starlette.testclient import TestClient

from modelyard.settings import Settings
from modelyard.store.metadata.engine import create_engine

ADMIN_TOKEN = "bootstrap-admin-token-for-tests-0123456789abcdef"
NAMESPACE_ROLES = ("reader", "writer", "reviewer", "admin", "consumer")


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header for ``token`` (none for None)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def auth_settings(tmp_path: Path, db_url: str, **extra: object) -> Settings:
    """Settings with auth forced on and a known bootstrap admin token."""
    return Settings(
        data_dir=tmp_path / "data",
        db=db_url,
        auth="on",
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


def make_user(client: TestClient, name: str, roles: dict[str, str] | None = None) -> str:
    """Create a user with roles (namespace -> role) and return a fresh token of theirs."""
    admin = bearer(ADMIN_TOKEN)
    r = client.post("/api/v1/users", json={"name": name}, headers=admin)
    assert r.status_code == 201, r.text
    for ns, role in (roles or {}).items():
        r = client.put(f"/api/v1/roles/{ns}/{name}/{role}", headers=admin)
        assert r.status_code == 201, r.text
    r = client.post("/api/v1/tokens", json={"name": "t", "user": name}, headers=admin)
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def expire_token(db_url: str, token_id: str) -> None:
    """Move a token's expiry into the past (as if its lifetime had run out)."""
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE api_tokens SET expires_at = 1 WHERE public_id = :p"),
                {"p": token_id},
            )
    finally:
        engine.dispose()


def token_id(token: str) -> str:
    """The public id inside a generated token."""
    return token.split("_")[1]


def seed_models(client: TestClient) -> None:
    """``default/m``: version 1 ready, version 2 published (+ tagged), version 3 draft."""
    admin = bearer(ADMIN_TOKEN)
    r = client.post("/api/v1/models", json={"name": "m"}, headers=admin)
    assert r.status_code == 201, r.text
    for i, tags in enumerate(({}, {"encrypted": "true"}, {})):
        data = f"file-{i}".encode()
        digest = _upload(client, data)
        body = {
            "files": [{"path": "model.bin", "digest": digest, "size": len(data)}],
            "tags": tags,
            "draft": i == 2,
        }
        r = client.post("/api/v1/models/default/m/versions", json=body, headers=admin)
        assert r.status_code == 201, r.text
    r = client.post("/api/v1/models/default/m/versions/2/publish", headers=admin)
    assert r.status_code == 200, r.text
    r = client.put("/api/v1/models/default/m/aliases/staging", json={"version": "1"}, headers=admin)
    assert r.status_code == 200, r.text


def _upload(client: TestClient, data: bytes) -> str:
    from tests.helpers import sha

    digest = sha(data)
    r = client.put(f"/api/v1/blobs/{digest}", content=data, headers=bearer(ADMIN_TOKEN))
    assert r.status_code in (200, 201), r.text
    return digest
