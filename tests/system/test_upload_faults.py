"""Interrupted uploads: a dropped client or a killed server leaves nothing visible
and loses nothing committed."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

from tests.conftest_server import start_server, stop_server


def _partial_upload(url: str, digest: str, total: int, sent: int) -> socket.socket:
    u = urlparse(url)
    s = socket.create_connection((u.hostname, u.port))
    head = (
        f"PUT /api/v1/blobs/{digest} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    s.sendall(head + b"z" * sent)
    return s


def _wait(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_client_disconnect_mid_upload(tmp_path: Path) -> None:
    proc, url = start_server(tmp_path / "d")
    try:
        data = os.urandom(2_000_000)
        digest = hashlib.sha256(data).hexdigest()
        s = _partial_upload(url, digest, len(data), 500_000)
        tmp_dir = tmp_path / "d" / "blobs" / "tmp"
        assert _wait(lambda: any(tmp_dir.iterdir()))
        s.close()
        # The temp file is removed and the digest never becomes visible.
        assert _wait(lambda: not any(tmp_dir.iterdir()))
        assert httpx.head(f"{url}/api/v1/blobs/{digest}").status_code == 404
        r = httpx.put(f"{url}/api/v1/blobs/{digest}", content=data)
        assert r.status_code == 201
    finally:
        stop_server(proc)


def test_server_killed_mid_upload_loses_nothing_committed(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    proc, url = start_server(data_dir)
    committed = b"committed bytes"
    c_digest = hashlib.sha256(committed).hexdigest()
    with httpx.Client(base_url=url) as c:
        c.post("/api/v1/models", json={"name": "m"})
        c.put(f"/api/v1/blobs/{c_digest}", content=committed)
        r = c.post(
            "/api/v1/models/default/m/versions",
            json={"files": [{"path": "w.bin", "digest": c_digest, "size": len(committed)}]},
        )
        assert r.status_code == 201
    data = os.urandom(3_000_000)
    digest = hashlib.sha256(data).hexdigest()
    s = _partial_upload(url, digest, len(data), 1_000_000)
    assert _wait(lambda: any((data_dir / "blobs" / "tmp").iterdir()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    s.close()
    stop_server(proc)
    proc, url = start_server(data_dir)
    try:
        with httpx.Client(base_url=url) as c:
            assert c.head(f"/api/v1/blobs/{digest}").status_code == 404
            r = c.get("/api/v1/models/default/m/versions/1/files/w.bin")
            assert r.status_code == 200 and r.content == committed
            assert c.put(f"/api/v1/blobs/{digest}", content=data).status_code == 201
            assert c.head(f"/api/v1/blobs/{digest}").status_code == 200
        # The only leftover of the killed upload is an invisible temp file.
        visible = [p for p in (data_dir / "blobs" / "sha256").rglob("*") if p.is_file()]
        assert sorted(p.name for p in visible) == sorted([c_digest, digest])
    finally:
        stop_server(proc)


def _fd_count(pid: int) -> int:
    """Open files other than the metadata database's: the SQLite pool may
    open a second connection whenever the background checkpointer happens to
    overlap a request, which is not a leak of the transfer paths."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        count += "registry.db" not in target
    return count


def test_big_transfers_cut_off_midway_leave_nothing_behind(tmp_path: Path) -> None:
    """The pipelined paths (hashio): an upload cut off after 20 MiB of a
    declared 40 leaves no temp file and no open file; a download abandoned
    after its first MiB releases its file. The server keeps serving."""
    proc, url = start_server(tmp_path / "d")
    try:
        big = os.urandom(20 << 20)
        r = httpx.post(f"{url}/api/v1/blobs", content=big)
        assert r.status_code == 201
        digest = r.json()["digest"]
        httpx.post(f"{url}/api/v1/models", json={"name": "m"}).raise_for_status()
        body = {"files": [{"path": "w.bin", "digest": digest, "size": len(big)}]}
        httpx.post(f"{url}/api/v1/models/default/m/versions", json=body).raise_for_status()
        baseline = _fd_count(proc.pid)

        s = _partial_upload(url, "a" * 64, 40 << 20, 20 << 20)
        tmp_dir = tmp_path / "d" / "blobs" / "tmp"
        assert _wait(lambda: any(tmp_dir.iterdir()))
        s.close()
        assert _wait(lambda: not any(tmp_dir.iterdir()))

        u = urlparse(url)
        d = socket.create_connection((u.hostname, u.port))
        path = "/api/v1/models/default/m/versions/1/files/w.bin"
        d.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = 0
        while got < 1 << 20:
            got += len(d.recv(1 << 16))
        d.close()
        assert _wait(lambda: _fd_count(proc.pid) <= baseline)
        whole = httpx.get(f"{url}/api/v1/models/default/m/versions/1/files/w.bin")
        assert whole.status_code == 200 and whole.content == big
    finally:
        stop_server(proc)
