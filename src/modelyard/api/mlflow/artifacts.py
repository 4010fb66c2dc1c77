"""MLflow's artifact proxy (``mlflow-artifacts``): upload (PUT), download
(GET), list (GET with ``path``) and delete, onto ``service/artifacts.py``.

Paths are relative to the proxy root (``<exp>/<run>/artifacts/<file>``,
``<exp>/models/<m-id>/artifacts/<file>``) and checked by the service with
REST v1's file-path rule; bytes go to the content-addressed blob store
(hashed as they stream, stored once).

Multipart uploads (``/mlflow-artifacts/mpu/create|complete|abort/<dir>``, as
MLflow 3.17's client sends them once ``/server-info`` says so, which it does
with ``Settings.mlflow_multipart_uploads``) hand out part
URLs on this server, ``/mlflow-artifacts/mpu/part/<upload id>/<n>``; rules
in ``service/artifact_uploads.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from modelyard.api.access import access
from modelyard.api.deps import actor
from modelyard.api.mlflow.params import Params, invalid, ok
from modelyard.api.responses import BlobFileResponse, BlobStreamResponse
from modelyard.api.uploads import declared_size, receive_into
from modelyard.hashio import PIPELINE_MIN
from modelyard.service.artifact_uploads import MultipartUploads
from modelyard.service.artifacts import ArtifactService

router = APIRouter(prefix="/mlflow-artifacts/artifacts")
mpu_router = APIRouter(prefix="/mlflow-artifacts/mpu")
_OCTETS = "application/octet-stream"


def _artifacts(request: Request) -> ArtifactService:
    svc: ArtifactService = request.app.state.services.artifacts
    return svc


@router.get("")
@access("read")
async def list_artifacts(request: Request) -> Response:
    """``HttpArtifactRepository.list_artifacts``: one directory level."""
    p = await Params.of(request)
    svc = _artifacts(request)
    listed = await request.app.state.call(svc.list, p.required_text("path"), actor=actor(request))
    files = []
    for entry in listed:
        item: dict[str, object] = {"path": entry.name, "is_dir": entry.is_dir}
        if entry.size is not None:
            item["file_size"] = entry.size
        files.append(item)
    return ok({"files": files})


@router.put("/{path:path}")
@access("write")
async def upload_artifact(request: Request, path: str) -> Response:
    """``HttpArtifactRepository.log_artifact``: stream one file into the store."""
    svc = _artifacts(request)
    who = actor(request)
    target, upload = await request.app.state.call(
        svc.begin_upload, path, actor=who, size=declared_size(request)
    )
    stored = await receive_into(request, upload)
    await request.app.state.write_call(svc.finish_upload, target, stored, actor=who)
    return ok()


@router.get("/{path:path}")
@access("read")
async def download_artifact(request: Request, path: str) -> Response:
    """``HttpArtifactRepository._download_file``: the file's bytes."""
    svc = _artifacts(request)
    entry, chunks = await request.app.state.call(svc.open, path, actor=actor(request))
    # The blob by digest (never the client's path): sent from its file when the
    # store keeps files, as REST v1's downloads are.
    local = svc.blob_service.store.local_path(entry.digest)
    name = entry.path.rsplit("/", 1)[-1]
    if local is not None and entry.size >= PIPELINE_MIN:
        return BlobStreamResponse(local, entry.size, media_type=_OCTETS, headers={}, filename=name)
    if local is not None:
        return BlobFileResponse(local, media_type=_OCTETS, filename=name)
    body: Iterator[bytes] = chunks
    return StreamingResponse(
        body,
        media_type=_OCTETS,
        headers={"Content-Length": str(entry.size)},
    )


@router.delete("/{path:path}")
@access("write")
async def delete_artifact(request: Request, path: str) -> Response:
    """``HttpArtifactRepository.delete_artifacts``: drop a file or directory."""
    svc = _artifacts(request)
    await request.app.state.write_call(svc.delete, path, actor=actor(request))
    return ok()


def _uploads(request: Request) -> MultipartUploads:
    return MultipartUploads(_artifacts(request))


def _part_url(request: Request, upload_id: str, number: int) -> str:
    """Where the client PUTs part ``number``: this server, under the same
    mount (``/api/2.0`` or ``/ajax-api/2.0``) the create came through."""
    root = request.scope.get("root_path", "")
    return f"{request.url.scheme}://{request.url.netloc}{root}/mlflow-artifacts/mpu/part/{upload_id}/{number}"


@mpu_router.post("/create/{path:path}")
@access("write")
async def create_multipart_upload(request: Request, path: str) -> Response:
    """``HttpArtifactRepository.create_multipart_upload``: one URL per part."""
    p = await Params.of(request)
    mpu = _uploads(request)
    opened = await request.app.state.write_call(
        mpu.create,
        path,
        p.required_text("path"),
        p.integer("num_parts", 1),
        actor=actor(request),
    )
    credentials = [
        {"url": _part_url(request, opened.upload_id, n), "part_number": n, "headers": {}}
        for n in opened.part_numbers
    ]
    return ok({"upload_id": opened.upload_id, "credentials": credentials})


@mpu_router.put("/part/{upload_id}/{part_number}")
@access(
    "public",
    "The unguessable upload id from an authorized create is the part's authority, "
    "as a presigned URL's signature is (MLflow's client sends parts without credentials).",
)
async def upload_part(request: Request, upload_id: str, part_number: int) -> Response:
    """One part's bytes, hashed as they stream; answered with its ``ETag``."""
    mpu = _uploads(request)
    upload = await request.app.state.call(
        mpu.begin_part, upload_id, part_number, declared_size(request)
    )
    stored = await receive_into(request, upload)
    etag = await request.app.state.write_call(mpu.finish_part, upload_id, part_number, stored)
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})


def _etags(p: Params) -> list[tuple[int, str]]:
    raw = p.raw("parts")
    if not isinstance(raw, list) or not raw:
        raise invalid("Missing value for required parameter 'parts'.", parameter="parts")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise invalid("Each part is an object with 'part_number' and 'etag'.")
        part = Params(item)
        out.append((part.integer("part_number", minimum=1) or 0, part.required_text("etag")))
    return out


@mpu_router.post("/complete/{path:path}")
@access("write")
async def complete_multipart_upload(request: Request, path: str) -> Response:
    """``HttpArtifactRepository.complete_multipart_upload``: the parts, joined
    in order, become the file (hashed again as one blob)."""
    p = await Params.of(request)
    mpu = _uploads(request)
    await request.app.state.write_call(
        mpu.complete,
        path,
        p.required_text("path"),
        p.required_text("upload_id"),
        _etags(p),
        actor=actor(request),
    )
    return ok()


@mpu_router.post("/abort/{path:path}")
@access("write")
async def abort_multipart_upload(request: Request, path: str) -> Response:
    """``HttpArtifactRepository.abort_multipart_upload``."""
    p = await Params.of(request)
    mpu = _uploads(request)
    await request.app.state.write_call(
        mpu.abort, path, p.required_text("path"), p.required_text("upload_id"), actor=actor(request)
    )
    return ok()
