"""``modelyard NAME ...`` runs a root holding only the command NAME (issue 9,
cold start: typer builds every command of an app before it runs one). It
must parse, help, refuse and answer exactly as the full app does."""

from __future__ import annotations

import typer.main
from typer.testing import CliRunner

from modelyard.cli.main import app, app_for

TOP_LEVEL = sorted(
    (info.name or info.callback.__name__).lower().replace("_", "-")
    for info in app.registered_commands
    if info.callback is not None
)


def test_top_level_commands_get_a_root_of_their_own() -> None:
    assert {"server", "push", "pull", "ls"} <= set(TOP_LEVEL)
    for name in TOP_LEVEL:
        lean = typer.main.get_command(app_for([name, "--help"]))
        assert isinstance(lean, typer.main.TyperGroup)
        assert list(lean.commands) == [name]
        # The root's own options stay (--version).
        assert [p.name for p in lean.params] == [p.name for p in typer.main.get_command(app).params]


def test_everything_else_gets_the_full_app() -> None:
    for args in ([], ["--help"], ["--version"], ["db", "upgrade"], ["token", "ls"], ["serverr"]):
        assert app_for(args) is app


def test_the_lean_root_answers_as_the_full_app() -> None:
    runner = CliRunner()
    cases = [
        ["server", "--help"],
        ["server", "--auth", "maybe"],
        ["server", "--port", "x"],
        ["push", "--help"],
        ["push"],
        ["ls", "--help"],
        ["ls", "-r", "http://127.0.0.1:9", "--json"],
    ]
    for args in cases:
        full = runner.invoke(app, args)
        lean = runner.invoke(app_for(args), args)
        assert (lean.exit_code, lean.output) == (full.exit_code, full.output), args
