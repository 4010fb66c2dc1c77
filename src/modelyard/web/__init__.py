"""The web UI: server-rendered pages, another door onto the same services.

``install_web(app)`` adds the pages (every one declares its permission with
``@access``, and the app's route guard enforces it exactly as for REST v1),
the web door middleware (session and CSRF cookies, security headers) and the
error pages. Call it after the API's error handlers are installed and before
the guards are.
"""

from __future__ import annotations

from fastapi import FastAPI

from modelyard.web import (
    account,
    actions,
    assets,
    deployments,
    governance,
    pages,
    people,
    policies,
    webhooks,
)
from modelyard.web.door import WebDoor
from modelyard.web.errors import install_error_pages

__all__ = ["install_web"]


def install_web(app: FastAPI) -> None:
    """Mount the UI at ``/`` on ``app`` (REST, docs and health keep their paths)."""
    for router in (
        pages.router,
        actions.router,
        governance.router,
        policies.router,
        account.router,
        people.router,
        webhooks.router,
        deployments.router,
        assets.router,
    ):
        app.router.routes.extend(router.routes)
    install_error_pages(app.exception_handlers)
    app.add_middleware(WebDoor)
