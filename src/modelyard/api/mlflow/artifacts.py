"""MLflow's artifact proxy (``mlflow-artifacts``): upload (PUT), download
(GET), list (GET with ``path``) and delete, onto ``service/artifacts.py``.

Paths are relative to the proxy root (``<exp>/<run>/artifacts/<file>``,
``<exp>/models/<m-id>/artifacts/<file>``) and checked by the service with
REST v1's file-path rule; bytes go to the content-addressed blob store
(hashed as they stream, stored once). Multipart uploads are not offered:
``/server-info`` is not served, so the client falls back to plain PUTs.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from modelyard.api.access import access
from modelyard.api.deps import actor
from modelyard.api.mlflow.params import Params, ok
from modelyard.api.responses import BlobFileResponse, BlobStreamResponse
from modelyard.api.uploads import declared_size, receive_into
from modelyard.hashio import PIPELINE_MIN
from modelyard.service.artifacts import ArtifactService

router = APIRouter(prefix="/mlflow-artifacts/artifacts")
MULTIPART_UPLOADS = False
"""Whether the proxy takes MLflow's multipart uploads (``/server-info`` says so)."""
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
