"""Option types shared by the command modules (``main`` and ``governance``).

A module of its own because ``main`` imports ``governance`` at load time, so
``governance`` cannot import them from ``main``.
"""

from __future__ import annotations

from typing import Annotated

import typer

RegistryOpt = Annotated[
    str,
    typer.Option(
        "--registry",
        "-r",
        envvar="MODELYARD_URL",
        help="Registry URL (http://...) or data directory for embedded use.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="MODELYARD_TOKEN",
        help="API token for a server with auth on (sent as Authorization: Bearer).",
    ),
]
