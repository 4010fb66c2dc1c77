"""Database fixtures shared by the whole suite.

- ``pg_url`` (session): base URL of a PostgreSQL server. ``MODELYARD_TEST_PG_URL``
  if set, otherwise a throwaway cluster started for this test session
  (``tests/pgcluster.py``).
- ``db_url`` (function, params ``sqlite`` / ``postgres``): a fresh, empty database
  per test; every test that takes it runs on both backends. The ``postgres``
  param carries the ``postgres`` mark (``-m "not postgres"`` deselects it).
- ``sqlite_url`` (function): a fresh SQLite file only.

PostgreSQL missing: the ``postgres`` params skip with the reason, unless the
``CI`` environment variable is set, in which case they fail: CI can never
silently skip the PostgreSQL suite.

Under pytest-xdist every worker starts its own cluster, on its own free port.
We chose that over one cluster shared through a file lock because a shared one
needs cross-process lifetime bookkeeping (who stops it when the last worker
ends, what if the owner worker dies first) while per-worker clusters are owned,
stopped and cleaned up by exactly one process each; a start costs about a
second, in parallel, and only workers that run a PostgreSQL test pay it (the
fixture is lazy).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgcluster import PgCluster, fresh_database, normalize_url, unavailable_reason

pytest_plugins = ["tests.conftest_app", "tests.conftest_server", "tests.conftest_s3"]

LAYERS = ("domain", "store", "service", "api", "sdk_cli", "serving", "system", "mlflow_door", "web")
"""The test directories, one per layer (see tests/README.md); each test gets
the marker of its directory, so ``pytest -m "domain or store"`` picks layers."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its layer, from the directory it lives in."""
    here = Path(__file__).parent
    for item in items:
        layer = item.path.relative_to(here).parts[0]
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """Base SQLAlchemy URL (``postgresql+psycopg://...``) of the test PostgreSQL server."""
    external = os.environ.get("MODELYARD_TEST_PG_URL")
    if external:
        yield normalize_url(external)
        return
    reason = unavailable_reason()
    if reason is not None:
        if _ci():
            pytest.fail(f"PostgreSQL is required when CI is set: {reason}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    cluster = PgCluster.start()  # a failure to start is an error, never a skip
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file in the test's tmp_path."""
    return f"sqlite:///{tmp_path / 'modelyard-test.db'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or ``CREATE DATABASE test_<uuid>``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'modelyard-test.db'}"
        return
    base = request.getfixturevalue("pg_url")
    with fresh_database(base) as url:
        yield url
