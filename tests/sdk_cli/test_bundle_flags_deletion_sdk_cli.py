"""The namespace policy's ``bundle_breaks: flag`` and bundle deletion in the
SDK (remote and embedded) and the CLI against a live server (issue 14).

On the shared live server each test works in a namespace of its own: a
policy on ``default`` would change what other tests of the session see."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.domain.errors import Conflict, NotFound

DET = {"outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}]}
CLS = {"inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}]}
EDGE = {"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}}


def _namespace(live_server: str) -> str:
    ns = "ns" + uuid.uuid4().hex[:8]
    assert httpx.post(f"{live_server}/api/v1/namespaces", json={"name": ns}).status_code == 201
    return ns


@pytest.fixture(params=["remote", "embedded"])
def registry_ns(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Registry, str]]:
    if request.param == "remote":
        target: str | Path = request.getfixturevalue("live_server")
        ns = _namespace(str(target))
    else:
        target, ns = tmp_path / "embedded", "default"
    with Registry(target, cache_dir=tmp_path / "cache") as reg:
        yield reg, ns


def _pipe(reg: Registry, ns: str, tmp_path: Path) -> None:
    """det@production -> cls/1 with an edge, pinned; det/2 breaks the edge."""
    for name, sig in (
        ("det", DET),
        ("cls", CLS),
        ("det", {"outputs": [{"name": "boxes", "dtype": "int8"}]}),
    ):
        src = tmp_path / uuid.uuid4().hex
        src.mkdir()
        (src / "model.onnx").write_bytes(src.name.encode())
        reg.push(name, src, namespace=ns, signature=sig)
    reg.set_alias(f"{ns}/det/1", "production")
    reg.create_bundle(
        "pipe",
        {"detector": "det@production", "classifier": "cls/1"},
        edges=[EDGE],
        namespace=ns,
    )
    reg.pin_bundle(f"{ns}/pipe")


def test_sdk_flag_mode_and_bundle_deletion(
    registry_ns: tuple[Registry, str], tmp_path: Path
) -> None:
    reg, ns = registry_ns
    _pipe(reg, ns, tmp_path)
    with pytest.raises(Conflict) as err:
        reg.set_alias(f"{ns}/det/2", "production")
    assert err.value.code == "BUNDLE_INCOMPATIBLE"
    assert reg.set_policy({"bundle_breaks": "flag"}, namespace=ns)["policy"]["bundle_breaks"] == (
        "flag"
    )
    reg.set_alias(f"{ns}/det/2", "production", reason="flag it")
    [flag] = reg.get_bundle("pipe", namespace=ns)["incompatible"]
    assert (flag["alias"], flag["ref"], flag["mode"]) == (
        f"{ns}/det@production",
        f"{ns}/det/2",
        "flag",
    )
    problems = [m["problem"] for m in flag["roles"][0]["mismatches"]]
    assert "detector.boxes is int8 but classifier.rois takes float32" in problems
    [event] = list(reg.audit(action="bundle.incompatible", namespace=ns))
    assert event["target"] == f"bundle:{ns}/pipe"
    reg.set_bundle_alias(f"{ns}/pipe@1", "production")
    with pytest.raises(Conflict) as aliased:
        reg.delete_bundle(f"{ns}/pipe")
    assert aliased.value.code == "BUNDLE_HAS_ALIASES"
    reg.delete_bundle(f"{ns}/pipe", force=True, reason="retired")
    with pytest.raises(NotFound):
        reg.get_bundle("pipe", namespace=ns)
    [deleted] = list(reg.audit(action="bundle.deleted", namespace=ns))
    assert deleted["payload"]["reason"] == "retired" and deleted["payload"]["forced"] is True
    assert reg.get_version(f"{ns}/det/1").version == 1


def test_cli_policy_flag_show_and_delete(live_server: str, tmp_path: Path) -> None:
    ns = _namespace(live_server)
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        _pipe(reg, ns, tmp_path)
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c"), "COLUMNS": "250"}

    def cli(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, list(args), env=env)
        return r.exit_code, r.output

    code, text = cli("policy", "set", "--namespace", ns, "--bundle-breaks", "flag")
    assert code == 0 and "bundle_breaks" in text and "flag" in text, text
    code, text = cli("alias", "set", f"{ns}/det/2", "production")
    assert code == 0, text
    code, text = cli("bundle", "show", f"{ns}/pipe")
    assert code == 0 and "INCOMPATIBLE since the newest pin" in text, text
    assert f"{ns}/det@production -> {ns}/det/2" in text
    code, text = cli("bundle", "show", f"{ns}/pipe", "--json")
    assert code == 0 and json.loads(text)["incompatible"][0]["ref"] == f"{ns}/det/2"
    code, text = cli("bundle", "alias", "set", f"{ns}/pipe@1", "production")
    assert code == 0, text
    code, text = cli("bundle", "delete", f"{ns}/pipe")
    assert code != 0 and "BUNDLE_HAS_ALIASES" in text, text
    code, text = cli("bundle", "delete", f"{ns}/pipe", "--force", "--reason", "retired")
    assert code == 0 and f"deleted bundle {ns}/pipe" in text, text
    code, text = cli("bundle", "show", f"{ns}/pipe")
    assert code != 0 and "BUNDLE_NOT_FOUND" in text
