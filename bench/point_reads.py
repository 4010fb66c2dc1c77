"""Point reads, creates and search pages over HTTP with wrk.

Targets: >= 2,000 req/s and p99 < 20 ms for each point read and create;
>= 1,000 req/s for a search page of 50 versions (the 100-version page is
printed alongside, without a target).

Seeds MODELS x VERSIONS versions over HTTP with the alias ``prod`` on each
model's last version, then runs wrk (``-t1 -c16 -d15s --latency`` by default)
against six cases:

- get a version by number   GET /api/v1/models/default/mI/versions/N (rotating I and N)
- get a version by alias    GET /api/v1/models/default/mI/versions/prod
- resolve name@alias        GET /api/v1/resolve?ref=mI@prod
- search page of 50 / 100   GET /api/v1/search/versions?filter=tags.env = 'prod'&page_size=50
                            (every seeded version has the tag: full pages, newest first)
- create a version          POST /api/v1/models/default/mI/versions (tags + metrics, no files)

The server runs pinned to CPU 0 and wrk to CPU 1 with ``taskset`` when it
exists (``--no-pin`` to let both float). Needs wrk: ``apt-get install -y wrk``.

    .venv/bin/python bench/point_reads.py [--duration 15] [--models 200] [--versions 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _harness import TASKSET, ServerProcess, pinned, verdict

TARGET_RPS = 2000.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # units of utime / stime in /proc/PID/stat
TARGET_P99_MS = 20.0

# wrk calls request() for every request; one Lua state per wrk thread (-t1: one).
LUA_BY_NUMBER = """
local i = 0
request = function()
  i = i + 1
  local m = i % {models}
  local n = math.floor(i / {models}) % {versions} + 1
  return wrk.format("GET", "/api/v1/models/default/m" .. m .. "/versions/" .. n)
end
"""
LUA_BY_ALIAS = """
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/api/v1/models/default/m" .. (i % {models}) .. "/versions/prod")
end
"""
LUA_RESOLVE = """
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/api/v1/resolve?ref=m" .. (i % {models}) .. "%40prod")
end
"""
# tags.env = 'prod', URL-encoded; every seeded version matches.
LUA_SEARCH = """
request = function()
  return wrk.format("GET", "/api/v1/search/versions?filter=tags.env%20%3D%20%27prod%27" ..
                    "&page_size={page}")
end
"""
LUA_CREATE = """
local i = 0
local headers = {{["Content-Type"] = "application/json"}}
request = function()
  i = i + 1
  local body = '{{"tags": {{"team": "team-' .. (i % 50) .. '", "env": "prod"}}, ' ..
               '"metrics": {{"accuracy": 0.9' .. (i % 10) .. ', "loss": 0.1}}, ' ..
               '"params": {{"lr": "0.01"}}, "framework": "onnx"}}'
  return wrk.format("POST", "/api/v1/models/default/m" .. (i % {models}) .. "/versions",
                    headers, body)
end
"""
CASES = {
    "get version by number": LUA_BY_NUMBER,
    "get version by alias": LUA_BY_ALIAS,
    "resolve name@alias": LUA_RESOLVE,
    "search page of 50": LUA_SEARCH.replace("{page}", "50"),
    "search page of 100": LUA_SEARCH.replace("{page}", "100"),
    "create version (POST)": LUA_CREATE,
}
# Search pages have their own throughput target and no latency one.
SEARCH_TARGETS = {"search page of 50": 1000.0, "search page of 100": None}


@dataclass
class WrkResult:
    """What we read from wrk's report."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNIT_MS[unit]


def parse_wrk(out: str) -> WrkResult:
    """Requests/s, latency percentiles and errors from ``wrk --latency`` output."""

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+\w+)\s*$", out, re.M)
        return _ms(m.group(1)) if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        rps=float(rps.group(1)) if rps else 0.0,
        p50_ms=pct("50"),
        p90_ms=pct("90"),
        p99_ms=pct("99"),
        requests=int(total.group(1)) if total else 0,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
    )


def cpu_seconds(pid: int) -> dict[int, float]:
    """utime + stime in seconds of a process and of each of its child processes
    (pre-forked workers), from /proc/PID/stat."""
    pids = [pid]
    with contextlib.suppress(FileNotFoundError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    out: dict[int, float] = {}
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        out[p] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def busy_share(before: dict[int, float], after: dict[int, float], wall: float) -> str:
    """CPU share of each busy process over ``wall`` seconds, e.g. ``98%`` or ``60%+55%``."""
    shares = [(after[p] - before.get(p, 0.0)) / wall for p in after]
    shown = [s for s in shares if s >= 0.01] or [0.0]
    return "+".join(f"{s:.0%}" for s in shown)


def run_wrk(
    url: str, script: Path, *, duration: int, connections: int, cpu: int | None
) -> tuple[str, str]:
    """Run wrk once; returns (command line, stdout). Bounded by -d plus a margin."""
    cmd = pinned(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "5s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        cpu,
    )
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True)
    return " ".join(cmd), done.stdout


