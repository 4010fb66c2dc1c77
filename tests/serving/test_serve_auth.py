"""``modelyard serve`` against a registry with authentication on."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from tests.auth_helpers import ADMIN_TOKEN
from tests.conftest_server import start_server, stop_server
from tests.serving.models import train, write_onnx
from tests.serving.servers import start_serving


def test_a_consumer_token_serves_what_production_allows(tmp_path: Path) -> None:
    """With auth on, a consumer's token resolves and pulls a published version
    (and follows its alias); a version outside the production view is refused."""
    env = {"MODELYARD_AUTH": "on", "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN}
    registry_proc, registry = start_server(tmp_path / "registry", extra_env=env)
    try:
        with Registry(registry, token=ADMIN_TOKEN, cache_dir=tmp_path / "sdk") as admin:
            admin.create_user("svc")
            admin.grant_role("svc", "consumer", namespace="default")
            token = admin.create_token("serving", user="svc")["token"]
            for seed in (0, 1):
                model = write_onnx(train(seed), tmp_path / f"m{seed}.onnx")
                admin.push("fraud", [model], format="onnx")
            admin.publish("fraud/1")
            admin.set_alias("fraud/1", "production")
        proc, url = start_serving(
            registry, ["fraud@production"], tmp_path / "serve", env={"MODELYARD_TOKEN": token}
        )
        try:
            ready = httpx.get(f"{url}/v2/models/fraud/versions/1/ready")
            assert ready.status_code == 200
        finally:
            stop_server(proc)
        result = CliRunner().invoke(
            app,
            ["serve", "fraud/2", "-r", registry, "--cache-dir", str(tmp_path / "c2")],
            env={"MODELYARD_TOKEN": token},
        )
        assert result.exit_code == 1 and "NOT_FOUND" in result.output, result.output
    finally:
        stop_server(registry_proc)


def test_a_consumer_token_follows_a_protected_alias_by_its_events(tmp_path: Path) -> None:
    """A consumer's event stream carries the move of a protected alias onto a
    published version: the server swaps at once, with the resync (the
    re-resolve after quiet) set to an hour so only the event can explain it."""
    env = {"MODELYARD_AUTH": "on", "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN}
    registry_proc, registry = start_server(tmp_path / "registry", extra_env=env)
    try:
        with Registry(registry, token=ADMIN_TOKEN, cache_dir=tmp_path / "sdk") as admin:
            admin.create_user("svc")
            admin.grant_role("svc", "consumer", namespace="default")
            token = admin.create_token("serving", user="svc")["token"]
            for seed in (0, 1):
                model = write_onnx(train(seed), tmp_path / f"m{seed}.onnx")
                admin.push("fraud", [model], format="onnx")
                admin.publish(f"fraud/{seed + 1}")
            admin.set_policy({"protected_aliases": ["production"]})
            admin.set_alias("fraud/1", "production")
            proc, url = start_serving(
                registry,
                ["fraud@production"],
                tmp_path / "serve",
                env={"MODELYARD_TOKEN": token},
                args=["--resync", "3600"],
            )
            try:
                admin.set_alias("fraud/2", "production")
                deadline = time.monotonic() + 60  # generous: loaded test machines
                while time.monotonic() < deadline:
                    if httpx.get(f"{url}/v2/models/fraud/versions/2/ready").status_code == 200:
                        break
                    time.sleep(0.1)
                meta = httpx.get(f"{url}/v2/models/fraud").json()
                assert meta["versions"] == ["2"], meta
            finally:
                stop_server(proc)
    finally:
        stop_server(registry_proc)
