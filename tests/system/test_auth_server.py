"""The auth mode of a real server process, and the CLI and SDK with tokens."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.domain.errors import PermissionDenied, Unauthenticated
from tests.auth_helpers import ADMIN_TOKEN
from tests.conftest_server import start_server, stop_server


def test_auth_is_on_when_binding_beyond_loopback(tmp_path: Path) -> None:
    env = {"MODELYARD_HOST": "0.0.0.0", "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN}
    proc, url = start_server(tmp_path / "d", extra_env=env)
    try:
        r = httpx.get(f"{url}/api/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
        assert r.headers["www-authenticate"].startswith("Bearer")
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert httpx.get(f"{url}/api/v1/models", headers=admin).status_code == 200
        _cli_and_sdk_with_tokens(url, tmp_path)
    finally:
        stop_server(proc)
    log = (tmp_path / "d" / "server.log").read_text()
    assert "auth:     on (auto: binding beyond loopback)" in log
    assert "authentication is off" not in log
    assert ADMIN_TOKEN not in log


def test_auth_is_off_on_loopback_and_says_so(tmp_path: Path) -> None:
    proc, url = start_server(tmp_path / "d")
    try:
        assert httpx.get(f"{url}/api/v1/models").status_code == 200
        assert httpx.get(f"{url}/api/v1/whoami").json()["name"] == "anonymous"
    finally:
        stop_server(proc)
    log = (tmp_path / "d" / "server.log").read_text()
    assert "auth:     OFF (auto: local default, loopback only)" in log
    assert "WARNING: authentication is off" in log


def _cli_and_sdk_with_tokens(url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    admin = {"MODELYARD_URL": url, "MODELYARD_TOKEN": ADMIN_TOKEN}

    def cli(*args: str, env: dict[str, str] = admin) -> str:
        r = runner.invoke(app, list(args), env=env)
        assert r.exit_code == 0, r.output
        return r.stdout

    assert json.loads(cli("whoami", "--json"))["instance_admin"] is True
    assert json.loads(cli("user", "create", "bob", "--json"))["name"] == "bob"
    assert json.loads(cli("role", "grant", "bob", "writer", "-n", "default", "--json"))["role"]
    made = json.loads(
        cli("token", "create", "ci", "--user", "bob", "--expires-in", "30d", "--json")
    )
    bob_token = made["token"]
    assert made["expires_at"] and bob_token.startswith("myd_")
    listed = json.loads(cli("token", "list", "--all", "--json"))
    assert {t["user"] for t in listed} == {"admin", "bob"}
    assert all("token" not in t for t in listed)
    users = json.loads(cli("user", "list", "--json"))
    assert [u["name"] for u in users] == ["admin", "bob"]
    roles = json.loads(cli("role", "list", "-n", "default", "--json"))
    assert [(b["user"], b["role"]) for b in roles] == [("bob", "writer")]

    # --token on the command line, and the SDK with token=... / MODELYARD_TOKEN.
    bob_env = {"MODELYARD_URL": url}
    assert "bob" in cli("whoami", "--token", bob_token, env=bob_env)
    (tmp_path / "w.bin").write_bytes(b"weights")
    with Registry(url, token=bob_token) as reg:
        v = reg.push("fraud", tmp_path / "w.bin", tags={"encrypted": "true"})
        assert v.ref == "default/fraud/1"
        assert reg.whoami()["name"] == "bob"
        with pytest.raises(PermissionDenied):
            reg.create_user("mallory")
    with Registry(url) as anonymous, pytest.raises(Unauthenticated):
        anonymous.get_version("fraud/1")

    # Governance, events and webhooks commands take --token too.
    audit = json.loads(cli("audit", "--json", "--token", ADMIN_TOKEN, env=bob_env))
    assert any(e["action"] == "token.created" for e in audit)
    r = runner.invoke(app, ["audit", "--json"], env=bob_env)
    assert r.exit_code == 1 and "UNAUTHENTICATED" in r.output

    cli("token", "revoke", made["id"])
    r = runner.invoke(app, ["whoami", "--token", bob_token], env=bob_env)
    assert r.exit_code == 1 and "UNAUTHENTICATED" in r.output
    r = runner.invoke(app, ["role", "grant", "bob", "owner"], env=admin)
    assert r.exit_code == 1 and "INVALID_ROLE" in r.output


def test_embedded_sdk_is_the_local_superuser(tmp_path: Path) -> None:
    with Registry(tmp_path / "data") as reg:
        me = reg.whoami()
        assert me["name"] == "local" and me["instance_admin"] and me["builtin"]
        reg.create_user("eve")
        reg.grant_role("eve", "consumer", namespace="default")
        made = reg.create_token("notebook", user="eve", expires_in=60)
        assert made["token"].startswith("myd_") and made["user"] == "eve"
        assert [t["name"] for t in reg.list_tokens(user="eve")] == ["notebook"]
        assert reg.revoke_token(made["id"])["state"] == "revoked"
        assert [(b["user"], b["role"]) for b in reg.list_roles(namespace="default")] == [
            ("eve", "consumer")
        ]
        reg.revoke_role("eve", "consumer", namespace="default")
        assert reg.list_roles(user="eve") == []
        assert [u["name"] for u in reg.list_users()] == ["eve"]


def test_event_stream_ends_when_its_token_is_revoked(tmp_path: Path) -> None:
    env = {"MODELYARD_AUTH": "on", "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN}
    proc, url = start_server(tmp_path / "d", extra_env=env)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        made = httpx.post(
            f"{url}/api/v1/tokens", json={"name": "watch", "user": "admin"}, headers=admin
        ).json()
        mine = {"Authorization": f"Bearer {made['token']}"}
        lines: list[str] = []
        with httpx.stream(
            "GET",
            f"{url}/api/v1/events/stream",
            params={"heartbeat": 0.2},
            headers=mine,
            timeout=httpx.Timeout(10.0),
        ) as resp:
            assert resp.status_code == 200
            ended = False
            for line in resp.iter_lines():
                lines.append(line)
                if line.startswith(": heartbeat"):
                    r = httpx.delete(f"{url}/api/v1/tokens/{made['id']}", headers=admin)
                    assert r.status_code == 200
                if len(lines) > 40:  # still streaming long after the revocation
                    break
            else:
                ended = True
        assert ended, "the stream outlived its revoked token"
        assert any(x.startswith(": heartbeat") for x in lines)
        r = httpx.get(f"{url}/api/v1/events/stream", headers=mine)
        assert r.status_code == 401
    finally:
        stop_server(proc)
