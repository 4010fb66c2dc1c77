"""Backup, fsck and what a backup costs the writers, on a SQLite + local-directory
registry built in-process in a temporary directory.

Prints: fsck time and hashing rate over every stored byte; a first backup into
a directory (everything copied) and a second one (nothing new: the incremental
check only); and the latency of version creates made by a writer thread before
and during a backup (median, max), which shows whether the backup blocks
writers. Nothing here is part of the test suite.

    .venv/bin/python bench/backup_fsck.py [--blobs 64] [--mib 8]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from modelyard.composition import Services, build_services, open_backup
from modelyard.domain.identity import Principal
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("bench")


def populate(svc: Services, blobs: int, mib: int) -> int:
    svc.registry.create_model("big", actor=ADMIN)
    total = 0
    for i in range(blobs):
        data = os.urandom(mib << 20)
        digest = svc.blob_service.upload([data], actor=ADMIN, size=len(data)).digest
        files = [{"path": f"part-{i}.bin", "digest": digest, "size": len(data)}]
        svc.registry.create_version("big", VersionSpec(files=files), actor=ADMIN)
        total += len(data)
    return total


def creates_during(svc: Services, work: threading.Event, stop: threading.Event) -> list[float]:
    """Latencies (ms) of small version creates, one after another, until ``stop``."""
    latencies: list[float] = []
    i = 0
    while not stop.is_set():
        i += 1
        data = f"small {time.time_ns()} {i}".encode()
        digest = hashlib.sha256(data).hexdigest()
        t0 = time.perf_counter()
        svc.blob_service.upload([data], actor=ADMIN, size=len(data))
        svc.registry.create_version(
            "small",
            VersionSpec(files=[{"path": "x", "digest": digest, "size": len(data)}]),
            actor=ADMIN,
        )
        latencies.append((time.perf_counter() - t0) * 1000)
        work.set()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", type=int, default=64)
    parser.add_argument("--mib", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data")
        with build_services(settings) as svc:
            total = populate(svc, args.blobs, args.mib)
            svc.registry.create_model("small", actor=ADMIN)
            print(f"registry: {args.blobs} blobs, {total / (1 << 20):.0f} MiB, SQLite + directory")

            t0 = time.perf_counter()
            report = svc.fsck.check(actor=ADMIN)
            took = time.perf_counter() - t0
            rate = report.bytes_hashed / (1 << 20) / took
            print(f"fsck: {took:.2f} s, {rate:.0f} MiB/s hashed, ok={report.ok}")

            area = open_backup(settings, str(Path(tmp) / "backup"))
            baseline_stop = threading.Event()
            started = threading.Event()
            box: list[list[float]] = []
            writer = threading.Thread(
                target=lambda: box.append(creates_during(svc, started, baseline_stop))
            )
            writer.start()
            time.sleep(2.0)
            baseline_stop.set()
            writer.join()
            baseline = box.pop()

            stop = threading.Event()
            started = threading.Event()
            writer = threading.Thread(target=lambda: box.append(creates_during(svc, started, stop)))
            writer.start()
            started.wait()
            t0 = time.perf_counter()
            first = svc.backup.backup(area, actor=ADMIN)
            took_first = time.perf_counter() - t0
            stop.set()
            writer.join()
            during = box.pop()
            print(
                f"backup 1: {took_first:.2f} s, {first.blobs_copied} blobs, "
                f"{first.bytes_copied / (1 << 20):.0f} MiB copied "
                f"({first.bytes_copied / (1 << 20) / took_first:.0f} MiB/s)"
            )
            t0 = time.perf_counter()
            second = svc.backup.backup(area, actor=ADMIN)
            print(
                f"backup 2: {time.perf_counter() - t0:.2f} s, {second.blobs_copied} new blobs "
                f"of {second.blobs_stored} (those the writer stored during backup 1)"
            )
            for name, values in (("before backup", baseline), ("during backup", during)):
                print(
                    f"writer creates {name}: n={len(values)}, "
                    f"median {statistics.median(values):.2f} ms, max {max(values):.2f} ms"
                )


if __name__ == "__main__":
    main()
