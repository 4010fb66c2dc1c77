"""Role x endpoint matrix over HTTP: every role, and every kind of bad token,
against representative routes of every group.

``ok`` is any 2xx. A consumer sees the published ``m/2`` but not the ready
``m/1`` (404); a principal without a role in the namespace gets 403 before
anything is looked up; bad tokens get 401 everywhere but public routes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from modelyard.api.app import create_app
from tests.auth_helpers import (
    ADMIN_TOKEN,
    auth_settings,
    bearer,
    expire_token,
    make_user,
    seed_models,
    token_id,
)
from tests.helpers import sha

COLUMNS = (
    "root",
    "admin",
    "writer",
    "reviewer",
    "reader",
    "consumer",
    "norole",
    "notoken",
    "expired",
    "revoked",
)
BAD = {"notoken": 401, "expired": 401, "revoked": 401}
Call = Callable[[TestClient, dict[str, str], str], Any]


def _row(
    root: Any, admin: Any, writer: Any, reviewer: Any, reader: Any, consumer: Any, norole: Any
) -> dict[str, Any]:
    return {
        "root": root,
        "admin": admin,
        "writer": writer,
        "reviewer": reviewer,
        "reader": reader,
        "consumer": consumer,
        "norole": norole,
        **BAD,
    }


def _blob(c: TestClient, h: dict[str, str], who: str) -> Any:
    data = f"blob of {who}".encode()
    return c.put(f"/api/v1/blobs/{sha(data)}", content=data, headers=h)


def _delete(c: TestClient, h: dict[str, str], who: str) -> Any:
    # A fresh model per caller, made by the instance admin, so an allowed
    # delete does not change what the next caller sees.
    c.post("/api/v1/models", json={"name": f"tmp-{who}"}, headers=bearer(ADMIN_TOKEN))
    return c.delete(f"/api/v1/models/default/tmp-{who}", headers=h)


V = "/api/v1/models/default/m/versions"
MATRIX: list[tuple[str, Call, dict[str, Any]]] = [
    ("health", lambda c, h, w: c.get("/health", headers=h), {k: "ok" for k in COLUMNS}),
    (
        "whoami",
        lambda c, h, w: c.get("/api/v1/whoami", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", "ok", "ok"),
    ),
    (
        "get model",
        lambda c, h, w: c.get("/api/v1/models/default/m", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", "ok", 403),
    ),
    (
        "get ready version",
        lambda c, h, w: c.get(f"{V}/1", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", 404, 403),
    ),
    (
        "get published version",
        lambda c, h, w: c.get(f"{V}/2", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", "ok", 403),
    ),
    (
        "download ready file",
        lambda c, h, w: c.get(f"{V}/1/files/model.bin", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", 404, 403),
    ),
    (
        "search namespace",
        lambda c, h, w: c.get("/api/v1/search/versions?namespace=default", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", "ok", 403),
    ),
    (
        "alias history",
        lambda c, h, w: c.get("/api/v1/models/default/m/aliases/history", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", 403, 403),
    ),
    (
        "create model",
        lambda c, h, w: c.post("/api/v1/models", json={"name": f"new-{w}"}, headers=h),
        _row("ok", "ok", "ok", 403, 403, 403, 403),
    ),
    (
        "tag version",
        lambda c, h, w: c.patch(f"{V}/1", json={"tags": {"by": w}}, headers=h),
        _row("ok", "ok", "ok", 403, 403, 403, 403),
    ),
    (
        "publish",
        lambda c, h, w: c.post(f"{V}/2/publish", headers=h),
        # Already published: allowed callers reach the lifecycle rule (409).
        _row(409, 409, 409, 403, 403, 403, 403),
    ),
    (
        "move alias",
        lambda c, h, w: c.put(
            "/api/v1/models/default/m/aliases/champion", json={"version": "2"}, headers=h
        ),
        _row("ok", "ok", "ok", 403, 403, 403, 403),
    ),
    ("upload blob", _blob, _row("ok", "ok", "ok", 403, 403, 403, 403)),
    ("delete model", _delete, _row("ok", "ok", 403, 403, 403, 403, 403)),
    (
        "grant role",
        lambda c, h, w: c.put("/api/v1/roles/default/outsider/reader", headers=h),
        _row("ok", "ok", 403, 403, 403, 403, 403),
    ),
    (
        "create namespace",
        lambda c, h, w: c.post("/api/v1/namespaces", json={"name": f"ns-{w}"}, headers=h),
        _row("ok", 403, 403, 403, 403, 403, 403),
    ),
    (
        "create user",
        lambda c, h, w: c.post("/api/v1/users", json={"name": f"u-{w}"}, headers=h),
        _row("ok", 403, 403, 403, 403, 403, 403),
    ),
    (
        "deployment heartbeat",
        lambda c, h, w: c.post(
            "/api/v1/deployments/heartbeats",
            json={
                "environment": "prod",
                "reference": "m/2",
                "replica": w,
                "status": "ready",
                "version": 2,
            },
            headers=h,
        ),
        _row("ok", "ok", "ok", "ok", "ok", "ok", 403),
    ),
    (
        "heartbeat for a version outside the production view",
        lambda c, h, w: c.post(
            "/api/v1/deployments/heartbeats",
            json={
                "environment": "prod",
                "reference": "m/2",
                "replica": w,
                "status": "ready",
                "version": 2,
                "failed_version": 1,
            },
            headers=h,
        ),
        _row("ok", "ok", "ok", "ok", "ok", 404, 403),
    ),
    (
        "record deployment",
        lambda c, h, w: c.put(
            "/api/v1/deployments",
            json={"environment": "prod", "reference": "m/2", "replicas": 2},
            headers=h,
        ),
        _row("ok", "ok", "ok", 403, 403, 403, 403),
    ),
    (
        "get deployment",
        lambda c, h, w: c.get("/api/v1/deployments/prod/default/m/2", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", 403, 403),
    ),
    (
        # Permission is decided before existence: writers get 404 here, others 403.
        "delete deployment",
        lambda c, h, w: c.delete("/api/v1/deployments/nowhere/default/m/2", headers=h),
        _row(404, 404, 404, 403, 403, 403, 403),
    ),
    (
        "serving policy of a version",
        lambda c, h, w: c.get("/api/v1/models/default/m/versions/2/serving-policy", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", "ok", 403),
    ),
    (
        "serving policy of a version outside the production view",
        lambda c, h, w: c.get("/api/v1/models/default/m/versions/1/serving-policy", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", 404, 403),
    ),
    (
        # Admin only, decided before the version is looked at: admins reach
        # the content rule (m/2 holds no pickle file), everyone else 403.
        "record a pickle exception",
        lambda c, h, w: c.put(f"{V}/2/pickle-exception", json={"reason": w}, headers=h),
        _row(409, 409, 403, 403, 403, 403, 403),
    ),
    (
        "revoke a pickle exception",
        lambda c, h, w: c.delete(f"{V}/2/pickle-exception", headers=h),
        _row(404, 404, 403, 403, 403, 403, 403),
    ),
    (
        "list deployments",
        lambda c, h, w: c.get("/api/v1/deployments", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", "ok", "ok"),
    ),
    (
        "deployment history",
        lambda c, h, w: c.get("/api/v1/deployments/prod/history", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", "ok", "ok"),
    ),
    (
        "list events",
        lambda c, h, w: c.get("/api/v1/events", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", "ok", "ok"),
    ),
    (
        "own tokens",
        lambda c, h, w: c.get("/api/v1/tokens", headers=h),
        _row("ok", "ok", "ok", "ok", "ok", "ok", "ok"),
    ),
]


def test_role_matrix(tmp_path: Path, db_url: str) -> None:
    app = create_app(auth_settings(tmp_path, db_url))
    with TestClient(app, raise_server_exceptions=False) as c:
        seed_models(c)
        make_user(c, "outsider")
        tokens: dict[str, str | None] = {"root": ADMIN_TOKEN, "notoken": None}
        for role in ("admin", "writer", "reviewer", "reader", "consumer"):
            tokens[role] = make_user(c, f"the-{role}", {"default": role})
        tokens["norole"] = make_user(c, "norole")
        for odd in ("expired", "revoked"):
            tokens[odd] = make_user(c, odd, {"default": "admin"})
        expire_token(db_url, token_id(str(tokens["expired"])))
        c.delete(f"/api/v1/tokens/{token_id(str(tokens['revoked']))}", headers=bearer(ADMIN_TOKEN))

        wrong: list[str] = []
        for name, call, expected in MATRIX:
            for who in COLUMNS:
                r = call(c, bearer(tokens[who]), who)
                got: Any = "ok" if 200 <= r.status_code < 300 else r.status_code
                if got != expected[who]:
                    wrong.append(f"{name} as {who}: expected {expected[who]}, got {got} {r.text}")
                if r.status_code in (401, 403, 404):
                    assert set(r.json()) == {"error"}
        assert wrong == []
