"""Content-addressed uploads: ask which digests are missing, PUT those, then commit.

An upload streams to a temp file while hashing; the blob becomes visible under
its digest only after the hash matched (see ``store.blobs``).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, services
from modelyard.api.responses import JSONResponse
from modelyard.api.schemas import DigestList
from modelyard.domain.errors import InvalidInput, PayloadTooLarge
from modelyard.domain.names import validate_digest

router = APIRouter(prefix="/api/v1/blobs", tags=["blobs"])


@router.post("/missing")
@access("write", "On any namespace: blobs are shared by content.")
async def missing(request: Request, body: DigestList) -> Response:
    """The subset of ``digests`` the server does not hold yet."""
    svc, call = services(request)
    return JSONResponse(
        {"missing": await call(svc.missing_blobs, body.digests, actor=actor(request))}
    )


@router.head("/{digest}")
@access("write", "On any namespace: blobs are shared by content.")
async def head_blob(request: Request, digest: str) -> Response:
    """200 with ``Content-Length`` if the blob is stored, else 404."""
    svc, _call = services(request)
    svc.authorize_upload(actor(request))
    validate_digest(digest)
    size = svc.blobs.size_of(digest)
    if size is None:
        return Response(status_code=404)
    return Response(status_code=200, headers={"Content-Length": str(size)})


@router.put("/{digest}", status_code=201)
@access("write", "On any namespace: blobs are shared by content.")
async def upload_blob(digest: str, request: Request) -> Response:
    """Stream the request body into the blob store under ``digest`` (verified)."""
    svc, _call = services(request)
    svc.authorize_upload(actor(request))
    validate_digest(digest)
    expected_size = _declared_size(request)
    existing = svc.blobs.size_of(digest)
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
    svc, _call = services(request)
    svc.authorize_upload(actor(request))
    return await _receive(request, None, _declared_size(request))


async def _room(backlog: Future[None]) -> None:
    """Wait until the writer has room. A failed write is not raised here but by
    the writer's next ``ready()`` or ``write()``, as its domain error."""
    waiter = asyncio.wrap_future(backlog)
    await asyncio.wait([waiter])
    if not waiter.cancelled():
        waiter.exception()  # seen, so asyncio does not log it as lost


def _declared_size(request: Request) -> int | None:
    limit: int = request.app.state.settings.max_blob_size
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not (declared.isascii() and declared.isdigit()):
        raise InvalidInput("invalid Content-Length", code="INVALID_INPUT")
    size = int(declared)
    if size > limit:
        raise PayloadTooLarge("blob larger than the configured limit", details={"limit": limit})
    return size


async def _receive(request: Request, digest: str | None, expected_size: int | None) -> Response:
    """Stream the body to a blob writer and publish it (verified, fsynced)."""
    svc, _call = services(request)
    limit: int = request.app.state.settings.max_blob_size
    existed = digest is not None and svc.blobs.exists(digest)
    writer = svc.blobs.writer(expected_size)
    try:
        # The writer hashes and stores on its own threads; the loop only
        # copies each chunk into a buffer, and waits (without blocking other
        # requests) when the disk or the hash falls behind.
        async for chunk in request.stream():
            if chunk:
                if (backlog := writer.ready()) is not None:
                    await _room(backlog)
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
    body: dict[str, object] = {"digest": stored, "size": writer.size}
    if digest is not None:
        body["created"] = not existed
    return JSONResponse(body, status_code=201)
