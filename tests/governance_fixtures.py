"""Fixtures for governance tests: an app client that can act as any actor.

Authentication is another branch's job; until it lands the actor comes from
``request.state.actor``. The test-only middleware below sets it from an
``X-Test-Actor`` header, so tests can play requester and reviewer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.api.app import create_app
from modelyard.settings import Settings


class ActAs:
    """Set ``request.state.actor`` from the ``X-Test-Actor`` header (tests only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for key, value in scope.get("headers", []):
                if key == b"x-test-actor":
                    scope.setdefault("state", {})["actor"] = value.decode()
        await self.app(scope, receive, send)


@pytest.fixture
def gclient(settings: Settings) -> Iterator[TestClient]:
    """An in-process client whose requests may name their actor (``as_(name)``)."""
    app = create_app(settings)
    app.add_middleware(ActAs)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def as_(actor: str) -> dict[str, Any]:
    """Request keyword arguments that act as ``actor``."""
    return {"headers": {"X-Test-Actor": actor}}
