"""The ``modelyard server`` process: pre-forked workers, restarts, shutdown."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest_server import start_server, stop_server


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_two_workers_share_one_registry(tmp_path: Path) -> None:
    proc, url = start_server(tmp_path / "d", args=("--workers", "2"))
    try:
        workers = _children(proc.pid)
        assert len(workers) == 2
        with httpx.Client(base_url=url) as c:
            assert c.post("/api/v1/models", json={"name": "m"}).status_code == 201

        def create(i: int) -> int:
            with httpx.Client(base_url=url) as c:
                r = c.post("/api/v1/models/default/m/versions", json={"tags": {"i": str(i)}})
                assert r.status_code == 201, r.text
                return int(r.json()["version"])

        with ThreadPoolExecutor(8) as pool:
            numbers = sorted(pool.map(create, range(40)))
        assert numbers == list(range(1, 41))

        # A worker killed outright is replaced; the registry keeps answering.
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = _children(proc.pid)
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.1)
        assert len(_children(proc.pid)) == 2
        with httpx.Client(base_url=url) as c:
            assert c.get("/api/v1/models/default/m/versions/latest").json()["version"] == 40
    finally:
        left = _children(proc.pid)
        stop_server(proc)
    assert proc.returncode == 0
    for pid in left:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_head_on_file_and_tar_downloads(live_server: str) -> None:
    """Issue 9: HEAD answers as GET without a body (it was 405), over real HTTP."""
    import uuid

    from modelyard.hashio import PIPELINE_MIN
    from tests.helpers import push

    name = "h" + uuid.uuid4().hex[:8]
    big = os.urandom(PIPELINE_MIN + 3)  # the pipelined large-file path
    files = {"small.txt": b"hello", "dir/big.bin": big, "x" * 120 + ".txt": b"long name"}
    with httpx.Client(base_url=live_server, timeout=60) as c:
        push(c, name, files)  # type: ignore[arg-type]
        base = f"/api/v1/models/default/{name}/versions/1"
        for path, data in files.items():
            got, head = c.get(f"{base}/files/{path}"), c.head(f"{base}/files/{path}")
            assert got.status_code == head.status_code == 200, head.text
            assert got.content == data and head.content == b""
            for h in (
                "content-length",
                "etag",
                "accept-ranges",
                "content-type",
                "x-content-sha256",
            ):
                assert head.headers[h] == got.headers[h], h
            assert head.headers["content-length"] == str(len(data))
        got, head = c.get(f"{base}/archive.tar"), c.head(f"{base}/archive.tar")
        assert got.status_code == head.status_code == 200
        assert head.content == b"" and int(head.headers["content-length"]) == len(got.content)
        assert got.headers["content-length"] == head.headers["content-length"]
        assert head.headers["content-disposition"] == got.headers["content-disposition"]
        assert c.head(f"{base}/files/nope").status_code == 404
