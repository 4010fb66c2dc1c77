"""``modelyard serve --env`` reports to the registry (issue 12): a real model
server with a consumer token registers its deployment, sends heartbeats,
records the swap when the alias moves and a version that failed to load."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.client import Registry
from tests.auth_helpers import ADMIN_TOKEN
from tests.conftest_server import start_server, stop_server
from tests.serving.models import train, write_onnx
from tests.serving.servers import start_serving


def _until(what: str, check: Callable[[], Any]) -> Any:
    """``check()`` once it is truthy (a deadline for a live process, not a timing claim)."""
    deadline = time.monotonic() + 60
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


# ~25 s: a consumer token sees no events (the event log shows only namespaces
# the caller reads), so the server follows each alias move at its 10 s
# reconcile rather than at once.
@pytest.mark.slow
def test_serve_env_registers_heartbeats_and_follows(tmp_path: Path) -> None:
    env = {"MODELYARD_AUTH": "on", "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN}
    registry_proc, registry = start_server(tmp_path / "registry", extra_env=env)
    admin = Registry(registry, token=ADMIN_TOKEN, cache_dir=tmp_path / "sdk")
    try:
        admin.create_user("svc")
        admin.grant_role("svc", "consumer", namespace="default")
        token = admin.create_token("serving", user="svc")["token"]
        for seed in (0, 1):
            admin.push(
                "fraud", [write_onnx(train(seed), tmp_path / f"m{seed}.onnx")], format="onnx"
            )
        broken = tmp_path / "broken.onnx"
        broken.write_bytes(b"not an onnx graph")
        admin.push("fraud", [broken], format="onnx")
        for n in (1, 2, 3):
            admin.publish(f"fraud/{n}")
        admin.set_alias("fraud/1", "production")

        proc, url = start_serving(
            registry,
            ["fraud@production"],
            tmp_path / "serve",
            env={"MODELYARD_TOKEN": token},
            args=[
                "--env",
                "prod-eu",
                "--endpoint",
                "http://fraud.internal:8000",
                "--replica",
                "pod-a",
                "--heartbeat",
                "0.2",
            ],
        )
        try:
            # Registered before it took traffic: ready on version 1.
            d = admin.deployment("prod-eu", "fraud@production")
            assert (d["version"], d["resolved"], d["status"]) == (1, "default/fraud/1", "ready")
            [rep] = d["instances"]
            assert (rep["replica"], rep["endpoint"], rep["version"], rep["stale"]) == (
                "pod-a",
                "http://fraud.internal:8000",
                1,
                False,
            )
            assert d["created_by"] == "svc"
            # Heartbeats keep coming.
            first = rep["heartbeat_at"]
            _until(
                "a later heartbeat",
                lambda: (
                    admin.deployment("prod-eu", "fraud@production")["instances"][0]["heartbeat_at"]
                    != first
                ),
            )
            # The alias moves: the server swaps and the deployment follows.
            admin.set_alias("fraud/2", "production")
            d = _until(
                "the swap to version 2 recorded",
                lambda: (
                    (x := admin.deployment("prod-eu", "fraud@production"))["version"] == 2 and x
                ),
            )
            assert d["instances"][0]["version"] == 2 and d["status"] == "ready"
            follows = admin.deployments(follows="fraud@production")
            assert [(x["environment"], x["version"]) for x in follows] == [("prod-eu", 2)]
            # A version that cannot load: reported, degraded, version 2 keeps serving.
            admin.set_alias("fraud/3", "production")
            d = _until(
                "the load failure reported",
                lambda: (
                    (x := admin.deployment("prod-eu", "fraud@production"))["status"] == "degraded"
                    and x
                ),
            )
            assert d["version"] == 2 and d["instances"][0]["error"]
            assert httpx.get(f"{url}/v2/models/fraud").json()["versions"] == ["2"]
        finally:
            stop_server(proc)
        history = admin.deployment_history("prod-eu")["history"]
        kinds = [(h["kind"], h["version"]) for h in history]
        assert ("swapped", 2) in kinds and ("load_failed", 3) in kinds
        assert kinds[-2:] == [("replica", 1), ("created", 1)]
        assert [k for k in kinds if k[0] == "load_failed"] == [("load_failed", 3)]  # once
        swapped = next(h for h in history if h["kind"] == "swapped")
        assert (swapped["previous_version"], swapped["replica"], swapped["actor"]) == (
            1,
            "pod-a",
            "svc",
        )
        events = admin.list_events(types=["deployment.load_failed"])
        assert [e.subject for e in events] == ["deployment:prod-eu/default/fraud@production"]
    finally:
        admin.close()
        stop_server(registry_proc)
