"""Versions, their files, lifecycle transitions and aliases.

``{version}`` in a path is a number, ``latest`` or an alias name, so every
route that names a version takes any reference form.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from modelyard.api.access import Access, access
from modelyard.api.deps import actor, services
from modelyard.api.responses import (
    BlobFileResponse,
    BlobStreamResponse,
    JSONResponse,
    attachment,
    byte_range,
)
from modelyard.api.schemas import (
    AliasSet,
    FilesCommit,
    PickleExceptionSet,
    TagChanges,
    Transition,
    VersionCreate,
)
from modelyard.api.tarstream import tar_size, tar_stream
from modelyard.domain.entities import VersionState
from modelyard.domain.errors import InvalidInput
from modelyard.domain.names import validate_name
from modelyard.domain.references import Reference, parse_reference
from modelyard.hashio import PIPELINE_MIN
from modelyard.service import pending_versions
from modelyard.service.blobs import BlobService
from modelyard.service.registry import VersionSpec
from modelyard.wire import render

router = APIRouter(prefix="/api/v1", tags=["versions"])


def version_ref(namespace: str, name: str, version: str) -> Reference:
    """Build a reference from path parts (number, ``latest`` or alias)."""
    validate_name(namespace, kind="namespace")
    validate_name(name)
    sep = "/" if version.isascii() and version.isdigit() else "@"
    return parse_reference(f"{namespace}/{name}{sep}{version}")


@router.post("/models/{namespace}/{name}/versions", status_code=201)
@access("write")
async def create_version(
    namespace: str,
    name: str,
    body: VersionCreate,
    request: Request,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
) -> Response:
    """Create a version from uploaded blobs (upload missing ones first via /blobs)."""
    svc, call = services(request)
    spec = VersionSpec(
        files=[f.model_dump() for f in body.files],
        description=body.description,
        framework=body.framework,
        format=body.format,
        signature=body.signature,
        metrics=body.metrics,
        params=body.params,
        tags=body.tags,
        metadata=body.metadata,
        source_run=body.lineage.source_run,
        code_ref=body.lineage.code_ref,
        datasets=body.lineage.datasets,
        parent=body.lineage.parent,
        original=body.lineage.original,
        relation=body.lineage.relation,
        recipe=body.lineage.recipe,
        metric_delta=body.lineage.metric_delta,
        draft=body.draft,
    )
    ver = await call(
        svc.create_version,
        name,
        spec,
        namespace=namespace,
        actor=actor(request),
        idempotency_key=idempotency_key,
    )
    return JSONResponse(render.version(ver), status_code=201)


@router.get("/models/{namespace}/{name}/versions")
@access("consume")
async def list_versions(
    request: Request,
    namespace: str,
    name: str,
    page_size: int = Query(100, ge=1, le=1000),
    page_token: str | None = None,
    state: list[str] | None = Query(None),
) -> Response:
    """A model's versions, newest first."""
    svc, call = services(request)
    page = await call(
        svc.list_versions,
        name,
        namespace=namespace,
        page_size=page_size,
        page_token=page_token,
        states=state,
        actor=actor(request),
    )
    return JSONResponse(
        {
            "versions": [render.version(v) for v in page.items],
            "next_page_token": page.next_page_token,
        }
    )


@router.get("/models/{namespace}/{name}/versions/{version}")
@access("consume")
async def get_version(
    request: Request, namespace: str, name: str, version: str, files: bool = True
) -> Response:
    """One version with its manifest."""
    svc, call = services(request)
    ver = await call(
        svc.get_version,
        version_ref(namespace, name, version),
        with_files=files,
        actor=actor(request),
    )
    return JSONResponse(render.version(ver))


@router.get("/resolve")
@access("consume")
async def resolve(request: Request, ref: str, files: bool = True) -> Response:
    """Resolve any reference string (``name/3``, ``ns/name@alias``, ``name@latest``)."""
    svc, call = services(request)
    return JSONResponse(
        render.version(await call(svc.get_version, ref, with_files=files, actor=actor(request)))
    )


@router.delete("/models/{namespace}/{name}/versions/{version}", status_code=204)
@access("admin")
async def delete_version(
    namespace: str, name: str, version: str, request: Request, force: bool = False
) -> Response:
    """Delete a version for good; refused while it is published unless ``force``.
    Its blobs are freed by the next garbage collection if nothing else lists them."""
    svc, call = services(request)
    await call(
        svc.delete_version,
        version_ref(namespace, name, version),
        force=force,
        actor=actor(request),
    )
    return Response(status_code=204)


@router.patch("/models/{namespace}/{name}/versions/{version}")
@access("write")
async def update_version(
    namespace: str, name: str, version: str, body: TagChanges, request: Request
) -> Response:
    """Change the mutable fields: description, tags, metadata."""
    svc, call = services(request)
    ver = await call(
        svc.update_version,
        version_ref(namespace, name, version),
        description=body.description,
        set_tags=body.tags,
        delete_tags=body.delete_tags,
        metadata=body.metadata,
        actor=actor(request),
    )
    return JSONResponse(render.version(ver))


