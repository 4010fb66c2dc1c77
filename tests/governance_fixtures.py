"""Fixtures for governance tests: an app client that can act as any actor.

The app runs with auth on. The test-only middleware below turns an
``X-Test-Actor: NAME`` header into a real bearer token of user NAME (created on
first use, instance admin, so governance tests exercise governance rules; the
role rules have their own matrix in ``test_auth_matrix.py``). A request
without the header acts as the user ``anonymous``, like a server with auth off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.api.app import create_app
from modelyard.domain.errors import AlreadyExists
from modelyard.domain.identity import SYSTEM
from modelyard.service.identity import IdentityService
from modelyard.settings import Settings

USERS = ("anonymous", "admin", "ana", "bob", "cy", "dan", "ops")


class ActAs:
    """Authenticate as the user the ``X-Test-Actor`` header names (tests only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tokens: dict[str, str] = {}

    def token_of(self, identity: IdentityService, name: str) -> str:
        if name not in self.tokens:
            with contextlib.suppress(AlreadyExists):  # "admin" exists from the bootstrap
                identity.create_user(name, actor=SYSTEM)
            identity.grant_role(name, "admin", namespace="*", actor=SYSTEM)
            self.tokens[name] = identity.create_token("test", user=name, actor=SYSTEM)[1]
        return self.tokens[name]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = list(scope.get("headers", []))
            name = next((v.decode() for k, v in headers if k == b"x-test-actor"), "anonymous")
            token = self.token_of(scope["app"].state.identity, name)
            headers.append((b"authorization", f"Bearer {token}".encode()))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


@pytest.fixture
def gclient(settings: Settings) -> Iterator[TestClient]:
    """An in-process client whose requests may name their actor (``as_(name)``)."""
    app = create_app(settings.model_copy(update={"auth": "on", "admin_token": None}))
    app.add_middleware(ActAs)
    with TestClient(app, raise_server_exceptions=False) as c:
        # Users the tests act as, made up front so their identity events come
        # before anything a test does (audit tests read the newest entries).
        for name in USERS:
            c.get("/api/v1/whoami", **as_(name))
        yield c


def as_(actor: str) -> dict[str, Any]:
    """Request keyword arguments that act as ``actor``."""
    return {"headers": {"X-Test-Actor": actor}}