def seed(url: str, models: int, versions: int) -> None:
    """MODELS models with VERSIONS versions each and alias ``prod`` on the last one."""
    with httpx.Client(base_url=url, timeout=30) as c:
        for m in range(models):
            c.post("/api/v1/models", json={"name": f"m{m}"}).raise_for_status()
            for n in range(versions):
                c.post(
                    f"/api/v1/models/default/m{m}/versions",
                    json={
                        "framework": "onnx",
                        "tags": {"team": f"team-{m % 50}", "env": "prod"},
                        "metrics": {"accuracy": 0.9 + n / 100, "loss": 0.1},
                        "params": {"lr": "0.01", "epochs": n + 1},
                    },
                ).raise_for_status()
            c.put(
                f"/api/v1/models/default/m{m}/aliases/prod", json={"version": str(versions)}
            ).raise_for_status()
        # Every case must answer 2xx; check one of each before loading.
        for path in (
            "/api/v1/models/default/m0/versions/1",
            "/api/v1/models/default/m0/versions/prod",
            "/api/v1/resolve?ref=m0%40prod",
        ):
            c.get(path).raise_for_status()
        page = c.get(
            "/api/v1/search/versions", params={"filter": "tags.env = 'prod'", "page_size": 100}
        )
        page.raise_for_status()
        if len(page.json()["versions"]) < min(100, models * versions):
            raise SystemExit("search case: the seeded data gives less than a full page")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=15, help="seconds per case (wrk -d)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured wrk first")
    ap.add_argument("--connections", type=int, default=16, help="wrk -c")
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--versions", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--no-pin", action="store_true", help="do not use taskset")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (server log, db)")
    ap.add_argument(
        "--cases", help="comma-separated substrings: run only the cases whose name has one"
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    pin = not args.no_pin and TASKSET is not None
    server_cpu, wrk_cpu = (0, 1) if pin else (None, None)

    tmp = Path(tempfile.mkdtemp(prefix="modelyard-point-"))
    try:
        with ServerProcess(tmp / "data", workers=args.workers, cpu=server_cpu) as server:
            t0 = time.perf_counter()
            seed(server.url, args.models, args.versions)
            print(
                f"seeded {args.models} models x {args.versions} versions + alias 'prod' "
                f"in {time.perf_counter() - t0:.1f} s (server pid {server.pid})"
            )
            if pin:
                print("pinning: server on CPU 0 (taskset -c 0), wrk on CPU 1 (taskset -c 1)")
            else:
                print("pinning: none (taskset missing or --no-pin); server and wrk share 2 CPUs")
            print(f"server workers: {args.workers}")
            header = (
                f"{'case':<24} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
                f"{'requests':>9} {'errors':>7} {'srv CPU':>8} {'CPU ms/req':>10}  target"
            )
            results: list[tuple[str, WrkResult, str, float]] = []
            cmd_line = ""
            wanted = [c.strip() for c in args.cases.split(",")] if args.cases else None
            for name, template in CASES.items():
                if wanted and not any(w in name for w in wanted):
                    continue
                script = tmp / (re.sub(r"\W+", "_", name) + ".lua")
                script.write_text(template.format(models=args.models, versions=args.versions))
                if args.warmup > 0:
                    run_wrk(
                        server.url,
                        script,
                        duration=args.warmup,
                        connections=args.connections,
                        cpu=wrk_cpu,
                    )
                cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
                cmd_line, out = run_wrk(
                    server.url,
                    script,
                    duration=args.duration,
                    connections=args.connections,
                    cpu=wrk_cpu,
                )
                cpu1 = cpu_seconds(server.pid)
                busy = busy_share(cpu0, cpu1, time.perf_counter() - t0)
                (tmp / (script.stem + ".out")).write_text(out)
                result = parse_wrk(out)
                # Server CPU per request: on a busy machine the server gets a
                # fraction of a core, and req/s falls with it; this does not.
                used = sum(cpu1.values()) - sum(cpu0.get(p, 0.0) for p in cpu1)
                results.append((name, result, busy, 1000 * used / max(result.requests, 1)))
            print(f"wrk command (per case): {cmd_line.replace(str(tmp) + '/', '')}")
            print(header)
            for name, r, busy, cpu_ms in results:
                if name in SEARCH_TARGETS:
                    target = SEARCH_TARGETS[name]
                    shown = "-" if target is None else verdict(r.rps >= target and r.non_2xx == 0)
                else:
                    ok = r.rps >= TARGET_RPS and r.p99_ms < TARGET_P99_MS and r.non_2xx == 0
                    shown = verdict(ok)
                print(
                    f"{name:<24} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p90_ms:>8.2f} "
                    f"{r.p99_ms:>8.2f} {r.requests:>9} {r.non_2xx + r.socket_errors:>7} "
                    f"{busy:>8} {cpu_ms:>10.2f}  {shown}"
                )
            print(
                f"target: >= {TARGET_RPS:,.0f} req/s and p99 < {TARGET_P99_MS:.0f} ms, "
                "no errors; search page of 50: >= 1,000 req/s\n"
                "(srv CPU: CPU time / wall time of each busy server process; 100% = one core;\n"
                " CPU ms/req: server CPU time per request, 1000 / that = req/s on one free core)"
            )
            with contextlib.suppress(OSError):
                print(f"load average during the run: {os.getloadavg()[0]:.2f} (1 min)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
