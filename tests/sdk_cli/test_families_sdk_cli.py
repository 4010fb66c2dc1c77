"""Model families in the SDK (remote and embedded) and the CLI (issue 14)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.domain.errors import NotFound


@pytest.fixture(params=["remote", "embedded"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "remote":
        target: str | Path = request.getfixturevalue("live_server")
    else:
        target = tmp_path / "embedded"
    with Registry(target, cache_dir=tmp_path / "cache") as reg:
        yield reg


def _push_family(reg: Registry, tmp_path: Path, name: str) -> None:
    """NAME/1 (pytorch) -> NAME-onnx/1 (converted) -> NAME-int8/1 (quantized)."""
    for i, part in enumerate(("w.pt", "m.onnx", "q.onnx")):
        (tmp_path / part).write_bytes(f"{name}-{i}".encode())
    reg.push(name, {"w.pt": tmp_path / "w.pt"}, format="pytorch", metrics={"auc": 0.9})
    reg.set_alias(f"{name}/1", "production")
    reg.push(
        f"{name}-onnx",
        {"m.onnx": tmp_path / "m.onnx"},
        format="onnx",
        metrics={"auc": 0.89},
        parent=f"{name}@production",
        relation="converted",
        recipe={"tool": "skl2onnx", "tool_version": "1.17.0"},
    )
    reg.push(
        f"{name}-int8",
        {"q.onnx": tmp_path / "q.onnx"},
        format="onnx",
        parent=f"{name}-onnx/1",
        relation="quantized",
    )


def test_sdk_family_queries(registry: Registry, tmp_path: Path) -> None:
    name = "f" + uuid.uuid4().hex[:8]
    _push_family(registry, tmp_path, name)
    fam = registry.family(f"{name}-int8/1")
    assert fam.root == f"default/{name}/1" and fam.of == f"default/{name}-int8/1"
    assert [(m.version.ref, m.depth) for m in fam.members] == [
        (f"default/{name}/1", 0),
        (f"default/{name}-onnx/1", 1),
        (f"default/{name}-int8/1", 2),
    ]
    assert [m.version.ref for m in fam.children(f"default/{name}/1")] == [f"default/{name}-onnx/1"]
    best = registry.variant(f"{name}@production", format="onnx")
    assert best.ref == f"default/{name}-int8/1"
    assert best.lineage["original"] == f"default/{name}/1"
    onnx = registry.variants(f"{name}/1", relation="converted")
    assert [v.ref for v in onnx] == [f"default/{name}-onnx/1"]
    assert onnx[0].lineage["recipe"] == {"tool": "skl2onnx", "tool_version": "1.17.0"}
    assert [v.ref for v in registry.ancestry(f"{name}-int8/1")] == [
        f"default/{name}-onnx/1",
        f"default/{name}/1",
    ]
    with pytest.raises(NotFound) as err:
        registry.variant(f"{name}/1", format="tflite")
    assert err.value.code == "VARIANT_NOT_FOUND"


def test_cli_family(live_server: str, tmp_path: Path) -> None:
    name = "c" + uuid.uuid4().hex[:8]
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        _push_family(reg, tmp_path, name)
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c"), "COLUMNS": "200"}
    r = runner.invoke(app, ["family", f"{name}@production"], env=env)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == f"family of default/{name}/1 (original default/{name}/1)"
    assert lines[1].startswith(f"default/{name}/1  [pytorch] original")
    assert lines[2].startswith(f"└─ default/{name}-onnx/1  [onnx] converted")
    assert lines[3].startswith(f"   └─ default/{name}-int8/1  [onnx] quantized")
    r = runner.invoke(app, ["family", f"{name}-onnx/1", "--json"], env=env)
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["root"] == f"default/{name}/1" and len(body["members"]) == 3
    r = runner.invoke(
        app, ["variants", f"{name}/1", "--format", "onnx", "--latest", "--json"], env=env
    )
    assert r.exit_code == 0, r.output
    assert [v["ref"] for v in json.loads(r.stdout)] == [f"default/{name}-int8/1"]
    r = runner.invoke(app, ["ancestry", f"{name}-int8/1"], env=env)
    assert r.exit_code == 0 and f"default/{name}-onnx/1" in r.stdout
    r = runner.invoke(app, ["variants", f"{name}/1", "--format", "coreml", "--latest"], env=env)
    assert r.exit_code == 1 and "VARIANT_NOT_FOUND" in r.stderr


def test_sdk_add_resources_uploads_only_the_resource(registry: Registry, tmp_path: Path) -> None:
    name = "r" + uuid.uuid4().hex[:8]
    (tmp_path / "model.onnx").write_bytes(uuid.uuid4().bytes * 1000)
    (tmp_path / "thr.json").write_bytes(b'{"t": 0.5}')
    v1 = registry.push(name, {"model.onnx": tmp_path / "model.onnx"}, format="onnx")
    assert v1.resources == []
    (tmp_path / "new.json").write_bytes(name.encode())
    uploads: list[str] = []
    real_upload = registry._b.upload

    def counting(source: Path, *args: object, **kw: object) -> str:
        uploads.append(source.name)
        return real_upload(source, *args, **kw)  # type: ignore[arg-type]

    registry._b.upload = counting  # type: ignore[method-assign]
    v2 = registry.add_resources(
        f"{name}/1", {"thresholds.json": tmp_path / "new.json"}, alias="production"
    )
    assert uploads == ["new.json"]  # the weights were not sent again
    assert v2.version == 2 and v2.aliases == ["production"]
    assert [r["name"] for r in v2.resources] == ["thresholds.json"]
    assert [f["path"] for f in v2.model_files] == ["model.onnx"]
    out = registry.pull(f"{name}@production", tmp_path / "out")
    assert (out / "resources" / "thresholds.json").read_bytes() == name.encode()


def test_cli_resource_add_and_show(live_server: str, tmp_path: Path) -> None:
    name = "s" + uuid.uuid4().hex[:8]
    (tmp_path / "model.onnx").write_bytes(b"w" * 100)
    (tmp_path / "labels.csv").write_bytes(b"cat\ndog\n")
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        reg.push(name, {"model.onnx": tmp_path / "model.onnx"})
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c"), "COLUMNS": "200"}
    r = runner.invoke(
        app, ["resource", "add", f"{name}/1", f"labels.csv={tmp_path / 'labels.csv'}"], env=env
    )
    assert r.exit_code == 0, r.output
    assert f"created default/{name}/2 (retuned from default/{name}/1, 1 resources)" in r.stdout
    r = runner.invoke(app, ["show", f"{name}/2"], env=env)
    assert r.exit_code == 0, r.output
    files_part, _, resources_part = r.stdout.partition("resources")
    assert "model.onnx" in files_part and "labels.csv" not in files_part
    assert "labels.csv" in resources_part
    r = runner.invoke(app, ["resource", "ls", f"{name}/2", "--json"], env=env)
    assert r.exit_code == 0 and [x["name"] for x in json.loads(r.stdout)] == ["labels.csv"]
    r = runner.invoke(app, ["resource", "add", f"{name}/2", "no-equals-sign"], env=env)
    assert r.exit_code == 2


def test_sdk_promote_family(registry: Registry, tmp_path: Path) -> None:
    name = "p" + uuid.uuid4().hex[:8]
    _push_family(registry, tmp_path, name)
    root = registry.publish(f"{name}/1", with_variants=["onnx"])
    assert root.ref == f"default/{name}/1" and root.state == "published"
    assert registry.get_version(f"{name}-int8/1").state == "published"  # newest onnx build
    assert registry.get_version(f"{name}-onnx/1").state == "ready"
    done = registry.promote_family(
        f"{name}/1", action="alias", alias="live", with_variants=["onnx"], reason="r1"
    )
    assert [(p.version.ref, p.format, p.changed) for p in done.parts] == [
        (f"default/{name}/1", None, True),
        (f"default/{name}-int8/1", "onnx", True),
    ]
    assert registry.get_version(f"{name}-int8@live").ref == f"default/{name}-int8/1"
    entries = list(registry.audit(action="family.*", model=name))
    assert [e["change"]["id"] for e in entries] == [done.change_id, entries[1]["change"]["id"]]
    assert entries[0]["change"]["parts"] == 2 and entries[0]["payload"]["reason"] == "r1"


def test_cli_publish_and_alias_with_variants(live_server: str, tmp_path: Path) -> None:
    name = "q" + uuid.uuid4().hex[:8]
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        _push_family(reg, tmp_path, name)
        reg.set_policy({"protected_aliases": ["prod"]}, model=f"{name}-int8")
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c"), "COLUMNS": "200"}
    # int8 is only ready: its protected alias refuses it, so nothing moves.
    r = runner.invoke(app, ["alias", f"{name}/1", "prod", "--with-variants", "onnx"], env=env)
    assert r.exit_code == 1 and "POLICY_VIOLATION" in r.stderr
    assert f"default/{name}-int8/1" in r.stderr
    r = runner.invoke(app, ["publish", f"{name}/1", "--with-variants", "onnx,tflite"], env=env)
    assert r.exit_code == 1 and "VARIANT_NOT_FOUND" in r.stderr
    r = runner.invoke(app, ["publish", f"{name}/1", "--with-variants", "onnx"], env=env)
    assert r.exit_code == 0, r.output
    assert f"default/{name}/1 is now published" in r.stdout
    assert f"default/{name}-int8/1 [onnx] is now published" in r.stdout
    r = runner.invoke(
        app, ["alias", f"{name}/1", "prod", "--with-variants", "onnx", "--json"], env=env
    )
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert [p["version"]["ref"] for p in body["parts"]] == [
        f"default/{name}/1",
        f"default/{name}-int8/1",
    ]
    assert "prod" in body["parts"][1]["version"]["aliases"]
