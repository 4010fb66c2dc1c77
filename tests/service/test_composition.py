"""The composition root: the server, the embedded SDK and the tests run one object graph."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from modelyard.api.app import create_app
from modelyard.client.backends import EmbeddedBackend
from modelyard.client.registry import Registry
from modelyard.composition import Services, build_services
from modelyard.domain.identity import Principal
from modelyard.settings import Settings

LOCAL = Principal.local("t")


def test_the_app_serves_the_graph_it_is_given(tmp_path: Path) -> None:
    """``create_app(services=...)`` builds nothing of its own: a test (or an
    embedding program) and the app share the same stores and services, and
    the caller's graph stays open after the app shuts down."""
    with build_services(Settings(data_dir=tmp_path / "data", dispatcher=False)) as services:
        app = create_app(services=services)
        state = app.state
        assert state.services is services
        assert (state.registry, state.governance, state.approvals) == (
            services.registry,
            services.governance,
            services.approvals,
        )
        assert state.identity is services.identity
        assert state.webhooks is services.webhooks
        assert services.webhooks.db is services.metadata is services.registry.db
        with TestClient(app) as c:
            assert c.post("/api/v1/models", json={"name": "m"}).status_code == 201
        # Written through the app, read through the same graph in-process.
        assert services.registry.get_model("m", actor=LOCAL).name == "m"


def test_the_embedded_sdk_builds_its_graph_once(tmp_path: Path) -> None:
    """The SDK on a data directory gets the same kind of graph the server
    builds, each service once (not a new governance or approval service per
    call)."""
    backend = EmbeddedBackend(tmp_path / "data")
    with Registry(backend=backend) as reg:
        assert isinstance(backend.services, Services)
        assert backend.svc is backend.services.registry
        assert backend.gov is backend.gov is backend.services.governance
        assert backend.approvals is backend.approvals is backend.services.approvals
        assert backend.identity is backend.services.identity
        reg.create_model("m")
        assert backend.services.registry.get_model("m", actor=LOCAL).name == "m"
