"""``modelyard serve``: load every reference, then serve them over HTTP."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from modelyard.client import Registry
from modelyard.serving.app import InferenceApp
from modelyard.serving.follower import AliasFollower
from modelyard.serving.loader import LoadedVersion, load_version, private_dir
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.table import ModelTable

log = logging.getLogger("modelyard.serving")


@dataclass(frozen=True)
class ServeOptions:
    """What ``modelyard serve`` was asked for."""

    refs: list[str]
    registry: str
    token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    cache_dir: Path | None = None
    threads: int = 1
    follow: bool = True
    reconcile_seconds: float = 10.0
    log_level: str = "info"


def serving_cache(cache_dir: Path | None) -> Path:
    """The serving cache: ``cache_dir``, else ``serving/`` in the SDK's default
    cache; created 0700, and used as the SDK's blob cache, so the verified
    blobs a server loads are readable by no other local user."""
    from modelyard.client.registry import default_cache_dir

    return private_dir(cache_dir or default_cache_dir() / "serving")


def build(options: ServeOptions, registry: Registry) -> tuple[InferenceApp, list[LoadedVersion]]:
    """Load every reference (the first failure stops everything: a server that
    starts without a model it was asked for would look healthy and not be),
    and the follower that moves aliased ones when their alias moves."""
    table = ModelTable(ServingMetrics())
    loaded = []
    for ref in options.refs:
        exact = registry.get_version(ref)
        # Two references to one version (fraud@production, fraud/7) share it.
        version = table.loaded(exact.model, str(exact.version))
        if version is None or version.namespace != exact.namespace:
            version = load_version(
                registry, exact.ref, registry.cache.root, threads=options.threads
            )
        table.add(ref, version)
        loaded.append(version)
    if not options.follow:
        return InferenceApp(table), loaded
    follower = AliasFollower(
        registry,
        table,
        list(zip(options.refs, loaded, strict=True)),
        registry.cache.root,
        threads=options.threads,
        reconcile_seconds=options.reconcile_seconds,
    )
    return InferenceApp(table, on_startup=follower.start, on_shutdown=follower.stop), loaded


def serve(options: ServeOptions) -> None:
    """Load, then run the HTTP server until interrupted (one process, one event loop)."""
    import uvicorn

    cache = serving_cache(options.cache_dir)
    registry = Registry(options.registry, token=options.token, cache_dir=cache)
    try:
        app, loaded = build(options, registry)
        # Configured only once everything loaded: a refused reference is the
        # CLI's error to report, and the process's logging is not touched then.
        logging.basicConfig(
            level=options.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(message)s"
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per registry call
        for v in loaded:
            log.info("serving %s (%s) as model %r", v.ref, v.flavor, v.model)
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
