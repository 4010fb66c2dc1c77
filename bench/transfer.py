"""Push and pull of one big file through a server, against ``cp`` + ``sync``.

Targets: push and pull throughput >= 90% of ``cp`` + ``sync`` on the same disk;
server RSS growth < 64 MiB during the transfers; re-pushing identical bytes
uploads nothing and takes < 10% of the first push.

Phases, each timed on its own (all reads of the source come from the page
cache, as the file was just written and synced; ``--drop-caches`` empties the
cache before each phase instead, which needs root and affects the whole
machine):

1. baseline: ``cp SRC DST && sync``;
2. push with the SDK (``Registry(url).push``), split into the local hashing
   and the upload (+ version commit; the server fsyncs the blob);
3. re-push of the same file as a new version: the server's blob directory
   must not grow;
4. pull into a fresh cache and directory, then ``sync``; sha256 compared.

The server's VmRSS (/proc/PID/status) is sampled every 50 ms during 2-4.

    .venv/bin/python bench/transfer.py [--size 1GiB] [--dir /tmp] [--drop-caches]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _harness import MIB, RssSampler, ServerProcess, pin_self, verdict

from modelyard import Registry
from modelyard.client.registry import PushCallbacks

TARGET_RATIO = 0.90
TARGET_RSS_GROWTH_MIB = 64
TARGET_REPUSH_SHARE = 0.10
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``1GiB``, ``256M``, ``1073741824`` -> bytes."""
    m = re.fullmatch(r"(\d+)\s*([kKmMgG]?)(i?[bB])?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def make_random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes; return their sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MIB))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


def sha256_of(path: Path) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def sync() -> None:
    """Flush dirty pages to disk (the ``sync`` command)."""
    subprocess.run(["sync"], check=True)


def settle(drop_caches: bool) -> None:
    """Before a phase: nothing dirty left over, and optionally an empty page cache."""
    sync()
    if drop_caches:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def tree_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Phases:
    """Records when the SDK's push phases start (PushCallbacks.start)."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.totals: dict[str, int] = {}

    def start(self, phase: str, total: int) -> None:
        self.started[phase] = time.perf_counter()
        self.totals[phase] = total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=parse_size, default=1 << 30, help="e.g. 1GiB (default), 256M")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: /tmp)")
    ap.add_argument("--drop-caches", action="store_true", help="drop the page cache per phase")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server / client CPUs")
    args = ap.parse_args()
    size: int = args.size
    mib = size / MIB
    if not args.no_pin and pin_self(1):
        print("pinning: client (this process) on CPU 1, server on CPU 0 (taskset)")
    work = Path(tempfile.mkdtemp(prefix="modelyard-transfer-", dir=args.dir))
    try:
        src_dir = work / "src"
        src_dir.mkdir()
        src = src_dir / "weights.bin"
        t0 = time.perf_counter()
        digest = make_random_file(src, size)
        print(f"file: {mib:,.0f} MiB of random bytes in {work} ({time.perf_counter() - t0:.1f} s)")

        def rate(seconds: float) -> str:
            return f"{seconds:7.2f} s {mib / seconds:8.1f} MiB/s"

        # 1. Baseline.
        settle(args.drop_caches)
        t0 = time.perf_counter()
        subprocess.run(["cp", str(src), str(work / "copy.bin")], check=True)
        sync()
        cp_s = time.perf_counter() - t0
        (work / "copy.bin").unlink()
        print(f"{'cp + sync':<26} {rate(cp_s)}   (baseline)")

        def vs_cp(seconds: float) -> str:
            return f"{cp_s / seconds:5.0%} of cp+sync"

        server = ServerProcess(work / "data", cpu=None if args.no_pin else 0)
        try:
            time.sleep(0.5)
            idle_kib = server.rss_kib()
            blobs = work / "data" / "blobs"
            with Registry(server.url, cache_dir=work / "cache-push") as reg:
                # 2. First push.
                settle(args.drop_caches)
                phases = Phases()
                with RssSampler(server) as push_rss:
                    t0 = time.perf_counter()
                    v1 = reg.push("big", src, callbacks=PushCallbacks(start=phases.start))
                    push_s = time.perf_counter() - t0
                hash_s = phases.started["uploading"] - phases.started["hashing"]
                upload_s = t0 + push_s - phases.started["uploading"]
                ok = cp_s / push_s >= TARGET_RATIO
                print(
                    f"{'push (hash + upload)':<26} {rate(push_s)}   {vs_cp(push_s)}  {verdict(ok)}"
                )
                print(f"{'  of which hashing':<26} {rate(hash_s)}")
                ok = cp_s / upload_s >= TARGET_RATIO
                print(
                    f"{'  of which upload+commit':<26} {rate(upload_s)}   {vs_cp(upload_s)}  "
                    f"{verdict(ok)}"
                )

                # 3. Re-push of identical bytes.
                before = tree_bytes(blobs)
                settle(args.drop_caches)
                again = Phases()
                with RssSampler(server) as repush_rss:
                    t0 = time.perf_counter()
                    v2 = reg.push("big", src, callbacks=PushCallbacks(start=again.start))
                    repush_s = time.perf_counter() - t0
                added = tree_bytes(blobs) - before
                share = repush_s / push_s
                ok = share < TARGET_REPUSH_SHARE and added == 0
                print(
                    f"{'re-push identical':<26} {repush_s:7.2f} s  {share:5.1%} of the first push, "
                    f"{again.totals['uploading']} bytes to upload, blob dir grew {added} bytes "
                    f"(v{v1.version} -> v{v2.version})  {verdict(ok)}"
                )

            # 4. Pull into a fresh cache and directory.
            with Registry(server.url, cache_dir=work / "cache-pull") as reg:
                settle(args.drop_caches)
                with RssSampler(server) as pull_rss:
                    t0 = time.perf_counter()
                    out = reg.pull(v1.ref, work / "out")
                    pull_s = time.perf_counter() - t0
                sync()
                pull_sync_s = time.perf_counter() - t0
            print(f"{'pull':<26} {rate(pull_s)}   {vs_cp(pull_s)}")
            ok = cp_s / pull_sync_s >= TARGET_RATIO
            print(f"{'pull + sync':<26} {rate(pull_sync_s)}   {vs_cp(pull_sync_s)}  {verdict(ok)}")
            same = sha256_of(out / "weights.bin") == digest
            print(f"pulled file byte-identical (sha256): {same}  {verdict(same)}")

            peak = max(push_rss.peak_kib, repush_rss.peak_kib, pull_rss.peak_kib)
            growth = (peak - idle_kib) / 1024
            print(
                f"server RSS: idle {idle_kib / 1024:.1f} MiB; peak during push "
                f"{push_rss.peak_kib / 1024:.1f}, re-push {repush_rss.peak_kib / 1024:.1f}, "
                f"pull {pull_rss.peak_kib / 1024:.1f} MiB ({len(push_rss.samples)}+"
                f"{len(repush_rss.samples)}+{len(pull_rss.samples)} samples every 50 ms); "
                f"growth {growth:.1f} MiB  {verdict(growth < TARGET_RSS_GROWTH_MIB)}"
            )
        finally:
            server.stop()
        print(
            f"targets: push and pull+sync >= {TARGET_RATIO:.0%} of cp+sync throughput, "
            f"RSS growth < {TARGET_RSS_GROWTH_MIB} MiB, re-push < {TARGET_REPUSH_SHARE:.0%} "
            "of the first push with no bytes uploaded"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
