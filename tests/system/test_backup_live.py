"""``modelyard backup`` as its own process beside a live server that keeps
taking pushes (SQLite and a blob directory shared by the two processes):
the writer sees no error, and the backup restores (another process again)
into a registry that checks clean and holds every version pushed before the
backup began, each whole, with its bytes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from modelyard.client import Registry
from tests.conftest_server import start_server, stop_server


def modelyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_backup_beside_a_live_writer_restores_whole(tmp_path: Path) -> None:
    data = tmp_path / "registry"
    proc, url = start_server(data)
    pushed: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    three = threading.Event()

    def writer() -> None:
        src = tmp_path / "src"
        src.mkdir()
        try:
            with Registry(url, cache_dir=tmp_path / "cache") as reg:
                reg.create_model("m")
                i = 0
                while not stop.is_set():
                    i += 1
                    (src / "w.bin").write_bytes(f"weights {i}".encode() * 1000)
                    (src / "labels.txt").write_bytes(b"shared labels")
                    pushed.append(reg.push("m", src).version)
                    if len(pushed) >= 3:
                        three.set()
        except BaseException as exc:
            errors.append(exc)
            three.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert three.wait(120)
        before = list(pushed)
        backup = modelyard("backup", str(tmp_path / "backup"), "--data-dir", str(data), "--json")
    finally:
        stop.set()
        thread.join(120)
        stop_server(proc)
    assert errors == []
    assert backup.returncode == 0, backup.stderr
    report = json.loads(backup.stdout)
    assert report["blobs_failed"] == {} and report["database"] == "sqlite"

    moved = tmp_path / "moved"
    restored = modelyard("restore-backup", str(tmp_path / "backup"), "--data-dir", str(moved))
    assert restored.returncode == 0, restored.stderr
    fsck = modelyard("fsck", "--data-dir", str(moved), "--json")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert json.loads(fsck.stdout)["ok"] is True

    with Registry(str(moved), cache_dir=tmp_path / "cache2") as reg:
        numbers = sorted(v.version for v in reg.list_versions("m"))
        # Whole versions only, numbered without gaps, at least those pushed
        # before the backup began (more if they committed before its snapshot).
        assert numbers == list(range(1, len(numbers) + 1))
        assert set(before) <= set(numbers) <= set(pushed)
        for n in before:
            out = reg.pull(f"m/{n}", tmp_path / "out" / str(n))
            assert (out / "w.bin").read_bytes() == f"weights {n}".encode() * 1000
            assert (out / "labels.txt").read_bytes() == b"shared labels"
