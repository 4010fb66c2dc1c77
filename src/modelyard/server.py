"""Run the HTTP server for ``modelyard server`` and ``make serve``."""

from __future__ import annotations

import ipaddress
import logging
import sys

from modelyard.settings import Settings


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(settings: Settings) -> None:
    """Build the app from ``settings`` and serve it with uvicorn (one worker)."""
    import uvicorn

    from modelyard.api.app import create_app

    app = create_app(settings)
    base = f"http://{settings.host}:{settings.port}"
    print(
        f"modelyard serving {base}  (API docs {base}/docs, health {base}/health)", file=sys.stderr
    )
    print(
        f"  database: {settings.database_url()}\n  blobs:    {settings.blob_store_url()}",
        file=sys.stderr,
    )
    if not is_loopback(settings.host):
        logging.getLogger("modelyard").warning(
            "binding beyond loopback without authentication: anyone who can reach %s can "
            "change the registry",
            base,
        )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=5,
    )
