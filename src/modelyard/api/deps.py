"""Request-scoped helpers shared by the routers."""

from __future__ import annotations

from fastapi import Request

from modelyard.service.registry import RegistryService


def service(request: Request) -> RegistryService:
    """The registry service built by ``create_app``."""
    svc: RegistryService = request.app.state.registry
    return svc


def actor(request: Request) -> str:
    """Who is acting. Authentication (issue 3) will set this from the token."""
    return str(getattr(request.state, "actor", None) or "anonymous")
