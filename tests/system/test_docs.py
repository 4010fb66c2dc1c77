"""Docs stay honest: every setting and CLI command appears in the README."""

from __future__ import annotations

from pathlib import Path

from modelyard.cli.bundles import bundle_app
from modelyard.cli.cache import cache_app
from modelyard.cli.deployments import deploy_app
from modelyard.cli.families import resource_app
from modelyard.cli.main import app, db_app, role_app, token_app, user_app, webhooks_app
from modelyard.cli.versions import alias_app
from modelyard.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"MODELYARD_{name.upper()}" in README, name


def test_every_cli_command_is_documented() -> None:
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    groups = (
        ("db", db_app),
        ("token", token_app),
        ("user", user_app),
        ("role", role_app),
        ("webhooks", webhooks_app),
        ("cache", cache_app),
        ("alias", alias_app),
        ("resource", resource_app),
        ("bundle", bundle_app),
        ("deploy", deploy_app),
    )
    for group, sub in groups:
        names += [f"{group} {c.name or ''}" for c in sub.registered_commands]
    assert names
    for name in names:
        assert f"`{name}`" in README, name


def test_readme_names_the_two_commands() -> None:
    assert "make serve" in README and "make test" in README


def test_readme_says_each_section_once() -> None:
    """Issue 9: the CLI section was duplicated, and REST rows appeared twice."""
    assert README.count("## CLI") == 1 and README.count("`--registry/-r`") == 1
    rows = [line for line in README.splitlines() if line.startswith("| `")]
    assert len(rows) == len(set(rows)), [r for r in rows if rows.count(r) > 1]


def test_readme_states_the_exit_codes_the_cli_uses() -> None:
    from modelyard.cli import common

    for code, meaning in (
        (common.EXIT_FAILED, "1"),
        (common.EXIT_USAGE, "2"),
        (common.EXIT_INTERRUPTED, "130"),
    ):
        assert str(code) == meaning and f"`{meaning}`" in README
    assert "`--version`" in README and "`--json`" in README


def test_readme_quickstart_writes_nothing_into_the_clone() -> None:
    """The quickstart's demo/ and out/ go to a scratch directory, and it says
    how to reach a server on another port."""
    quick = README.split("## Five-minute quickstart", 1)[1].split("\n## ", 1)[0]
    assert "mktemp -d" in quick
    assert quick.index("mktemp -d") < quick.index("mkdir")
    assert "MODELYARD_URL" in quick
