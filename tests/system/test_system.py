"""Health, metrics, OpenAPI, events, migrations and the layering rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests.helpers import push

SRC = Path(__file__).resolve().parents[2] / "src" / "modelyard"


def test_health_metrics_openapi(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    client.get("/api/v1/models/default/nope")
    text = client.get("/metrics").text
    assert "modelyard_http_requests_total" in text
    assert 'route="/api/v1/models/{namespace}/{name}",status="404"' in text
    assert "modelyard_http_request_duration_seconds_bucket" in text
    assert "modelyard_http_errors_total" in text
    spec = client.get("/openapi.json").json()
    assert "/api/v1/models/{namespace}/{name}/versions" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_every_mutation_writes_an_event(client: TestClient) -> None:
    push(client, "m", {"a": b"1"})
    client.patch("/api/v1/models/default/m/versions/1", json={"tags": {"x": "y"}})
    client.put("/api/v1/models/default/m/aliases/prod", json={"version": "1"})
    client.post("/api/v1/models/default/m/versions/1/publish")
    events = client.get("/api/v1/events").json()["events"]
    types = [e["type"] for e in events]
    assert types[-5:] == [
        "model.created",
        "version.created",
        "version.updated",
        "alias.moved",
        "version.published",
    ]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids)
    after = client.get("/api/v1/events", params={"after": ids[-2]}).json()["events"]
    assert [e["type"] for e in after] == ["version.published"]


def test_schema_head_matches_alembic() -> None:
    from modelyard.store.metadata import migrate

    assert migrate.head_revision() == migrate.SCHEMA_HEAD


def test_sqlite_snapshot_is_what_the_migrations_build() -> None:
    """The shipped snapshot a fresh SQLite database starts from equals a dump of
    a database migrated to head; if not: ``make schema-snapshot``."""
    from modelyard.store.metadata import migrate

    assert migrate.SQLITE_SNAPSHOT.read_text("utf-8") == migrate.render_sqlite_snapshot()


def test_fresh_sqlite_database_from_the_snapshot(tmp_path: Path) -> None:
    """An empty database gets the snapshot (same dump as the migrations, at
    head); a second creation finds it non-empty and does nothing."""
    from modelyard.store.metadata import migrate
    from modelyard.store.metadata.engine import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    assert migrate._create_from_snapshot(engine)
    assert not migrate._create_from_snapshot(engine)
    assert migrate.is_up_to_date(engine)
    engine.dispose()
    body = migrate.SQLITE_SNAPSHOT.read_text("utf-8").split("\n", 1)[1]
    assert migrate.sqlite_dump(tmp_path / "r.db") == body


def test_a_snapshot_of_another_revision_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.store.metadata import migrate
    from modelyard.store.metadata.engine import create_engine

    stale = tmp_path / "stale.sql"
    stale.write_text("-- modelyard schema at revision 0001: old\nCREATE TABLE nope (x);\n")
    monkeypatch.setattr(migrate, "SQLITE_SNAPSHOT", stale)
    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    migrate.upgrade(engine)  # step by step with Alembic
    assert migrate.is_up_to_date(engine)
    assert "nope" not in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_migrations_create_exactly_the_tables(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from modelyard.store.metadata import migrate
    from modelyard.store.metadata.engine import create_engine
    from modelyard.store.metadata.tables import metadata

    engine = create_engine(db_url)
    migrate.upgrade(engine)
    migrate.upgrade(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_migration_0005_copies_creation_times_into_key_value_rows(db_url: str) -> None:
    """Rows written under 0001 get their version's created_at, and the search
    index over it, when the database is upgraded."""
    import sqlalchemy as sa

    from modelyard.store.metadata import migrate
    from modelyard.store.metadata.engine import create_engine

    engine = create_engine(db_url)
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO namespaces (id, name, description, created_at) "
                "VALUES (1, 'default', '', 1)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO models (id, namespace_id, name, description, meta, archived,"
                " last_version, created_by, created_at, updated_at)"
                " VALUES (1, 1, 'm', '', '{}', false, 1, 'a', 5, 5)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO versions (id, model_id, number, state, description, signature, meta,"
                " datasets, file_count, total_size, created_by, created_at, updated_at)"
                " VALUES (7, 1, 1, 'ready', '', 'null', '{}', '[]', 0, 0, 'a', 1234, 1234)"
            )
        )
        for table, value in (
            ("version_tags", "'x'"),
            ("version_metrics", "0.5"),
            ("version_params", "'1'"),
            ("version_meta", "'y'"),
        ):
            conn.execute(
                sa.text(f"INSERT INTO {table} (version_id, key, value) VALUES (7, 'k', {value})")
            )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        for table in ("version_tags", "version_metrics", "version_params", "version_meta"):
            at = conn.execute(sa.text(f"SELECT created_at FROM {table}")).scalar_one()
            assert at == 1234, table
        indexes = {
            ix["name"]: ix["column_names"] for ix in sa.inspect(conn).get_indexes("version_tags")
        }
    engine.dispose()
    assert indexes["ix_version_tags_key_value"] == ["key", "value", "created_at", "version_id"]


# The executable form of ARCHITECTURE rule 1 (docs/architecture.md): what each
# layer may import. Never widen it to fit a shortcut. Beside the layers:
# hashio.py and cooperative.py are leaves (they import nothing of ours);
# composition.py is the composition root, the one place that builds stores and
# services, and the doors build their object graph through it.
ALLOWED = {
    "domain": {"domain"},
    "store": {"domain", "store", "hashio", "cooperative"},
    "service": {"domain", "store", "service", "settings", "webhooks", "cooperative"},
    "events": {"domain", "store", "service", "events", "settings", "webhooks"},
    "wire": {"domain", "wire"},
    "api": {
        "domain",
        "service",
        "api",
        "settings",
        "events",
        "hashio",
        "wire",
        "cooperative",
        "composition",
    },
    "client": {"domain", "client", "service", "settings", "hashio", "wire", "composition"},
    "cli": {
        "domain",
        "client",
        "cli",
        "settings",
        "server",
        "composition",
        "serving",
        "convert",
    },
    # The model server reaches the registry through the SDK only, so it runs
    # beside a remote registry as it does beside an embedded one.
    "serving": {"domain", "client", "serving"},
    # Conversions run in the client beside any registry: the SDK to pull and
    # register, serving's flavors to load and call both models the way they
    # are served.
    "convert": {"domain", "client", "serving", "convert"},
    # The UI: a door onto the services, like api, but built on app.state's
    # services and call strategy, so it needs neither api nor composition.
    "web": {"domain", "service", "wire", "web"},
}
# One file beyond its layer's row: the app factory mounts the web door at /.
MOUNTS = {"api/app.py": {"web"}}
COMPOSITION = {"domain", "store", "service", "events", "settings", "webhooks", "cooperative"}


def test_imports_point_inward() -> None:
    """domain imports nothing of ours; store never imports service/api; and so on."""
    bad = []
    for layer, allowed in ALLOWED.items():
        for file in (SRC / layer).rglob("*.py"):
            tree = ast.parse(file.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                extra = MOUNTS.get(str(file.relative_to(SRC)), set())
                for n in names:
                    if n.startswith("modelyard."):
                        target = n.split(".")[1]
                        if target not in allowed | extra:
                            bad.append(f"{file.relative_to(SRC)} imports {n}")
    for node in ast.walk(ast.parse((SRC / "composition.py").read_text())):
        module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
        if module.startswith("modelyard.") and module.split(".")[1] not in COMPOSITION:
            bad.append(f"composition.py imports {module}")
    # Leaf modules beside the layers import nothing of ours.
    for leaf in ("hashio.py", "cooperative.py"):
        tree = ast.parse((SRC / leaf).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modelyard"):
                bad.append(f"{leaf} imports {node.module}")
    assert bad == []


# The store modules the service may import: the metadata store's Protocols and
# the blob store's Protocol. Everything else under store/ (SQL, tables,
# SQLAlchemy) stays behind them; the composition root (composition.py) builds
# the stores.
SERVICE_MAY_IMPORT_FROM_STORE = {"modelyard.store.metadata.ports", "modelyard.store.blobs.base"}


def _store_imports(file: Path) -> list[str]:
    """The modules ``file`` imports that are SQLAlchemy or under modelyard.store,
    leaving out the allowed Protocol modules."""
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # ``from pkg import name``: name may be a module of pkg itself.
            subs = [f"{node.module}.{a.name}" for a in node.names]
            allowed_subs = all(m in SERVICE_MAY_IMPORT_FROM_STORE for m in subs)
            modules = [] if allowed_subs else [node.module]
        else:
            continue
        for m in modules:
            if m in SERVICE_MAY_IMPORT_FROM_STORE:
                continue
            if m.split(".")[0] == "sqlalchemy" or m.startswith("modelyard.store"):
                found.append(m)
    return found


def test_service_sees_the_store_only_through_its_protocols() -> None:
    """No service module imports SQLAlchemy or a store module other than the
    Protocol modules (issue 9, Structure 3)."""
    bad = [
        f"{file.name} imports {m}"
        for file in sorted((SRC / "service").glob("*.py"))
        for m in _store_imports(file)
    ]
    assert bad == []


def test_malloc_tuning_applies_on_glibc() -> None:
    """The server raises glibc's mmap/trim thresholds (``server.tune_malloc``);
    elsewhere the call changes nothing and says so."""
    import platform

    from modelyard.server import tune_malloc

    assert tune_malloc() is (platform.libc_ver()[0] == "glibc")
