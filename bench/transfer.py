"""Push and pull of one big file through a server, against ``cp`` + ``sync``.

Targets: push and pull throughput >= 90% of ``cp`` + ``sync`` on the same disk;
server RSS growth < 64 MiB during the transfers; re-pushing identical bytes
uploads nothing and takes < 10% of the first push.

This VM's memory is the noisiest part of the measurement: the first time the
guest touches pages after a quiet spell they come in at a few hundred MiB/s,
so the same ``cp`` + ``sync`` takes 0.6 s or 3 s depending on what ran
before. The script therefore runs warm-up rounds first and then several
measured rounds, each comparing against its own ``cp`` + ``sync``, and judges
the median of the per-round ratios. Each round, on a fresh server and data
directory, with fresh client caches:

1. baseline: ``cp SRC DST && sync``;
2. push with the SDK (``Registry(url).push``); big files are hashed while
   they upload; the server fsyncs the blob before the version exists;
3. re-push of the same file as a new version: nothing may be uploaded and the
   server's blob directory must not grow;
4. pull into a fresh cache and directory, then ``sync``; sha256 compared.
   The push wrote the blob around the page cache, so this pull reads it from
   disk while writing its copy to the same disk;
5. the same pull again once the server's copy is in the page cache, as the
   source of ``cp`` is (column ``cached``; not with ``--drop-caches``).

The server's VmRSS (/proc/PID/status) is sampled every 50 ms during 2-4.
Nothing is pinned unless ``--pin`` is given: the SDK hashes and writes on
worker threads, which a one-core pin would serialise, and ``cp`` is not pinned
either.

It also prints the floor SHA-256 sets on this machine: a push hashes every
byte twice (the SDK, to name and check what it sends; the server, before the
blob becomes visible) and a pull once, and one SHA-256 stream cannot use more
than one core.

    .venv/bin/python bench/transfer.py [--size 1GiB] [--rounds 3] [--warmup 1]
                                      [--dir /tmp] [--pin] [--drop-caches]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _harness import MIB, CpuMeter, RssSampler, ServerProcess, pin_self, verdict

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


def sha256_rate(mib: int = 256) -> float:
    """This machine's single-stream SHA-256 throughput in MiB/s (best of 3)."""
    block = os.urandom(8 * MIB)
    best = 0.0
    for _ in range(3):
        h = hashlib.sha256()
        t0 = time.perf_counter()
        for _ in range(mib // 8):
            h.update(block)
        best = max(best, mib / (time.perf_counter() - t0))
    return best


@dataclass
class Round:
    """One round's timings (seconds) and checks."""

    cp: float
    push: float
    repush: float
    repush_bytes: int
    blob_growth: int
    pull_sync: float
    pull_cached_sync: float
    identical: bool
    rss_growth_mib: float
    push_cpu: CpuMeter
    pull_cpu: CpuMeter

    @property
    def push_ratio(self) -> float:
        return self.cp / self.push

    @property
    def pull_ratio(self) -> float:
        return self.cp / self.pull_sync

    @property
    def pull_cached_ratio(self) -> float:
        return self.cp / self.pull_cached_sync


class Uploads:
    """Bytes the SDK planned to upload (PushCallbacks.start of "uploading")."""

    def __init__(self) -> None:
        self.total = 0

    def start(self, phase: str, total: int) -> None:
        if phase == "uploading":
            self.total = total


def one_round(src: Path, digest: str, work: Path, args: argparse.Namespace) -> Round:
    """Baseline, push, re-push and two pulls on a fresh server and fresh caches."""
    size = src.stat().st_size
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settle(args.drop_caches)
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(work / "copy.bin")], check=True)
    sync()
    cp_s = time.perf_counter() - t0
    (work / "copy.bin").unlink()

    server = ServerProcess(work / "data", cpu=0 if args.pin else None)
    try:
        time.sleep(0.5)
        idle_kib = server.rss_kib()
        blobs = work / "data" / "blobs"
        with Registry(server.url, cache_dir=work / "cache-push") as reg:
            settle(args.drop_caches)
            with RssSampler(server) as push_rss, CpuMeter(server) as push_cpu:
                t0 = time.perf_counter()
                v1 = reg.push("big", src)
                push_s = time.perf_counter() - t0
            before = tree_bytes(blobs)
            settle(args.drop_caches)
            uploads = Uploads()
            with RssSampler(server) as repush_rss:
                t0 = time.perf_counter()
                reg.push("big", src, callbacks=PushCallbacks(start=uploads.start))
                repush_s = time.perf_counter() - t0
            growth = tree_bytes(blobs) - before
        with Registry(server.url, cache_dir=work / "cache-pull") as reg:
            settle(args.drop_caches)
            with RssSampler(server) as pull_rss, CpuMeter(server) as pull_cpu:
                t0 = time.perf_counter()
                out = reg.pull(v1.ref, work / "out")
                sync()
                pull_sync_s = time.perf_counter() - t0
        identical = sha256_of(out / src.name) == digest
        # Again with the server's copy in the page cache, as cp's source is:
        # the push wrote the blob around the cache, so the pull above read it
        # from disk while writing its own copy to the same disk.
        if not args.drop_caches:
            sha256_of(next(p for p in blobs.rglob("*") if p.is_file() and p.stat().st_size == size))
        with Registry(server.url, cache_dir=work / "cache-pull-2") as reg:
            settle(args.drop_caches)
            t0 = time.perf_counter()
            again = reg.pull(v1.ref, work / "out-2")
            sync()
            pull_cached_s = time.perf_counter() - t0
        identical = identical and sha256_of(again / src.name) == digest
        peak = max(push_rss.peak_kib, repush_rss.peak_kib, pull_rss.peak_kib)
    finally:
        server.stop()
    shutil.rmtree(work, ignore_errors=True)
    return Round(
        cp=cp_s,
        push=push_s,
        repush=repush_s,
        repush_bytes=uploads.total,
        blob_growth=growth,
        pull_sync=pull_sync_s,
        pull_cached_sync=pull_cached_s,
        identical=identical,
        rss_growth_mib=(peak - idle_kib) / 1024,
        push_cpu=push_cpu,
        pull_cpu=pull_cpu,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=parse_size, default=1 << 30, help="e.g. 1GiB (default), 256M")
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="unreported rounds first (default 1)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: /tmp)")
    ap.add_argument("--drop-caches", action="store_true", help="drop the page cache per phase")
    ap.add_argument("--pin", action="store_true", help="pin the server to CPU 0, client to CPU 1")
    args = ap.parse_args()
    size: int = args.size
    mib = size / MIB
    if args.pin and pin_self(1):
        print("pinning: client (this process) on CPU 1, server on CPU 0 (taskset)")
    work = Path(tempfile.mkdtemp(prefix="modelyard-transfer-", dir=args.dir))
    try:
        src_dir = work / "src"
        src_dir.mkdir()
        src = src_dir / "weights.bin"
        t0 = time.perf_counter()
        digest = make_random_file(src, size)
        sync()
        print(f"file: {mib:,.0f} MiB of random bytes in {work} ({time.perf_counter() - t0:.1f} s)")
        sha = sha256_rate()
        print(
            f"sha256 on this machine: {sha:,.0f} MiB/s per stream, so at least "
            f"{mib / sha:.2f} s for one pass over the file (a pull hashes once, a push twice)"
        )

        def rate(seconds: float) -> str:
            return f"{mib / seconds:7.0f}"

        def cpu(m: CpuMeter) -> str:
            return f"{m.client:.2f}+{m.server_s:.2f}"

        print(
            f"{'round':<9} {'cp+sync':>8} {'push':>8} {'ratio':>6} {'pull+sync':>10} "
            f"{'ratio':>6} {'cached':>7} {'ratio':>6} {'re-push':>8} {'RSS+':>6} {'push CPU':>15} "
            f"{'pull CPU':>15}   (MiB/s; s for re-push; MiB; CPU s client+server)"
        )
        rounds: list[Round] = []
        for i in range(args.warmup + args.rounds):
            r = one_round(src, digest, work / "round", args)
            label = "warm-up" if i < args.warmup else f"{i - args.warmup + 1}"
            print(
                f"{label:<9} {rate(r.cp):>8} {rate(r.push):>8} {r.push_ratio:6.0%} "
                f"{rate(r.pull_sync):>10} {r.pull_ratio:6.0%} {rate(r.pull_cached_sync):>7} "
                f"{r.pull_cached_ratio:6.0%} "
                f"{r.repush:8.3f} {r.rss_growth_mib:6.1f} {cpu(r.push_cpu):>15} "
                f"{cpu(r.pull_cpu):>15}",
                flush=True,
            )
            if i >= args.warmup:
                rounds.append(r)

        push_ratio = statistics.median(r.push_ratio for r in rounds)
        pull_ratio = statistics.median(r.pull_ratio for r in rounds)
        cp_med = statistics.median(r.cp for r in rounds)
        print(f"median over {len(rounds)} rounds (cp+sync {rate(cp_med).strip()} MiB/s):")
        print(f"  push       {push_ratio:5.0%} of cp+sync  {verdict(push_ratio >= TARGET_RATIO)}")
        cached = statistics.median(r.pull_cached_ratio for r in rounds)
        print(
            f"  pull+sync  {pull_ratio:5.0%} of cp+sync, the blob read from disk  "
            f"{verdict(pull_ratio >= TARGET_RATIO)}"
        )
        print(
            f"  pull+sync  {cached:5.0%} of cp+sync, the blob in the page cache like cp's "
            f"source  {verdict(cached >= TARGET_RATIO)}"
        )
        share = max(r.repush / r.push for r in rounds)
        quiet = all(r.repush_bytes == 0 and r.blob_growth == 0 for r in rounds)
        print(
            f"  re-push    at most {share:.1%} of the first push, "
            f"{'no' if quiet else 'SOME'} bytes uploaded, blob directory "
            f"{'unchanged' if quiet else 'GREW'}  {verdict(share < TARGET_REPUSH_SHARE and quiet)}"
        )
        growth = max(r.rss_growth_mib for r in rounds)
        print(
            f"  server RSS growth at most {growth:.1f} MiB  "
            f"{verdict(growth < TARGET_RSS_GROWTH_MIB)}"
        )
        same = all(r.identical for r in rounds)
        print(f"  pulled files byte-identical (sha256): {same}  {verdict(same)}")
        hash_s = mib / sha
        print(
            f"  sha256 bound: one pass over the file takes {hash_s:.2f} s, "
            f"{cp_med / hash_s:.0%} of the median cp+sync time"
        )
        cores = os.cpu_count() or 1
        for name, meters, passes in (
            ("push", [r.push_cpu for r in rounds], 2),
            ("pull", [r.pull_cpu for r in rounds], 1),
        ):
            used = statistics.median(m.total for m in meters)
            print(
                f"  CPU bound: a {name} used {used:.2f} CPU s (client + server, median; "
                f"{passes} sha256 pass{'es' if passes > 1 else ''} = {passes * hash_s:.2f} s "
                f"of it); on {cores} cores it cannot finish in under {used / cores:.2f} s, "
                f"{cp_med / (used / cores):.0%} of cp+sync"
            )
        print(
            f"targets: push and pull+sync >= {TARGET_RATIO:.0%} of cp+sync throughput, "
            f"RSS growth < {TARGET_RSS_GROWTH_MIB} MiB, re-push < {TARGET_REPUSH_SHARE:.0%} "
            "of the first push with no bytes uploaded"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
