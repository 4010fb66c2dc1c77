"""Governance through the CLI (embedded) and the SDK against a real server."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.client.backends import EmbeddedBackend
from modelyard.domain.errors import Conflict, PermissionDenied, PolicyViolation
from modelyard.domain.identity import Principal


def _src(tmp_path: Path, n: int) -> Path:
    d = tmp_path / f"src{n}"
    d.mkdir()
    (d / "model.onnx").write_bytes(f"weights {n}".encode())
    return d


def test_cli_walkthrough(tmp_path: Path) -> None:
    """The issue's "done when", minus tokens: policy, failing push, fix,
    approval by another user, the move in the audit log, rollback."""
    data = str(tmp_path / "reg")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "200"}
    runner = CliRunner()

    def cli(*args: str) -> tuple[int, str, str]:
        r = runner.invoke(app, [*args, "-r", data], env=env)
        return r.exit_code, r.stdout, r.stderr

    code, out, _ = cli(
        "policy",
        "set",
        "--tag",
        "encrypted=true",
        "--metric",
        "accuracy >= 0.9",
        "--approvals",
        "1",
        "--protect",
        "production",
    )
    assert code == 0, out
    code, out, _ = cli("policy", "show", "--json")
    assert json.loads(out)["policy"]["required_tags"] == {"encrypted": "true"}

    assert cli("push", "fraud", str(_src(tmp_path, 1)), "-m", "accuracy=0.85", "--json")[0] == 0
    code, out, _ = cli("policy", "check", "fraud/1")
    assert code == 1 and "encrypted" in out and "accuracy" in out and "approval" in out
    code, _, err = cli("publish", "fraud/1")
    assert code == 1 and "POLICY_VIOLATION" in err and "must be 'true'" in err

    src2 = _src(tmp_path, 2)
    assert cli("push", "fraud", str(src2), "-m", "accuracy=0.93", "-t", "encrypted=true")[0] == 0
    code, _, err = cli("publish", "fraud/2")
    assert code == 1 and "APPROVAL_REQUIRED" in err
    code, out, _ = cli(
        "approval", "request", "fraud/2", "--alias", "production", "--comment", "go", "--json"
    )
    assert code == 0, out
    req = json.loads(out)
    code, _, err = cli("approval", "approve", str(req["id"]))
    assert code == 1 and "SELF_APPROVAL" in err
    code, out, _ = cli("approval", "list")
    assert f"{req['id']}" in out and "publish @production" in out

    # Another user approves (embedded SDK acting as "bob").
    with Registry(backend=EmbeddedBackend(Path(data), actor=Principal.local("bob"))) as bob:
        assert bob.approve(req["id"], comment="lgtm")["state"] == "applied"
    code, out, _ = cli("alias", "show", "fraud@production")
    assert code == 0 and "-> 2" in out and "bob" in out
    code, out, _ = cli("audit", "--action", "alias.moved", "--json")
    moves = json.loads(out)
    assert moves[0]["actor"] == "bob" and moves[0]["after"] == {"version": 2}
    t_v2 = json.loads(cli("alias", "show", "fraud@production", "--json")[1])["at_us"]

    time.sleep(0.002)
    cli("push", "fraud", str(_src(tmp_path, 3)), "-m", "accuracy=0.95", "-t", "encrypted=true")
    rid = json.loads(cli("approval", "request", "fraud/3", "--alias", "production", "--json")[1])
    with Registry(backend=EmbeddedBackend(Path(data), actor=Principal.local("bob"))) as bob:
        assert bob.approve(rid["id"])["state"] == "applied"
    assert "-> 3" in cli("alias", "show", "fraud@production")[1]
    code, out, _ = cli("rollback", "fraud@production", "--reason", "latency")
    assert code == 0 and "default/fraud/2" in out
    assert "-> 2" in cli("alias", "show", "fraud@production")[1]
    assert "-> 2" in cli("alias", "show", "fraud@production", "--at", str(t_v2))[1]
    code, out, _ = cli("audit", "--model", "fraud", "--limit", "3")
    assert code == 0 and "alias.moved" in out and "local" in out

    # Lifecycle commands.
    assert cli("archive", "fraud/1")[0] == 0
    code, out, _ = cli("restore", "fraud/1", "--json")
    assert code == 0 and json.loads(out)["state"] == "ready"
    code, out, _ = cli("approval", "list", "--state", "all", "--json")
    assert [a["state"] for a in json.loads(out)] == ["applied", "applied"]
    code, _, err = cli("rollback", "fraud@nothing")
    assert code == 1 and "NO_PREVIOUS_TARGET" in err
    assert cli("policy", "delete")[0] == 0
    assert "no policy" in cli("policy", "show")[1]


@pytest.fixture
def remote(live_server: str, tmp_path: Path) -> Registry:
    return Registry(live_server, cache_dir=tmp_path / "cache")


def test_sdk_remote_governance(remote: Registry, live_server: str, tmp_path: Path) -> None:
    ns = "g" + uuid.uuid4().hex[:8]
    assert httpx.post(f"{live_server}/api/v1/namespaces", json={"name": ns}).status_code == 201
    remote.set_policy(
        {"required_tags": ["encrypted=true"], "protected_aliases": ["production"]}, namespace=ns
    )
    assert remote.get_policy(namespace=ns)["policy"]["protected_aliases"] == ["production"]
    v1 = remote.push("fraud", _src(tmp_path, 1), namespace=ns)
    assert [x["rule"] for x in remote.check_policy(v1.ref)["violations"]] == ["required_tag"]
    with pytest.raises(PolicyViolation) as exc:
        remote.publish(v1.ref)
    assert exc.value.details["violations"][0]["key"] == "encrypted"
    remote.tag(v1.ref, {"encrypted": "true"})
    assert remote.publish(v1.ref).state == "published"
    remote.set_alias(v1.ref, "production")
    v2 = remote.push("fraud", _src(tmp_path, 2), namespace=ns, tags={"encrypted": "true"})
    remote.publish(v2.ref)
    remote.set_alias(v2.ref, "production")
    back = remote.rollback(f"{ns}/fraud@production", reason="oops", expected_version=2)
    assert back["version"] == 1
    assert remote.alias_at(f"{ns}/fraud@production")["version"] == 1
    with pytest.raises(Conflict) as conflict:
        remote.rollback(f"{ns}/fraud@production", expected_version=2)
    assert conflict.value.code == "ALIAS_CHANGED"
    # Approval requests: the server's actor is "anonymous" until auth lands,
    # so it can request and cancel but never approve its own request.
    req = remote.request_approval(v2.ref, action="alias", alias="production", comment="back")
    assert [a["id"] for a in remote.list_approvals(namespace=ns)] == [req["id"]]
    with pytest.raises(PermissionDenied):
        remote.approve(req["id"])
    assert remote.cancel_approval(req["id"])["state"] == "cancelled"
    entries = list(remote.audit(model=f"{ns}/fraud", action="alias.moved"))
    assert [e["after"]["version"] for e in entries] == [1, 2, 1]
    assert entries[0]["payload"]["reason"] == "oops"
    assert len(list(remote.audit(namespace=ns, limit=2, page_size=1))) == 2
    remote.delete_policy(namespace=ns)
    assert remote.get_policy(namespace=ns)["policy"] is None
    remote.close()


def test_sdk_edit_under_protected_alias_is_refused_on_both_backends(
    remote: Registry, live_server: str, tmp_path: Path
) -> None:
    """Issue 9: the tag-edit guard is in the service, so remote and embedded
    SDKs refuse it like REST does."""
    ns = "e" + uuid.uuid4().hex[:8]
    assert httpx.post(f"{live_server}/api/v1/namespaces", json={"name": ns}).status_code == 201
    policy = {"required_tags": ["encrypted=true"], "protected_aliases": ["production"]}
    embedded = Registry(backend=EmbeddedBackend(tmp_path / "reg", actor=Principal.local("ana")))
    for n, (reg, space) in enumerate(((remote, ns), (embedded, "default"))):
        reg.set_policy(policy, namespace=space)
        v = reg.push("fraud", _src(tmp_path, 10 + n), namespace=space, tags={"encrypted": "true"})
        reg.publish(v.ref)
        reg.set_alias(v.ref, "production")
        with pytest.raises(PolicyViolation) as exc:
            reg.tag(v.ref, {"encrypted": "false"})
        assert exc.value.details["alias"] == "production"
        with pytest.raises(PolicyViolation):
            reg.tag(v.ref, delete=["encrypted"])
        assert reg.get_version(f"{space}/fraud@production").tags["encrypted"] == "true"
    embedded.close()
    # Users over HTTP too (this server runs with auth off: the caller is a superuser).
    remote.create_user(ns)
    assert remote.disable_user(ns)["state"] == "disabled"
    assert remote.enable_user(ns)["state"] == "active"
    remote.delete_user(ns)
    assert {u["name"]: u["state"] for u in remote.list_users()}[ns] == "deleted"
    remote.close()


def test_cli_and_sdk_disable_enable_delete_users(tmp_path: Path) -> None:
    """Issue 9: ``modelyard user disable|enable|delete`` (embedded) and the SDK."""
    data = str(tmp_path / "reg")
    runner = CliRunner()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "200"}

    def cli(*args: str) -> tuple[int, str, str]:
        r = runner.invoke(app, [*args, "-r", data], env=env)
        return r.exit_code, r.stdout, r.stderr

    assert cli("user", "create", "eve")[0] == 0
    code, out, _ = cli("user", "disable", "eve", "--json")
    assert code == 0 and json.loads(out)["state"] == "disabled"
    code, out, _ = cli("user", "enable", "eve")
    assert code == 0 and "eve is now enabled" in out
    code, out, _ = cli("user", "delete", "eve")
    assert code == 0 and "eve is now deleted" in out
    code, _, err = cli("user", "delete", "eve")
    assert code == 1 and "USER_NOT_FOUND" in err
    code, _, err = cli("user", "create", "eve")
    assert code == 1 and "USER_ALREADY_EXISTS" in err
    with Registry(backend=EmbeddedBackend(Path(data), actor=Principal.local("ops"))) as reg:
        reg.create_user("bob")
        assert reg.disable_user("bob")["state"] == "disabled"
        assert reg.enable_user("bob")["state"] == "active"
        reg.delete_user("bob")
        states = {u["name"]: u["state"] for u in reg.list_users()}
        assert states == {"bob": "deleted", "eve": "deleted"}
