"""``modelyard``: the command line, on top of the SDK.

The commands live by subject: ``versions`` (push, pull, ls, show, search, tag,
alias set|show), ``cache`` (ls, clear), ``events`` (events, webhooks ...),
``identity`` (whoami, token, user, role), ``governance`` (publish, archive,
restore, rollback, policy, approval, audit), ``serve`` (the model server);
this module builds the app and holds ``server`` and ``db upgrade``.

Exit codes: 0 success; 1 the operation failed (the error code is printed,
``{"error": {...}}`` on stderr with ``--json``); 2 a usage error (unknown
command or option, bad value); 130 interrupted. See ``cli/common.py``.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from modelyard import __version__
from modelyard.cli import bundles as bundles_cli
from modelyard.cli import cache as cache_cli
from modelyard.cli import convert as convert_cli
from modelyard.cli import deployments as deployments_cli
from modelyard.cli import events as events_cli
from modelyard.cli import families as families_cli
from modelyard.cli import governance as governance_cli
from modelyard.cli import identity as identity_cli
from modelyard.cli import maintenance as maintenance_cli
from modelyard.cli import release as release_cli
from modelyard.cli import serve as serve_cli
from modelyard.cli import versions as versions_cli
from modelyard.cli.common import CliGroup, out
from modelyard.cli.events import webhooks_app as webhooks_app
from modelyard.cli.identity import role_app as role_app
from modelyard.cli.identity import token_app as token_app
from modelyard.cli.identity import user_app as user_app
from modelyard.cli.options import JsonOpt as JsonOpt
from modelyard.cli.options import RegistryOpt as RegistryOpt
from modelyard.cli.options import TokenOpt as TokenOpt

app = typer.Typer(
    cls=CliGroup,
    help="modelyard: a self-hosted model registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
T = TypeVar("T")


def _show_version(value: bool) -> None:
    if value:
        out().print(f"modelyard {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """modelyard: a self-hosted model registry."""


@app.command()
def server(
    host: Annotated[str | None, typer.Option(help="Bind address (env MODELYARD_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env MODELYARD_PORT).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory (env MODELYARD_DATA_DIR).")
    ] = None,
    db: Annotated[str | None, typer.Option(help="Database URL (env MODELYARD_DB).")] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Blob store URL: a directory or s3://bucket/prefix (env MODELYARD_STORE)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (env MODELYARD_WORKERS).")
    ] = None,
    auth: Annotated[
        str | None,
        typer.Option(
            help="Require API tokens: auto (on beyond loopback), on, off (env MODELYARD_AUTH)."
        ),
    ] = None,
) -> None:
    """Run the registry server (REST API, /docs, /health, /metrics)."""
    from modelyard.server import run_server
    from modelyard.settings import Settings

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "data_dir": data_dir,
            "db": db,
            "store": store,
            "workers": workers,
            "auth": auth,
        }.items()
        if v is not None
    }
    if auth is not None and auth not in ("auto", "on", "off"):
        raise typer.BadParameter("--auth must be auto, on or off")
    run_server(Settings(**overrides))


@db_app.command("upgrade")
def db_upgrade(
    db: Annotated[str | None, typer.Option(help="Database URL (env MODELYARD_DB).")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Apply schema migrations to the database."""
    from modelyard.composition import migrate_database
    from modelyard.settings import Settings

    overrides: dict[str, Any] = {
        k: v for k, v in {"db": db, "data_dir": data_dir}.items() if v is not None
    }
    before, after = migrate_database(Settings(**overrides))
    out().print(f"database at revision {after} (was {before or 'empty'})")


versions_cli.register(app)
cache_cli.register(app)
events_cli.register(app)
families_cli.register(app)
convert_cli.register(app)
bundles_cli.register(app)
deployments_cli.register(app)
identity_cli.register(app)
governance_cli.register(app)
serve_cli.register(app)
release_cli.register(app)
governance_cli.register_users(user_app)
maintenance_cli.register(app)


def app_for(args: list[str]) -> typer.Typer:
    """The app to run for the arguments ``args``: all of it, or, when they
    name a command at the top level (``server``, ``push``, ``ls`` ...), the
    root with only that command.

    Typer turns every command into a click command before it runs any: about
    90 ms here for the whole tree, paid by every ``modelyard server`` start
    and every CLI call (issue 9, cold start). The root keeps its options
    (``--version``) and its group class (exit codes, ``--json`` errors), so
    the command parses, helps and fails exactly as in the full app. Anything
    else (no command, an option first, a group such as ``db``, a typo that
    wants suggestions) gets the full app.
    """
    name = next(iter(args), "")
    for info in app.registered_commands:
        callback = info.callback
        named = info.name or (callback.__name__ if callback else "")
        if named.lower().replace("_", "-") == name:
            lean = copy.copy(app)
            lean.registered_commands = [info]
            lean.registered_groups = []
            return lean
    return app


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app_for(sys.argv[1:])()


if __name__ == "__main__":
    main()
