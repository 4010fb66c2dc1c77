"""From a version to something that runs (issue 12): ``build`` writes a
container build context, ``deploy apply`` writes Kubernetes manifests or
starts the model server here as a recorded deployment."""

from __future__ import annotations

import os
import socket
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from modelyard.cli.common import connect, err, print_json, run
from modelyard.cli.common import out as console
from modelyard.cli.deployments import deploy_app
from modelyard.cli.options import DEFAULT_URL, JsonOpt, RegistryOpt, TokenOpt
from modelyard.domain.deployments import validate_endpoint, validate_environment
from modelyard.domain.errors import InvalidInput
from modelyard.domain.references import DEFAULT_NAMESPACE, Reference, parse_reference

OutOpt = Annotated[
    Path,
    typer.Option("--out", "-o", help="Directory to write (must be empty or absent)."),
]


class Target(StrEnum):
    """Where ``deploy apply`` puts the model server."""

    LOCAL = "local"
    K8S = "k8s"


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


def _deployed(ref: str) -> Reference:
    """The reference a deployment follows, canonical (a bare name: its latest)."""
    parsed = parse_reference(ref, default_namespace=DEFAULT_NAMESPACE)
    if parsed.version is None and parsed.alias is None:
        return Reference(parsed.namespace, parsed.name, alias="latest")
    return parsed


@deploy_app.command("apply")
def apply(
    ref: Annotated[str, typer.Argument(help="Reference to deploy: fraud@production, fraud/7.")],
    env: Annotated[str, typer.Option("--env", help="Environment, e.g. prod-eu.")],
    target: Annotated[
        Target, typer.Option(help="local: run the server here; k8s: write manifests.")
    ] = Target.LOCAL,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Manifest directory (k8s).")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(help="Image built from `modelyard build` (k8s; best pinned by digest)."),
    ] = None,
    registry_url: Annotated[
        str | None,
        typer.Option(help="Registry URL as the pods reach it (k8s) [default: --registry]."),
    ] = None,
    k8s_namespace: Annotated[
        str, typer.Option("--k8s-namespace", help="Kubernetes namespace (k8s).")
    ] = "default",
    replicas: Annotated[int, typer.Option(min=0, help="Desired replicas (k8s).")] = 1,
    max_replicas: Annotated[
        int, typer.Option(min=1, help="Autoscaler's maximum replicas (k8s).")
    ] = 4,
    token_secret: Annotated[
        str, typer.Option(help="Secret holding the pods' registry token, key `token` (k8s).")
    ] = "modelyard-serving-token",
    cpu: Annotated[str, typer.Option(help="CPU request and limit per pod (k8s).")] = "1",
    memory: Annotated[str, typer.Option(help="Memory request and limit per pod (k8s).")] = "512Mi",
    alert_p99: Annotated[
        float, typer.Option(min=0, help="Alert when p99 latency exceeds this, seconds (k8s).")
    ] = 0.25,
    alert_error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Alert when this share of requests fails (k8s).")
    ] = 0.05,
    alert_psi: Annotated[
        float, typer.Option(min=0, help="Alert when a feature's PSI exceeds this (k8s).")
    ] = 0.2,
    record: Annotated[
        bool,
        typer.Option("--record/--no-record", help="Record the deployment in the registry."),
    ] = True,
    host: Annotated[str, typer.Option(help="Bind address (local).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port (local).")] = 8000,
    endpoint: Annotated[
        str | None,
        typer.Option(help="URL clients reach the server at (local) [default: from host, port]."),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Private model cache (local).")
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a reference to an environment.

    --target local records the deployment (one replica, its endpoint) and then
    becomes `modelyard serve REF --env ENV` in this process: the same server,
    heartbeats and alias following as any replica. --target k8s writes
    Kubernetes manifests into --out (Deployment with OIP readiness and
    liveness probes, Service, HorizontalPodAutoscaler, ServiceMonitor,
    PrometheusRule alerts on latency, errors and drift) for an --image built
    by `modelyard build`, and records the deployment (desired replicas, the
    Service's URL) unless --no-record.
    """
    validate_environment(env)
    deployed = _deployed(ref)
    if target is Target.K8S:
        _apply_k8s(
            deployed,
            env,
            out=out,
            image=image,
            registry_url=registry_url or registry,
            options={
                "namespace": k8s_namespace,
                "replicas": replicas,
                "max_replicas": max_replicas,
                "token_secret": token_secret,
                "cpu": cpu,
                "memory": memory,
            },
            alerts=(alert_p99, alert_error_rate, alert_psi),
            record=record,
            registry=registry,
            token=token,
            as_json=as_json,
        )
        return
    if out is not None or image is not None:
        raise typer.BadParameter("--out and --image are for --target k8s")
    if endpoint is None:
        shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
        endpoint = f"http://{shown}:{port}" if ":" not in shown else f"http://[{shown}]:{port}"
    validate_endpoint(endpoint)
    with connect(registry, token) as reg:
        reg.get_version(str(deployed))  # a reference that resolves to nothing stops here
        recorded = reg.put_deployment(env, str(deployed), endpoint=endpoint) if record else None
    if as_json:
        print_json({"target": "local", "deployment": recorded, "pid": os.getpid()})
    else:
        err.print(
            f"deployment {env}: {deployed} recorded; serving at {endpoint} (pid {os.getpid()})",
            highlight=False,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, "-m", "modelyard.cli.main", "serve", str(deployed)]
    command += ["--env", env, "--host", host, "--port", str(port), "--endpoint", endpoint]
    command += ["--registry", registry]
    if cache_dir is not None:
        command += ["--cache-dir", str(cache_dir)]
    if token is not None:
        # Handed down in the environment, never on the command line (ps shows it).
        os.environ["MODELYARD_TOKEN"] = token
    # The same server command, as this very process: its PID is the server's,
    # and a signal to it reaches the server.
    os.execv(sys.executable, command)


def _apply_k8s(
    deployed: Reference,
    env: str,
    *,
    out: Path | None,
    image: str | None,
    registry_url: str,
    options: dict[str, Any],
    alerts: tuple[float, float, float],
    record: bool,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    if out is None or image is None:
        raise typer.BadParameter("--target k8s needs --out and --image")
    if not registry_url.startswith(("http://", "https://")):
        raise typer.BadParameter(
            "the pods need the registry's URL: pass --registry-url http(s)://..."
        )
    try:
        from modelyard.serving import manifests
    except ImportError as exc:
        raise InvalidInput(
            f"this command needs the serving extra (pip install 'modelyard[serving]'): {exc}",
            code="MISSING_DEPENDENCY",
        ) from None
    spec = manifests.K8sTarget(
        reference=str(deployed),
        model=deployed.name,
        environment=env,
        image=image,
        registry_url=registry_url,
        alerts=manifests.Alerts(*alerts),
        **{**options, "namespace": manifests.check_k8s_namespace(options["namespace"])},
    )
    manifests.render(spec)  # refused before the registry is asked anything
    with connect(registry, token) as reg:
        reg.get_version(str(deployed))
        written = manifests.write_manifests(spec, out)
        recorded = (
            reg.put_deployment(env, str(deployed), replicas=spec.replicas, endpoint=spec.endpoint)
            if record
            else None
        )
    if as_json:
        print_json({"target": "k8s", "files": [str(p) for p in written], "deployment": recorded})
    else:
        names = ", ".join(p.name for p in written)
        done = f"; deployment {env}: {deployed} recorded" if recorded else ""
        console().print(f"wrote {names} in {out}{done}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``build`` to the app (``deploy apply`` joins the ``deploy`` group
    when this module is imported)."""
    app.command()(build)
