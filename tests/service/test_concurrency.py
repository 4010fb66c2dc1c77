"""Version numbers under concurrent writers: exactly 1..N, no 5xx, no lock errors.

Threads share one app; processes are separate Python interpreters with their
own engines, writing to the same SQLite file or PostgreSQL database.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.composition import build_services
from modelyard.domain.identity import Principal
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings

LOCAL = Principal.local("t")


def test_threads_allocate_gapless_numbers(client: TestClient) -> None:
    client.post("/api/v1/models", json={"name": "m"})

    def create(i: int) -> tuple[int, int]:
        r = client.post("/api/v1/models/default/m/versions", json={"tags": {"i": str(i)}})
        return r.status_code, r.json().get("version", -1)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, range(60)))
    assert {s for s, _ in results} == {201}, results
    assert sorted(n for _, n in results) == list(range(1, 61))


def test_threads_same_idempotency_key_create_one(client: TestClient) -> None:
    client.post("/api/v1/models", json={"name": "m"})

    def create(_: int) -> tuple[int, int]:
        r = client.post(
            "/api/v1/models/default/m/versions",
            json={"files": []},
            headers={"Idempotency-Key": "same"},
        )
        return r.status_code, r.json().get("version", -1)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(create, range(12)))
    assert results == [(201, 1)] * 12
    assert len(client.get("/api/v1/models/default/m/versions").json()["versions"]) == 1


WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from modelyard.domain.identity import Principal
    from modelyard.composition import build_services
    from modelyard.service.registry import VersionSpec
    from modelyard.settings import Settings
    data_dir, db, n, wid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    svc = build_services(Settings(data_dir=Path(data_dir), db=db)).registry
    out = []
    for i in range(n):
        v = svc.create_version("m", VersionSpec(tags={"w": wid}), actor=Principal.local("w" + wid))
        out.append(v.number)
    print(" ".join(map(str, out)))
    """
)


@pytest.mark.parametrize("procs", [4])
def test_processes_allocate_gapless_numbers(tmp_path: Path, db_url: str, procs: int) -> None:
    svc = build_services(Settings(data_dir=tmp_path, db=db_url)).registry
    svc.create_model("m", actor=LOCAL)
    svc.db.dispose()
    per = 25
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), db_url, str(per), str(w)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(procs)
    ]
    numbers: list[int] = []
    for child in children:
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err
        assert "database is locked" not in err
        numbers += [int(x) for x in out.split()]
    assert sorted(numbers) == list(range(1, procs * per + 1))
    svc = build_services(Settings(data_dir=tmp_path, db=db_url)).registry
    page = svc.list_versions("m", page_size=1000, actor=LOCAL)
    assert sorted(v.number for v in page.items) == list(range(1, procs * per + 1))
    svc.db.dispose()


def test_concurrent_alias_moves_leave_consistent_history(tmp_path: Path, db_url: str) -> None:
    svc = build_services(Settings(data_dir=tmp_path, db=db_url)).registry
    svc.create_model("m", actor=LOCAL)
    for _ in range(4):
        svc.create_version("m", VersionSpec(), actor=LOCAL)

    def move(i: int) -> int:
        return svc.set_alias(f"m/{i % 4 + 1}", "prod", actor=Principal.local(f"a{i}")).number

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(move, range(30)))
    history = svc.alias_history("m", alias="prod", actor=LOCAL)
    assert len(history) == 30
    # Each move starts where the previous one ended: no lost update.
    for prev, cur in itertools.pairwise(history):
        assert cur.from_version == prev.to_version
    assert svc.get_version("m@prod", actor=LOCAL).number == history[-1].to_version
    svc.db.dispose()


def test_sqlite_wal_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    """Commits do not checkpoint (automatic checkpoints are off), yet what
    they wrote reaches the database file itself shortly after, without the
    -wal file: the background checkpointer copied it."""
    import shutil
    import sqlite3

    svc = build_services(Settings(data_dir=tmp_path / "d")).registry
    try:
        db_file = tmp_path / "d" / "registry.db"
        svc.create_model("walled", actor=LOCAL)

        def in_main_file() -> bool:
            copy = tmp_path / "copy.db"
            shutil.copyfile(db_file, copy)  # the main file alone, no -wal beside it
            conn = sqlite3.connect(copy)
            try:
                names = {r[0] for r in conn.execute("SELECT name FROM models")}
            except sqlite3.DatabaseError:
                names = set()
            finally:
                conn.close()
                copy.unlink()
            return "walled" in names

        deadline = time.monotonic() + 10
        while not in_main_file():
            assert time.monotonic() < deadline, "the WAL was never checkpointed"
            time.sleep(0.05)
        with svc.db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    finally:
        svc.db.dispose()


def test_sqlite_wal_starts_over_under_sustained_writes(tmp_path: Path) -> None:
    """Writes that never pause still let the WAL be checkpointed completely and
    start over, so its file stops growing (each version appends ~100 KiB of
    WAL frames: 1,500 of them would make a ~150 MiB file if it never did)."""
    svc = build_services(Settings(data_dir=tmp_path / "d")).registry
    try:
        svc.create_model("busy", actor=Principal.local("t"))
        for i in range(1500):
            svc.create_version("busy", VersionSpec(tags={"i": str(i)}), actor=Principal.local("t"))
        wal = tmp_path / "d" / "registry.db-wal"
        assert wal.stat().st_size < 90 << 20
    finally:
        svc.db.dispose()
