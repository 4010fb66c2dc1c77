"""``create_app(settings)``: the ASGI application, built from settings only."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from modelyard import __version__
from modelyard.api.access import Authenticator, install_guards
from modelyard.api.deps import GroupedWrites, ServiceCall
from modelyard.api.docs import install_docs
from modelyard.api.errors import install_error_handlers
from modelyard.api.middleware import BodyLimitMiddleware, Metrics, MetricsMiddleware
from modelyard.api.openapi import install_openapi
from modelyard.api.v1 import (
    blobs,
    events,
    governance,
    identity,
    models,
    search,
    system,
    versions,
    webhooks,
)
from modelyard.domain.webhooks import AttemptOutcome
from modelyard.events.dispatcher import Dispatcher
from modelyard.events.sender import WebhookSender
from modelyard.service.approvals import ApprovalService
from modelyard.service.factory import build_registry, build_webhook_service
from modelyard.service.governance import GovernanceService
from modelyard.service.identity import IdentityService
from modelyard.service.registry import RegistryService
from modelyard.settings import Settings


def create_app(
    settings: Settings | None = None, *, registry: RegistryService | None = None
) -> FastAPI:
    """Build the app. Pass ``registry`` to serve an already-open service."""
    settings = settings or Settings()
    service = registry or build_registry(settings)
    hooks = build_webhook_service(settings, service.db)
    # Set when the server begins to shut down: open event streams end on it.
    stopping = threading.Event()

    metrics = Metrics()

    def count_attempt(outcome: AttemptOutcome) -> None:
        metrics.webhook_attempts.labels("succeeded" if outcome.succeeded else "failed").inc()
        metrics.webhook_latency.observe(outcome.latency_us / 1e6)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        dispatcher = None
        if settings.dispatcher:
            dispatcher = Dispatcher(
                hooks,
                WebhookSender(
                    hooks.guard,
                    timeout=settings.webhook_timeout,
                    ca_bundle=settings.webhook_ca_bundle,
                ),
                interval=settings.dispatcher_interval,
                concurrency=settings.webhook_concurrency,
                on_attempt=count_attempt,
            )
            dispatcher.start()
        # What exists at startup (modules, the app, engines, compiled queries)
        # lives as long as the process: frozen, it is no longer scanned by the
        # full collections that run every few thousand requests and stalled
        # the event loop for tens of ms (creates over HTTP, 2 workers on one
        # core: p99 65-107 ms before, 24 ms frozen).
        gc.freeze()
        try:
            yield
        finally:
            stopping.set()
            if dispatcher is not None:
                await run_in_threadpool(dispatcher.stop)
            service.db.dispose()

    app = FastAPI(
        title="modelyard",
        version=__version__,
        description="Self-hosted unified model center: registry REST API v1.",
        lifespan=lifespan,
        # Served from the package by install_docs, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    install_openapi(app)
    app.state.settings = settings
    app.state.registry = service
    app.state.governance = GovernanceService(service)
    app.state.approvals = ApprovalService(service)
    app.state.webhooks = hooks
    app.state.stopping = stopping
    app.state.metrics = metrics
    # Reads inline on SQLite, writes gathered into shared transactions there
    # (see ServiceCall); everything in the threadpool on PostgreSQL.
    app.state.call = ServiceCall(inline=service.db.engine.dialect.name == "sqlite")
    app.state.identity = IdentityService(service)
    app.state.auth_enabled = settings.auth_enabled()
    if app.state.auth_enabled:
        bootstrap_admin(app.state.identity, settings)
    group = service.db.group
    app.state.write_call = app.state.call if group is None else GroupedWrites(group)
    install_error_handlers(app)
    # Governance after versions: its GET .../aliases/{alias} must not shadow
    # GET .../aliases/history.
    for router in (
        versions.router,
        blobs.router,
        models.router,
        search.router,
        system.router,
        events.router,
        webhooks.router,
        governance.router,
        identity.router,
    ):
        # Routes go straight onto the app's router: FastAPI's include_router
        # keeps a tree of wrappers that re-matches every route per request
        # (~250 µs a request with our ~40 routes, measured with cProfile).
        app.router.routes.extend(router.routes)
    # Deny by default: every route is wrapped in the guard its endpoint
    # declared; building fails if one declared nothing (api/access.py).
    app.state.authenticator = Authenticator(
        app.state.identity, enabled=app.state.auth_enabled, call=app.state.call
    )
    install_guards(app, app.state.authenticator)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_json_body, streams=_streams_body)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def _streams_body(method: str, path: str) -> bool:
    """Blob uploads stream their bodies to disk; every other body is bounded."""
    if method == "PUT":
        return path.startswith("/api/v1/blobs/")
    return method == "POST" and path == "/api/v1/blobs"


def bootstrap_admin(identity_service: IdentityService, settings: Settings) -> None:
    """First start with auth on and no users: create ``admin``, print a new token once."""
    given = settings.admin_token.get_secret_value() if settings.admin_token else None
    generated = identity_service.bootstrap(given)
    if generated is not None:
        print(
            "modelyard: created the instance admin user 'admin'. Its API token, shown only "
            f"this once:\n\n    {generated}\n\n"
            "Use it as MODELYARD_TOKEN (or --token), and create personal users and tokens.",
            file=sys.stderr,
            flush=True,
        )
