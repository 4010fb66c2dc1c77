"""Filtered search over 1,000,000 versions. Target: p95 < 50 ms per page.

1. Build (only if ``--db PATH`` does not exist yet) a SQLite registry of
   MODELS x VERSIONS versions: the schema comes from the normal start-up
   (``build_services`` runs the migrations), then rows shaped as the service
   writes them are bulk-inserted with SQLAlchemy Core ``executemany``.
   Versions of all models are interleaved in time (round n of every model,
   then round n + 1), as in a registry many teams use at once.
2. Time each filter through the service layer (``RegistryService.search_versions``,
   in this process) and over HTTP (``GET /api/v1/search/versions?filter=...``
   against a ``modelyard server`` subprocess): default order (created DESC),
   page_size 100, ``--runs`` runs each after 2 unmeasured ones.
3. Walk 20 pages with the cursor, through both paths.
4. Print SQLite's ``EXPLAIN QUERY PLAN`` of the main query of each filter
   (captured from the engine while the service ran it) and of the per-version
   load that hydrates each hit.

``--pg`` does the same in a throwaway PostgreSQL 15 cluster (built every time,
then ``VACUUM (ANALYZE)``; its ``EXPLAIN`` is printed instead).

Data per version: tags ``team`` (per model, 100 values: 1% each), ``env``
(3 values), ``run`` (unique), ``dataset`` (1,000 values), ``owner`` (on 0.05%
of versions, 10 values); metrics ``accuracy`` U(0,1), ``loss``, ``latency_ms``;
params ``lr``, ``batch_size``; metadata ``owner``, ``gpu_hours``; framework
(5 values, skewed); state ready 90% / published 5% / archived 5%; alias
``prod`` on each model's last version. No events (the outbox is not searched).

    .venv/bin/python bench/search_1m.py [--db /tmp/search1m.db] [--models 10000 --versions 100]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from _harness import ServerProcess, percentile, pin_self, verdict

from modelyard.composition import build_services
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService
from modelyard.settings import Settings
from modelyard.store.metadata import tables as t

TARGET_P95_MS = 50.0
PAGE_SIZE = 100
FRAMEWORKS = ["pytorch"] * 8 + ["onnx"] * 5 + ["tflite"] * 3 + ["sklearn"] * 3 + ["xgboost"]
STATES = ["ready"] * 18 + ["published", "archived"]

# (label, filter, order_by). Expected matches at 1M versions in the label.
QUERIES: list[tuple[str, str, str | None]] = [
    ("team + metric (0.1%)", "tags.team = 'team-7' AND metrics.accuracy >= 0.9", None),
    ("rare tag (~50 rows)", "tags.owner = 'rare-3'", None),
    ("unique tag (1 row)", "tags.run = 'run-12345'", None),
    ("common tag (33%)", "tags.env = 'prod'", None),
    ("medium tag (0.1%)", "tags.dataset = 'ds-42'", None),
    ("framework IN + metric", "framework IN ('onnx', 'tflite') AND metrics.accuracy >= 0.5", None),
    ("name LIKE (1.1%)", "name LIKE 'm12%'", None),
    ("metric only (0.1%)", "metrics.accuracy >= 0.999", None),
    ("state + tag (1.7%)", "state = 'published' AND tags.env = 'prod'", None),
    ("metadata (0.2%)", "metadata.owner = 'user-7'", None),
    ("team, by accuracy", "tags.team = 'team-7'", "metrics.accuracy DESC"),
    ("rare tag, by accuracy", "tags.owner = 'rare-3'", "metrics.accuracy DESC"),
]
WALK = ("walk 20 pages", "tags.env = 'prod' AND metrics.accuracy >= 0.5")

BENCH = Principal.local("bench")
"""The embedded superuser: searches in the service see everything, as over HTTP
with auth off."""
READER = Principal("bench-reader", roles={"default": frozenset({Role.READER})})
"""A ``reader`` of the namespace holding every version (``--reader``): the same
hits as BENCH, through the filter authorization adds (``namespace IN (...)``)."""


# -- building the database ----------------------------------------------------


def _version_rows(
    vid: int, model: int, number: int, at: int, rng: random.Random
) -> dict[str, list[dict[str, Any]]]:
    """The rows of one version in every table, keyed by table name."""
    owner = f"user-{model % 500}"
    meta = {"owner": owner, "gpu_hours": round(rng.uniform(0, 100), 2)}
    tags = {
        "team": f"team-{model % 100}",
        "env": ("prod", "staging", "dev")[rng.randrange(3)],
        "run": f"run-{vid}",
        "dataset": f"ds-{rng.randrange(1000)}",
    }
    if rng.random() < 0.0005:
        tags["owner"] = f"rare-{rng.randrange(10)}"
    metrics = {
        "accuracy": rng.random(),
        "loss": rng.uniform(0, 2),
        "latency_ms": rng.uniform(1, 100),
    }
    params = {"lr": ("0.1", "0.01", "0.001")[rng.randrange(3)], "batch_size": str(16 << (vid % 4))}
    return {
        "versions": [
            {
                "id": vid,
                "model_id": model + 1,
                "number": number,
                "state": STATES[rng.randrange(len(STATES))],
                "description": "",
                "framework": FRAMEWORKS[rng.randrange(len(FRAMEWORKS))],
                "format": None,
                "signature": None,  # stored as JSON 'null', as the service does
                "meta": meta,
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
        ],
        "version_tags": [
            {"version_id": vid, "key": k, "value": v, "created_at": at} for k, v in tags.items()
        ],
        "version_metrics": [
            {"version_id": vid, "key": k, "value": v, "created_at": at} for k, v in metrics.items()
        ],
        "version_params": [
            {"version_id": vid, "key": k, "value": v, "created_at": at} for k, v in params.items()
        ],
        "version_meta": [
            {"version_id": vid, "key": "owner", "value": owner, "num": None, "created_at": at},
            {
                "version_id": vid,
                "key": "gpu_hours",
                "value": str(meta["gpu_hours"]),
                "num": meta["gpu_hours"],
                "created_at": at,
            },
        ],
    }


def _copy_rows(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Bulk-load ``rows`` into a PostgreSQL table with ``COPY``: executemany
    loaded about 250 versions/s (13 rows each) here, so 1M took over an hour.
    JSON columns get their JSON text (``null`` for None, as SQLAlchemy's JSON
    type stores it)."""
    if not rows:
        return
    cols = list(rows[0])
    json_cols = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(
                tuple(orjson.dumps(row[c]).decode() if c in json_cols else row[c] for c in cols)
            )


