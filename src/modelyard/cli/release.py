"""From a version to something that runs (issue 12): ``build`` writes a
container build context, ``deploy apply`` writes Kubernetes manifests or
starts the model server here as a recorded deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelyard.cli.common import run
from modelyard.cli.options import DEFAULT_URL, JsonOpt, RegistryOpt, TokenOpt
from modelyard.domain.errors import InvalidInput

OutOpt = Annotated[
    Path,
    typer.Option("--out", "-o", help="Directory to write (must be empty or absent)."),
]


def _serving() -> Any:
    """The serving layer, or MISSING_DEPENDENCY (numpy and the runtimes come
    with the serving extra only)."""
    try:
        import modelyard.serving.buildctx as buildctx
    except ImportError as exc:
        raise InvalidInput(
            f"this command needs the serving extra (pip install 'modelyard[serving]'): {exc}",
            code="MISSING_DEPENDENCY",
        ) from None
    return buildctx


def build(
    ref: Annotated[str, typer.Argument(help="Reference to build: fraud@production, fraud/7.")],
    out: OutOpt,
    base_image: Annotated[
        str | None,
        typer.Option(
            help="Pinned base image: an exact release tag or name@sha256:DIGEST "
            "[default: python:3.11.14-slim-bookworm].",
            show_default=False,
        ),
    ] = None,
    wheel: Annotated[
        Path | None,
        typer.Option(help="Install modelyard from this wheel (copied into the context)."),
    ] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port the image serves on.")] = 8000,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a container build context for a version: a Dockerfile (pinned base
    image, non-root user, modelyard and the flavor's runtime pinned, the model
    files copied by digest, a HEALTHCHECK on /v2/health/ready), requirements.txt,
    the files, and modelyard-build.json. The image serves the exact version
    the reference resolves to now; at run time it needs MODELYARD_URL (and
    MODELYARD_TOKEN, a consumer token is enough) to read the version's
    metadata. Build it with any OCI builder (docker build, buildah, kaniko)."""
    buildctx = _serving()
    image = base_image or buildctx.DEFAULT_BASE_IMAGE
    run(
        registry,
        token,
        as_json,
        lambda reg: buildctx.write_context(reg, ref, out, base_image=image, wheel=wheel, port=port),
        lambda plan: (
            f"build context for {plan.ref} ({plan.flavor}, {len(plan.files)} files) in {out}"
        ),
        to_json=lambda plan: plan.to_json(),
    )


def register(app: typer.Typer) -> None:
    """Add ``build`` to the app and ``apply`` to the ``deploy`` group."""
    app.command()(build)
