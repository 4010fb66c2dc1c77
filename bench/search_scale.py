"""Filtered search at 1,000,000 versions (issue 2 target: p95 < 50 ms).

Builds (once; reuse with ``--db``) a SQLite registry of MODELS x VERSIONS
versions through the normal start-up (so migrations run) plus bulk inserts of
rows shaped exactly as the service writes them, then times searches through
the service layer and over HTTP (one worker).

    .venv/bin/python bench/search_scale.py [--models 10000 --versions 100] [--db PATH]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import sqlalchemy as sa
from _server import Server

from modelyard.service.factory import build_registry
from modelyard.settings import Settings
from modelyard.store.metadata import tables as t

QUERIES = [
    "tags.team = 'team-7' AND metrics.accuracy >= 0.9",
    "tags.env = 'prod' AND metrics.accuracy >= 0.5",
    "tags.owner = 'rare-3' AND metrics.accuracy > 0.1",
    "tags.team = 'team-1' AND framework IN ('onnx', 'tflite')",
    "metrics.accuracy >= 0.99 AND params.lr = '0.01'",
    "name LIKE 'm12%' AND state = 'ready'",
    "framework = 'onnx' AND metrics.latency_ms < 5",
]


def build(data_dir: Path, models: int, versions: int) -> None:
    """Create the schema via the service, then bulk-load rows."""
    svc = build_registry(Settings(data_dir=data_dir))
    engine = svc.db.engine
    rng = random.Random(7)
    now = time.time_ns() // 1000
    frameworks = ["onnx", "pytorch", "tflite", "sklearn"]
    with engine.begin() as conn:
        ns_id = conn.execute(sa.select(t.namespaces.c.id)).scalar_one()
        conn.execute(
            t.models.insert(),
            [
                {
                    "id": m + 1,
                    "namespace_id": ns_id,
                    "name": f"m{m}",
                    "description": "",
                    "meta": {},
                    "archived": False,
                    "last_version": versions,
                    "created_by": "bench",
                    "created_at": now,
                    "updated_at": now,
                }
                for m in range(models)
            ],
        )
    vid = 0
    batch = 2000  # models per transaction
    for start in range(0, models, batch):
        vrows, tags, metrics, params = [], [], [], []
        for m in range(start, min(models, start + batch)):
            for n in range(1, versions + 1):
                vid += 1
                at = now + vid
                vrows.append(
                    {
                        "id": vid,
                        "model_id": m + 1,
                        "number": n,
                        "state": "ready",
                        "description": "",
                        "framework": frameworks[vid % 4],
                        "format": None,
                        "signature": None,
                        "meta": {},
                        "source_run": None,
                        "code_ref": None,
                        "datasets": [],
                        "original_id": None,
                        "parent_id": None,
                        "relation": None,
                        "file_count": 0,
                        "total_size": 0,
                        "created_by": "bench",
                        "created_at": at,
                        "updated_at": at,
                    }
                )
                tags.append(
                    {"version_id": vid, "key": "team", "value": f"team-{rng.randrange(100)}"}
                )
                tags.append(
                    {
                        "version_id": vid,
                        "key": "env",
                        "value": ("prod", "staging", "dev")[rng.randrange(3)],
                    }
                )
                if rng.random() < 0.0005:
                    tags.append(
                        {"version_id": vid, "key": "owner", "value": f"rare-{rng.randrange(10)}"}
                    )
                metrics.append({"version_id": vid, "key": "accuracy", "value": rng.random()})
                metrics.append({"version_id": vid, "key": "latency_ms", "value": rng.random() * 50})
                params.append(
                    {
                        "version_id": vid,
                        "key": "lr",
                        "value": ("0.1", "0.01", "0.001")[rng.randrange(3)],
                    }
                )
        with engine.begin() as conn:
            conn.execute(t.versions.insert(), vrows)
            conn.execute(t.version_tags.insert(), tags)
            conn.execute(t.version_metrics.insert(), metrics)
            conn.execute(t.version_params.insert(), params)
        print(f"  loaded {vid:,} versions", flush=True)
    svc.db.dispose()


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank), in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1)] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=int, default=10_000)
    ap.add_argument("--versions", type=int, default=100)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--db", type=Path, help="data directory to build or reuse")
    ap.add_argument("--keep", action="store_true", help="keep a temporary data directory")
    args = ap.parse_args()
    data_dir = args.db or Path(tempfile.mkdtemp(prefix="modelyard-search-")) / "data"
    if not (data_dir / "registry.db").exists():
        t0 = time.perf_counter()
        build(data_dir, args.models, args.versions)
        print(f"built {args.models * args.versions:,} versions in {time.perf_counter() - t0:.0f} s")
    svc = build_registry(Settings(data_dir=data_dir))
    print(
        f"{'query (page_size 100)':<58} {'svc p50':>8} {'svc p95':>8} {'http p50':>9} "
        f"{'http p95':>9} {'hits':>5}"
    )
    server = Server(data_dir, workers=1)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for q in QUERIES:
                svc_times, http_times = [], []
                hits = 0
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    page = svc.search_versions(q, page_size=100)
                    svc_times.append(time.perf_counter() - t0)
                    hits = len(page.items)
                    t0 = time.perf_counter()
                    r = http.get("/api/v1/search/versions", params={"filter": q})
                    http_times.append(time.perf_counter() - t0)
                    r.raise_for_status()
                print(
                    f"{q:<58} {pct(svc_times, 50):7.1f}ms {pct(svc_times, 95):7.1f}ms "
                    f"{pct(http_times, 50):8.1f}ms {pct(http_times, 95):8.1f}ms {hits:>5}"
                )
            # Walking 20 pages with the cursor.
            q = QUERIES[1]
            times = []
            token = None
            for _ in range(20):
                t0 = time.perf_counter()
                body = orjson.loads(
                    http.get(
                        "/api/v1/search/versions",
                        params={"filter": q, **({"page_token": token} if token else {})},
                    ).content
                )
                times.append(time.perf_counter() - t0)
                token = body["next_page_token"]
            print(
                f"walk 20 pages of {q!r}: p50 {statistics.median(times) * 1000:.1f} ms, "
                f"max {max(times) * 1000:.1f} ms"
            )
    finally:
        server.stop()
        svc.db.dispose()
        if not args.db and not args.keep:
            shutil.rmtree(data_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
