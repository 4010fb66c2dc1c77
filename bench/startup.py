"""Cold start of ``modelyard server`` and its idle memory (targets: < 1 s, < 120 MiB).

Measures the time from spawning the process to the first 200 from /health, on
a fresh data directory (creates the database) and on an existing one.

    .venv/bin/python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _server import Server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelyard-startup-"))
    try:
        for label, fresh in (("fresh data dir", True), ("existing data dir", False)):
            times, rss = [], []
            for i in range(args.runs):
                data = work / (f"fresh-{i}" if fresh else "existing")
                server = Server(data, workers=1)
                times.append(server.ready_after)
                time.sleep(1.0)  # let start-up garbage settle before reading RSS
                rss.append(server.rss_kib() / 1024)
                server.stop()
            print(
                f"{label:<18} start median {statistics.median(times):.3f} s "
                f"(min {min(times):.3f}, max {max(times):.3f}); idle RSS median "
                f"{statistics.median(rss):.1f} MiB"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
