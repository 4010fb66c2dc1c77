"""Deployments in the SDK (remote and embedded) and the CLI (issue 12):
heartbeats, records, "who follows this alias", history; ``deploy ls/show/
history/set``."""

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


@pytest.fixture(params=["remote", "embedded"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "remote":
        target: str | Path = request.getfixturevalue("live_server")
    else:
        target = tmp_path / "embedded"
    with Registry(target, cache_dir=tmp_path / "cache") as reg:
        yield reg


def _model(reg: Registry, tmp_path: Path, name: str) -> None:
    for n in (1, 2):
        src = tmp_path / f"{name}-{n}"
        src.mkdir()
        (src / "model.bin").write_bytes(f"{name}-{n}".encode())
        reg.push(name, src)
    reg.set_alias(f"{name}/1", "production")


def test_sdk_deployments(registry: Registry, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    name, env = f"fraud-{tag}", f"prod-{tag}"
    _model(registry, tmp_path, name)
    d = registry.report_heartbeat(
        env, f"{name}@production", replica="r1", status="ready", version=1
    )
    assert d["resolved"] == f"default/{name}/1" and d["status"] == "ready"
    d = registry.put_deployment(env, f"{name}@production", replicas=2, endpoint="http://e:1")
    assert (d["replicas"], d["endpoint"]) == (2, "http://e:1")
    registry.report_heartbeat(
        env,
        f"{name}@production",
        replica="r1",
        status="degraded",
        version=1,
        failed_version=2,
        error="bad file",
    )
    shown = registry.deployment(env, f"{name}@production")
    assert shown["status"] == "degraded" and shown["instances"][0]["error"] == "bad file"
    follows = registry.deployments(follows=f"{name}@production")
    assert [x["environment"] for x in follows] == [env]
    assert registry.deployments(environment=env)[0]["reference"] == f"default/{name}@production"
    page = registry.deployment_history(env, limit=2)
    assert [h["kind"] for h in page["history"]] == ["replica", "load_failed"]
    rest = registry.deployment_history(env, before=page["next_before"])
    assert [h["kind"] for h in rest["history"]] == ["updated", "replica", "created"]
    assert rest["next_before"] is None
    with pytest.raises(NotFound) as err:
        registry.deployment(env, f"{name}/2")
    assert err.value.code == "DEPLOYMENT_NOT_FOUND"


def test_cli_deploy_commands(live_server: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    name, env_name = f"fraud-{tag}", f"prod-{tag}"
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        _model(reg, tmp_path, name)
        reg.report_heartbeat(
            env_name, f"{name}@production", replica="pod-1", status="ready", version=1
        )
        reg.set_alias(f"{name}/2", "production")
        reg.report_heartbeat(
            env_name, f"{name}@production", replica="pod-1", status="ready", version=2
        )
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c"), "COLUMNS": "200"}
    r = runner.invoke(
        app, ["deploy", "set", env_name, f"{name}@production", "--replicas", "3"], env=env
    )
    assert r.exit_code == 0 and "replicas 3" in r.stdout, r.output
    r = runner.invoke(app, ["deploy", "ls", "--env", env_name], env=env)
    assert r.exit_code == 0, r.output
    assert f"default/{name}@production" in r.stdout and "ready" in r.stdout and "1/3" in r.stdout
    r = runner.invoke(app, ["deploy", "ls", "--follows", f"{name}@production", "--json"], env=env)
    assert r.exit_code == 0 and [d["version"] for d in json.loads(r.stdout)] == [2]
    r = runner.invoke(app, ["deploy", "show", env_name, f"{name}@production"], env=env)
    assert r.exit_code == 0 and "pod-1" in r.stdout and f"default/{name}/2" in r.stdout, r.output
    r = runner.invoke(app, ["deploy", "history", env_name, "--json"], env=env)
    assert r.exit_code == 0, r.output
    kinds = [h["kind"] for h in json.loads(r.stdout)["history"]]
    assert kinds == ["updated", "swapped", "replica", "created"]
    r = runner.invoke(app, ["deploy", "history", env_name], env=env)
    assert r.exit_code == 0 and "swapped from 1" in r.stdout, r.output
    r = runner.invoke(app, ["deploy", "show", env_name, f"{name}/9"], env=env)
    assert r.exit_code == 1 and "DEPLOYMENT_NOT_FOUND" in r.output
    r = runner.invoke(app, ["deploy", "history", "bad env"], env=env)
    assert r.exit_code == 1 and "INVALID_ENVIRONMENT" in r.output


def test_sdk_delete_and_drift(registry: Registry, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    name, env = f"fraud-{tag}", f"prod-{tag}"
    _model(registry, tmp_path, name)
    registry.report_heartbeat(env, f"{name}@production", replica="r1", status="ready", version=1)
    registry.set_alias(f"{name}/2", "production")
    d = registry.deployment(env, f"{name}@production")
    assert (d["version"], d["desired_version"], d["drift"]) == (1, 2, True)
    with pytest.raises(Conflict) as active:
        registry.delete_deployment(env, f"{name}@production")
    assert active.value.code == "DEPLOYMENT_ACTIVE"
    gone = registry.delete_deployment(env, f"{name}@production", force=True)
    assert gone["version"] == 1
    assert registry.deployments(environment=env) == []
    kinds = [h["kind"] for h in registry.deployment_history(env)["history"]]
    assert kinds == ["deleted", "replica", "created"]


def test_cli_deploy_rm_and_drift(live_server: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    name, env_name = f"fraud-{tag}", f"prod-{tag}"
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        _model(reg, tmp_path, name)
        reg.report_heartbeat(
            env_name, f"{name}@production", replica="pod-1", status="ready", version=1
        )
        reg.set_alias(f"{name}/2", "production")
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c"), "COLUMNS": "200"}
    r = runner.invoke(app, ["deploy", "ls", "--env", env_name], env=env)
    assert r.exit_code == 0 and "2 (drift)" in r.stdout, r.output
    r = runner.invoke(app, ["deploy", "show", env_name, f"{name}@production"], env=env)
    assert r.exit_code == 0 and f"desired default/{name}/2, DRIFT" in r.stdout, r.output
    r = runner.invoke(app, ["deploy", "rm", env_name, f"{name}@production"], env=env)
    assert r.exit_code == 1 and "DEPLOYMENT_ACTIVE" in r.output, r.output
    r = runner.invoke(app, ["deploy", "rm", env_name, f"{name}@production", "--force"], env=env)
    assert r.exit_code == 0 and "deleted deployment" in r.stdout, r.output
    r = runner.invoke(app, ["deploy", "ls", "--env", env_name], env=env)
    assert r.exit_code == 0 and "no deployments" in r.stdout, r.output
    r = runner.invoke(app, ["deploy", "history", env_name], env=env)
    assert r.exit_code == 0 and "deleted (forced)" in r.stdout, r.output


@pytest.mark.parametrize("kind", ["remote", "embedded"])
def test_sdk_lists_every_page_of_deployments(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = request.getfixturevalue("live_server") if kind == "remote" else tmp_path / "emb"
    env_prefix = f"pg{uuid.uuid4().hex[:6]}"
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights")
    with Registry(target, cache_dir=tmp_path / "c") as reg:
        name = f"paged-{uuid.uuid4().hex[:6]}"
        reg.push(name, [src])
        envs = [f"{env_prefix}-{i}" for i in range(5)]
        for env in envs:
            reg.put_deployment(env, f"{name}/1")
        mine = [d for d in reg.deployments(page_size=2) if d["environment"] in envs]
        assert [d["environment"] for d in mine] == envs
        assert reg.deployments(page_size=2) == reg.deployments(page_size=1000)