@router.post("/models/{namespace}/{name}/versions/{version}/files")
@access("write")
async def commit_files(
    namespace: str, name: str, version: str, body: FilesCommit, request: Request
) -> Response:
    """Commit the manifest of a draft version; it becomes ``ready`` and immutable."""
    svc, call = services(request)
    ver = await call(
        svc.commit_files,
        version_ref(namespace, name, version),
        [f.model_dump() for f in body.files],
        actor=actor(request),
    )
    return JSONResponse(render.version(ver))


@router.put("/models/{namespace}/{name}/versions/{version}/pickle-exception")
@access("admin")
async def record_pickle_exception(
    namespace: str, name: str, version: str, body: PickleExceptionSet, request: Request
) -> Response:
    """Record an admin's audited exception: model servers may unpickle this
    version's pickle files, bound to their digests now (409 NO_PICKLE_FILES
    when it has none). Replaces an exception already recorded."""
    svc, call = services(request)
    ver = await call(
        svc.record_pickle_exception,
        version_ref(namespace, name, version),
        body.reason,
        actor=actor(request),
    )
    return JSONResponse(render.version(ver))


@router.delete("/models/{namespace}/{name}/versions/{version}/pickle-exception")
@access("admin")
async def revoke_pickle_exception(
    namespace: str, name: str, version: str, request: Request
) -> Response:
    """Revoke the version's pickle exception: model servers refuse its
    pickles again from their next load of it (404 PICKLE_EXCEPTION_NOT_FOUND
    when it has none)."""
    svc, call = services(request)
    ver = await call(
        svc.revoke_pickle_exception, version_ref(namespace, name, version), actor=actor(request)
    )
    return JSONResponse(render.version(ver))


def _transition(target: VersionState):  # type: ignore[no-untyped-def]
    async def endpoint(
        namespace: str, name: str, version: str, request: Request, body: Transition | None = None
    ) -> Response:
        svc, call = services(request)
        ver = await call(
            svc.transition_version,
            version_ref(namespace, name, version),
            target,
            actor=actor(request),
            archive_previous=bool(body and body.archive_previous),
        )
        return JSONResponse(render.version(ver))

    endpoint.__dict__["modelyard_access"] = Access("write")
    return endpoint


router.add_api_route(
    "/models/{namespace}/{name}/versions/{version}/publish",
    _transition(VersionState.PUBLISHED),
    methods=["POST"],
    summary="Publish a version",
    description="Optionally archive the model's other published versions.",
)
router.add_api_route(
    "/models/{namespace}/{name}/versions/{version}/archive",
    _transition(VersionState.ARCHIVED),
    methods=["POST"],
    summary="Archive a version",
)
router.add_api_route(
    "/models/{namespace}/{name}/versions/{version}/restore",
    _transition(VersionState.READY),
    methods=["POST"],
    summary="Restore an archived (or unpublish a published) version to ready",
)


@router.get("/models/{namespace}/{name}/versions/{version}/files")
@access("consume")
async def list_files(request: Request, namespace: str, name: str, version: str) -> Response:
    """The version's manifest."""
    svc, call = services(request)
    ver = await call(
        svc.get_version,
        version_ref(namespace, name, version),
        with_files=True,
        actor=actor(request),
    )
    files = render.version(ver)["files"]
    return JSONResponse({"ref": ver.ref, "files": files})


FILE_PATH = "/models/{namespace}/{name}/versions/{version}/files/{path:path}"
TAR_PATH = "/models/{namespace}/{name}/versions/{version}/archive.tar"


@router.get(FILE_PATH)
@access("consume")
async def download_file(
    namespace: str, name: str, version: str, path: str, request: Request, redirect: bool = False
) -> Response:
    """One file's bytes; supports ``Range``. The path is looked up in the manifest.

    With ``redirect=true``, a server on a store that gives presigned URLs (S3)
    answers 307 to one: the bytes then come straight from the store.

    ``HEAD`` answers the same headers (size, ``ETag``, ``Accept-Ranges``)
    without reading the blob: clients probe sizes that way.
    """
    svc, call = services(request)
    _ver, entry = await call(
        svc.get_file, version_ref(namespace, name, version), path, actor=actor(request)
    )
    headers = {
        "ETag": f'"{entry.digest}"',
        "X-Content-SHA256": entry.digest,
        "Cache-Control": "private, max-age=31536000, immutable",
    }
    head = request.method == "HEAD"
    if redirect and not head:
        # Straight from the store, where it gives presigned URLs: the client
        # asked to be sent there, after the same permission check as here.
        blobs: BlobService = request.app.state.blobs
        name_only = path.rsplit("/", 1)[-1]
        url = await run_in_threadpool(blobs.download_url, entry.digest, attachment(name_only))
        if url is not None:
            return Response(status_code=307, headers={**headers, "Location": url})
    local = svc.blobs.local_path(entry.digest)
    if head and local is None:
        return Response(
            media_type=entry.media_type,
            headers={
                **headers,
                "Content-Length": str(entry.size),
                "Accept-Ranges": "bytes",
                "Content-Disposition": attachment(path.rsplit("/", 1)[-1]),
            },
        )
    # HEAD of a local blob: Starlette's file response sends its headers only.
    if (
        not head
        and local is not None
        and entry.size >= PIPELINE_MIN
        and "range" not in request.headers
    ):
        return BlobStreamResponse(
            local,
            entry.size,
            media_type=entry.media_type,
            headers=headers,
            filename=path.rsplit("/", 1)[-1],
        )
    if local is not None:
        return BlobFileResponse(
            local,
            media_type=entry.media_type,
            headers=headers,
            filename=path.rsplit("/", 1)[-1],
            content_disposition_type="attachment",
        )
    # A store without files (S3): the bytes stream from it; one byte range
    # is served as 206, as the local store's file response does.
    headers["Accept-Ranges"] = "bytes"
    wanted = byte_range(request.headers.get("range"), entry.size)
    if isinstance(wanted, str):  # "unsatisfiable"
        return Response(status_code=416, headers={"Content-Range": f"bytes */{entry.size}"})
    start, end = wanted or (0, entry.size)
    # The store is asked before the answer starts (a blocking request, so on
    # a worker thread): its failure is still an error status, not a cut stream.
    body: Iterator[bytes] = await run_in_threadpool(svc.blobs.iter_range, entry.digest, start, end)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
    return StreamingResponse(
        body,
        status_code=206 if wanted is not None else 200,
        media_type=entry.media_type,
        headers={**headers, "Content-Length": str(end - start)},
    )


