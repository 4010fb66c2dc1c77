"""Pickles under an admin's exception (issue 12): a pickle-only version is
refused by ``modelyard serve`` until an admin records an audited exception on
it (``deploy allow-pickle``); then a server holding only a consumer token
serves it; revoked, it is refused again. Live registry with auth on."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from tests.auth_helpers import ADMIN_TOKEN
from tests.conftest_server import start_server, stop_server
from tests.serving.models import train
from tests.serving.servers import start_serving


def test_pickle_served_only_under_an_admins_exception(tmp_path: Path) -> None:
    env = {"MODELYARD_AUTH": "on", "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN}
    registry_proc, registry = start_server(tmp_path / "registry", extra_env=env)
    admin = Registry(registry, token=ADMIN_TOKEN, cache_dir=tmp_path / "sdk")
    runner = CliRunner()

    def cli(token: str, *args: str) -> Any:
        return runner.invoke(
            app, list(args), env={"MODELYARD_URL": registry, "MODELYARD_TOKEN": token}
        )

    try:
        admin.create_user("svc")
        admin.grant_role("svc", "consumer", namespace="default")
        consumer = admin.create_token("serving", user="svc")["token"]
        admin.create_user("dev")
        admin.grant_role("dev", "writer", namespace="default")
        writer = admin.create_token("dev", user="dev")["token"]
        trained = train(0)
        (tmp_path / "model.pkl").write_bytes(pickle.dumps(trained.estimator))
        admin.push("legacy", [tmp_path / "model.pkl"], framework="sklearn")
        admin.publish("legacy/1")

        serve = ["serve", "legacy/1", "--cache-dir", str(tmp_path / "refused")]
        r = cli(consumer, *serve)
        assert r.exit_code == 1 and "UNSERVABLE_VERSION" in r.output
        assert "allow-pickle" in r.output

        r = cli(writer, "deploy", "allow-pickle", "legacy/1", "--reason", "mine")
        assert r.exit_code == 1 and "PERMISSION_DENIED" in r.output
        r = cli(ADMIN_TOKEN, "deploy", "allow-pickle", "legacy/1")
        assert r.exit_code == 2  # no reason given
        r = cli(ADMIN_TOKEN, "deploy", "allow-pickle", "legacy/1", "--reason", "retrained in-house")
        assert r.exit_code == 0, r.output

        proc, url = start_serving(
            registry, ["legacy/1"], tmp_path / "serve", env={"MODELYARD_TOKEN": consumer}
        )
        try:
            rows = trained.rows.astype(np.float64)
            body = {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP64",
                        "shape": list(rows.shape),
                        "data": rows.ravel().tolist(),
                    }
                ]
            }
            answer = httpx.post(f"{url}/v2/models/legacy/infer", json=body).json()
            got = {o["name"]: np.array(o["data"]) for o in answer["outputs"]}
            np.testing.assert_allclose(
                got["probabilities"].reshape(len(rows), -1),
                trained.estimator.predict_proba(rows),
                rtol=1e-12,
            )
            meta = httpx.get(f"{url}/v2/models/legacy").json()
            assert meta["platform"] == "pickle"
        finally:
            stop_server(proc)
        # A build context follows the same rule.
        r = cli(ADMIN_TOKEN, "build", "legacy/1", "--out", str(tmp_path / "ctx"), "--json")
        assert r.exit_code == 0, r.output
        assert '"flavor": "pickle"' in r.output

        granted = admin.list_events(types=["version.serving_exception_granted"])
        assert [(e.actor, e.subject, e.payload["reason"]) for e in granted] == [
            ("admin", "default/legacy/1", "retrained in-house")
        ]
        r = cli(ADMIN_TOKEN, "deploy", "allow-pickle", "legacy/1", "--revoke")
        assert r.exit_code == 0, r.output
        r = cli(consumer, "serve", "legacy/1", "--cache-dir", str(tmp_path / "again"))
        assert r.exit_code == 1 and "UNSERVABLE_VERSION" in r.output
    finally:
        admin.close()
        stop_server(registry_proc)
