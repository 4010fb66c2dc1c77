"""Content-addressed uploads: ask which digests are missing, PUT those, then commit.

An upload streams to a temp file while hashing; the blob becomes visible under
its digest only after the hash matched (see ``store.blobs``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelyard.api.deps import services
from modelyard.api.responses import BlobFileResponse, JSONResponse
from modelyard.api.schemas import DigestList
from modelyard.domain.errors import InvalidInput, NotFound, PayloadTooLarge
from modelyard.domain.names import validate_digest

router = APIRouter(prefix="/api/v1/blobs", tags=["blobs"])


@router.post("/missing")
async def missing(request: Request, body: DigestList) -> Response:
    """The subset of ``digests`` the server does not hold yet."""
    svc, call = services(request)
    return JSONResponse({"missing": await call(svc.missing_blobs, body.digests)})


@router.head("/{digest}")
async def head_blob(request: Request, digest: str) -> Response:
    """200 with ``Content-Length`` if the blob is stored, else 404."""
    svc, _call = services(request)
    validate_digest(digest)
    size = svc.blobs.size_of(digest)
    if size is None:
        return Response(status_code=404)
    return Response(status_code=200, headers={"Content-Length": str(size)})


@router.put("/{digest}", status_code=201)
async def upload_blob(digest: str, request: Request) -> Response:
    """Stream the request body into the blob store under ``digest`` (verified)."""
    svc, _call = services(request)
    validate_digest(digest)
    limit: int = request.app.state.settings.max_blob_size
    declared = request.headers.get("content-length")
    expected_size: int | None = None
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput("invalid Content-Length", code="INVALID_INPUT")
        expected_size = int(declared)
        if expected_size > limit:
            raise PayloadTooLarge("blob larger than the configured limit", details={"limit": limit})
    existing = svc.blobs.size_of(digest)
    if existing is not None and expected_size == existing:
        # Identical bytes are stored once; the body is discarded unread.
        return JSONResponse({"digest": digest, "size": existing, "created": False}, status_code=200)
    writer = svc.blobs.writer()
    try:
        async for chunk in request.stream():
            if chunk:
                writer.write(chunk)
                if writer.size > limit:
                    raise PayloadTooLarge(
                        "blob larger than the configured limit", details={"limit": limit}
                    )
        # The commit fsyncs the whole blob: seconds for a large one, so it must
        # not stall the event loop that serves every other request.
        stored = await run_in_threadpool(
            writer.commit, expected_digest=digest, expected_size=expected_size
        )
    except BaseException:
        writer.abort()
        raise
    return JSONResponse({"digest": stored, "size": writer.size, "created": True}, status_code=201)


@router.get("/{digest}")
async def get_blob(digest: str, request: Request) -> Response:
    """A blob's bytes by digest, only if some version's manifest references it."""
    svc, call = services(request)

    validate_digest(digest)
    path = svc.blobs.local_path(digest)
    if path is None or not await call(svc.blob_referenced, digest):
        raise NotFound("blob not found", code="BLOB_NOT_FOUND", details={"digest": digest})
    return BlobFileResponse(
        path, media_type="application/octet-stream", headers={"ETag": f'"{digest}"'}
    )
