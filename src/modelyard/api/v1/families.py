"""Model families (issue 14): a version's family tree, its variants, its ancestry.

``{version}`` takes any reference form, as in the versions routes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, services
from modelyard.api.responses import JSONResponse
from modelyard.api.schemas import FamilyPromote
from modelyard.api.v1.versions import version_ref
from modelyard.wire import render

router = APIRouter(prefix="/api/v1", tags=["families"])

_VERSION = "/models/{namespace}/{name}/versions/{version}"


@router.get(_VERSION + "/family")
@access("consume")
async def get_family(request: Request, namespace: str, name: str, version: str) -> Response:
    """The version's whole family: its original (root) and every variant, as a tree.

    Members come in depth-first order with ``parent`` (the member above in
    the tree) and ``depth``; versions the caller may not see are left out.
    """
    svc, call = services(request)
    fam = await call(svc.get_family, version_ref(namespace, name, version), actor=actor(request))
    return JSONResponse(render.family(fam))


@router.get(_VERSION + "/variants")
@access("consume")
async def list_variants(
    request: Request,
    namespace: str,
    name: str,
    version: str,
    format: str | None = None,
    relation: str | None = None,
    latest: bool = False,
) -> Response:
    """Versions made from this one (directly or not), newest first.

    ``format`` and ``relation`` narrow them; ``latest=true`` answers only the
    newest ready or published one (404 ``VARIANT_NOT_FOUND`` if none), e.g.
    the latest ONNX build of ``fraud@production``.
    """
    svc, call = services(request)
    found = await call(
        svc.list_variants,
        version_ref(namespace, name, version),
        format=format,
        relation=relation,
        latest=latest,
        actor=actor(request),
    )
    return JSONResponse({"variants": [render.version(v) for v in found]})


@router.get(_VERSION + "/ancestry")
@access("consume")
async def get_ancestry(request: Request, namespace: str, name: str, version: str) -> Response:
    """Where this version comes from: parent, grandparent, ... up to its original."""
    svc, call = services(request)
    found = await call(
        svc.get_ancestry, version_ref(namespace, name, version), actor=actor(request)
    )
    return JSONResponse({"ancestry": [render.version(v) for v in found]})


@router.post(_VERSION + "/promote")
@access("write")
async def promote_family(
    request: Request, namespace: str, name: str, version: str, body: FamilyPromote
) -> Response:
    """Publish this version (``action: publish``) or point ``alias`` at it
    (``action: alias``), and do the same to the newest ready or published
    variant of each format in ``with_variants``, in one transaction.

    Each part is gated as a lone publish or alias move is (production policy,
    protected aliases): any refusal refuses all (the first refusal's code,
    ``details.refused`` listing every refused part) and nothing changes. The
    audit log shows one ``family.promoted`` change with its parts.
    """
    svc, call = services(request)
    done = await call(
        svc.promote_family,
        version_ref(namespace, name, version),
        action=body.action,
        formats=body.with_variants,
        alias=body.alias,
        reason=body.reason,
        archive_previous=body.archive_previous,
        actor=actor(request),
    )
    return JSONResponse(render.family_promotion(done))