@router.get(TAR_PATH)
@access("consume")
async def download_tar(request: Request, namespace: str, name: str, version: str) -> Response:
    """The whole version as an uncompressed tar stream (paths as in the manifest).

    Its exact length is known from the manifest (``Content-Length``); ``HEAD``
    answers the headers alone, reading no blob.
    """
    svc, call = services(request)
    ver = await call(
        svc.get_version,
        version_ref(namespace, name, version),
        with_files=True,
        actor=actor(request),
    )
    pending_versions.check_all_readable(ver)
    files = ver.files or []
    filename = f"{ver.model}-{ver.number}.tar"
    mtime = ver.created_at // 1_000_000
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Content-Length": str(tar_size(files, mtime=mtime)),
    }
    if request.method == "HEAD":
        return Response(media_type="application/x-tar", headers=headers)
    return StreamingResponse(
        tar_stream(files, svc.blobs, mtime=mtime), media_type="application/x-tar", headers=headers
    )


# HEAD answers as GET without a body (clients probe sizes that way); its own
# routes so that each method keeps its own OpenAPI operation id.
router.add_api_route(
    FILE_PATH,
    download_file,
    methods=["HEAD"],
    operation_id="head_version_file",
    summary="A file's headers (size, ETag) without its bytes",
)
router.add_api_route(
    TAR_PATH,
    download_tar,
    methods=["HEAD"],
    operation_id="head_version_archive",
    summary="The tar archive's headers (size) without its bytes",
)


@router.put("/models/{namespace}/{name}/aliases/{alias}")
@access("write")
async def set_alias(
    namespace: str, name: str, alias: str, body: AliasSet, request: Request
) -> Response:
    """Point an alias at a version (history is kept)."""
    svc, call = services(request)
    target = body.version
    if "/" in target or "@" in target:
        raise InvalidInput(
            "version must be a number or alias of this model", code="INVALID_REFERENCE"
        )
    ver = await call(
        svc.set_alias,
        version_ref(namespace, name, target),
        alias,
        actor=actor(request),
        reason=body.reason,
        expected_version=body.expected_version,
        force=body.force,
    )
    return JSONResponse(render.version(ver))


@router.delete("/models/{namespace}/{name}/aliases/{alias}", status_code=204)
@access("write")
async def delete_alias(namespace: str, name: str, alias: str, request: Request) -> Response:
    """Remove an alias (history is kept)."""
    svc, call = services(request)
    await call(svc.delete_alias, name, alias, namespace=namespace, actor=actor(request))
    return Response(status_code=204)


@router.get("/models/{namespace}/{name}/aliases/history")
@access("read")
async def alias_history(
    request: Request,
    namespace: str,
    name: str,
    alias: str | None = None,
    order: Literal["asc", "desc"] = Query(
        "asc",
        description="`asc`: oldest move first (the default, as before paging); "
        "`desc`: newest first.",
    ),
    page_size: int = Query(100, ge=1, le=1000),
    page_token: str | None = None,
) -> Response:
    """The recorded moves of the model's aliases (or of one ``alias``), one
    keyset page at a time: ``next_page_token`` continues in the same order
    (null: no further move). Oldest first unless ``order=desc``."""
    svc, call = services(request)
    page = await call(
        svc.alias_moves,
        name,
        namespace=namespace,
        alias=alias,
        page_size=page_size,
        page_token=page_token,
        newest_first=order == "desc",
        actor=actor(request),
    )
    return JSONResponse(
        {
            "history": [render.alias_move(m) for m in page.items],
            "next_page_token": page.next_page_token,
        }
    )
