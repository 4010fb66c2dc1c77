"""1 GiB upload and download through the server (issue 2 targets).

Targets: push and pull at >= 90% of ``cp`` + ``sync`` throughput on the same
disk; server RSS growth < 64 MiB during the transfers; re-pushing the same
bytes uploads nothing and takes < 10% of the first push.

    .venv/bin/python bench/transfer.py [--size-mib 1024] [--dir /path/on/the/disk]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _server import Server

from modelyard.client import Registry
from modelyard.client.registry import PushCallbacks


def make_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


def drop_caches() -> None:
    """Best effort: make the next read come from disk (needs root)."""
    subprocess.run(["sync"], check=True)
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class RssSampler:
    """Samples the server's RSS every 50 ms in a thread."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_kib())
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (same disk)")
    args = ap.parse_args()
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="modelyard-transfer-", dir=args.dir))
    try:
        src = work / "src" / "weights.bin"
        src.parent.mkdir()
        digest = make_file(src, size)
        mib = size / (1 << 20)

        drop_caches()
        t0 = time.perf_counter()
        subprocess.run(["cp", str(src), str(work / "copy.bin")], check=True)
        subprocess.run(["sync"], check=True)
        cp_s = time.perf_counter() - t0
        (work / "copy.bin").unlink()
        print(f"cp + sync            {cp_s:7.2f} s  {mib / cp_s:8.1f} MiB/s  (baseline)")

        server = Server(work / "data", workers=1)
        idle = server.rss_kib()
        phases: dict[str, float] = {}
        current: list[str] = []

        def start(phase: str, _total: int) -> None:
            now = time.perf_counter()
            if current:
                phases[current[-1]] = now - phases[current[-1]]
            current.append(phase)
            phases[phase] = now

        try:
            with Registry(server.url, cache_dir=work / "cache") as reg, RssSampler(server) as rss:
                drop_caches()
                t0 = time.perf_counter()
                v = reg.push("big", src.parent, callbacks=PushCallbacks(start=start))
                push_s = time.perf_counter() - t0
                phases[current[-1]] = time.perf_counter() - phases[current[-1]]
                print(
                    f"push (hash+upload)   {push_s:7.2f} s  {mib / push_s:8.1f} MiB/s  "
                    f"{cp_s / push_s:6.0%} of cp+sync  (hashing {phases['hashing']:.2f} s, "
                    f"upload {phases['uploading']:.2f} s = {mib / phases['uploading']:.0f} MiB/s)"
                )
                blobs_before = dir_bytes(work / "data" / "blobs")
                t0 = time.perf_counter()
                v2 = reg.push("big", src.parent)
                repush_s = time.perf_counter() - t0
                uploaded = dir_bytes(work / "data" / "blobs") - blobs_before
                print(
                    f"re-push identical    {repush_s:7.2f} s  {repush_s / push_s:6.1%} of first "
                    f"push, blob bytes added: {uploaded}  (v{v.version} -> v{v2.version})"
                )
                drop_caches()
                t0 = time.perf_counter()
                out = reg.pull(v.ref, work / "out")
                subprocess.run(["sync"], check=True)
                pull_s = time.perf_counter() - t0
                print(
                    f"pull + sync          {pull_s:7.2f} s  {mib / pull_s:8.1f} MiB/s  "
                    f"{cp_s / pull_s:6.0%} of cp+sync"
                )
            got = hashlib.sha256((out / "weights.bin").read_bytes()).hexdigest()
            print(f"byte-identical: {got == digest}")
            print(
                f"server RSS idle {idle / 1024:.1f} MiB, peak {rss.peak / 1024:.1f} MiB, "
                f"growth {(rss.peak - idle) / 1024:.1f} MiB"
            )
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
