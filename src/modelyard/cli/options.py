"""Option types shared by every command module.

The default registry URL comes from the settings object (``Settings.url``), so
it is written down once; ``MODELYARD_URL`` and ``-r`` override it per command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelyard.settings import Settings

DEFAULT_URL: str = Settings.model_fields["url"].default
"""``http://127.0.0.1:8080``: where ``modelyard server`` listens by default."""

RegistryOpt = Annotated[
    str,
    typer.Option(
        "--registry",
        "-r",
        envvar="MODELYARD_URL",
        help="Registry URL (http(s)://host:port; a bare host:port means http://) "
        "or data directory for embedded use.",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print machine-readable JSON (errors too, on stderr: "
        '{"error": {"code", "message", "details"}}).',
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="MODELYARD_TOKEN",
        help="API token for a server with auth on (sent as Authorization: Bearer).",
    ),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        envvar="MODELYARD_CACHE_DIR",
        help="Download cache (default: $XDG_CACHE_HOME/modelyard or ~/.cache/modelyard).",
        show_default=False,
    ),
]
