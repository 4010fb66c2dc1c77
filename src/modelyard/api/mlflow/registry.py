"""MLflow's model-registry endpoints, onto the registry service.

Every MLflow model lives in one namespace, ``Settings.mlflow_namespace``
(MLflow names carry none and may not contain ``/``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, services
from modelyard.api.mlflow import render
from modelyard.api.mlflow.params import Params, ok

router = APIRouter(prefix="/mlflow")


def namespace_of(request: Request) -> str:
    """The namespace the door's models live in."""
    ns: str = request.app.state.settings.mlflow_namespace
    return ns


@router.post("/registered-models/create")
@access("write")
async def create_registered_model(request: Request) -> Response:
    """``MlflowClient.create_registered_model``."""
    p = await Params.of(request)
    svc, call = services(request)
    model = await call(
        svc.create_model,
        p.required_text("name"),
        namespace=namespace_of(request),
        description=p.text("description") or "",
        tags=p.key_values("tags"),
        actor=actor(request),
    )
    return ok({"registered_model": render.registered_model(model)})


@router.get("/registered-models/get")
@access("consume")
async def get_registered_model(request: Request) -> Response:
    """``MlflowClient.get_registered_model``."""
    p = await Params.of(request)
    svc, call = services(request)
    model = await call(
        svc.get_model,
        p.required_text("name"),
        namespace=namespace_of(request),
        actor=actor(request),
    )
    return ok({"registered_model": render.registered_model(model)})
