"""``create_app(settings)``: the ASGI application, built from settings only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from modelyard import __version__
from modelyard.api.deps import ServiceCall
from modelyard.api.errors import install_error_handlers
from modelyard.api.middleware import BodyLimitMiddleware, Metrics, MetricsMiddleware
from modelyard.api.v1 import blobs, governance, models, search, system, versions
from modelyard.service.approvals import ApprovalService
from modelyard.service.factory import build_registry
from modelyard.service.governance import GovernanceService
from modelyard.service.registry import RegistryService
from modelyard.settings import Settings


def create_app(
    settings: Settings | None = None, *, registry: RegistryService | None = None
) -> FastAPI:
    """Build the app. Pass ``registry`` to serve an already-open service."""
    settings = settings or Settings()
    service = registry or build_registry(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.db.dispose()

    app = FastAPI(
        title="modelyard",
        version=__version__,
        description="Self-hosted unified model center: registry REST API v1.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = service
    app.state.governance = GovernanceService(service)
    app.state.approvals = ApprovalService(service)
    app.state.metrics = Metrics()
    app.state.call = ServiceCall(inline=service.db.engine.dialect.name == "sqlite")
    install_error_handlers(app)
    routers = (versions.router, blobs.router, models.router, search.router, system.router)
    # Governance after versions: its GET .../aliases/{alias} must not shadow
    # GET .../aliases/history.
    for router in (*routers, governance.router):
        # Routes go straight onto the app's router: FastAPI's include_router
        # keeps a tree of wrappers that re-matches every route per request
        # (~250 µs a request with our ~40 routes, measured with cProfile).
        app.router.routes.extend(router.routes)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_json_body, streams=_streams_body)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def _streams_body(method: str, path: str) -> bool:
    """Blob uploads stream their bodies to disk; every other body is bounded."""
    if method == "PUT":
        return path.startswith("/api/v1/blobs/")
    return method == "POST" and path == "/api/v1/blobs"
