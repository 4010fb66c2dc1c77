"""``push`` over direct uploads the registry verifies in the background
(issue 13), against a live server on S3 (a moto server process) that runs no
verifier itself: the test process plays the replica whose verifier reads
the uploads back, so what the client sees before and after is certain.
By default the SDK returns once the VERSION is ready (it exists as a draft
meanwhile); ``--no-wait`` returns the draft at once and ``show`` says what
it waits on; its files answer 409 until then."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.composition import Services, build_services
from modelyard.settings import Settings
from tests.conftest_server import start_server, stop_server
from tests.s3server import S3Server

pytestmark = pytest.mark.s3

WAIT_S = 120.0
"""Bound on waiting for the draft to appear (a loaded machine), not a timing claim."""


@pytest.fixture(scope="module")
def no_verifier(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Services]]:
    """(URL of a server with direct transfers and no verifier of its own,
    this process's services on the same database and bucket: the verifier)."""
    data = tmp_path_factory.mktemp("pending-server")
    store = f"s3://{s3_server.new_bucket()}/registry"
    proc, url = start_server(
        data,
        extra_env={**s3_server.env(), "MODELYARD_BLOB_VERIFIER": "false"},
        args=("--store", store),
    )
    try:
        with build_services(Settings(data_dir=data, store=store)) as replica:
            yield url, replica
    finally:
        stop_server(proc)


def verify_all(replica: Services) -> int:
    """Run the other replica's verifier until nothing is pending."""
    done = 0
    while n := replica.blob_service.verify_pending("test-replica", limit=5):
        done += n
    return done


def version_events(replica: Services, name: str) -> list[dict[str, Any]]:
    """The events of ``name``'s versions, read from the shared database."""
    with replica.metadata.read() as tx:
        items = tx.list_events(after=0, limit=10_000)
    return [e for e in items if str(e["subject"]).startswith(f"default/{name}/")]


def model_dir(tmp_path: Path) -> tuple[Path, bytes]:
    src = tmp_path / "src"
    src.mkdir()
    weights = os.urandom(300_000)
    (src / "weights.bin").write_bytes(weights)
    # Bytes of this test's own: nothing the registry already holds.
    (src / "config.json").write_bytes(b'{"labels": 2, "id": "%s"}' % uuid.uuid4().hex.encode())
    return src, weights


def test_push_waits_on_the_version_which_exists_as_a_draft_meanwhile(
    no_verifier: tuple[str, Services], tmp_path: Path
) -> None:
    url, replica = no_verifier
    name = "m" + uuid.uuid4().hex[:8]
    src, _ = model_dir(tmp_path)
    result: dict[str, Any] = {}

    def push() -> None:
        try:
            with Registry(url, cache_dir=tmp_path / "cache") as reg:
                result["version"] = reg.push(name, src)
        except BaseException as exc:  # reported by the main thread
            result["error"] = exc

    pusher = threading.Thread(target=push)
    pusher.start()
    try:
        # The draft appears while nothing is verified (no verifier runs yet).
        deadline = time.monotonic() + WAIT_S
        draft = None
        while draft is None and time.monotonic() < deadline and "error" not in result:
            r = httpx.get(f"{url}/api/v1/models/default/{name}/versions/1")
            if r.status_code == 200:
                draft = r.json()
            else:
                time.sleep(0.2)
        assert draft is not None, result.get("error") or "no draft version appeared"
        assert draft["state"] == "draft"
        assert {p["path"] for p in draft["pending_files"]} == {"weights.bin", "config.json"}
        assert "version" not in result  # push is still waiting on it
    finally:
        verify_all(replica)
        pusher.join(WAIT_S)
    assert "error" not in result, result.get("error")
    v = result["version"]
    assert (v.state, v.pending_files) == ("ready", [])
    kinds = [(e["type"], e["payload"].get("state")) for e in version_events(replica, name)]
    assert ("version.created", "draft") in kinds
    assert ("version.files_committed", "ready") in kinds


def test_cli_push_no_wait_returns_the_draft_and_show_says_what_it_waits_on(
    no_verifier: tuple[str, Services], tmp_path: Path
) -> None:
    url, replica = no_verifier
    name = "m" + uuid.uuid4().hex[:8]
    src, weights = model_dir(tmp_path)
    runner = CliRunner()
    env = {"MODELYARD_URL": url, "XDG_CACHE_HOME": str(tmp_path / "c"), "COLUMNS": "250"}

    def cli(*args: str) -> str:
        r = runner.invoke(app, list(args), env=env)
        assert r.exit_code == 0, r.output
        return r.output

    pushed = json.loads(cli("push", name, str(src), "--no-wait", "--json"))
    assert pushed["state"] == "draft"
    assert {p["path"]: p["state"] for p in pushed["pending_files"]} == {
        "weights.bin": "pending",
        "config.json": "pending",
    }
    shown = cli("show", f"{name}/1")
    assert "state draft" in shown and "waiting for verification" in shown
    assert "weights.bin" in shown

    # Its unverified files are never served; it cannot be moved by hand.
    base = f"{url}/api/v1/models/default/{name}/versions/1"
    r = httpx.get(f"{base}/files/weights.bin")
    assert r.status_code == 409 and r.json()["error"]["code"] == "BLOB_UNVERIFIED"
    r = httpx.get(f"{base}/archive.tar")
    assert r.status_code == 409 and r.json()["error"]["code"] == "BLOB_UNVERIFIED"
    r = httpx.post(f"{base}/restore")
    assert r.status_code == 409 and r.json()["error"]["code"] == "VERSION_UNVERIFIED"
    assert {p["path"] for p in r.json()["error"]["details"]["pending"]} == {
        "weights.bin",
        "config.json",
    }

    assert verify_all(replica) == 2
    shown = cli("show", f"{name}/1")
    assert "state ready" in shown and "waiting for verification" not in shown
    with Registry(url, cache_dir=tmp_path / "cache2") as reg:
        out = reg.pull(f"{name}/1", tmp_path / "out")
    assert (out / "weights.bin").read_bytes() == weights


def test_sdk_push_without_waiting_on_the_embedded_backend_is_ready(tmp_path: Path) -> None:
    # The embedded backend writes blobs itself (no direct path): nothing waits.
    src, _ = model_dir(tmp_path)
    with Registry(tmp_path / "embedded", cache_dir=tmp_path / "cache") as reg:
        v = reg.push("m", src, wait=False)
    assert (v.state, v.pending_files) == ("ready", [])
