"""Streaming a request body into a blob upload: shared by every door that
takes file bytes (REST v1's ``/blobs``, the MLflow artifact proxy).

The writer (``service.blobs.Upload``) hashes and stores on its own threads;
the event loop only hands it each chunk, and waits without blocking other
requests when the disk or the hash falls behind. The commit fsyncs the
whole blob (seconds for a big one), so it runs off the loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from modelyard.domain.errors import InvalidInput
from modelyard.service.blobs import StoredBlob, Upload


def declared_size(request: Request) -> int | None:
    """The request's ``Content-Length`` (an HTTP matter; its limit is the service's)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not (declared.isascii() and declared.isdigit()):
        raise InvalidInput("invalid Content-Length", code="INVALID_INPUT")
    return int(declared)


async def wait_for_room(backlog: Future[None]) -> None:
    """Wait until the writer has room. A failed write is not raised here but by
    the writer's next ``ready()`` or ``write()``, as its domain error."""
    waiter = asyncio.wrap_future(backlog)
    await asyncio.wait([waiter])
    if not waiter.cancelled():
        waiter.exception()  # seen, so asyncio does not log it as lost


async def receive_into(request: Request, upload: Upload) -> StoredBlob:
    """Stream the request body into ``upload`` and commit it (verified,
    fsynced); the upload is aborted if anything fails on the way."""
    try:
        async for chunk in request.stream():
            if chunk:
                if (backlog := upload.ready()) is not None:
                    await wait_for_room(backlog)
                upload.write(chunk)
        return await run_in_threadpool(upload.commit)
    except BaseException:
        upload.abort()
        raise
