"""Live modelyard servers for the MLflow door, and the real ``MlflowClient`` on them.

- ``mlflow_server`` (session, params ``sqlite`` / ``postgres``): URL of a
  ``modelyard server`` process on a fresh database of that backend, auth off.
- ``mlflow_auth_server`` (session, same params): the same with auth on and
  :data:`tests.auth_helpers.ADMIN_TOKEN` as the bootstrap admin token.
- ``mlflow_client`` (function): an ``MlflowClient`` on ``mlflow_server``, with
  ``MLFLOW_TRACKING_URI`` pointing at it for the test's duration.
- ``model_name`` (function): a model name no other test uses (servers are
  shared by the session, so tests never depend on an empty registry).

MLflow's client reports telemetry unless told not to, and with no network
that can stall (../shared TRAPS): the switches are set before any test
imports ``mlflow``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.auth_helpers import ADMIN_TOKEN
from tests.conftest_server import start_server, stop_server
from tests.pgcluster import fresh_database

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

if TYPE_CHECKING:
    from mlflow import MlflowClient

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def _serve(
    request: pytest.FixtureRequest,
    tmp: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Start a server on the backend named by ``request.param``; yield its URL."""
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", **(extra_env or {})}
    if request.param == "sqlite":
        proc, url = start_server(tmp / "data", extra_env=env)
        try:
            yield url
        finally:
            stop_server(proc)
        return
    with fresh_database(request.getfixturevalue("pg_url")) as db:
        proc, url = start_server(tmp / "data", extra_env={**env, "MODELYARD_DB": db})
        try:
            yield url
        finally:
            stop_server(proc)


@pytest.fixture(scope="session", params=BACKENDS)
def mlflow_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of a live modelyard server (auth off) for MLflow clients."""
    yield from _serve(request, tmp_path_factory.mktemp(f"mlflow-{request.param}"))


@pytest.fixture(scope="session", params=BACKENDS)
def mlflow_auth_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of a live modelyard server with auth on (admin token: ``ADMIN_TOKEN``)
    that offers MLflow's multipart uploads."""
    env = {
        "MODELYARD_AUTH": "on",
        "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN,
        # Approval and policy tests register local receivers; nothing else here.
        "MODELYARD_WEBHOOK_ALLOW": "127.0.0.1",
        # /server-info offers multipart uploads here (off by default; the
        # multipart tests drive the client through them).
        "MODELYARD_MLFLOW_MULTIPART_UPLOADS": "true",
    }
    yield from _serve(request, tmp_path_factory.mktemp(f"mlflow-auth-{request.param}"), env)


@pytest.fixture
def mlflow_client(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """The real ``MlflowClient`` pointed at ``mlflow_server``."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    return MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)


@pytest.fixture
def model_name() -> str:
    """A model name unique to this test."""
    return f"m{uuid.uuid4().hex[:12]}"
