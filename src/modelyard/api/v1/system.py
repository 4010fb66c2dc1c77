"""Health (live, ready) and Prometheus metrics.

``/health/live`` answers as long as the process and its event loop do: no
I/O, so an outage of the database or the store never gets a healthy process
restarted (a liveness probe). ``/health/ready`` checks both dependencies and
answers 503 ``NOT_READY``, naming the ones that failed, while either cannot be
reached (a readiness probe: take this replica out of the load balancer).
``/health`` is the readiness check, as it always was ("the database answers").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from modelyard import __version__
from modelyard.api.access import access
from modelyard.api.deps import services
from modelyard.api.responses import JSONResponse
from modelyard.domain.errors import ModelyardError, Unavailable

router = APIRouter(tags=["system"])
log = logging.getLogger("modelyard.api")

READY_TIMEOUT = 5.0
"""Seconds a dependency has to answer a readiness check: a store or database
that hangs (a black-holed address) is as unready as one that refuses."""


async def _check(fn: Callable[[], None]) -> dict[str, Any] | None:
    """None if ``fn`` passed, else what went wrong (a stable code and a message
    that names no host, credential or path: the route is public)."""
    try:
        # Always on a thread, even on SQLite: a hung check must not hold the loop.
        await asyncio.wait_for(run_in_threadpool(fn), READY_TIMEOUT)
    except ModelyardError as exc:
        return {"code": exc.code, "message": exc.message}
    except TimeoutError:
        return {"code": "TIMEOUT", "message": f"no answer within {READY_TIMEOUT:g} s"}
    except Exception:
        log.exception("readiness check failed")
        return {"code": "INTERNAL_ERROR", "message": "the check failed; see the server log"}
    return None


async def _ready(request: Request) -> Response:
    svc, _call = services(request)
    names = ("database", "blob_store")
    results = await asyncio.gather(_check(svc.ping), _check(svc.check_blob_store))
    checks = {name: result or "ok" for name, result in zip(names, results, strict=True)}
    failed = [name for name, result in zip(names, results, strict=True) if result]
    if failed:
        raise Unavailable(
            f"not ready: the {' and the '.join(n.replace('_', ' ') for n in failed)} "
            "cannot be reached",
            code="NOT_READY",
            details={"failed": failed, "checks": checks},
        )
    return JSONResponse({"status": "ok", "version": __version__, "checks": checks})


@router.get("/health")
@access("public")
async def health(request: Request) -> Response:
    """Readiness (kept for existing probes): as ``/health/ready``."""
    return await _ready(request)


@router.get("/health/ready")
@access("public")
async def ready(request: Request) -> Response:
    """Readiness: the database and the blob store answer; 503 ``NOT_READY``
    naming the failed ones (``details.failed``) otherwise."""
    return await _ready(request)


@router.get("/health/live")
@access("public")
async def live(request: Request) -> Response:
    """Liveness: the process answers. Touches neither the database nor the store."""
    return JSONResponse({"status": "ok", "version": __version__})


@router.get("/metrics", include_in_schema=False)
@access("public", "Prometheus scrapes without a token.")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this process's registry."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
