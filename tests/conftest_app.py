"""App and client fixtures (imported by conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.api.app import create_app
from modelyard.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings on a fresh database (SQLite and PostgreSQL) and blob dir."""
    return Settings(data_dir=tmp_path / "data", db=db_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An in-process client for the app (raises no server exceptions: we check bodies)."""
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
