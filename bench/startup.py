"""Start-up time of ``modelyard server`` and its idle memory. Targets: < 1 s and < 120 MiB.

For a fresh data directory (the database is created and migrated) and for an
existing one (with a few models in it), starts the server ``--runs`` times and
measures the time from spawning the process to the first 200 from ``/health``
(polled every 5 ms), the CPU time the server used to get there, then its
VmRSS one second later (idle). Prints the median, min and max of each. On a
busy machine the wall time mostly measures the wait for a core; the CPU time
is the figure to compare across runs.

``--against DIR`` also starts the server from another source tree (the
``src`` directory of another checkout, e.g. main's) on the PYTHONPATH,
alternating with this one start by start, so both see the same machine: an
A/B of start-up changes on a noisy machine.

"Cold" here means a new process: Python's bytecode caches and the OS page
cache stay warm, as on any machine that has started the server before. The
script compiles the package's bytecode first, as pip does for an installed
package and `make serve` does for the source tree (with
PYTHONDONTWRITEBYTECODE=1, an editable install is otherwise recompiled at
every start).
``--importtime`` also prints the slowest imports of the server's modules
(``python -X importtime``), to see where start-up time goes.

    .venv/bin/python bench/startup.py [--runs 5] [--importtime] [--against ../main/src]
"""

from __future__ import annotations

import argparse
import compileall
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _harness import ServerProcess, verdict

import modelyard

TARGET_START_S = 1.0
TARGET_RSS_MIB = 120.0


def seed(url: str) -> None:
    """A few models and versions, so the existing data directory is not empty."""
    with httpx.Client(base_url=url, timeout=30) as c:
        for m in range(20):
            c.post("/api/v1/models", json={"name": f"m{m}"}).raise_for_status()
            for _ in range(5):
                c.post(
                    f"/api/v1/models/default/m{m}/versions",
                    json={"tags": {"team": "a"}, "metrics": {"accuracy": 0.9}},
                ).raise_for_status()


@dataclass
class Starts:
    """What the starts of one case and source tree measured."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)


def start_once(
    data_dir: Path, log_dir: Path, settle_s: float, into: Starts, env: dict[str, str] | None
) -> None:
    """Start once: seconds to the first healthy answer, the server's CPU
    seconds to it, and its idle RSS in MiB after ``settle_s``."""
    with ServerProcess(data_dir, log_path=log_dir / f"{data_dir.name}.log", env=env) as server:
        into.wall.append(server.ready_s)
        into.cpu.append(server.ready_cpu_s)
        time.sleep(settle_s)
        into.rss.append(server.rss_kib() / 1024)


def import_profile(top: int) -> list[str]:
    """The ``top`` slowest imports (cumulative) of the server's code path."""
    code = "import modelyard.api.app, modelyard.server, uvicorn"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    )
    rows = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)) // 2, m.group(4)))
    rows.sort(reverse=True)
    return [
        f"  {cum / 1000:7.1f} ms  {'  ' * (depth - 1)}{name}" for cum, depth, name in rows[:top]
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds before reading RSS")
    ap.add_argument("--importtime", action="store_true", help="print the slowest imports")
    ap.add_argument(
        "--against",
        type=Path,
        help="also start from this source tree (a checkout's src/), alternating",
    )
    args = ap.parse_args()
    # Bytecode as an installed package has it: pip compiles a wheel's modules
    # when it installs them, and `make serve` compiles the source tree, but an
    # editable install under PYTHONDONTWRITEBYTECODE=1 (set on these machines)
    # would recompile every module at every start (~90 ms here).
    package = Path(modelyard.__file__).parent
    trees: dict[str, dict[str, str] | None] = {"this tree": None}
    if args.against is not None:
        other = args.against.resolve()
        trees = {
            f"this ({package.parent})": {"PYTHONPATH": str(package.parent)},
            f"against ({other})": {"PYTHONPATH": str(other)},
        }
        compileall.compile_dir(other / "modelyard", quiet=1)
    compileall.compile_dir(package, quiet=1)
    print(f"bytecode compiled for {package}")
    work = Path(tempfile.mkdtemp(prefix="modelyard-startup-"))
    try:
        existing = work / "existing"
        with ServerProcess(existing, log_path=work / "seed.log") as server:
            seed(server.url)
        print(
            f"{'case':<20} {'start median':>12} {'min':>7} {'max':>7}   {'CPU median':>10} "
            f"{'min':>6}   {'idle RSS median':>15} {'max':>7}  target"
        )
        for label, fresh in (("fresh data dir", True), ("existing data dir", False)):
            results = {tree: Starts() for tree in trees}
            for i in range(args.runs):
                for t, (tree, env) in enumerate(trees.items()):
                    d = work / f"fresh-{i}-{t}" if fresh else existing
                    start_once(d, work, args.settle, results[tree], env)
            for tree, r in results.items():
                med, med_rss = statistics.median(r.wall), statistics.median(r.rss)
                ok = med < TARGET_START_S and med_rss < TARGET_RSS_MIB
                if len(trees) > 1:
                    print(f"  {tree}")
                print(
                    f"{label:<20} {med:>10.3f} s {min(r.wall):>7.3f} {max(r.wall):>7.3f}   "
                    f"{statistics.median(r.cpu):>8.3f} s {min(r.cpu):>6.2f}   "
                    f"{med_rss:>11.1f} MiB {max(r.rss):>7.1f}  {verdict(ok)}"
                )
        print(
            f"runs: {args.runs} each; target: start < {TARGET_START_S:.0f} s (to first 200 "
            f"from /health), idle RSS < {TARGET_RSS_MIB:.0f} MiB; CPU: the server's user + "
            "system time to that answer"
        )
        if args.importtime:
            print("slowest imports (cumulative, python -X importtime):")
            print("\n".join(import_profile(15)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
