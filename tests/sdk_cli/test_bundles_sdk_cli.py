"""Bundles in the SDK (remote and embedded) and the CLI (issue 14): create,
pin, pull into a fresh directory, and the readiness check that answers
"loaded" only when every file of every member is present and intact."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.domain.errors import Conflict

SIG = {
    "det": {
        "inputs": [{"name": "image", "dtype": "uint8"}],
        "outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}],
    },
    "cls": {"inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}], "outputs": []},
}


@pytest.fixture(params=["remote", "embedded"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "remote":
        target: str | Path = request.getfixturevalue("live_server")
    else:
        target = tmp_path / "embedded"
    with Registry(target, cache_dir=tmp_path / "cache") as reg:
        yield reg


def _models(reg: Registry, tmp_path: Path, tag: str) -> None:
    for name in ("det", "cls"):
        src = tmp_path / f"{name}-{tag}"
        (src / "resources").mkdir(parents=True)
        (src / "model.onnx").write_bytes(f"{name}-{tag}".encode() * 100)
        (src / "resources" / "labels.csv").write_bytes(b"a\nb\n")
        reg.push(f"{name}-{tag}", src, signature=SIG[name])
        reg.set_alias(f"{name}-{tag}/1", "production")


def test_sdk_bundle_pull_and_ready(registry: Registry, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    _models(registry, tmp_path, tag)
    registry.create_bundle(
        f"pipe-{tag}",
        {"detector": f"det-{tag}@production", "classifier": f"cls-{tag}@production"},
        edges=[{"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}}],
    )
    pinned = registry.pin_bundle(f"pipe-{tag}")
    assert pinned["version"] == 1
    handle = registry.bundle(f"pipe-{tag}@1")
    dest = tmp_path / "ctx"
    assert not handle.ready(dest).loaded
    report = handle.pull(dest)
    assert report.loaded and report.files == 4 and not report.missing and not report.damaged
    assert (dest / "detector" / "model.onnx").read_bytes() == f"det-{tag}".encode() * 100
    # Damage one file, remove another: both named precisely.
    (dest / "classifier" / "model.onnx").write_bytes(b"x" * 1200)  # same size, other bytes
    (dest / "detector" / "resources" / "labels.csv").unlink()
    bad = registry.bundle(f"pipe-{tag}").ready(dest)
    assert not bad.loaded
    assert bad.missing == [
        {"role": "detector", "ref": f"default/det-{tag}/1", "path": "resources/labels.csv"}
    ]
    assert [(d["role"], d["path"], d["problem"]) for d in bad.damaged] == [
        ("classifier", "model.onnx", "digest")
    ]
    # An incompatible member cannot be pinned.
    src = tmp_path / "cls2"
    src.mkdir()
    (src / "model.onnx").write_bytes(b"v2")
    retyped = {"inputs": [{"name": "rois", "dtype": "int8", "shape": [-1, 4]}], "outputs": []}
    registry.push(f"cls-{tag}", src, signature=retyped)
    # Moving the alias the bundle follows is refused first, naming the bundle...
    with pytest.raises(Conflict) as refused:
        registry.set_alias(f"cls-{tag}/2", "production")
    assert refused.value.code == "BUNDLE_INCOMPATIBLE"
    assert f"bundle default/pipe-{tag} role classifier" in refused.value.message
    # ...unless an admin forces it; then the pin is refused.
    registry.set_alias(f"cls-{tag}/2", "production", force=True)
    with pytest.raises(Conflict) as err:
        registry.pin_bundle(f"pipe-{tag}")
    assert err.value.code == "BUNDLE_INCOMPATIBLE"
    assert any(m["field"] == "rois" for m in err.value.details["mismatches"])


def test_cli_bundle_pull_status(live_server: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        _models(reg, tmp_path, tag)
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c"), "COLUMNS": "200"}
    r = runner.invoke(
        app,
        [
            "bundle",
            "create",
            f"pipe-{tag}",
            "--role",
            f"detector=det-{tag}@production",
            "--role",
            f"classifier=cls-{tag}@production",
            "--edge",
            "detector.boxes->classifier.rois",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["bundle", "pin", f"pipe-{tag}"], env=env)
    assert r.exit_code == 0 and f"pinned default/pipe-{tag}/1" in r.stdout, r.output
    dest = tmp_path / "fresh"
    r = runner.invoke(app, ["bundle", "status", f"pipe-{tag}", "--dest", str(dest)], env=env)
    assert (
        r.exit_code == 1 and "NOT loaded" in r.stdout and "missing  detector/model.onnx" in r.stdout
    )
    r = runner.invoke(app, ["bundle", "pull", f"pipe-{tag}@latest", "--dest", str(dest)], env=env)
    assert r.exit_code == 0 and "loaded (4 files verified" in r.stdout, r.output
    r = runner.invoke(
        app, ["bundle", "status", f"pipe-{tag}", "--dest", str(dest), "--json"], env=env
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["loaded"] is True
    (dest / "classifier" / "model.onnx").write_bytes(b"tampered")
    r = runner.invoke(app, ["bundle", "status", f"pipe-{tag}", "--dest", str(dest)], env=env)
    assert r.exit_code == 1 and "damaged  classifier/model.onnx" in r.stdout
    r = runner.invoke(app, ["bundle", "show", f"pipe-{tag}@1", "--json"], env=env)
    assert r.exit_code == 0 and set(json.loads(r.stdout)["members"]) == {"detector", "classifier"}
    r = runner.invoke(app, ["bundle", "list", "--json"], env=env)
    assert r.exit_code == 0 and f"pipe-{tag}" in {b["name"] for b in json.loads(r.stdout)}
    r = runner.invoke(app, ["bundle", "create", "x", "--role", "detector"], env=env)
    assert r.exit_code == 2
