"""How a page reaches the services: the same objects and call paths as REST v1.

``create_app`` keeps the services and its call strategy (inline reads on
SQLite, grouped writes, the threadpool on PostgreSQL; see ``api/deps.py``)
on ``app.state``; a page takes them from there, so a UI request runs the
same service methods, in the same way, as the API request that does the
same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from starlette.requests import Request

from modelyard.domain.access import principal_of
from modelyard.domain.identity import Principal
from modelyard.service.approvals import ApprovalService
from modelyard.service.governance import GovernanceService
from modelyard.service.identity import IdentityService
from modelyard.service.registry import RegistryService
from modelyard.service.webhooks import WebhookService

P = ParamSpec("P")
T = TypeVar("T")


class Caller(Protocol):
    """``app.state.call`` / ``write_call``: runs a blocking service call."""

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

    async def heavy(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...


@dataclass(frozen=True, slots=True)
class Door:
    """What one page request works with."""

    registry: RegistryService
    governance: GovernanceService
    approvals: ApprovalService
    identity: IdentityService
    webhooks: WebhookService
    call: Caller
    who: Principal


def door(request: Request) -> Door:
    """The services, the call strategy for this request's method, and the actor."""
    state: Any = request.app.state
    call = state.call if request.method in ("GET", "HEAD") else state.write_call
    return Door(
        registry=state.registry,
        governance=state.governance,
        approvals=state.approvals,
        identity=state.identity,
        webhooks=state.webhooks,
        call=call,
        who=principal_of(request.scope),
    )
