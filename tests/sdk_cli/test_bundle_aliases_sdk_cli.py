"""Bundle aliases and bundle edits in the SDK (remote and embedded) and the
CLI against a live server (issue 14); the SDK's idempotent add_resources."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.domain.errors import Conflict, NotFound

DET = {"outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}]}
CLS = {"inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}]}
EDGE = {"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}}


@pytest.fixture(params=["remote", "embedded"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "remote":
        target: str | Path = request.getfixturevalue("live_server")
    else:
        target = tmp_path / "embedded"
    with Registry(target, cache_dir=tmp_path / "cache") as reg:
        yield reg


def _models(reg: Registry, tmp_path: Path, tag: str) -> None:
    for name, sig in (("det", DET), ("cls", CLS)):
        src = tmp_path / f"{name}-{tag}"
        src.mkdir()
        (src / "model.onnx").write_bytes(f"{name}-{tag}".encode())
        reg.push(f"{name}-{tag}", src, signature=sig)
        reg.set_alias(f"{name}-{tag}/1", "production")


def test_sdk_bundle_aliases_and_edits(registry: Registry, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    _models(registry, tmp_path, tag)
    pipe = f"pipe-{tag}"
    registry.create_bundle(
        pipe, {"detector": f"det-{tag}@production", "classifier": f"cls-{tag}/1"}, edges=[EDGE]
    )
    registry.pin_bundle(pipe)
    edited = registry.update_bundle(pipe, edges=[], description="no edges")
    assert edited["version"] == 2 and edited["edges"] == []
    assert registry.bundle(f"{pipe}@1").version()["edges"] == [EDGE]
    assert registry.set_bundle_alias(f"{pipe}@1", "production", reason="first")["version"] == 1
    assert registry.set_bundle_alias(pipe, "canary")["version"] == 2  # plain name: the newest
    assert registry.bundle(f"{pipe}@production").version()["ref"] == f"default/{pipe}/1"
    with pytest.raises(Conflict) as err:
        registry.set_bundle_alias(f"{pipe}/2", "production", expected_version=2)
    assert err.value.code == "ALIAS_CHANGED"
    registry.set_bundle_alias(f"{pipe}@canary", "production", expected_version=1)
    registry.delete_bundle_alias(pipe, "canary", reason="done")
    with pytest.raises(NotFound):
        registry.bundle(f"{pipe}@canary").version()
    moves = registry.bundle_alias_history(pipe, alias="production")
    assert [(m["from_version"], m["to_version"], m["reason"]) for m in moves] == [
        (None, 1, "first"),
        (1, 2, ""),
    ]
    assert registry.get_bundle(pipe)["aliases"] == {"production": 2}
    # The SDK sends an idempotency key with add_resources: the same key twice
    # makes one version.
    (tmp_path / "t.json").write_text("{}")
    first = registry.add_resources(
        f"det-{tag}/1", {"t.json": tmp_path / "t.json"}, idempotency_key="k1"
    )
    again = registry.add_resources(
        f"det-{tag}/1", {"t.json": tmp_path / "t.json"}, idempotency_key="k1"
    )
    assert first.version == again.version == 2
    assert registry.add_resources(f"det-{tag}/1", {"t.json": tmp_path / "t.json"}).version == 3


def test_cli_bundle_alias_edit_and_forced_move(live_server: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        _models(reg, tmp_path, tag)
        reg.create_bundle(
            f"pipe-{tag}",
            {"detector": f"det-{tag}@production", "classifier": f"cls-{tag}/1"},
            edges=[EDGE],
        )
        reg.pin_bundle(f"pipe-{tag}")
        src = tmp_path / "det2"
        src.mkdir()
        (src / "model.onnx").write_bytes(b"v2")
        reg.push(f"det-{tag}", src, signature={"outputs": [{"name": "boxes", "dtype": "int8"}]})
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c"), "COLUMNS": "250"}

    def cli(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, list(args), env=env)
        return r.exit_code, r.output

    code, text = cli("bundle", "alias", "set", f"pipe-{tag}@1", "production", "--reason", "go")
    assert code == 0 and f"default/pipe-{tag}@production -> default/pipe-{tag}/1" in text, text
    code, text = cli("bundle", "show", f"pipe-{tag}@production", "--json")
    assert code == 0 and json.loads(text)["version"] == 1
    code, text = cli("bundle", "alias", "history", f"pipe-{tag}", "--json")
    assert code == 0 and [m["reason"] for m in json.loads(text)] == ["go"]
    code, text = cli("bundle", "alias", "delete", f"pipe-{tag}", "production")
    assert code == 0 and "removed" in text
    code, text = cli("bundle", "edit", f"pipe-{tag}", "--no-edges", "--description", "loose")
    assert code == 0 and f"pinned default/pipe-{tag}/2" in text, text
    code, text = cli("bundle", "edit", f"pipe-{tag}", "--edge", "detector.boxes->classifier.rois")
    assert code == 0 and f"pinned default/pipe-{tag}/3" in text, text
    # The breaking move of det@production is refused, naming bundle, role and edge.
    code, text = cli("alias", "set", f"det-{tag}/2", "production")
    assert code != 0 and "BUNDLE_INCOMPATIBLE" in text
    assert f"pipe-{tag} role detector" in text and "detector->classifier" in text
    code, text = cli("alias", "set", f"det-{tag}/2", "production", "--force")
    assert code == 0, text
    code, text = cli("bundle", "edit", f"pipe-{tag}", "--edge", "a.b->c.d", "--no-edges")
    assert code == 2
