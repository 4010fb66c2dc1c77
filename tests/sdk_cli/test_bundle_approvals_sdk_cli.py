"""Bundle alias approval requests in the SDK (embedded with two users; remote)
and the CLI against a live server (issue 14). The live server runs with auth
off, so its one actor can request and cancel but never approve its own
request; the embedded registries act as two users on one data directory."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.client.backends import EmbeddedBackend
from modelyard.domain.errors import Conflict, PermissionDenied
from modelyard.domain.identity import Principal

DET = {"outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}]}
CLS = {"inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}]}
EDGE = {"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}}


def _pipe(reg: Registry, ns: str, tmp_path: Path) -> None:
    """pipe/1 = det/1 + cls/1 (their @production), pipe/2 = det/2 + cls/1;
    pipe@production -> 1; @production protected with one approval."""
    for name, sig in (("det", DET), ("cls", CLS), ("det", DET)):
        src = tmp_path / uuid.uuid4().hex
        src.mkdir()
        (src / "model.onnx").write_bytes(src.name.encode())
        v = reg.push(name, src, namespace=ns, signature=sig)
        reg.publish(v.ref)
    reg.set_alias(f"{ns}/det/1", "production")
    reg.set_alias(f"{ns}/cls/1", "production")
    reg.create_bundle(
        "pipe", {"detector": "det/1", "classifier": "cls/1"}, edges=[EDGE], namespace=ns
    )
    reg.pin_bundle(f"{ns}/pipe")
    reg.update_bundle(f"{ns}/pipe", roles={"detector": "det/2", "classifier": "cls/1"})
    reg.set_bundle_alias(f"{ns}/pipe@1", "production")
    reg.set_policy({"protected_aliases": ["production"], "required_approvals": 1}, namespace=ns)


def test_sdk_embedded_request_and_approval_by_another_user(tmp_path: Path) -> None:
    ana = Registry(backend=EmbeddedBackend(tmp_path / "reg", actor=Principal.local("ana")))
    bob = Registry(backend=EmbeddedBackend(tmp_path / "reg", actor=Principal.local("bob")))
    try:
        _pipe(ana, "default", tmp_path)
        with pytest.raises(Conflict) as direct:
            ana.set_bundle_alias("pipe@2", "production")
        assert direct.value.code == "APPROVAL_REQUIRED"
        req = ana.request_bundle_approval("pipe@2", "production", comment="det 2")
        assert (req["ref"], req["state"], req["alias_from"]) == ("default/pipe/2", "pending", 1)
        with pytest.raises(PermissionDenied) as own:
            ana.approve_bundle_approval("pipe", req["id"])
        assert own.value.code == "SELF_APPROVAL"
        assert [a["id"] for a in bob.list_bundle_approvals("pipe")] == [req["id"]]
        done = bob.approve_bundle_approval("pipe", req["id"], comment="ok")
        assert done["state"] == "applied" and done["approvals"] == ["bob"]
        assert ana.get_bundle("pipe")["aliases"] == {"production": 2}
        assert ana.get_bundle_approval("pipe", req["id"])["reviews"][0]["actor"] == "bob"
        back = ana.request_bundle_approval("pipe@1", "production")
        assert bob.reject_bundle_approval("pipe", back["id"], comment="no")["state"] == "rejected"
        states = [a["state"] for a in ana.list_bundle_approvals("pipe", state="all")]
        assert states == ["rejected", "applied"]
    finally:
        ana.close()
        bob.close()


def test_sdk_remote_and_cli_requests(live_server: str, tmp_path: Path) -> None:
    ns = "ba" + uuid.uuid4().hex[:8]
    assert httpx.post(f"{live_server}/api/v1/namespaces", json={"name": ns}).status_code == 201
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        _pipe(reg, ns, tmp_path)
        req = reg.request_bundle_approval(f"{ns}/pipe@2", "production")
        with pytest.raises(PermissionDenied):
            reg.approve_bundle_approval(f"{ns}/pipe", req["id"])
        assert reg.cancel_bundle_approval(f"{ns}/pipe", req["id"])["state"] == "cancelled"
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c"), "COLUMNS": "250"}

    def cli(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, list(args), env=env)
        return r.exit_code, r.output

    code, text = cli(
        "bundle", "approval", "request", f"{ns}/pipe@2", "production", "--comment", "go"
    )
    assert code == 0 and f"{ns}/pipe@production -> {ns}/pipe/2 pending" in text, text
    code, text = cli("bundle", "approval", "list", f"{ns}/pipe", "--json")
    [pending] = json.loads(text)
    assert code == 0 and pending["comment"] == "go"
    code, text = cli("bundle", "approval", "approve", f"{ns}/pipe", str(pending["id"]))
    assert code != 0 and "SELF_APPROVAL" in text, text
    code, text = cli("bundle", "approval", "reject", f"{ns}/pipe", str(pending["id"]))
    assert code != 0 and "SELF_APPROVAL" in text, text
    code, text = cli("bundle", "approval", "cancel", f"{ns}/pipe", str(pending["id"]))
    assert code == 0 and "cancelled" in text, text
    code, text = cli("bundle", "approval", "list", f"{ns}/pipe", "--state", "all")
    assert code == 0 and "cancelled" in text and "production" in text, text
