"""Content-addressed uploads: ask which digests are missing, PUT those, then commit.

An upload streams to a temp file while hashing; the blob becomes visible under
its digest only after the hash matched (see ``store.blobs``). The rules (who
may upload, the size limit, digests) are the blob service's
(``service/blobs.py``); these routes only move bytes between HTTP and it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import ServiceCall, actor, service_call
from modelyard.api.responses import JSONResponse
from modelyard.api.schemas import DigestList, DirectUploadDone, DirectUploadRequest
from modelyard.api.uploads import declared_size, receive_into
from modelyard.service.blobs import BlobService

router = APIRouter(prefix="/api/v1/blobs", tags=["blobs"])


def _blobs(request: Request) -> tuple[BlobService, ServiceCall]:
    """The blob service and how to call its reads (never through a write batch:
    the existence checks only read, and an upload's bytes are no transaction)."""
    state = request.app.state
    service: BlobService = state.blobs
    reads: ServiceCall = state.call
    return service, reads


@router.post("/missing")
@access("write", "On any namespace: blobs are shared by content.")
async def missing(request: Request, body: DigestList) -> Response:
    """The subset of ``digests`` the server does not hold yet."""
    blobs, _reads = _blobs(request)
    call = service_call(request)
    return JSONResponse({"missing": await call(blobs.missing, body.digests, actor=actor(request))})


@router.get("/transfers")
@access("authenticated")
async def transfers(request: Request) -> Response:
    """Whether this server hands out presigned URLs (``direct``): clients then
    send and fetch blob bytes straight to and from the store."""
    blobs, _reads = _blobs(request)
    return JSONResponse({"direct": blobs.direct is not None})


@router.post("/uploads")
@access("write", "On any namespace: blobs are shared by content.")
async def offer_upload(request: Request, body: DirectUploadRequest) -> Response:
    """A presigned URL to PUT the blob's bytes straight into the store
    (``mode: direct``; for a big blob ``parts``, one URL per byte range), then
    ``POST /uploads/{upload_id}/complete``; or ``mode: proxy``: send them to
    ``PUT /blobs/{digest}`` as usual."""
    blobs, reads = _blobs(request)
    staged = await reads(
        blobs.offer_direct_upload, actor(request), size=body.size, digest=body.digest
    )
    if staged is None:
        return JSONResponse({"mode": "proxy"})
    offer: dict[str, object] = {
        "mode": "direct",
        "upload_id": staged.upload_id,
        "method": "PUT",
        "expires_in": blobs.url_ttl,
    }
    if staged.parts:
        # A big blob: each part is PUT to its own URL (any order, in parallel
        # if the client likes); ``complete`` assembles and verifies them.
        offer["parts"] = [
            {"number": p.number, "offset": p.offset, "size": p.size, "url": p.url}
            for p in staged.parts
        ]
    else:
        offer["url"] = staged.url
        offer["headers"] = staged.headers
    return JSONResponse(offer)


@router.post("/uploads/{upload_id}/complete", status_code=201)
@access("write", "On any namespace: blobs are shared by content.")
async def complete_upload(request: Request, upload_id: str, body: DirectUploadDone) -> Response:
    """Take a direct upload: its size is checked now; its SHA-256 needs the
    bytes read back once. 201 (``verified: true``) when that is done, else 202
    (``verified: false``): the background verifier reads it, and
    ``GET /uploads/{upload_id}`` says when it is published or refused. Only a
    verified blob may be named by a version."""
    blobs, reads = _blobs(request)
    stored = await reads(
        blobs.complete_direct_upload, actor(request), upload_id, digest=body.digest, size=body.size
    )
    return JSONResponse(
        {
            "digest": stored.digest,
            "size": stored.size,
            "created": stored.created,
            "verified": stored.verified,
        },
        status_code=201 if stored.verified else 202,
    )


@router.get("/uploads/{upload_id}")
@access("write", "On any namespace; only the upload's sender sees it.")
async def upload_status(request: Request, upload_id: str) -> Response:
    """Where the verification of a completed direct upload stands: ``state``
    ``pending``, ``verified`` (published under ``digest``) or ``failed``
    (``error``: code, message, details; the bytes were removed)."""
    blobs, reads = _blobs(request)
    status = await reads(blobs.direct_upload_status, actor(request), upload_id)
    return JSONResponse(
        {
            "upload_id": status.upload_id,
            "state": status.state,
            "digest": status.digest,
            "size": status.size,
            "error": status.error,
        }
    )


@router.head("/{digest}")
@access("write", "On any namespace: blobs are shared by content.")
async def head_blob(request: Request, digest: str) -> Response:
    """200 with ``Content-Length`` if the blob is stored, else 404."""
    blobs, reads = _blobs(request)
    size = await reads(blobs.stored_size, digest, actor=actor(request))
    if size is None:
        return Response(status_code=404)
    return Response(status_code=200, headers={"Content-Length": str(size)})


@router.put("/{digest}", status_code=201)
@access("write", "On any namespace: blobs are shared by content.")
async def upload_blob(digest: str, request: Request) -> Response:
    """Stream the request body into the blob store under ``digest`` (verified)."""
    blobs, reads = _blobs(request)
    existing = await reads(blobs.stored_size, digest, actor=actor(request))
    expected_size = declared_size(request)
    if existing is not None and expected_size == existing:
        # Identical bytes are stored once; the body is discarded unread.
        return JSONResponse({"digest": digest, "size": existing, "created": False}, status_code=200)
    return await _receive(request, digest, expected_size)


@router.post("", status_code=201)
@access("write", "On any namespace: blobs are shared by content.")
async def upload_unnamed_blob(request: Request) -> Response:
    """Stream the request body into the blob store under the digest of its bytes.

    For clients that hash while they send (one read of a big file instead of
    two); the answer names the digest, which the client compares with its own.
    """
    blobs, _reads = _blobs(request)
    blobs.authorize(actor(request))
    return await _receive(request, None, declared_size(request))


async def _receive(request: Request, digest: str | None, expected_size: int | None) -> Response:
    """Stream the body to a blob upload and publish it (verified, fsynced)."""
    blobs, reads = _blobs(request)
    upload = await reads(
        blobs.begin_upload, actor(request), digest=digest, declared_size=expected_size
    )
    stored = await receive_into(request, upload)
    body: dict[str, object] = {"digest": stored.digest, "size": stored.size}
    if digest is not None:
        body["created"] = stored.created
    return JSONResponse(body, status_code=201)
