"""Deployment pages: what runs where (list), and one deployment with its
replicas (as of their last heartbeats, stale ones marked), its monitoring
(each replica's latest figures against the thresholds, and the alerts:
drift, degradation, automatic rollbacks) and its history.

The same registry calls as REST v1's ``/api/v1/deployments`` routes: the
list holds only deployments of namespaces the caller reads; one deployment
needs read on its model's namespace.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from modelyard.domain.access import access
from modelyard.domain.deployments import HistoryKind
from modelyard.domain.errors import InvalidInput
from modelyard.web.calls import door
from modelyard.web.monitoring import alert_view, monitoring_figures
from modelyard.web.render import page

router = APIRouter(include_in_schema=False)

HISTORY_PAGE: Final = 25
LIST_PAGE: Final = 50
ALERTS_PAGE: Final = 10
ALERT_KINDS: Final = [HistoryKind.DRIFT, HistoryKind.DEGRADED, HistoryKind.ROLLED_BACK]


def _before(value: str | None) -> int | None:
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise InvalidInput("invalid page token", code="INVALID_CURSOR")
    return int(value)


@router.get("/deployments")
@access("authenticated", "Only deployments in namespaces the caller reads are listed.")
async def deployments_page(request: Request) -> Response:
    """Deployments by environment and reference, with their status and
    replicas, 50 a page (``page_token`` continues, the token REST v1's list
    gives: the same service call pages both)."""
    d = door(request)
    params = request.query_params
    environment = (params.get("environment") or "").strip()
    follows = (params.get("follows") or "").strip()
    token = params.get("page_token") or None
    found = await d.call(
        d.registry.page_deployments,
        environment=environment or None,
        follows=follows or None,
        page_size=LIST_PAGE,
        page_token=token,
        actor=d.who,
    )
    context: dict[str, Any] = {
        "deployments": found.items,
        "environment": environment,
        "follows": follows,
        "paged": token is not None,
        "next": (
            {"environment": environment, "follows": follows, "page_token": found.next_page_token}
            if found.next_page_token
            else None
        ),
    }
    return page(request, "deployments.html", context)


@router.get("/deployments/{environment}/{reference:path}")
@access("read", "On the namespace of the model the reference names.")
async def deployment_page(request: Request, environment: str, reference: str) -> Response:
    """One deployment: its replicas, its monitoring (latest figures and
    alerts, ``alerts_before`` pages on) and its history (``before``)."""
    d = door(request)
    found = await d.call(d.registry.get_deployment, environment, reference, actor=d.who)
    before = _before(request.query_params.get("before"))
    history = await d.call(
        d.registry.deployment_history,
        found.environment,
        reference=found.reference,
        before=before,
        limit=HISTORY_PAGE,
        actor=d.who,
    )
    alerts_before = _before(request.query_params.get("alerts_before"))
    alerts = await d.call(
        d.registry.deployment_history,
        found.environment,
        reference=found.reference,
        before=alerts_before,
        limit=ALERTS_PAGE,
        kinds=ALERT_KINDS,
        actor=d.who,
    )
    context: dict[str, Any] = {
        "dep": found,
        "figures": monitoring_figures(found),
        "alerts": [alert_view(a) for a in alerts],
        "alerts_before": alerts_before,
        "next_alerts_before": alerts[-1].id if len(alerts) == ALERTS_PAGE else None,
        "history": history,
        "before": before,
        "next_before": history[-1].id if len(history) == HISTORY_PAGE else None,
    }
    return page(request, "deployment.html", context)
