"""``modelyard backup``, ``fsck`` and ``restore`` as an operator runs them: a
clean check exits 0, damage exits 1 with a report (text and JSON) naming the
versions hit, ``--repair-from`` a backup puts the bytes back, and a restore on
another data directory serves the same versions."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from modelyard.cli.main import app
from tests.helpers import sha


def test_backup_fsck_repair_and_restore_from_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "registry"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "200"}
    reg = ["-r", str(data)]
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(b"weights one")
    (src / "labels.txt").write_bytes(b"cats")
    assert runner.invoke(app, ["push", "m", str(src), *reg], env=env).exit_code == 0
    here = ["--data-dir", str(data)]

    r = runner.invoke(app, ["fsck", *here], env=env)
    assert r.exit_code == 0, r.output
    assert "2 blob(s) listed, 2 stored (0 unlisted), 2 hashed" in r.stdout
    assert r.stdout.strip().endswith("ok")

    backup = tmp_path / "backup"
    r = runner.invoke(app, ["backup", str(backup), *here], env=env)
    assert r.exit_code == 0, r.output
    assert "2 new blob(s)" in r.stdout
    r = runner.invoke(app, ["backup", str(backup), *here, "--json"], env=env)
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert (again["blobs_copied"], again["blobs_stored"], again["database"]) == (0, 2, "sqlite")

    # A disk loses one blob and flips the bytes of another.
    weights = data / "blobs" / "sha256" / sha(b"weights one")[:2] / sha(b"weights one")[2:4]
    (weights / sha(b"weights one")).unlink()
    labels = data / "blobs" / "sha256" / sha(b"cats")[:2] / sha(b"cats")[2:4] / sha(b"cats")
    labels.chmod(0o644)
    labels.write_bytes(b"dogs")

    r = runner.invoke(app, ["fsck", *here], env=env)
    assert r.exit_code == 1
    assert f"missing  {sha(b'weights one')}  damaged" in r.stdout
    assert f"corrupt  {sha(b'cats')}  damaged" in r.stdout
    assert "used by version default/m/1 w.bin" in r.stdout
    assert r.stdout.strip().endswith("DAMAGED")
    r = runner.invoke(app, ["fsck", *here, "--json"], env=env)
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert report["ok"] is False
    assert {d["problem"] for d in report["damaged_blobs"]} == {"missing", "corrupt"}

    r = runner.invoke(app, ["fsck", *here, "--repair-from", str(backup)], env=env)
    assert r.exit_code == 0, r.output
    assert r.stdout.count("repaired") == 2
    assert runner.invoke(app, ["fsck", *here], env=env).exit_code == 0
    r = runner.invoke(app, ["fsck", *here, "--repair-from", str(tmp_path / "nowhere")], env=env)
    assert r.exit_code == 1 and "BACKUP_NOT_FOUND" in r.stderr

    # A fresh machine: restore, then read the version back.
    moved = tmp_path / "moved"
    restore = ["restore-backup", str(backup), "--data-dir", str(moved)]
    r = runner.invoke(app, [*restore, "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["blobs_copied"] == 2
    r = runner.invoke(app, ["pull", "m/1", str(tmp_path / "out"), "-r", str(moved)], env=env)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "labels.txt").read_bytes() == b"cats"
    r = runner.invoke(app, restore, env=env)
    assert r.exit_code == 1 and "RESTORE_TARGET_NOT_EMPTY" in r.stderr
