"""``modelyard serve``: run the model server (Open Inference Protocol v2) for references."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelyard.cli.options import DEFAULT_URL, RegistryOpt, TokenOpt
from modelyard.domain.deployments import (
    validate_endpoint,
    validate_environment,
    validate_replica,
)
from modelyard.domain.errors import InvalidInput


def serve(
    refs: Annotated[
        list[str] | None,
        typer.Argument(
            help="References to serve: fraud@production, fraud/7, team/fraud@latest.",
            show_default=False,
        ),
    ] = None,
    bundle: Annotated[
        list[str] | None,
        typer.Option(
            "--bundle",
            help="Serve every role of a bundle under the role's name: pipeline (followed: "
            "a new bundle version is swapped in whole), pipeline/3 (pinned). Repeatable.",
            show_default=False,
        ),
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the inference server.")] = 8000,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Private (0700) model cache [default: serving/ in the SDK's cache].",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        int, typer.Option(min=1, help="Threads per model for the runtime (onnxruntime).")
    ] = 1,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="Follow aliases: when one moves, load its new version and swap it in.",
        ),
    ] = True,
    resync: Annotated[
        float,
        typer.Option(
            min=0.5,
            max=86400,
            help="Seconds of quiet on the registry's event stream after which every "
            "followed alias and bundle is resolved again (the safety net for a missed event).",
        ),
    ] = 10.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            help="Report to the registry as a replica of this environment's deployment of "
            "each reference (prod-eu): heartbeats, swaps, load failures.",
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(help="This server's URL as clients reach it (recorded with --env)."),
    ] = None,
    replica: Annotated[
        str | None,
        typer.Option(
            help="Replica id reported with --env [default: HOST-PID].", show_default=False
        ),
    ] = None,
    heartbeat: Annotated[
        float,
        typer.Option(min=0.1, max=3600, help="Seconds between heartbeats (with --env)."),
    ] = 15.0,
    monitor_window: Annotated[
        float,
        typer.Option(
            min=1,
            max=7 * 86400,
            help="Seconds of traffic the drift, error and latency statistics cover, "
            "unless the deployment's monitoring settings say otherwise (with --env).",
        ),
    ] = 300.0,
    log_predictions: Annotated[
        Path | None,
        typer.Option(
            "--log-predictions",
            help="Log each inference (inputs, outputs, version, latency) as JSON lines in "
            "rotating files in this directory (0700) [default: off].",
            show_default=False,
        ),
    ] = None,
    prediction_log_max_mb: Annotated[
        float,
        typer.Option(min=0.001, max=1 << 20, help="Size of one prediction log file, in MiB."),
    ] = 64.0,
    prediction_log_files: Annotated[
        int,
        typer.Option(
            min=0, max=1000, help="Rotated prediction log files kept besides the current one."
        ),
    ] = 5,
) -> None:
    """Serve model versions over the Open Inference Protocol v2 (KServe/Triton REST).

    Each reference is resolved through the registry (a consumer token is
    enough), its files are pulled and verified against their digests, and it
    is loaded by its format's flavor (ONNX, skops); pickles are refused. An
    alias is followed: when it moves, the new version is loaded, warmed up and
    swapped in without a failed request (a version that fails to load never
    takes traffic). Routes: /v2/health/live, /v2/health/ready,
    /v2/models/NAME and /v2/models/NAME/versions/V with /ready and /infer
    below each, /metrics, /monitoring.

    With --bundle, every role of the bundle version is served under the
    role's name, and the server is ready only when all of them are loaded.
    A bundle named without a version number is followed: when a new bundle
    version pins other versions, all of them are loaded and warmed up before
    any is swapped in (if one fails, the roles keep the set they had).

    The server keeps rolling statistics of what each version receives: per
    feature PSI and KS against the version's reference statistics (pushed with
    --reference-data), error rate and latency. With --env, crossing a threshold
    is reported to the registry (deployment.drift, deployment.degraded), and a
    deployment that opted in (deploy set --monitor rollback=true) has its
    alias rolled back when it stays degraded. --log-predictions DIR keeps each
    inference in rotating JSON-lines files (off by default).

    With --env NAME the server registers itself as a replica of the
    deployment of each reference in that environment and sends heartbeats
    (see `modelyard deploy ls`); a consumer token is enough.
    """
    try:
        from modelyard.serving.runner import ServeOptions
        from modelyard.serving.runner import serve as run
    except ImportError as exc:  # numpy and the runtimes come with the extra only
        raise InvalidInput(
            f"modelyard serve needs the serving extra (pip install 'modelyard[serving]'): {exc}",
            code="MISSING_DEPENDENCY",
        ) from None

    refs = refs or []
    bundles = bundle or []
    if not refs and not bundles:
        raise typer.BadParameter("name at least one reference or --bundle")
    if bundles and env is not None:
        # A deployment record follows one model reference; a bundle's roles
        # would each need one, and reporting them as such would misstate
        # what is deployed.
        raise typer.BadParameter("--env reports model references; serve bundles without it")
    if log_level not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("--log-level must be debug, info, warning or error")
    if env is None and (endpoint is not None or replica is not None):
        raise typer.BadParameter("--endpoint and --replica need --env")
    # Checked before any model is pulled: a typo should not cost a download.
    if env is not None:
        validate_environment(env)
    if replica is not None:
        validate_replica(replica)
    validate_endpoint(endpoint)
    run(
        ServeOptions(
            refs=refs,
            bundles=bundles,
            registry=registry,
            token=token,
            host=host,
            port=port,
            cache_dir=cache_dir,
            threads=threads,
            follow=follow,
            reconcile_seconds=resync,
            log_level=log_level,
            environment=env,
            endpoint=endpoint,
            replica=replica,
            heartbeat_seconds=heartbeat,
            monitor_window=monitor_window,
            prediction_log=log_predictions,
            prediction_log_max_bytes=max(1, int(prediction_log_max_mb * (1 << 20))),
            prediction_log_backups=prediction_log_files,
        )
    )


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``modelyard`` app."""
    app.command()(serve)
