"""Point reads and creates over HTTP with wrk (issue 2 target: >= 2,000 req/s, p99 < 20 ms).

Seeds models x versions with an alias each, then runs wrk (1 thread, 16
connections by default) against: get version by number, get by alias, resolve
``name@alias``, and create version (small JSON body, no files). wrk and the
server share this machine's cores: the figures are for that setup.

    .venv/bin/python bench/http_load.py [--workers 2] [--duration 10] [--models 200]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
from _server import Server

LUA_READ = """
counter = 0
request = function()
  counter = counter + 1
  local m = (counter %% %(models)d)
  return wrk.format("GET", string.format("%(path)s", m))
end
"""
LUA_CREATE = """
counter = 0
request = function()
  counter = counter + 1
  local m = (counter %% %(models)d)
  local body = '{"tags": {"team": "t' .. (counter %% 50) .. '"}, "metrics": {"acc": 0.9}}'
  return wrk.format("POST", string.format("/api/v1/models/default/m%%d/versions", m),
                    {["Content-Type"] = "application/json"}, body)
end
"""


def seed(url: str, models: int, versions: int) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        for m in range(models):
            c.post("/api/v1/models", json={"name": f"m{m}"}).raise_for_status()
            for _ in range(versions):
                c.post(
                    f"/api/v1/models/default/m{m}/versions",
                    json={"tags": {"team": "fraud"}, "metrics": {"acc": 0.9}},
                ).raise_for_status()
            c.put(
                f"/api/v1/models/default/m{m}/aliases/prod", json={"version": str(versions)}
            ).raise_for_status()


def wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, str]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {"rps": re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+\w+)", out, re.M)
        result[f"p{pct}"] = m.group(1) if m else "?"
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = errors.group(1) if errors else "0"
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--versions", type=int, default=5)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    server = Server(tmp / "data", workers=args.workers)
    try:
        seed(server.url, args.models, args.versions)
        cases = {
            "get version by number": LUA_READ
            % {
                "models": args.models,
                "path": f"/api/v1/models/default/m%d/versions/{args.versions - 1}",
            },
            "get version by alias": LUA_READ
            % {"models": args.models, "path": "/api/v1/models/default/m%d/versions/prod"},
            "resolve name@alias": LUA_READ
            % {"models": args.models, "path": "/api/v1/resolve?ref=m%d@prod"},
            "create version": LUA_CREATE % {"models": args.models},
        }
        print(
            f"workers={args.workers} wrk -t1 -c{args.connections} -d{args.duration}s "
            f"({args.models} models x {args.versions} versions)"
        )
        print(f"{'case':<24} {'req/s':>9} {'p50':>9} {'p90':>9} {'p99':>9} {'non-2xx':>8}")
        for name, lua in cases.items():
            script = tmp / "case.lua"
            script.write_text(lua)
            r = wrk(server.url, script, args.duration, args.connections)
            print(
                f"{name:<24} {r['rps']:>9} {r['p50']:>9} {r['p90']:>9} {r['p99']:>9} "
                f"{r['non2xx']:>8}"
            )
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
