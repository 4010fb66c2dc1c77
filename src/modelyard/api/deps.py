"""Request-scoped helpers shared by the routers."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from modelyard.api.access import principal_of
from modelyard.domain.identity import Principal
from modelyard.service.identity import IdentityService
from modelyard.service.registry import RegistryService
from modelyard.service.webhooks import WebhookService

P = ParamSpec("P")
T = TypeVar("T")


class ServiceCall:
    """Runs a (blocking) service call from an async endpoint.

    On SQLite the database is an in-process library call of well under a
    millisecond, and there is one writer anyway, so calls run right on the event
    loop: a thread hand-off per request would cost more than the query (measured
    with py-spy: ~40% of CPU in thread signalling under load). On PostgreSQL a
    call waits on the network and on row locks held by other replicas, so it
    goes to the threadpool and never stalls the loop.
    """

    def __init__(self, *, inline: bool) -> None:
        self.inline = inline

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` inline or in the threadpool."""
        if self.inline:
            return fn(*args, **kwargs)
        return await run_in_threadpool(fn, *args, **kwargs)

    async def heavy(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` in the threadpool whatever the backend: for calls that may
        take tens of milliseconds (searches), which must not stall the loop."""
        return await run_in_threadpool(fn, *args, **kwargs)


def services(request: Request) -> tuple[RegistryService, ServiceCall]:
    """The registry service built by ``create_app`` and how to call it.

    A plain function rather than FastAPI dependencies: resolving dependencies
    costs ~100 µs a request in this FastAPI version, a quarter of a point read.
    """
    state = request.app.state
    return state.registry, state.call


def actor(request: Request) -> Principal:
    """Who is acting: the principal the route's guard authenticated (``api/access.py``)."""
    return principal_of(request.scope)


def identity(request: Request) -> tuple[IdentityService, ServiceCall]:
    """The identity service (users, tokens, roles) and how to call it."""
    state = request.app.state
    return state.identity, state.call


def webhook_services(request: Request) -> tuple[WebhookService, ServiceCall]:
    """The webhook and event-stream service built by ``create_app`` and how to call it."""
    state = request.app.state
    return state.webhooks, state.call
