"""MLflow 3's capability probe, ``GET /api/3.0/mlflow/server-info``.

The client asks it before an artifact transfer (``MlflowArtifactsRepository``)
to learn whether the proxy takes multipart uploads and hands out presigned
downloads; like MLflow's, the answer holds no secrets and needs no login.
Mounted at ``/api/3.0`` and ``/ajax-api/3.0`` (``app.py``), where MLflow
serves it, beside the ``/api/2.0`` door.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.mlflow.params import ok

router = APIRouter(prefix="/mlflow")


@router.get("/server-info")
@access("public", "MLflow clients probe it before they sign in, as MLflow allows.")
async def server_info(request: Request) -> Response:
    """What MLflow's ``build_server_info_payload`` reports, for this server."""
    return ok(
        {
            # Neither of MLflow's store classes: the client only compares names.
            "store_type": "modelyard",
            "workspaces_enabled": False,
            "trace_archival_enabled": False,
            # Off by default: one streamed PUT is hashed and written once (settings).
            "multipart_uploads_enabled": request.app.state.settings.mlflow_multipart_uploads,
            # Downloads stream from the proxy (no presigned ranges to hand out).
            "multipart_downloads_enabled": False,
            "presigned_upload_run_id_supported": False,
            "presigned_upload_model_id_supported": False,
            "features_enabled": {"gateway": False},
        }
    )