def build(db_url: str, scratch: Path, models: int, versions: int, *, batch_rounds: int) -> None:
    """Create the schema through the normal start-up, then bulk-load the rows."""
    t0 = time.perf_counter()
    sqlite = db_url.startswith("sqlite")
    # 1. Migrations and the default namespace, exactly as a server start does.
    svc = build_services(Settings(data_dir=scratch, db=db_url)).registry
    svc.db.dispose()
    shutil.rmtree(scratch, ignore_errors=True)
    # 2. Bulk load on a plain engine (no foreign-key checks, no fsync while loading).
    engine = sa.create_engine(
        db_url,
        json_serializer=lambda v: orjson.dumps(v).decode(),  # compact, like the service
    )
    rng = random.Random(20240601)
    base = time.time_ns() // 1000 - models * versions * 1000  # 1 ms between versions
    with engine.connect() as conn:
        if sqlite:
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            conn.exec_driver_sql("PRAGMA cache_size=-1048576")  # 1 GiB page cache while loading
        else:
            conn.exec_driver_sql("SET synchronous_commit = off")
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
                    "created_at": base - models + m,
                    # A model's updated_at moves with each new version (service behaviour).
                    "updated_at": base + ((versions - 1) * models + m + 1) * 1000,
                }
                for m in range(models)
            ],
        )
        conn.execute(
            t.model_tags.insert(),
            [{"model_id": m + 1, "key": "team", "value": f"team-{m % 100}"} for m in range(models)],
        )
        conn.commit()
        tables = {
            name: getattr(t, name)
            for name in (
                "versions",
                "version_tags",
                "version_metrics",
                "version_params",
                "version_meta",
            )
        }
        vid = 0
        for first_round in range(1, versions + 1, batch_rounds):
            batch: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}
            for number in range(first_round, min(versions, first_round + batch_rounds - 1) + 1):
                for m in range(models):
                    vid += 1
                    for name, rows in _version_rows(vid, m, number, base + vid * 1000, rng).items():
                        batch[name].extend(rows)
            for name, rows in batch.items():
                if sqlite:
                    conn.execute(tables[name].insert(), rows)
                else:
                    _copy_rows(conn, tables[name], rows)
            conn.commit()
            rate = vid / (time.perf_counter() - t0)
            print(f"  loaded {vid:>9,} versions ({rate:,.0f}/s)", flush=True)
        # Alias 'prod' on every model's last version, with its history row.
        last = (versions - 1) * models
        conn.execute(
            t.aliases.insert(),
            [
                {
                    "model_id": m + 1,
                    "name": "prod",
                    "version_id": last + m + 1,
                    "updated_by": "bench",
                    "updated_at": base + (last + m + 1) * 1000,
                }
                for m in range(models)
            ],
        )
        conn.execute(
            t.alias_history.insert(),
            [
                {
                    "model_id": m + 1,
                    "name": "prod",
                    "from_version": None,
                    "to_version": versions,
                    "actor": "bench",
                    "reason": "",
                    "at": base + (last + m + 1) * 1000,
                }
                for m in range(models)
            ],
        )
        conn.commit()
        if sqlite:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            size = Path(engine.url.database or "").stat().st_size
        else:
            # Rows went in with explicit ids: move the sequences past them. And
            # what autovacuum would do a little later after a million inserts
            # (its insert threshold): statistics, and the visibility map, so
            # index-only scans need no heap fetches as in a registry that has
            # been running a while. A bulk-built, unvacuumed cluster is a state
            # no registry stays in: it measured 2-3x slower pages (the team by
            # accuracy walk did 11,477 heap fetches a page).
            for table in ("versions", "models"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            conn.commit()
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM (ANALYZE)")
            size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
    engine.dispose()
    print(
        f"built {vid:,} versions of {models:,} models in {time.perf_counter() - t0:.0f} s "
        f"({size / (1 << 20):,.0f} MiB)"
    )


# -- measuring ------------------------------------------------------------------


def timed(fn: Callable[[], Any], runs: int, budget_s: float) -> tuple[list[float], Any]:
    """Call ``fn`` twice unmeasured, then up to ``runs`` times (stopping after
    ``budget_s``); returns the durations in ms and the last result."""
    result = fn()
    fn()
    times: list[float] = []
    deadline = time.monotonic() + budget_s
    while len(times) < runs and (len(times) < 5 or time.monotonic() < deadline):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times, result


def http_page(
    http: httpx.Client, flt: str, order_by: str | None, token: str | None
) -> dict[str, Any]:
    """One page of versions over HTTP, parsed."""
    params = {"filter": flt, "page_size": str(PAGE_SIZE)}
    if order_by:
        params["order_by"] = order_by
    if token:
        params["page_token"] = token
    r = http.get("/api/v1/search/versions", params=params)
    r.raise_for_status()
    body: dict[str, Any] = orjson.loads(r.content)
    return body


def walk_pages(next_page: Callable[[str | None], str | None], pages: int) -> Iterator[float]:
    """Follow the cursor for ``pages`` pages, yielding each page's time in ms."""
    token: str | None = None
    for _ in range(pages):
        t0 = time.perf_counter()
        token = next_page(token)
        yield (time.perf_counter() - t0) * 1000
        if token is None:
            return


def row(label: str, times: list[float], extra: str = "") -> str:
    """One output line: p50/p95/max of ``times`` with the verdict."""
    p95 = percentile(times, 95)
    return (
        f"  {label:<24} {percentile(times, 50):>8.1f} {p95:>8.1f} {max(times):>8.1f} "
        f"{len(times):>5}  {verdict(p95 < TARGET_P95_MS)}  {extra}"
    )


class SqlCapture:
    """Records the statements (and parameters) an engine runs while enabled."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.statements: list[tuple[str, Any]] = []
        self.on = False
        sa.event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if self.on:
            self.statements.append((statement, params))

    def main_query(self, fn: Callable[[], Any]) -> tuple[str, Any] | None:
        """The keyset query (the one with ORDER BY ... LIMIT) ``fn`` ran."""
        self.statements, self.on = [], True
        try:
            fn()
        finally:
            self.on = False
        found = [s for s in self.statements if "ORDER BY" in s[0] and "LIMIT" in s[0]]
        return found[-1] if found else None


def query_plan(engine: sa.Engine, sql: str, params: Any) -> list[str]:
    """The database's plan of ``sql`` (SQLite's EXPLAIN QUERY PLAN or
    PostgreSQL's EXPLAIN ANALYZE), as indented lines.

    On PostgreSQL the statement runs as the service runs it: in a transaction
    without parallel workers (``store/metadata/search.py``), so the plan shown
    is the plan timed, with its actual rows, buffers and time.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).all()
            return ["  " + r[0] for r in rows]
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()
    depth: dict[int, int] = {0: 0}
    lines = []
    for node_id, parent, _unused, detail in rows:
        depth[node_id] = depth.get(parent, 0) + 1
        lines.append("  " * depth[node_id] + str(detail))
    return lines


