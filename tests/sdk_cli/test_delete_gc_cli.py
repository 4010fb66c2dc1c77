"""``modelyard delete`` and ``modelyard gc``: a deleted version's unique blobs
are freed, shared ones stay, the report is text or JSON; the REST door's
``DELETE`` on a version is admin-only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from starlette.testclient import TestClient
from typer.testing import CliRunner

from modelyard.api.app import create_app
from modelyard.cli.main import app
from tests.auth_helpers import ADMIN_TOKEN, auth_settings, bearer, make_user
from tests.helpers import sha


def test_delete_then_gc_frees_exactly_the_unique_blobs(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "registry"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "200"}
    reg = ["-r", str(data)]
    src = tmp_path / "src"
    src.mkdir()
    (src / "shared.txt").write_bytes(b"labels")
    (src / "w.bin").write_bytes(b"weights one")
    assert runner.invoke(app, ["push", "m", str(src), *reg], env=env).exit_code == 0
    (src / "w.bin").write_bytes(b"weights two")
    assert runner.invoke(app, ["push", "m", str(src), *reg], env=env).exit_code == 0

    r = runner.invoke(app, ["delete", "m", *reg], env=env)
    assert r.exit_code == 1 and "INVALID_REFERENCE" in r.stderr  # a model needs --model
    r = runner.invoke(app, ["delete", "m/1", *reg, "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"deleted": "m/1", "model": False}

    gc = ["gc", "--data-dir", str(data), "--grace", "0"]
    r = runner.invoke(app, [*gc, "--dry-run", "--json"], env=env)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["dry_run"] is True and report["digests"] == [sha(b"weights one")]
    assert (report["blobs_freed"], report["bytes_freed"]) == (1, len(b"weights one"))

    r = runner.invoke(app, gc, env=env)
    assert r.exit_code == 0, r.output
    assert "freed 1 blob(s), 11 B (of 3 stored)" in r.stdout
    r = runner.invoke(app, [*gc, "--json"], env=env)
    assert json.loads(r.stdout)["blobs_freed"] == 0

    # Version 2 is whole; deleting the model frees the rest.
    r = runner.invoke(app, ["pull", "m/2", str(tmp_path / "out"), *reg], env=env)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "shared.txt").read_bytes() == b"labels"
    r = runner.invoke(app, ["delete", "m", "--model", *reg], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*gc, "--json"], env=env)
    assert sorted(json.loads(r.stdout)["digests"]) == sorted(
        hashlib.sha256(d).hexdigest() for d in (b"labels", b"weights two")
    )


def test_deleting_a_version_over_rest_is_admin_only_and_audited(
    tmp_path: Path, sqlite_url: str
) -> None:
    admin = bearer(ADMIN_TOKEN)
    with TestClient(create_app(auth_settings(tmp_path, sqlite_url))) as c:
        assert c.post("/api/v1/models", json={"name": "m"}, headers=admin).status_code == 201
        writer = bearer(make_user(c, "w", {"default": "writer"}))
        r = c.post("/api/v1/models/default/m/versions", json={}, headers=writer)
        assert r.status_code == 201
        path = "/api/v1/models/default/m/versions/1"
        r = c.delete(path, headers=writer)
        assert r.status_code == 403 and r.json()["error"]["code"] == "PERMISSION_DENIED"
        assert c.post(f"{path}/publish", headers=admin).status_code == 200
        r = c.delete(path, headers=admin)
        assert r.status_code == 409 and r.json()["error"]["code"] == "VERSION_PUBLISHED"
        assert c.delete(f"{path}?force=true", headers=admin).status_code == 204
        r = c.get(path, headers=admin)
        assert r.status_code == 404 and r.json()["error"]["code"] == "VERSION_NOT_FOUND"
        r = c.get("/api/v1/events", params={"limit": 100}, headers=admin)
        types = [e["type"] for e in r.json()["events"]]
        assert "version.deleted" in types


def test_a_push_outlasting_gcs_grace_sends_a_collected_blob_again(tmp_path: Path) -> None:
    """gc with a short grace runs while a push is under way, after the push
    sent its first file and before it commits: that blob, listed by no
    manifest yet, is collected. The push still lands whole: the commit's
    ``BLOB_MISSING`` makes the SDK send what is missing again and commit once
    more."""
    from modelyard.client import Registry
    from modelyard.client.registry import PushCallbacks
    from modelyard.composition import build_services
    from modelyard.domain.identity import Principal
    from modelyard.settings import Settings

    data = tmp_path / "registry"
    first, second = b"first file, sent early", b"x" * (3 << 20)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(first)
    (src / "b.bin").write_bytes(second)
    freed: list[str] = []
    sent = 0

    def advance(n: int) -> None:
        nonlocal sent
        sent += n
        if sent > len(first) and not freed:
            # The first file is stored; the second is going up: gc now.
            with build_services(Settings(data_dir=data)) as svc:
                report = svc.gc.collect(actor=Principal.local("ops"), grace_s=0)
            freed.extend(report.digests)

    with Registry(data, cache_dir=tmp_path / "cache") as reg:
        reg.create_model("m")
        v = reg.push(
            "m",
            {"a.bin": src / "a.bin", "b.bin": src / "b.bin"},
            callbacks=PushCallbacks(advance=advance),
        )
        assert freed == [sha(first)]  # gc did take the first file's blob
        out = reg.pull(f"m/{v.version}", tmp_path / "out")
    assert (out / "a.bin").read_bytes() == first
    assert (out / "b.bin").read_bytes() == second
