"""``modelyard serve``: load every reference, then serve them over HTTP."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.client import Registry
from modelyard.domain.monitoring import MonitorSettings
from modelyard.serving import heap
from modelyard.serving.app import InferenceApp
from modelyard.serving.follower import AliasFollower, Served
from modelyard.serving.loader import LoadedVersion, load_version, private_dir
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.predlog import PredictionLog
from modelyard.serving.reporter import HEARTBEAT_SECONDS, DeploymentReporter
from modelyard.serving.table import Live, ModelTable
from modelyard.serving.watcher import MonitorWatcher, drift_thresholds

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
    monitor_window: float = 300.0
    """The monitoring window when the deployment's settings do not give one."""
    prediction_log: Path | None = None
    """Log each inference to rotating files in this directory (None: off)."""
    prediction_log_max_bytes: int = 64 << 20
    prediction_log_backups: int = 5


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
    followed bundles, the monitoring watcher, the prediction log if asked
    for, and with an environment the reporter of the deployment heartbeats."""
    defaults = MonitorSettings(window_seconds=options.monitor_window)
    table = ModelTable(ServingMetrics(), window_seconds=defaults.window_seconds)
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
            measures=lambda ref: measures_of(ref),
        )
    follower: AliasFollower | None = None
    # Deployments are per reference; a bundle's roles are watched and logged
    # but have no deployment record to alert.
    deployed = {s.ref for s in served if s.role is None}

    def served_now() -> list[tuple[str, Live]]:
        items = (
            [(f.key, f.name, f.current) for f in follower.followed]
            if follower is not None
            else [(s.key, s.name, s.loaded) for s in served]
        )
        out = []
        for key, name, current in items:
            live = table.live(name, current.version_label)
            if live is not None:
                out.append((key, live))
        return out

    def settings(ref: str) -> MonitorSettings:
        found = reporter.monitoring(ref) if reporter is not None else None
        return found or defaults

    def measures_of(ref: str) -> dict[str, Any] | None:
        # The window of the version taking ref's traffic now, with the
        # thresholds the watcher judges it by (so the page can compare).
        for key, live in served_now():
            if key == ref:
                current = settings(ref)
                return {
                    **live.monitor.snapshot(),
                    "version": live.loaded.version,
                    "thresholds": {
                        **drift_thresholds(current, live).to_dict(),
                        "error_rate": current.error_rate,
                        "latency_p99_ms": current.latency_p99_ms,
                        "min_requests": current.min_requests,
                    },
                }
        return None

    send = None
    if reporter is not None:
        alert = reporter.alert

        def send(
            ref: str, kind: str, version: int, held: float | None, detail: dict[str, Any]
        ) -> dict[str, Any] | None:
            return alert(ref, kind, version, held, detail) if ref in deployed else None

    watcher = MonitorWatcher(served_now, settings, send)
    if options.follow:
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
    predictions = None
    if options.prediction_log is not None:
        predictions = PredictionLog(
            options.prediction_log,
            max_bytes=options.prediction_log_max_bytes,
            backups=options.prediction_log_backups,
        )

    def start() -> None:
        if reporter is not None:
            reporter.start()
        if follower is not None:
            follower.start()
        watcher.start()

    def stop() -> None:
        watcher.stop()
        if follower is not None:
            follower.stop()
        if reporter is not None:
            reporter.stop()
        if predictions is not None:
            predictions.close()

    app = InferenceApp(table, on_startup=start, on_shutdown=stop, predictions=predictions)
    return app, served, reporter


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
        heap.settle()  # after loading: the collector never walks it again (p99)
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
