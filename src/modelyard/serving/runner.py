"""``modelyard serve``: load every reference, then serve them over HTTP."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.client import Registry
from modelyard.serving.app import InferenceApp
from modelyard.serving.follower import AliasFollower, Served
from modelyard.serving.loader import LoadedVersion, load_version, private_dir
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.reporter import HEARTBEAT_SECONDS, DeploymentReporter
from modelyard.serving.table import ModelTable

log = logging.getLogger("modelyard.serving")


@dataclass(frozen=True)
class ServeOptions:
    """What ``modelyard serve`` was asked for."""

    refs: list[str]
    registry: str
    bundles: list[str] = field(default_factory=list)
    """Bundle references (``pipeline``, ``pipeline@latest``, ``pipeline/3``):
    every role of the bundle version is served under the role's name."""
    token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    cache_dir: Path | None = None
    threads: int = 1
    follow: bool = True
    reconcile_seconds: float = 10.0
    log_level: str = "info"
    environment: str | None = None
    """Report to the registry as a replica of this environment's deployments."""
    endpoint: str | None = None
    replica: str | None = None
    heartbeat_seconds: float = HEARTBEAT_SECONDS


def serving_cache(cache_dir: Path | None) -> Path:
    """The serving cache: ``cache_dir``, else ``serving/`` in the SDK's default
    cache; created 0700, and used as the SDK's blob cache, so the verified
    blobs a server loads are readable by no other local user."""
    from modelyard.client.registry import default_cache_dir

    return private_dir(cache_dir or default_cache_dir() / "serving")


def build(
    options: ServeOptions, registry: Registry
) -> tuple[InferenceApp, list[Served], DeploymentReporter | None]:
    """Load every reference and every bundle's roles (the first failure stops
    everything: a server that starts without a model it was asked for would
    look healthy and not be), the follower that moves aliased references and
    followed bundles, and with an environment the reporter of the deployment
    heartbeats."""
    table = ModelTable(ServingMetrics())
    by_ref: dict[str, LoadedVersion] = {}

    def load(exact_ref: str) -> LoadedVersion:
        # Two references to one version (fraud@production, fraud/7, a bundle
        # role pinning it) share it.
        version = by_ref.get(exact_ref)
        if version is None:
            root = registry.cache.root
            version = load_version(registry, exact_ref, root, threads=options.threads)
            by_ref[exact_ref] = version
        return version

    served: list[Served] = []
    for ref in options.refs:
        version = load(registry.get_version(ref).ref)
        table.add(ref, version)
        served.append(Served(ref, version, version.model))
    for bundle_ref in options.bundles:
        # A bundle version pins one version per role: the context is served
        # whole or not at all (ready only once every role is loaded).
        bundle_version = registry.bundle(bundle_ref).version()
        owner = f"bundle {bundle_version['namespace']}/{bundle_version['name']}"
        for role, member in sorted(bundle_version["members"].items()):
            item = Served(bundle_ref, load(str(member["ref"])), role, role)
            table.add(item.key, item.loaded, name=role, owner=owner)
            served.append(item)
    reporter = None
    if options.environment is not None:
        reporter = DeploymentReporter(
            registry,
            options.environment,
            [(s.ref, s.loaded.version) for s in served if s.role is None],
            endpoint=options.endpoint,
            replica=options.replica,
            interval=options.heartbeat_seconds,
        )
    if not options.follow:
        if reporter is None:
            return InferenceApp(table), served, None
        return (
            InferenceApp(table, on_startup=reporter.start, on_shutdown=reporter.stop),
            served,
            reporter,
        )
    follower = AliasFollower(
        registry,
        table,
        served,
        registry.cache.root,
        threads=options.threads,
        reconcile_seconds=options.reconcile_seconds,
        on_swap=None if reporter is None else reporter.swapped,
        on_load_failure=None if reporter is None else reporter.load_failed,
    )

    def start() -> None:
        if reporter is not None:
            reporter.start()
        follower.start()

    def stop() -> None:
        follower.stop()
        if reporter is not None:
            reporter.stop()

    return InferenceApp(table, on_startup=start, on_shutdown=stop), served, reporter


def serve(options: ServeOptions) -> None:
    """Load, then run the HTTP server until interrupted (one process, one event loop)."""
    import uvicorn

    cache = serving_cache(options.cache_dir)
    registry = Registry(options.registry, token=options.token, cache_dir=cache)
    try:
        app, served, reporter = build(options, registry)
        if reporter is not None:
            # Before taking traffic, and fatal if refused (a bad environment
            # name, a token without consume): a replica the registry does not
            # know about would be invisible to `deploy ls`.
            reporter.register()
        # Configured only once everything loaded: a refused reference is the
        # CLI's error to report, and the process's logging is not touched then.
        logging.basicConfig(
            level=options.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(message)s"
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per registry call
        for item in served:
            v = item.loaded
            via = "" if item.role is None else f" (role of bundle {item.ref})"
            log.info("serving %s (%s) as model %r%s", v.ref, v.flavor, item.name, via)
        config = uvicorn.Config(
            app,
            host=options.host,
            port=options.port,
            log_level=options.log_level,
            access_log=False,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=5,
        )
        uvicorn.Server(config).run()
    finally:
        registry.close()
