"""Server time of each UI page on a large registry. Target: < 100 ms per page.

Builds (once, with ``search_1m.py``'s loader) a SQLite registry of MODELS x
VERSIONS versions (default 10,000 x 100 = 1,000,000), then adds (once, see
:func:`seed_extras`) what makes the other pages heavy: a model of
BIG_VERSIONS versions with BIG_MOVES alias moves, EVENTS events (the audit
log, each version's events), a webhook with DELIVERIES deliveries, approval
requests, and deployments whose replicas report monitoring figures, one of
them with a long history of alerts. Then it requests each page through the
ASGI app in this process, so the time is the server's own: routing, the
guard, the service calls, rendering. ``--runs`` runs per page after 2
unmeasured ones; p50 and p95 of the process's CPU time per request are
printed (and the wall-time p50, which on a busy machine includes the wait
for a core).

    .venv/bin/python bench/web_pages.py [--db /tmp/search1m.db] [--models 10000 --versions 100]

The same database file as ``search_1m.py --db`` can be reused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from _harness import percentile, verdict
from search_1m import _version_rows, build

from modelyard.api.app import create_app
from modelyard.composition import build_services
from modelyard.domain.errors import ModelyardError
from modelyard.domain.identity import Principal
from modelyard.settings import Settings
from modelyard.store.metadata import tables as t

TARGET_MS = 100.0


BIG = "big"
BIG_VERSIONS = 5_000
BIG_MOVES = 20_000
EVENTS = 300_000
DELIVERIES = 20_000
APPROVALS = 60
DEPLOYMENTS = 40
HOT_HISTORY = 5_000
"""History entries of the deployment the page is measured on (a third of them alerts)."""
FEATURES = 50
WEBHOOK_ID = 1
ACTOR = Principal.local("bench")


def pages(models: int, versions: int) -> list[tuple[str, str]]:
    """(label, URL) of every page, on a model in the middle of the registry
    and on the big one."""
    m = f"m{models // 2}"
    v = max(1, versions // 2)
    big = f"/models/default/{BIG}"
    hot = "/deployments/prod-eu/default/m1%40prod"
    return [
        ("home (models)", "/"),
        ("home, filter", "/?q=tags.team+%3D+%27team-7%27"),
        ("home, bad filter", "/?q=tags.team+%3D"),
        ("home, tag quick filter", "/?tag=team%3Dteam-7"),
        ("home, framework (versions)", "/?framework=onnx&state=published"),
        ("home, sort by name", "/?sort=name+ASC"),
        ("model + 2 metric columns", f"/models/default/{m}?metric=accuracy&metric=loss"),
        ("model, alias at a time", f"/models/default/{m}?alias=prod&at=2030-01-01T00:00"),
        (f"model, {BIG_VERSIONS:,} versions", f"{big}?metric=accuracy"),
        ("big model, alias at a time", f"{big}?alias=prod&at=2030-01-01T00:00"),
        ("big model, version page 21", f"{big}?page=__PAGE__"),
        ("big model, older moves", f"{big}?moves=__MOVES__"),
        ("version", f"/models/default/{m}/versions/{v}"),
        ("version by alias", f"/models/default/{m}/versions/prod"),
        ("big model version (lineage, events)", f"{big}/versions/{BIG_VERSIONS // 2}"),
        ("compare 3", f"/compare?v=default/{m}/1&v=default/{m}/{v}&v=default/{m}/{versions}"),
        (
            "compare 6 (big model)",
            "/compare?" + "&".join(f"v=default/{BIG}/{n}" for n in range(1, 7)),
        ),
        ("audit", "/audit"),
        ("audit, one model", f"/audit?model=default/{BIG}"),
        ("audit, action prefix", "/audit?action=alias.*"),
        ("audit, actor + time", "/audit?actor=ci&since=2020-01-01T00:00:00Z"),
        ("approvals", "/approvals?namespace=default"),
        ("approvals, all states", "/approvals?namespace=default&state=all"),
        ("approval", "/approvals/1"),
        ("namespace policy", "/namespaces/default/policy"),
        ("model policy", f"/models/default/{m}/policy"),
        ("roles", "/roles?namespace=default"),
        ("webhooks", "/webhooks"),
        (f"webhook + {DELIVERIES:,} deliveries", f"/webhooks/{WEBHOOK_ID}"),
        ("webhook, failed deliveries", f"/webhooks/{WEBHOOK_ID}?status=failed"),
        ("account", "/account"),
        ("deployments", "/deployments"),
        ("deployments, follows", f"/deployments?follows={m}%40prod"),
        (f"deployment + monitoring ({HOT_HISTORY:,} entries)", hot),
        ("deployment, older alerts", f"{hot}?alerts_before=__ALERTS__"),
    ]


def _measures(i: int) -> dict[str, Any]:
    """A model server's monitoring window as its heartbeat carries it."""
    rng = random.Random(i)
    return {
        "window_seconds": 300.0,
        "requests": 1000 + i,
        "errors": i % 50,
        "error_rate": (i % 50) / (1000 + i),
        "latency_p50_ms": 0.9,
        "latency_p99_ms": 12.0 + i % 30,
        "version": 100,
        "features": {
            f"f{k}": {
                "kind": "numeric",
                "count": 1000,
                "psi": rng.random() / 2,
                "ks": rng.random() / 3,
            }
            for k in range(FEATURES)
        },
        "features_total": FEATURES,
        "thresholds": {
            "psi": 0.2,
            "ks": 0.2,
            "error_rate": 0.05,
            "latency_p99_ms": 50.0,
            "min_requests": 20,
        },
    }


