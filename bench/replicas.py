"""Two replicas versus one on point reads and creates over PostgreSQL (issue 13).

One PostgreSQL database, one blob directory. First one ``modelyard server``
process serves the load alone, then two processes (each its own, on the same
database and store) share it: wrk runs once per process at the same time, with
half the connections each, and the figures are summed (req/s) or the worse
taken (p99). No proxy in between: its cost would be in the figures. Cases:

- get a version by number   GET /api/v1/models/default/mI/versions/N
- get a version by alias    GET /api/v1/models/default/mI/versions/prod
- create a version          POST /api/v1/models/default/mI/versions (no files)

PostgreSQL: ``--db postgresql://...`` (an empty database you own), or by
default a throwaway cluster started for the run with the tests' helper
(``tests/pgcluster.py``: the Debian ``postgresql-15`` binaries; as root it runs
them as the ``postgres`` user) and removed afterwards. Traffic goes to
127.0.0.1 only; every wrk run is bounded by ``--duration``. On two cores the
ratio, not the absolute figures, is what to read: with one core per server
the second replica should add most of a core's worth of throughput.

    .venv/bin/python bench/replicas.py [--duration 10] [--models 100] [--versions 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from _harness import ServerProcess
from point_reads import WrkResult, parse_wrk

ROOT = Path(__file__).resolve().parents[1]

LUA_BY_NUMBER = """
local i = {offset}
request = function()
  i = i + 1
  local m = i % {models}
  local n = math.floor(i / {models}) % {versions} + 1
  return wrk.format("GET", "/api/v1/models/default/m" .. m .. "/versions/" .. n)
end
"""
LUA_BY_ALIAS = """
local i = {offset}
request = function()
  i = i + 1
  return wrk.format("GET", "/api/v1/models/default/m" .. (i % {models}) .. "/versions/prod")
end
"""
LUA_CREATE = """
local i = {offset}
local headers = {{["Content-Type"] = "application/json"}}
request = function()
  i = i + 1
  local body = '{{"tags": {{"env": "prod"}}, "metrics": {{"accuracy": 0.9}}}}'
  return wrk.format("POST", "/api/v1/models/default/m" .. (i % {models}) .. "/versions",
                    headers, body)
end
"""
CASES = {
    "get version by number": LUA_BY_NUMBER,
    "get version by alias": LUA_BY_ALIAS,
    "create version (POST)": LUA_CREATE,
}


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    """The database to use: the one given, or a throwaway cluster's."""
    if url:
        yield url
        return
    sys.path.insert(0, str(ROOT))
    from tests.pgcluster import PgCluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"no --db given and no throwaway cluster possible: {reason}")
    cluster = PgCluster.start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


def seed(url: str, models: int, versions: int) -> None:
    """MODELS models with VERSIONS versions each and alias ``prod`` on the last one."""
    with httpx.Client(base_url=url, timeout=30) as c:
        for m in range(models):
            c.post("/api/v1/models", json={"name": f"m{m}"}).raise_for_status()
            for _ in range(versions):
                body = {"tags": {"env": "prod"}, "metrics": {"accuracy": 0.9}}
                c.post(f"/api/v1/models/default/m{m}/versions", json=body).raise_for_status()
            c.put(
                f"/api/v1/models/default/m{m}/aliases/prod", json={"version": str(versions)}
            ).raise_for_status()


def wrk(url: str, script: Path, *, duration: int, connections: int) -> str:
    """One wrk run against ``url``; its report. Bounded by -d plus a margin."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "--latency"]
    done = subprocess.run(
        [*cmd, "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    )
    return done.stdout


def load(
    urls: list[str], scripts: list[Path], *, duration: int, connections: int
) -> list[WrkResult]:
    """wrk against every URL at once, ``connections`` split between them."""
    share = max(1, connections // len(urls))
    with ThreadPoolExecutor(len(urls)) as pool:
        outs = list(
            pool.map(
                lambda pair: wrk(pair[0], pair[1], duration=duration, connections=share),
                zip(urls, scripts, strict=True),
            )
        )
    return [parse_wrk(out) for out in outs]


Row = tuple[str, int, float, float, float, int, int]


def run_case(tmp: Path, name: str, template: str, urls: list[str], args: argparse.Namespace) -> Row:
    """One case against ``urls`` (one wrk each, at once): the summed figures."""
    stem = re.sub(r"\W+", "_", name)
    scripts = []
    for i in range(len(urls)):
        script = tmp / f"{stem}_{len(urls)}_{i}.lua"
        # Each wrk starts elsewhere in the rotation of models.
        script.write_text(
            template.format(models=args.models, versions=args.versions, offset=i * 7919)
        )
        scripts.append(script)
    if args.warmup > 0:
        load(urls, scripts, duration=args.warmup, connections=args.connections)
    results = load(urls, scripts, duration=args.duration, connections=args.connections)
    return (
        name,
        len(urls),
        sum(r.rps for r in results),
        max(r.p50_ms for r in results),
        max(r.p99_ms for r in results),
        sum(r.requests for r in results),
        sum(r.non_2xx + r.socket_errors for r in results),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", help="PostgreSQL URL (default: a throwaway cluster)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per case and setup")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured wrk first")
    ap.add_argument("--connections", type=int, default=16, help="wrk -c in total")
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--versions", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (server logs)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")

    tmp = Path(tempfile.mkdtemp(prefix="modelyard-replicas-"))
    store = ("--store", f"file://{tmp / 'blobs'}")
    rows: list[Row] = []
    try:
        with database(args.db) as db, contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(ServerProcess(tmp / f"replica{i}", db_url=db, extra_args=store))
                for i in range(2)
            ]
            t0 = time.perf_counter()
            seed(servers[0].url, args.models, args.versions)
            print(
                f"seeded {args.models} models x {args.versions} versions + alias 'prod' "
                f"in {time.perf_counter() - t0:.1f} s through replica 0; "
                f"replicas: pids {', '.join(str(s.pid) for s in servers)}"
            )
            for name, template in CASES.items():
                for n in (1, 2):
                    rows.append(run_case(tmp, name, template, [s.url for s in servers[:n]], args))
            with httpx.Client(timeout=30) as c:
                # Both replicas agree on what the creates made.
                seen = {
                    c.get(f"{s.url}/api/v1/models/default/m0").json()["latest_version"]
                    for s in servers
                }
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"wrk -t1 -c{args.connections} (split over the replicas) -d{args.duration}s "
        f"--latency, after {args.warmup} s of warm-up; PostgreSQL "
        f"{'given' if args.db else 'throwaway cluster'}"
    )
    print(
        f"{'case':<24} {'replicas':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'requests':>9} {'errors':>7} {'x one':>6}"
    )
    single: dict[str, float] = {}
    for name, n, rps, p50, p99, requests, errors in rows:
        if n == 1:
            single[name] = rps
        ratio = rps / single[name] if single.get(name) else float("nan")
        print(
            f"{name:<24} {n:>8} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f} "
            f"{requests:>9} {errors:>7} {ratio:>6.2f}"
        )
    print(f"latest version of m0 as each replica sees it: {sorted(seen)}")
    with contextlib.suppress(OSError):
        print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
