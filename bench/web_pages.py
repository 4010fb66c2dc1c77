"""Server time of each UI page on a large registry. Target: < 100 ms per page.

Builds (once, with ``search_1m.py``'s loader) a SQLite registry of MODELS x
VERSIONS versions (default 10,000 x 100 = 1,000,000), then requests each main
page through the ASGI app in this process, so the time is the server's own:
routing, the guard, the service calls, rendering. ``--runs`` runs per page
after 2 unmeasured ones; p50 and p95 are printed.

    .venv/bin/python bench/web_pages.py [--db /tmp/search1m.db] [--models 10000 --versions 100]

The same database file as ``search_1m.py --db`` can be reused.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import httpx
from _harness import percentile, verdict
from search_1m import build

from modelyard.api.app import create_app
from modelyard.settings import Settings

TARGET_MS = 100.0


def pages(models: int, versions: int) -> list[tuple[str, str]]:
    """(label, URL) of every main page, on a model in the middle of the registry."""
    m = f"m{models // 2}"
    v = max(1, versions // 2)
    return [
        ("home (models)", "/"),
        ("home, filter", "/?q=tags.team+%3D+%27team-7%27"),
        ("home, framework (versions)", "/?framework=onnx&state=published"),
        ("home, sort by name", "/?sort=name+ASC"),
        ("model + 2 metric columns", f"/models/default/{m}?metric=accuracy&metric=loss"),
        ("model, alias at a time", f"/models/default/{m}?alias=prod&at=2030-01-01T00:00"),
        ("version", f"/models/default/{m}/versions/{v}"),
        ("version by alias", f"/models/default/{m}/versions/prod"),
        ("compare 3", f"/compare?v=default/{m}/1&v=default/{m}/{v}&v=default/{m}/{versions}"),
        ("audit", "/audit"),
        ("approvals", "/approvals?namespace=default"),
        ("model policy", f"/models/default/{m}/policy"),
        ("deployments", "/deployments"),
        ("webhooks", "/webhooks"),
        ("account", "/account"),
        ("roles", "/roles?namespace=default"),
    ]


async def measure(db_url: str, data: Path, args: argparse.Namespace) -> bool:
    app = create_app(Settings(data_dir=data, db=db_url, dispatcher=False))
    transport = httpx.ASGITransport(app=app)
    ok = True
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        print(f"{'page':34} {'p50 ms':>8} {'p95 ms':>8}")
        for label, url in pages(args.models, args.versions):
            times = []
            for i in range(args.runs + 2):
                t0 = time.perf_counter()
                r = await client.get(url)
                elapsed = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise SystemExit(f"{url}: {r.status_code} {r.text[:300]}")
                if i >= 2:
                    times.append(elapsed)
            p95 = percentile(times, 95)
            ok = ok and p95 < TARGET_MS
            print(f"{label:34} {percentile(times, 50):8.1f} {p95:8.1f}")
    print(f"every page p95 < {TARGET_MS:.0f} ms: {verdict(ok)}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", type=Path, help="SQLite file to build (if missing) or reuse")
    ap.add_argument("--models", type=int, default=10_000)
    ap.add_argument("--versions", type=int, default=100, help="versions per model")
    ap.add_argument("--runs", type=int, default=20, help="measured runs per page")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-web-"))
    try:
        db_path = (args.db or tmp / "registry.db").resolve()
        db_url = f"sqlite:///{db_path}"
        if not db_path.exists():
            db_path.parent.mkdir(parents=True, exist_ok=True)
            build(db_url, tmp / "build", args.models, args.versions, batch_rounds=5)
        asyncio.run(measure(db_url, tmp / "data", args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