def seed_extras(db_url: str, scratch: Path, models: int, versions: int) -> None:
    """Add (once) what the 1M-version build leaves out and some pages read:
    see the module docstring. Bulk rows where volume matters, service calls
    (the same code as the API) for the rest."""
    engine = sa.create_engine(db_url, json_serializer=lambda v: orjson.dumps(v).decode())
    with engine.connect() as conn:
        if conn.execute(sa.select(t.models.c.id).where(t.models.c.name == BIG)).first():
            engine.dispose()
            return
    t0 = time.perf_counter()
    # Migrations first (this bench's code may be newer than the build).
    built = build_services(Settings(data_dir=scratch, db=db_url, webhook_allow="127.0.0.1"))
    built.close()
    rng = random.Random(11)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA synchronous=OFF")
        ns_id = conn.execute(sa.select(t.namespaces.c.id)).scalar_one()
        mid = conn.execute(sa.select(sa.func.max(t.models.c.id))).scalar_one() + 1
        vid0 = conn.execute(sa.select(sa.func.max(t.versions.c.id))).scalar_one()
        now = time.time_ns() // 1000
        base = now - (BIG_VERSIONS + BIG_MOVES) * 1000
        conn.execute(
            t.models.insert(),
            [
                {
                    "id": mid,
                    "namespace_id": ns_id,
                    "name": BIG,
                    "description": "# big\n\nmany versions",
                    "meta": {},
                    "archived": False,
                    "last_version": BIG_VERSIONS,
                    "created_by": "bench",
                    "created_at": base,
                    "updated_at": now,
                }
            ],
        )
        rows: dict[str, list[dict[str, Any]]] = {}
        for n in range(1, BIG_VERSIONS + 1):
            for name, part in _version_rows(vid0 + n, mid - 1, n, base + n * 1000, rng).items():
                rows.setdefault(name, []).extend(part)
        # A lineage: every version after the first is a finetune of the one before.
        for n, row in enumerate(rows["versions"], start=1):
            if n > 1:
                row.update(original_id=vid0 + 1, parent_id=vid0 + n - 1, relation="finetuned")
        for name, part in rows.items():
            conn.execute(getattr(t, name).insert(), part)
        moves = []
        current = {"prod": None, "canary": None, "staging": None}
        for i in range(BIG_MOVES):
            alias = ("prod", "canary", "staging")[i % 3]
            to = rng.randrange(1, BIG_VERSIONS + 1)
            moves.append(
                {
                    "model_id": mid,
                    "name": alias,
                    "from_version": current[alias],
                    "to_version": to,
                    "actor": "ci",
                    "reason": f"move {i}",
                    "at": base + BIG_VERSIONS * 1000 + i * 1000,
                }
            )
            current[alias] = to
        conn.execute(t.alias_history.insert(), moves)
        conn.execute(
            t.aliases.insert(),
            [
                {
                    "model_id": mid,
                    "name": a,
                    "version_id": vid0 + n,
                    "updated_by": "ci",
                    "updated_at": now,
                }
                for a, n in current.items()
            ],
        )
        # Events: every model's versions and alias moves, the big model's most.
        events = []
        for i in range(EVENTS):
            model = BIG if i % 10 == 0 else f"m{rng.randrange(models)}"
            n = rng.randrange(1, (BIG_VERSIONS if model == BIG else versions) + 1)
            kind = ("version.created", "alias.moved", "version.published", "version.updated")[i % 4]
            subject = f"default/{model}@prod" if kind == "alias.moved" else f"default/{model}/{n}"
            events.append(
                {
                    "type": kind,
                    "at": base + i * 10,
                    "actor": ("ci", "ana", "bob")[i % 3],
                    "namespace": "default",
                    "subject": subject,
                    "payload": {"version": n},
                    "model_key": f"default/{model}",
                }
            )
        conn.execute(t.events.insert(), events)
        first_event = conn.execute(sa.select(sa.func.min(t.events.c.id))).scalar_one()
        conn.execute(
            t.webhooks.insert(),
            [
                {
                    "id": WEBHOOK_ID,
                    "url": "http://127.0.0.1:9/hook",
                    "event_types": [],
                    "namespace": "default",
                    "secret": "s" * 43,
                    "created_by": "bench",
                    "created_at": now,
                    "updated_at": now,
                    "since_event_id": 0,
                }
            ],
        )
        conn.execute(
            t.deliveries.insert(),
            [
                {
                    "webhook_id": WEBHOOK_ID,
                    "event_id": first_event + i,
                    "event_type": "version.created",
                    "status": ("succeeded", "failed", "pending")[i % 3],
                    "attempt_count": 1,
                    "created_at": base + i,
                    "updated_at": base + i,
                }
                for i in range(DELIVERIES)
            ],
        )
        first_delivery = conn.execute(sa.select(sa.func.min(t.deliveries.c.id))).scalar_one()
        conn.execute(
            t.delivery_attempts.insert(),
            [
                {
                    "delivery_id": first_delivery + i,
                    "attempt": 1,
                    "at": base + i,
                    "status": "failed" if i % 3 == 1 else "succeeded",
                    "latency_us": 900,
                    "response_code": 500 if i % 3 == 1 else 200,
                }
                for i in range(DELIVERIES)
            ],
        )
    # Through the services: approvals and deployments with their figures.
    built = build_services(Settings(data_dir=scratch, db=db_url, webhook_allow="127.0.0.1"))
    try:
        for i in range(APPROVALS):
            with contextlib.suppress(ModelyardError):  # an archived version: nothing to ask
                built.approvals.request_approval(
                    f"m{i}/{versions}", comment=f"ship {i}", actor=ACTOR
                )
        reg = built.registry
        for i in range(DEPLOYMENTS):
            for r in range(3):
                reg.report_heartbeat(
                    "prod-eu" if i % 2 else "staging",
                    f"m{i}@prod",
                    replica=f"pod-{r}",
                    status="ready",
                    version=versions,
                    measures=_measures(i * 3 + r),
                    actor=ACTOR,
                )
        for i in range(HOT_HISTORY // 3):
            kind = ("drift", "degraded")[i % 2]
            detail: dict[str, Any] = (
                {
                    "features": {f"f{k}": {"psi": 0.5, "ks": 0.3, "count": 1000} for k in range(5)},
                    "thresholds": {"psi": 0.2, "ks": 0.2},
                    "window_seconds": 300,
                }
                if kind == "drift"
                else {
                    "reasons": ["error_rate"],
                    "error_rate": 0.09,
                    "requests": 1200,
                    "thresholds": {"error_rate": 0.05},
                    "window_seconds": 300,
                }
            )
            reg.report_alert(
                "prod-eu",
                "m1@prod",
                replica="pod-0",
                kind=kind,
                version=versions,
                detail=detail,
                actor=ACTOR,
            )
            for r in range(2):  # status changes: history entries that are not alerts
                reg.report_heartbeat(
                    "prod-eu",
                    "m1@prod",
                    replica="pod-9",
                    status=("ready", "degraded")[(i + r) % 2],
                    version=versions,
                    actor=ACTOR,
                )
    finally:
        built.close()
    engine.dispose()
    print(f"seeded the extras in {time.perf_counter() - t0:.0f} s")


async def _follow(client: httpx.AsyncClient, url: str, param: str, times: int) -> str:
    """The value of ``param`` in the link ``times`` pages on from ``url``."""
    value = ""
    for _ in range(times):
        r = await client.get(
            url if not value else f"{url}{'&' if '?' in url else '?'}{param}={value}"
        )
        found = re.search(rf'[?&;]{param}=([^"&]+)"', r.text)
        if found is None:
            raise SystemExit(f"{url}: no {param} link to follow")
        value = found.group(1)
    return value


async def measure(db_url: str, data: Path, args: argparse.Namespace) -> bool:
    app = create_app(Settings(data_dir=data, db=db_url, dispatcher=False))
    transport = httpx.ASGITransport(app=app)
    ok = True
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        big = f"/models/default/{BIG}"
        fills = {
            "__PAGE__": await _follow(client, big, "page", 20),
            "__MOVES__": await _follow(client, big, "moves", 1),
            "__ALERTS__": await _follow(
                client, "/deployments/prod-eu/default/m1%40prod", "alerts_before", 1
            ),
        }
        print(f"{'page':42} {'cpu p50':>8} {'cpu p95':>8} {'wall p50':>9}   (ms)")
        for label, url in pages(args.models, args.versions):
            for key, value in fills.items():
                url = url.replace(key, value)
            cpu: list[float] = []
            wall: list[float] = []
            for i in range(args.runs + 2):
                # CPU time of this process (server and the in-process client):
                # on a shared, loaded machine wall time mostly measures the wait
                # for a core. Wall time is printed beside it for reference.
                c0, t0 = time.process_time(), time.perf_counter()
                r = await client.get(url)
                c1, t1 = time.process_time(), time.perf_counter()
                if r.status_code != (400 if "bad filter" in label else 200):
                    raise SystemExit(f"{url}: {r.status_code} {r.text[:300]}")
                if i >= 2:
                    cpu.append((c1 - c0) * 1000)
                    wall.append((t1 - t0) * 1000)
            p95 = percentile(cpu, 95)
            ok = ok and p95 < TARGET_MS
            flag = "" if p95 < TARGET_MS else "  OVER"
            print(
                f"{label:42} {percentile(cpu, 50):8.1f} {p95:8.1f} {percentile(wall, 50):9.1f}"
                f"{flag}",
                flush=True,
            )
    print(f"every page CPU p95 < {TARGET_MS:.0f} ms: {verdict(ok)}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", type=Path, help="SQLite file to build (if missing) or reuse")
    ap.add_argument("--models", type=int, default=10_000)
    ap.add_argument("--versions", type=int, default=100, help="versions per model")
    ap.add_argument("--runs", type=int, default=20, help="measured runs per page")
    ap.add_argument("--seed-only", action="store_true", help="build and seed, measure nothing")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-web-"))
    try:
        db_path = (args.db or tmp / "registry.db").resolve()
        db_url = f"sqlite:///{db_path}"
        if not db_path.exists():
            db_path.parent.mkdir(parents=True, exist_ok=True)
            build(db_url, tmp / "build", args.models, args.versions, batch_rounds=5)
        seed_extras(db_url, tmp / "extras", args.models, args.versions)
        if not args.seed_only:
            asyncio.run(measure(db_url, tmp / "data", args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
