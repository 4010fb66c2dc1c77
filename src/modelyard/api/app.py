"""``create_app(settings)``: the ASGI application, built from settings only."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from modelyard import __version__
from modelyard.api.access import Authenticator, install_guards
from modelyard.api.deps import GroupedWrites, ServiceCall
from modelyard.api.docs import install_docs
from modelyard.api.errors import install_error_handlers
from modelyard.api.middleware import BodyLimitMiddleware, Metrics, MetricsMiddleware
from modelyard.api.mlflow.app import install_mlflow
from modelyard.api.openapi import install_openapi
from modelyard.api.v1 import (
    blobs,
    bundles,
    deployments,
    events,
    families,
    governance,
    identity,
    models,
    resources,
    search,
    system,
    versions,
    webhooks,
)
from modelyard.composition import Services, build_dispatcher, build_services, build_verifier
from modelyard.domain.webhooks import AttemptOutcome
from modelyard.events.cachesync import CacheSync
from modelyard.service.identity import IdentityService
from modelyard.service.rendered import RevisionCache
from modelyard.settings import Settings
from modelyard.web import install_web


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """Build the app from settings (its services from ``composition``).

    Pass ``services`` to serve an object graph built already (its settings
    then apply unless ``settings`` is given); the caller closes it. Services
    the app built itself are closed when it shuts down.
    """
    owned = services is None
    if services is None:
        services = build_services(settings or Settings())
    settings = settings or services.settings
    built = services
    # Set when the server begins to shut down: open event streams end on it.
    stopping = threading.Event()

    metrics = Metrics()

    def count_attempt(outcome: AttemptOutcome) -> None:
        metrics.webhook_attempts.labels("succeeded" if outcome.succeeded else "failed").inc()
        metrics.webhook_latency.observe(outcome.latency_us / 1e6)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        dispatcher = None
        # With auth on, token lookups are cached: changes made through other
        # replicas reach this process's cache through the outbox.
        cache_sync = None
        if app.state.auth_enabled:
            cache_sync = CacheSync(built.identity, interval=settings.auth_sync_interval)
            await run_in_threadpool(cache_sync.start)
        if settings.dispatcher:
            dispatcher = build_dispatcher(built, on_attempt=count_attempt)
            dispatcher.start()
        verifier = None
        if settings.blob_verifier and built.blob_service.direct is not None:
            verifier = build_verifier(built)
            verifier.start()
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
            if cache_sync is not None:
                await run_in_threadpool(cache_sync.stop)
            if dispatcher is not None:
                await run_in_threadpool(dispatcher.stop)
            if verifier is not None:
                await run_in_threadpool(verifier.stop)
            if owned:
                built.close()

    app = FastAPI(
        title="modelyard",
        version=__version__,
        description="Self-hosted unified model center: registry REST API v1.",
        lifespan=lifespan,
        # Starlette's slash redirect builds its Location from the Host header,
        # so a foreign Host got a redirect off the server (issue 9): a path
        # with a stray slash is a plain 404.
        redirect_slashes=False,
        # Served from the package by install_docs, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    install_openapi(app)
    app.state.settings = settings
    app.state.services = services
    app.state.registry = services.registry
    # Search pages' rendered versions, valid for one database revision
    # (service/rendered.py): per process, never shared, nothing to invalidate.
    app.state.rendered_versions = RevisionCache[bytes]()
    app.state.governance = services.governance
    app.state.approvals = services.approvals
    app.state.webhooks = services.webhooks
    app.state.blobs = services.blob_service
    app.state.identity = services.identity
    app.state.stopping = stopping
    app.state.metrics = metrics
    # Reads inline on SQLite, writes as cooperative calls whose transactions
    # are gathered into shared ones there (see ServiceCall); everything in
    # the threadpool on PostgreSQL.
    sqlite = services.metadata.group is not None
    app.state.call = ServiceCall(inline=sqlite, heavy_limit=settings.db_pool_size)
    app.state.write_call = GroupedWrites(app.state.call) if sqlite else app.state.call
    app.state.auth_enabled = settings.auth_enabled()
    if app.state.auth_enabled:
        bootstrap_admin(app.state.identity, settings)
    install_error_handlers(app)
    # Governance after versions: its GET .../aliases/{alias} must not shadow
    # GET .../aliases/history.
    for router in (
        versions.router,
        families.router,
        bundles.router,
        deployments.router,
        resources.router,
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
    # The MLflow door: a sub-app mounted in front of the REST v1 routes, with
    # its own error shape and guards (api/mlflow/app.py says why a sub-app).
    install_mlflow(app)
    # The web UI at / (pages, its cookies and error pages): another door onto
    # the same services, its routes guarded below like these.
    install_web(app)
    # Deny by default: every route is wrapped in the guard its endpoint
    # declared; building fails if one declared nothing (api/access.py).
    app.state.authenticator = Authenticator(
        app.state.identity, enabled=app.state.auth_enabled, call=app.state.call
    )
    install_guards(app, app.state.authenticator)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_json_body, streams=_streams_body)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


# MLflow's artifact proxy PUTs (a file, or a part of a multipart upload),
# under either mount of the MLflow door.
_MLFLOW_UPLOADS: Final = tuple(
    f"{root}/mlflow-artifacts/{kind}/"
    for root in ("/api/2.0", "/ajax-api/2.0")
    for kind in ("artifacts", "mpu/part")
)


def _streams_body(method: str, path: str) -> bool:
    """Blob and artifact uploads stream their bodies to disk (the blob
    service bounds them); every other body is bounded here."""
    if method == "PUT":
        return path.startswith("/api/v1/blobs/") or path.startswith(_MLFLOW_UPLOADS)
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