def measure(svc: RegistryService, db_url: str, args: argparse.Namespace, tmp: Path) -> None:
    """Time every query through the service and over HTTP; print plans."""
    capture = SqlCapture(svc.db.engine)
    plans: list[tuple[str, str, list[str]]] = []
    with ServerProcess(tmp / "server-data", db_url=db_url, cpu=args.server_cpu) as server:
        print(f"server pid {server.pid}; start-up on this database {server.ready_s:.2f} s")
        print(f"\nsearch, page_size {PAGE_SIZE}, times in ms; target p95 < {TARGET_P95_MS:.0f} ms")
        print(f"  {'query':<24} {'p50':>8} {'p95':>8} {'max':>8} {'runs':>5}  target")
        with httpx.Client(base_url=server.url, timeout=120) as http:
            for label, flt, order_by in QUERIES:
                if args.only and not any(part in label for part in args.only):
                    continue
                shown = flt if order_by is None else f"{flt}  ORDER BY {order_by}"
                print(f"{label}: {shown}")

                def svc_call(flt: str = flt, order_by: str | None = order_by) -> Any:
                    return svc.search_versions(
                        flt, order_by=order_by, page_size=PAGE_SIZE, actor=BENCH
                    )

                def http_call(flt: str = flt, order_by: str | None = order_by) -> Any:
                    return http_page(http, flt, order_by, None)

                times, page = timed(svc_call, args.runs, args.budget)
                more = "more pages" if page.next_page_token else "last page"
                print(row("service", times, f"{len(page.items)} hits on page 1, {more}"))
                if args.reader:

                    def reader_call(flt: str = flt, order_by: str | None = order_by) -> Any:
                        return svc.search_versions(
                            flt, order_by=order_by, page_size=PAGE_SIZE, actor=READER
                        )

                    times, reader_page = timed(reader_call, args.runs, args.budget)
                    same = [v.id for v in reader_page.items] == [v.id for v in page.items]
                    print(
                        row(
                            "service as reader",
                            times,
                            f"{len(reader_page.items)} hits, "
                            + ("same page" if same else "PAGE DIFFERS FROM THE ADMIN'S"),
                        )
                    )
                    reader_main = capture.main_query(reader_call)
                    if reader_main is not None:
                        plans.append(
                            (
                                f"{label} (reader)",
                                reader_main[0],
                                query_plan(svc.db.engine, *reader_main),
                            )
                        )
                times, body = timed(http_call, args.runs, args.budget)
                print(row("HTTP", times, f"{len(body['versions'])} hits"))
                main = capture.main_query(svc_call)
                if main is not None:
                    plans.append((label, main[0], query_plan(svc.db.engine, *main)))

            label, flt = WALK
            print(f"{label}: {flt}")

            def svc_next(token: str | None) -> str | None:
                page = svc.search_versions(flt, page_size=PAGE_SIZE, page_token=token, actor=BENCH)
                return page.next_page_token

            def http_next(token: str | None) -> str | None:
                token_out: str | None = http_page(http, flt, None, token)["next_page_token"]
                return token_out

            for name, fn in (("service", svc_next), ("HTTP", http_next)):
                per_page: list[float] = []
                walks: list[float] = []
                for _ in range(args.walks):
                    pages = list(walk_pages(fn, 20))
                    per_page += pages
                    walks.append(sum(pages))
                print(
                    row(
                        f"{name} (per page)",
                        per_page,
                        f"{len(pages)} pages a walk; whole walk p50 "
                        f"{percentile(walks, 50):.0f} ms over {args.walks} walks",
                    )
                )

    explain = "EXPLAIN QUERY PLAN" if svc.db.engine.dialect.name == "sqlite" else "EXPLAIN ANALYZE"
    print(f"\n{explain} of the main (keyset) query of each filter:")
    for label, _sql, lines in plans:
        print(f"- {label}")
        print("\n".join(lines))
    if plans:
        print(f"\nSQL of the first one:\n{' '.join(plans[0][1].split())}")
    else:
        print("  (no keyset query was captured: could not obtain the SQL)")
    if svc.db.engine.dialect.name != "sqlite":
        return  # PostgreSQL loads a page's hits with a few batched queries instead
    # Each hit is then hydrated with prepared statements (not seen by the capture).
    hot = svc.db.hot
    print("\nEXPLAIN QUERY PLAN of the per-hit load (run for each of the 100 hits):")
    one = {"vid": 1, "ids": "[1]"}  # by_id takes a version id, kv a JSON list of them
    for name, prepared in (("by_id", hot.by_id), ("kv (tags, metrics, params, aliases)", hot.kv)):
        print(f"- {name}")
        print("\n".join(query_plan(svc.db.engine, prepared.sql, prepared.params(one))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", type=Path, help="SQLite file to build (if missing) or reuse")
    ap.add_argument(
        "--pg", action="store_true", help="build and search in a throwaway PostgreSQL 15 cluster"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary database")
    ap.add_argument(
        "--pg-url",
        help="search this PostgreSQL database instead (built into only if it holds no versions)",
    )
    ap.add_argument("--models", type=int, default=10_000)
    ap.add_argument("--versions", type=int, default=100, help="versions per model")
    ap.add_argument("--batch-rounds", type=int, default=5, help="version rounds per transaction")
    ap.add_argument("--runs", type=int, default=50, help="measured runs per query and path")
    ap.add_argument("--budget", type=float, default=60.0, help="max seconds per query and path")
    ap.add_argument("--walks", type=int, default=5, help="20-page walks per path")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server / client CPUs")
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="time only the queries whose label contains TEXT (repeatable; the walk still runs)",
    )
    ap.add_argument(
        "--reader",
        action="store_true",
        help="also search as a namespace reader (service layer), with its plans",
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="modelyard-search-"))
    db_path: Path = (args.db or tmp / "registry.db").resolve()
    owned = args.db is None
    args.server_cpu = None if args.no_pin else 0
    if not args.no_pin and pin_self(1):
        print("pinning: this process (client, service layer) on CPU 1, server on CPU 0")
    cluster = None
    try:
        shape = (args.models, args.versions)
        if args.pg_url:
            args.pg = True
            db_url = args.pg_url
            if _pg_versions(db_url):
                print("reusing the PostgreSQL database at --pg-url")
            else:
                build(db_url, tmp / "build", *shape, batch_rounds=args.batch_rounds)
        elif args.pg:
            cluster = start_pg()
            db_url = cluster.url
            print(f"PostgreSQL: a throwaway cluster on port {cluster.port}")
            build(db_url, tmp / "build", *shape, batch_rounds=args.batch_rounds)
        else:
            db_url = f"sqlite:///{db_path}"
            if db_path.exists():
                print(f"reusing {db_path} ({db_path.stat().st_size / (1 << 20):,.0f} MiB)")
            else:
                db_path.parent.mkdir(parents=True, exist_ok=True)
                build(db_url, tmp / "build", *shape, batch_rounds=args.batch_rounds)
                print(f"database at {db_path}")
        svc = build_services(Settings(data_dir=tmp / "svc-data", db=db_url)).registry
        try:
            with svc.db.read() as tx:
                n = tx.conn.execute(sa.select(sa.func.count()).select_from(t.versions)).scalar()
                version = tx.conn.exec_driver_sql(
                    "SELECT sqlite_version()" if not args.pg else "SHOW server_version"
                ).scalar()
            print(f"{n:,} versions; {'PostgreSQL' if args.pg else 'SQLite'} {version}")
            measure(svc, db_url, args, tmp)
        finally:
            svc.db.dispose()
    finally:
        if cluster is not None:
            cluster.stop()
        if owned and args.keep and not args.pg:
            print(f"kept {db_path}", file=sys.stderr)
            for p in tmp.iterdir():
                if p != db_path and p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _pg_versions(url: str) -> int:
    """How many versions the database at ``url`` holds (0 when it has no schema yet)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("versions"):
                return 0
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.versions)).scalar())
    finally:
        engine.dispose()


def start_pg() -> Any:
    """A throwaway PostgreSQL cluster, as the tests start one (tests/pgcluster.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.pgcluster import PgCluster

    return PgCluster.start()


if __name__ == "__main__":
    main()
