"""Identity and access over HTTP: tokens, bootstrap, roles, the production view."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount
from starlette.testclient import TestClient

from modelyard.api.access import Authenticator, access, guard_of, install_guards
from modelyard.api.app import create_app
from modelyard.composition import build_services
from modelyard.settings import Settings
from modelyard.store.metadata.engine import create_engine
from tests.auth_helpers import (
    ADMIN_TOKEN,
    auth_settings,
    bearer,
    expire_token,
    make_user,
    seed_models,
    token_id,
)
from tests.helpers import assert_error

ADMIN = bearer(ADMIN_TOKEN)
V = "/api/v1/models/default/m/versions"


@pytest.fixture
def auth_client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """An app with auth on, bootstrapped with ADMIN_TOKEN, on SQLite and PostgreSQL."""
    app = create_app(auth_settings(tmp_path, db_url))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _dump(db_url: str) -> str:
    """Every row of every table as text (to look for leaked secrets)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return "\n".join(
                repr(tuple(row))
                for n in names
                for row in conn.execute(sa.text(f"SELECT * FROM {n}"))
            )
    finally:
        engine.dispose()


def test_token_shown_once_and_stored_hashed(auth_client: TestClient, db_url: str) -> None:
    make_user(auth_client, "alice", {"default": "reader"})
    r = auth_client.post("/api/v1/tokens", json={"name": "laptop", "user": "alice"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    made = r.json()
    token = made["token"]
    assert token.startswith("myd_") and made["id"] == token_id(token)
    assert len(token.split("_", 2)[2]) >= 43  # 32 random bytes, URL-safe base64
    assert made["state"] == "active" and made["user"] == "alice"

    listed = auth_client.get("/api/v1/tokens", params={"user": "alice"}, headers=ADMIN).json()
    assert {t["id"] for t in listed["tokens"]} >= {made["id"]}
    assert all("token" not in t for t in listed["tokens"])
    assert token not in auth_client.get("/api/v1/events", headers=ADMIN).text

    dump = _dump(db_url)
    assert token not in dump and token.split("_", 2)[2] not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump
    assert ADMIN_TOKEN not in dump

    me = auth_client.get("/api/v1/whoami", headers=bearer(token)).json()
    assert me["name"] == "alice" and me["roles"] == {"default": ["reader"]}
    assert me["token_id"] == made["id"] and me["instance_admin"] is False


def test_bad_tokens_get_one_401(auth_client: TestClient, db_url: str) -> None:
    expired = make_user(auth_client, "e", {"default": "reader"})
    revoked = make_user(auth_client, "r", {"default": "reader"})
    ok = make_user(auth_client, "ok", {"default": "reader"})
    # Used once, so the lookup is cached in-process: revocation must still bite.
    assert auth_client.get("/api/v1/models", headers=bearer(revoked)).status_code == 200
    r = auth_client.delete(f"/api/v1/tokens/{token_id(revoked)}", headers=bearer(revoked))
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    expire_token(db_url, token_id(expired))
    tampered = ok[:-2] + ("AA" if not ok.endswith("AA") else "BB")
    bodies = []
    for headers in (
        {},
        bearer("nonsense"),
        {"Authorization": f"Basic {ok}"},
        bearer(tampered),
        bearer(expired),
        bearer(revoked),
        bearer("x" * 5000),
    ):
        r = auth_client.get("/api/v1/models/default/m", headers=headers)
        assert_error(r, 401, "UNAUTHENTICATED")
        assert r.headers["www-authenticate"].startswith("Bearer")
        bodies.append(r.json())
    assert all(b == bodies[0] for b in bodies)
    assert auth_client.get("/api/v1/models", headers=bearer(ok)).status_code == 200
    listed = auth_client.get("/api/v1/tokens", params={"all": "true"}, headers=ADMIN).json()
    states = {t["user"]: t["state"] for t in listed["tokens"]}
    assert states["e"] == "expired" and states["r"] == "revoked" and states["ok"] == "active"


def test_last_used_written_once_a_minute(auth_client: TestClient, db_url: str) -> None:
    token = make_user(auth_client, "u", {"default": "reader"})

    def last_used() -> str | None:
        mine = auth_client.get("/api/v1/tokens", headers=bearer(token)).json()["tokens"]
        value: str | None = mine[0]["last_used_at"]
        return value

    first = last_used()
    assert first is not None  # the listing request itself used the token
    for _ in range(3):
        auth_client.get("/api/v1/models", headers=bearer(token))
    assert last_used() == first


def test_users_manage_own_tokens_admin_manages_all(auth_client: TestClient) -> None:
    alice = make_user(auth_client, "alice", {"default": "writer"})
    make_user(auth_client, "bob", {"default": "writer"})
    mine = auth_client.post("/api/v1/tokens", json={"name": "ci"}, headers=bearer(alice))
    assert mine.status_code == 201 and mine.json()["user"] == "alice"
    r = auth_client.post("/api/v1/tokens", json={"name": "x", "user": "bob"}, headers=bearer(alice))
    assert_error(r, 403, "PERMISSION_DENIED")
    r = auth_client.get("/api/v1/tokens", params={"user": "bob"}, headers=bearer(alice))
    assert_error(r, 403, "PERMISSION_DENIED")
    bobs = auth_client.get("/api/v1/tokens", params={"user": "bob"}, headers=ADMIN).json()
    bob_id = bobs["tokens"][0]["id"]
    # Another user's token looks absent, not forbidden.
    assert_error(
        auth_client.delete(f"/api/v1/tokens/{bob_id}", headers=bearer(alice)),
        404,
        "TOKEN_NOT_FOUND",
    )
    assert auth_client.delete(f"/api/v1/tokens/{bob_id}", headers=ADMIN).status_code == 200
    own = auth_client.get("/api/v1/tokens", headers=bearer(alice)).json()["tokens"]
    assert {t["user"] for t in own} == {"alice"} and len(own) == 2
    r = auth_client.post(
        "/api/v1/tokens", json={"name": "short", "expires_in": 3600}, headers=bearer(alice)
    )
    assert r.json()["expires_at"] is not None
    r = auth_client.post("/api/v1/tokens", json={"name": "bad", "expires_in": 0}, headers=ADMIN)
    assert_error(r, 422, "VALIDATION_ERROR")
    assert_error(auth_client.get("/api/v1/users", headers=bearer(alice)), 403, "PERMISSION_DENIED")
    users = auth_client.get("/api/v1/users", headers=ADMIN).json()["users"]
    assert [u["name"] for u in users] == ["admin", "alice", "bob"]
    assert users[0]["roles"][0]["namespace"] == "*" and users[0]["roles"][0]["role"] == "admin"
    assert_error(
        auth_client.post("/api/v1/users", json={"name": "alice"}, headers=ADMIN),
        409,
        "USER_ALREADY_EXISTS",
    )


def test_role_bindings_grant_revoke_list(auth_client: TestClient) -> None:
    assert auth_client.post("/api/v1/namespaces", json={"name": "team"}, headers=ADMIN)
    boss = make_user(auth_client, "boss", {"team": "admin"})
    carol = make_user(auth_client, "carol")
    # A namespace admin grants roles in that namespace only.
    r = auth_client.put("/api/v1/roles/team/carol/writer", headers=bearer(boss))
    assert r.status_code == 201 and r.json()["role"] == "writer"
    assert (
        auth_client.put("/api/v1/roles/team/carol/writer", headers=bearer(boss)).status_code == 200
    )
    for path in ("/api/v1/roles/default/carol/writer", "/api/v1/roles/*/carol/reader"):
        assert_error(auth_client.put(path, headers=bearer(boss)), 403, "PERMISSION_DENIED")
    assert_error(
        auth_client.put("/api/v1/roles/team/carol/owner", headers=bearer(boss)), 400, "INVALID_ROLE"
    )
    assert_error(
        auth_client.put("/api/v1/roles/nope/carol/reader", headers=ADMIN),
        404,
        "NAMESPACE_NOT_FOUND",
    )
    assert_error(
        auth_client.put("/api/v1/roles/team/nobody/reader", headers=bearer(boss)),
        404,
        "USER_NOT_FOUND",
    )
    assert (
        auth_client.post(
            "/api/v1/models", json={"name": "x", "namespace": "team"}, headers=bearer(carol)
        ).status_code
        == 201
    )
    listed = auth_client.get("/api/v1/roles", params={"namespace": "team"}, headers=bearer(boss))
    assert {(b["user"], b["role"]) for b in listed.json()["roles"]} == {
        ("boss", "admin"),
        ("carol", "writer"),
    }
    own = auth_client.get("/api/v1/roles", headers=bearer(carol)).json()["roles"]
    assert [(b["namespace"], b["role"]) for b in own] == [("team", "writer")]
    r = auth_client.get("/api/v1/roles", params={"user": "boss"}, headers=bearer(carol))
    assert_error(r, 403, "PERMISSION_DENIED")
    assert (
        auth_client.delete("/api/v1/roles/team/carol/writer", headers=bearer(boss)).status_code
        == 204
    )
    # Applies at once: the cached principal is dropped on this replica.
    r = auth_client.post(
        "/api/v1/models", json={"name": "y", "namespace": "team"}, headers=bearer(carol)
    )
    assert_error(r, 403, "PERMISSION_DENIED")
    assert_error(
        auth_client.delete("/api/v1/roles/team/carol/writer", headers=bearer(boss)),
        404,
        "ROLE_BINDING_NOT_FOUND",
    )
    types = [e["type"] for e in auth_client.get("/api/v1/events", headers=ADMIN).json()["events"]]
    assert types.count("role.granted") == 2 and types.count("role.revoked") == 1
    assert "user.bootstrapped" in types and "token.created" in types


def test_namespaces_are_walled(auth_client: TestClient) -> None:
    auth_client.post("/api/v1/namespaces", json={"name": "team"}, headers=ADMIN)
    seed_models(auth_client)
    auth_client.post("/api/v1/models", json={"name": "secret", "namespace": "team"}, headers=ADMIN)
    dora = make_user(auth_client, "dora", {"default": "writer"})
    h = bearer(dora)
    assert [
        n["name"] for n in auth_client.get("/api/v1/namespaces", headers=h).json()["namespaces"]
    ] == ["default"]
    assert_error(auth_client.get("/api/v1/models/team/secret", headers=h), 403, "PERMISSION_DENIED")
    # Denied before any lookup: a missing model reads the same.
    assert_error(auth_client.get("/api/v1/models/team/ghost", headers=h), 403, "PERMISSION_DENIED")
    r = auth_client.post("/api/v1/models", json={"name": "z", "namespace": "team"}, headers=h)
    assert_error(r, 403, "PERMISSION_DENIED")
    names = {m["name"] for m in auth_client.get("/api/v1/models", headers=h).json()["models"]}
    assert names == {"m"}
    r = auth_client.get("/api/v1/search/models", params={"namespace": "team"}, headers=h)
    assert_error(r, 403, "PERMISSION_DENIED")
    events = auth_client.get("/api/v1/events", headers=h).json()["events"]
    assert events and {e["namespace"] for e in events} == {"default"}
    # Lineage may not point into a namespace the writer cannot read.
    r = auth_client.post(
        "/api/v1/models/default/m/versions",
        json={"lineage": {"parent": "team/secret/1", "relation": "converted"}},
        headers=h,
    )
    assert_error(r, 403, "PERMISSION_DENIED")


def test_consumer_sees_only_the_production_view(auth_client: TestClient) -> None:
    seed_models(auth_client)  # m/1 ready (aliased staging), m/2 published, m/3 draft
    admin_view = auth_client.get("/api/v1/models/default/m/versions", headers=ADMIN).json()
    assert len(admin_view["versions"]) == 3
    auth_client.post("/api/v1/models", json={"name": "hidden"}, headers=ADMIN)
    auth_client.put(
        "/api/v1/models/default/m/aliases/production", json={"version": "2"}, headers=ADMIN
    )
    c = bearer(make_user(auth_client, "prod", {"default": "consumer"}))
    get = auth_client.get

    # What is visible: the published version, by every door.
    assert get("/api/v1/models/default/m", headers=c).status_code == 200
    assert get("/api/v1/models/default/m/versions/2", headers=c).json()["state"] == "published"
    assert get("/api/v1/models/default/m/versions/latest", headers=c).json()["version"] == 2
    assert get("/api/v1/models/default/m/versions/production", headers=c).json()["version"] == 2
    assert get("/api/v1/resolve", params={"ref": "m@production"}, headers=c).status_code == 200
    listed = get("/api/v1/models/default/m/versions", headers=c).json()["versions"]
    assert [v["version"] for v in listed] == [2]
    found = get("/api/v1/search/versions", headers=c).json()["versions"]
    assert [v["ref"] for v in found] == ["default/m/2"]
    assert [m["name"] for m in get("/api/v1/models", headers=c).json()["models"]] == ["m"]
    assert get("/api/v1/models/default/m/versions/2/files", headers=c).status_code == 200
    assert (
        get("/api/v1/models/default/m/versions/2/files/model.bin", headers=c).content == b"file-1"
    )
    assert get("/api/v1/models/default/m/versions/2/archive.tar", headers=c).status_code == 200

    # Keyset pages stay exact: one page of one, and no further page.
    page = get("/api/v1/search/versions", params={"page_size": 1}, headers=c).json()
    assert len(page["versions"]) == 1 and page["next_page_token"] is None

    # Everything else answers 404, exactly as if it did not exist.
    hidden = [
        ("/api/v1/models/default/m/versions/1", "VERSION_NOT_FOUND"),
        ("/api/v1/models/default/m/versions/3", "VERSION_NOT_FOUND"),
        ("/api/v1/models/default/m/versions/staging", "ALIAS_NOT_FOUND"),
        ("/api/v1/models/default/m/versions/1/files", "VERSION_NOT_FOUND"),
        ("/api/v1/models/default/m/versions/1/files/model.bin", "VERSION_NOT_FOUND"),
        ("/api/v1/models/default/m/versions/1/archive.tar", "VERSION_NOT_FOUND"),
        ("/api/v1/models/default/hidden", "MODEL_NOT_FOUND"),
        ("/api/v1/models/default/hidden/versions", "MODEL_NOT_FOUND"),
        ("/api/v1/models/default/hidden/versions/latest", "MODEL_NOT_FOUND"),
    ]
    for path, code in hidden:
        r = get(path, headers=c)
        missing = get(path.replace("/1", "/99").replace("hidden", "ghost"), headers=c)
        if "staging" in path:
            missing = get(path.replace("staging", "ghost"), headers=c)
        err = assert_error(r, 404, code)
        assert err == missing.json()["error"] | {
            "message": err["message"],
            "details": err["details"],
        }
    r = get("/api/v1/resolve", params={"ref": "m@staging"}, headers=c)
    assert_error(r, 404, "ALIAS_NOT_FOUND")
    r = get("/api/v1/search/versions", params={"filter": "state = 'ready'"}, headers=c)
    assert r.json()["versions"] == []
    # Nothing visible names hidden versions: the model's latest number, lineage links.
    assert get("/api/v1/models/default/m", headers=c).json()["latest_version"] == 2
    assert get("/api/v1/models/default/m", headers=ADMIN).json()["latest_version"] == 3
    r = auth_client.post(
        "/api/v1/models/default/m/versions",
        json={"lineage": {"parent": "m/1", "relation": "finetuned"}},
        headers=ADMIN,
    )
    auth_client.post("/api/v1/models/default/m/versions/4/publish", headers=ADMIN)
    assert get(f"{V}/4", headers=ADMIN).json()["lineage"]["parent"] == "default/m/1"
    for seen in (
        get(f"{V}/4", headers=c).json(),
        get("/api/v1/search/versions", headers=c).json()["versions"][0],
        get(V, headers=c).json()["versions"][0],
    ):
        assert seen["version"] == 4 and seen["lineage"]["parent"] is None
    assert get("/api/v1/models", headers=c).json()["models"][0]["latest_version"] == 4

    # Not part of the production view at all: refused whatever exists.
    assert_error(
        get("/api/v1/models/default/m/aliases/history", headers=c), 403, "PERMISSION_DENIED"
    )
    assert get("/api/v1/events", headers=c).json()["events"] == []


def test_route_walk_every_route_has_a_decision(tmp_path: Path, db_url: str) -> None:
    app = create_app(auth_settings(tmp_path, db_url))
    seen = 0
    # Mounted doors (the MLflow one) are walked route by route under their prefix.
    walked: list[tuple[str, BaseRoute]] = []
    for route in app.routes:
        if isinstance(route, Mount):
            walked += [(route.path + getattr(r, "path", ""), r) for r in route.routes]
        else:
            walked.append((getattr(route, "path", ""), route))
    assert any(p.startswith("/api/2.0/mlflow/") for p, _ in walked)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path, route in walked:
            rule = guard_of(route)
            assert rule is not None, f"{route!r} has no authorization decision"
            methods = sorted(getattr(route, "methods", None) or ())
            assert methods, route
            url = path.replace("{path:path}", "a/b").replace("{name}", "favicon.png")
            url = url.replace("{", "").replace("}", "")
            url = url.replace("/static/favicon.png", "/static/style.css")
            for method in methods:
                seen += 1
                r = client.request(method, url)
                if rule.public and method == "POST" and not path.startswith("/api/"):
                    # The UI's public forms (sign in, sign out): refused
                    # without the CSRF token of one of our pages.
                    assert r.status_code == 403 and "CSRF_FAILED" in r.text, (method, path)
                elif rule.public and "/mlflow-artifacts/mpu/part/" in path:
                    # A capability URL: without a real upload id it is unknown
                    # (a made-up part number is a bad request), never 401/403.
                    assert r.status_code in (400, 404), (method, path, r.status_code)
                elif rule.public:
                    assert r.status_code < 400, (method, path, r.status_code)
                else:
                    assert r.status_code == 401, (method, path, r.status_code, r.text)
    assert seen > 40
    public = {
        (p, m)
        for p, r in walked
        if (g := guard_of(r)) and g.public
        for m in sorted(getattr(r, "methods", None) or ())
        if m != "HEAD"
    }
    assert public == {
        ("/health", "GET"),
        ("/health/live", "GET"),
        ("/health/ready", "GET"),
        ("/metrics", "GET"),
        ("/openapi.json", "GET"),
        ("/docs", "GET"),
        ("/docs/oauth2-redirect", "GET"),
        ("/docs/assets/{name}", "GET"),
        ("/redoc", "GET"),
        # The UI: its sign-in form, sign out, and its stylesheet and icon.
        ("/signin", "GET"),
        ("/signin", "POST"),
        ("/signout", "POST"),
        ("/static/{name}", "GET"),
        # MLflow's capability probe (no login, as MLflow) and multipart part
        # uploads (the upload id in the URL is the authority), under each mount.
        ("/api/3.0/mlflow/server-info", "GET"),
        ("/ajax-api/3.0/mlflow/server-info", "GET"),
        ("/api/2.0/mlflow-artifacts/mpu/part/{upload_id}/{part_number}", "PUT"),
        ("/ajax-api/2.0/mlflow-artifacts/mpu/part/{upload_id}/{part_number}", "PUT"),
    }


def test_undeclared_routes_are_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    identity = build_services(settings).identity
    app = FastAPI()

    @app.get("/open")
    @access("public")
    async def open_() -> dict[str, str]:
        return {}

    @app.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    auth = Authenticator(identity, enabled=True, call=None)
    with pytest.raises(RuntimeError, match="/forgotten"):
        install_guards(app, auth)
    app2 = FastAPI()
    app2.router.routes.extend(r for r in app.routes if getattr(r, "path", "") == "/forgotten")
    install_guards(app2, auth, strict=False)
    from modelyard.api.errors import install_error_handlers

    install_error_handlers(app2)
    with TestClient(app2, raise_server_exceptions=False) as client:
        assert_error(client.get("/forgotten"), 403, "PERMISSION_DENIED")
    identity.db.dispose()


def test_a_mount_needs_guards_of_its_own(tmp_path: Path) -> None:
    identity = build_services(Settings(data_dir=tmp_path)).identity
    auth = Authenticator(identity, enabled=True, call=None)
    inner = FastAPI(docs_url=None, redoc_url=None)

    @inner.get("/thing")
    @access("read")
    async def thing() -> dict[str, str]:
        return {}

    outer = FastAPI(docs_url=None, redoc_url=None)
    outer.router.routes.append(Mount("/door", app=inner))
    # Its routes would bypass every guard: refused.
    with pytest.raises(RuntimeError, match="Mount"):
        install_guards(outer, auth)
    install_guards(inner, auth)
    install_guards(outer, auth)  # now accepted: the door guards its own routes
    identity.db.dispose()


def test_bootstrap_admin_from_env_and_only_once(tmp_path: Path, db_url: str) -> None:
    with TestClient(create_app(auth_settings(tmp_path, db_url))) as client:
        me = client.get("/api/v1/whoami", headers=ADMIN).json()
        assert me["name"] == "admin" and me["instance_admin"] is True
        assert me["roles"] == {"*": ["admin"]}
    other = Settings(data_dir=tmp_path / "data", db=db_url, auth="on", admin_token="y" * 40)  # type: ignore[arg-type]
    with TestClient(create_app(other)) as client:
        assert client.get("/api/v1/whoami", headers=ADMIN).status_code == 200
        assert client.get("/api/v1/whoami", headers=bearer("y" * 40)).status_code == 401
        users = client.get("/api/v1/users", headers=ADMIN).json()["users"]
        assert [u["name"] for u in users] == ["admin"]


def test_bootstrap_generates_and_prints_once(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path / "d", db=sqlite_url, auth="on")
    with TestClient(create_app(settings)) as client:
        printed = capsys.readouterr().err
        token = next(w for w in printed.split() if w.startswith("myd_"))
        assert client.get("/api/v1/whoami", headers=bearer(token)).json()["name"] == "admin"
    with TestClient(create_app(settings)):
        assert "myd_" not in capsys.readouterr().err


def test_auth_off_acts_as_anonymous_superuser(client: TestClient) -> None:
    me = client.get("/api/v1/whoami").json()
    assert me["name"] == "anonymous" and me["instance_admin"] and me["builtin"]
    assert client.post("/api/v1/users", json={"name": "u"}).status_code == 201
    r = client.post("/api/v1/tokens", json={"name": "t", "user": "u"})
    assert r.status_code == 201 and r.json()["token"].startswith("myd_")
    assert_error(client.post("/api/v1/tokens", json={"name": "t"}), 400, "INVALID_INPUT")


def test_openapi_names_each_routes_requirement(auth_client: TestClient) -> None:
    spec = auth_client.get("/openapi.json").json()
    op = spec["paths"]["/api/v1/models/{namespace}/{name}"]["delete"]
    assert op["x-required-permission"] == "admin"
    assert "Requires: `admin` on the namespace." in op["description"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation.get("summary"), (method, path)
            assert operation.get("x-required-permission"), (method, path)


def test_users_disabled_and_deleted(auth_client: TestClient) -> None:
    """Issue 9: disable/enable/delete users; tokens stop at once, history keeps
    the name, a deleted name is not reused, roles go; evented and audited."""
    c = auth_client
    eve = bearer(make_user(c, "eve", {"default": "writer"}))
    assert c.post("/api/v1/models", json={"name": "m"}, headers=eve).status_code == 201
    seed = c.get("/api/v1/whoami", headers=eve)  # cached in-process now
    assert seed.status_code == 200 and seed.json()["name"] == "eve"

    # Only an instance admin, never on oneself.
    assert_error(c.post("/api/v1/users/eve/disable", headers=eve), 403, "PERMISSION_DENIED")
    assert_error(c.post("/api/v1/users/admin/disable", headers=ADMIN), 409, "SELF_LOCKOUT")
    assert_error(c.post("/api/v1/users/nobody/disable", headers=ADMIN), 404, "USER_NOT_FOUND")

    r = c.post("/api/v1/users/eve/disable", headers=ADMIN)
    assert r.status_code == 200 and r.json()["state"] == "disabled" and r.json()["disabled_at"]
    assert_error(c.get("/api/v1/whoami", headers=eve), 401, "UNAUTHENTICATED")
    assert_error(
        c.post("/api/v1/tokens", json={"name": "x", "user": "eve"}, headers=ADMIN),
        409,
        "USER_DISABLED",
    )
    assert [b["role"] for b in c.get("/api/v1/roles?user=eve", headers=ADMIN).json()["roles"]] == [
        "writer"
    ]
    r = c.post("/api/v1/users/eve/enable", headers=ADMIN)
    assert r.status_code == 200 and r.json()["state"] == "active"
    assert c.get("/api/v1/whoami", headers=eve).status_code == 200

    assert c.delete("/api/v1/users/eve", headers=ADMIN).status_code == 204
    assert_error(c.get("/api/v1/whoami", headers=eve), 401, "UNAUTHENTICATED")
    assert c.get("/api/v1/roles?user=eve", headers=ADMIN).json()["roles"] == []
    tokens = c.get("/api/v1/tokens?user=eve", headers=ADMIN).json()["tokens"]
    assert tokens and all(t["state"] == "revoked" for t in tokens)
    users = {u["name"]: u for u in c.get("/api/v1/users", headers=ADMIN).json()["users"]}
    assert users["eve"]["state"] == "deleted" and users["eve"]["roles"] == []
    err = assert_error(
        c.post("/api/v1/users", json={"name": "eve"}, headers=ADMIN), 409, "USER_ALREADY_EXISTS"
    )
    assert err["details"] == {"user": "eve", "state": "deleted"}
    assert_error(c.delete("/api/v1/users/eve", headers=ADMIN), 404, "USER_NOT_FOUND")
    assert_error(c.put("/api/v1/roles/default/eve/reader", headers=ADMIN), 404, "USER_NOT_FOUND")

    # History keeps the name: eve's own change and the admin's changes to eve.
    audit = c.get("/api/v1/audit", params={"action": "user."}, headers=ADMIN).json()["entries"]
    assert [(e["action"], e["target"]) for e in audit[:3]] == [
        ("user.deleted", "user/eve"),
        ("user.enabled", "user/eve"),
        ("user.disabled", "user/eve"),
    ]
    assert audit[0]["payload"]["removed_roles"] == [{"namespace": "default", "role": "writer"}]
    assert audit[0]["after"] == {"state": "deleted"}
    made = c.get("/api/v1/audit", params={"actor": "eve"}, headers=ADMIN).json()["entries"]
    assert [e["action"] for e in made] == ["model.created"]
